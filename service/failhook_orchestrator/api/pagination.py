"""AIP-158 pagination: page sizes and opaque, filter-bound keyset page tokens."""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

from .errors import invalid_argument

__all__ = ["DEFAULT_PAGE_SIZE", "MAX_PAGE_SIZE", "decode_token", "encode_token", "page_size"]

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000
_VERSION = 1


def page_size(requested: int) -> int:
    """0 means the default, larger than the maximum is coerced, negative is an error."""
    if requested < 0:
        raise invalid_argument("page_size", f"must not be negative, got {requested}")
    if requested == 0:
        return DEFAULT_PAGE_SIZE
    return min(requested, MAX_PAGE_SIZE)


def _fingerprint(filters: Any) -> str:
    return hashlib.sha256(json.dumps(filters, sort_keys=True, default=str).encode()).hexdigest()[:16]


def encode_token(key: tuple[int, str], filters: Any) -> str:
    """A token for the page after ``key`` (the last row's sort key), bound to ``filters``."""
    body = json.dumps(
        {"v": _VERSION, "k": [key[0], key[1]], "f": _fingerprint(filters)}, separators=(",", ":")
    )
    check = hashlib.sha256(body.encode()).hexdigest()[:8]
    return base64.urlsafe_b64encode(f"{check}.{body}".encode()).decode().rstrip("=")


def decode_token(token: str, filters: Any) -> tuple[int, str] | None:
    """The sort key a token carries; INVALID_ARGUMENT for a token not made for these filters."""
    if not token:
        return None
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
        check, _, body = raw.partition(".")
        if hashlib.sha256(body.encode()).hexdigest()[:8] != check:
            raise ValueError("checksum")
        data = json.loads(body)
        key = (int(data["k"][0]), str(data["k"][1]))
        fingerprint = data["f"]
        version = data["v"]
    except (ValueError, KeyError, TypeError, IndexError, UnicodeDecodeError):
        raise invalid_argument(
            "page_token", "is malformed; pass the next_page_token of a previous response"
        ) from None
    if version != _VERSION or fingerprint != _fingerprint(filters):
        raise invalid_argument(
            "page_token", "was issued for other filters; keep the filters the same while paging"
        )
    return key
