"""REST API (thin: validation lives in the domain)."""
