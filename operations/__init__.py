"""Operating the fleet: Prometheus metrics, health and readiness, fleet status, the admin dashboard, JSON
logs with redaction and graceful worker shutdown. It reads the other apps; none of them imports it."""
