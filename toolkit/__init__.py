"""The shared toolkit under every app: the one clock, labelled enums, API plumbing (authentication,
throttling, parsers, pagination, the one error shape), admin display helpers and the metric writers.

It imports no project app (a test checks it), so every app may lean on it without a cycle: the import graph
runs project package → apps → toolkit and the pure modules."""
