"""The one place that builds and checks `X-Scheduler-Signature`.

Both directions of the internal protocol use it: the HTTP launcher signs what it sends to a target, and the
completion callback verifies what a target sends back. Keeping both in one module means the two can never
disagree about the format, which is

    X-Scheduler-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, f"{t}.{raw body}")>

The timestamp is inside the MAC, so a captured request cannot be replayed after the tolerance window, and the
raw body (bytes as sent, not a re-serialised JSON) is what is signed, so no JSON canonicalisation is needed.
Several `v1=` values may be given (a target signing with an old and a new secret during rotation).
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime

HEADER = "X-Scheduler-Signature"
#: How far a signature's timestamp may be from our clock, either way. Five minutes absorbs clock skew and
#: queueing; beyond that a request is treated as a replay.
TOLERANCE_SECONDS = 300


class SignatureError(Exception):
    """A signature is missing, malformed, stale or wrong. The message is safe to return to the caller: it
    never contains the secret or the expected MAC."""


def _mac(secret: str, timestamp: int, body: bytes) -> str:
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def sign(body: bytes, *, secret: str, now: datetime) -> str:
    """The header value for `body` sent at `now`. An empty secret is refused: a MAC keyed with "" is one
    anybody can compute."""
    if not secret:
        raise SignatureError("INTERNAL_API_SECRET is not set; refusing to sign")
    timestamp = int(now.timestamp())
    return f"t={timestamp},v1={_mac(secret, timestamp, body)}"


def verify(header: str | None, body: bytes, *, secret: str, now: datetime) -> None:
    """Raise `SignatureError` unless `header` is a fresh, valid signature of `body`."""
    if not secret:
        raise SignatureError("signed callbacks are disabled: INTERNAL_API_SECRET is not set")
    if not header:
        raise SignatureError(f"missing {HEADER} header")
    timestamp: int | None = None
    candidates: list[str] = []
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        if key == "t" and value.isdigit():
            timestamp = int(value)
        elif key == "v1" and value:
            candidates.append(value.strip().lower())
    if timestamp is None or not candidates:
        raise SignatureError(f"malformed {HEADER} header: expected t=<unix>,v1=<hex>")
    if abs(now.timestamp() - timestamp) > TOLERANCE_SECONDS:
        raise SignatureError(f"{HEADER} timestamp is more than {TOLERANCE_SECONDS} s from the server clock")
    expected = _mac(secret, timestamp, body)
    # compare_digest over every candidate (no early exit on the first match) keeps the timing flat.
    matches = [hmac.compare_digest(expected, candidate) for candidate in candidates]
    if not any(matches):
        raise SignatureError(f"{HEADER} does not match the body")
