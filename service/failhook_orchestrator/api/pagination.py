"""AIP-158 pagination: page sizes and opaque, filter-bound, authenticated keyset page tokens.

A token carries the last row's sort key and a fingerprint of the filters, signed with an
HMAC-SHA256 under a key the orchestrator keeps (``page_token_secret``, or a random key stored in
the database so that every replica accepts the others' tokens). A token that was not made by an
orchestrator of this deployment, or was altered, is INVALID_ARGUMENT before anything is read.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

from failhook_orchestrator.engine import limits

from .errors import invalid_argument

__all__ = ["DEFAULT_PAGE_SIZE", "MAX_PAGE_BYTES", "MAX_PAGE_SIZE", "PageTokens", "page_size"]

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000
#: A page stops growing once its entries hold this many bytes (the next page goes on from there),
#: so that a listing fits gRPC's default 4 MiB message limit with room to spare.
MAX_PAGE_BYTES = 2 * 1024 * 1024
_VERSION = 2
_MAC_BYTES = 16
_MAX_ID = 128


def page_size(requested: int) -> int:
    """0 means the default, larger than the maximum is coerced, negative is an error."""
    if requested < 0:
        raise invalid_argument("page_size", f"must not be negative, got {requested}")
    if requested == 0:
        return DEFAULT_PAGE_SIZE
    return min(requested, MAX_PAGE_SIZE)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class PageTokens:
    """Makes and checks page tokens under one secret key."""

    def __init__(self, key: bytes) -> None:
        if len(key) < 16:
            raise ValueError("a page token key needs at least 16 bytes")
        self._key = key

    def _fingerprint(self, filters: Any) -> str:
        return hashlib.sha256(json.dumps(filters, sort_keys=True, default=str).encode()).hexdigest()[:16]

    def _mac(self, body: bytes) -> bytes:
        return hmac.new(self._key, body, hashlib.sha256).digest()[:_MAC_BYTES]

    def encode(self, key: tuple[int, str], filters: Any) -> str:
        """A token for the page after ``key`` (the last row's sort key), bound to ``filters``."""
        body = json.dumps(
            {"v": _VERSION, "k": [key[0], key[1]], "f": self._fingerprint(filters)}, separators=(",", ":")
        ).encode()
        return f"{_b64(body)}.{_b64(self._mac(body))}"

    def decode(self, token: str, filters: Any) -> tuple[int, str] | None:
        """The sort key a token carries; INVALID_ARGUMENT for a token not made for these filters."""
        if not token:
            return None
        malformed = invalid_argument(
            "page_token",
            "is not a page token of this service; pass the next_page_token of a previous response",
        )
        try:
            body_text, _, mac_text = token.partition(".")
            body = _unb64(body_text)
            if not hmac.compare_digest(_unb64(mac_text), self._mac(body)):
                raise malformed
            data = json.loads(body)
            time, last_id = data["k"]
            fingerprint, version = data["f"], data["v"]
        except (ValueError, KeyError, TypeError, UnicodeDecodeError):
            raise malformed from None
        # Signed by us, so well-formed; checked anyway, since a leaked key must not crash a read.
        if (
            version != _VERSION
            or not isinstance(time, int)
            or isinstance(time, bool)
            or not limits.MIN_TIME_US <= time <= limits.MAX_TIME_US
            or not isinstance(last_id, str)
            or len(last_id) > _MAX_ID
        ):
            raise malformed
        if fingerprint != self._fingerprint(filters):
            raise invalid_argument(
                "page_token", "was issued for other filters; keep the filters the same while paging"
            )
        return time, last_id
