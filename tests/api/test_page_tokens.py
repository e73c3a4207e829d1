"""Issue 12 defect 9: page tokens are authenticated (HMAC under a key every replica shares); a
forged or altered token, or one whose key is out of range, is INVALID_ARGUMENT."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

import grpc
import pytest
from hypothesis import given
from hypothesis import strategies as st

from failhook.certs import DevCerts
from failhook.v1 import dead_letter_service_pb2 as dl
from failhook.v1 import workflow_service_pb2 as ws
from failhook_orchestrator.api.errors import ApiError
from failhook_orchestrator.api.pagination import PageTokens
from failhook_orchestrator.engine import limits
from tests.support.harness import Harness, started_harness

from ._support import field_violations

KEY = b"k" * 32


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unsigned_token(key: list[object]) -> str:
    """A token as the unauthenticated format made them: anyone could write one."""
    body = json.dumps({"v": 1, "k": key, "f": "0" * 16}, separators=(",", ":"))
    check = hashlib.sha256(body.encode()).hexdigest()[:8]
    return _b64(f"{check}.{body}".encode())


@given(
    key=st.tuples(st.integers(limits.MIN_TIME_US, limits.MAX_TIME_US), st.text(min_size=1, max_size=40)),
    filters=st.lists(st.text(max_size=5)),
)
def test_tokens_round_trip_and_bind_filters(key: tuple[int, str], filters: list[str]) -> None:
    tokens = PageTokens(KEY)
    token = tokens.encode(key, filters)
    assert tokens.decode(token, filters) == key
    with pytest.raises(ApiError, match="other filters"):
        tokens.decode(token, [*filters, "other"])
    with pytest.raises(ApiError, match="not a page token"):
        PageTokens(b"o" * 32).decode(token, filters)  # another deployment's key


@pytest.mark.parametrize("key", [[float("inf"), "x"], ["1", "x"], [2**70, "x"], [1, 7], [1]])
def test_a_signed_token_with_a_bad_key_is_refused(key: list[object]) -> None:
    body = json.dumps({"v": 2, "k": key, "f": "x"}, separators=(",", ":")).encode()
    token = f"{_b64(body)}.{_b64(hmac.new(KEY, body, hashlib.sha256).digest()[:16])}"
    with pytest.raises(ApiError, match="not a page token"):
        PageTokens(KEY).decode(token, [])


FORGED = {
    "inf": _unsigned_token([float("inf"), "x"]),
    "huge": _unsigned_token([10**30, "x"]),
    "plain": _unsigned_token([0, "zz"]),
    "garbage": "garbage",
    "no-mac": "eyJ2IjoxfQ",
    "long": "x" * 40,
}


@pytest.mark.parametrize("token", FORGED.values(), ids=FORGED.keys())
async def test_forged_tokens_are_invalid_argument(harness: Harness, token: str) -> None:
    for call in (
        harness.runs.ListRuns(ws.ListRunsRequest(page_token=token)),
        harness.dlq.ListDeadLetters(dl.ListDeadLettersRequest(page_token=token)),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await call
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert field_violations(info.value) == ["page_token"]


async def test_the_database_key_outlives_a_restart_and_is_shared(
    dev_certs: DevCerts, database_url: str, endpoint: str
) -> None:
    async with started_harness(dev_certs, database_url, endpoint) as first:
        for _ in range(3):
            await first.start({"steps": 0})
        page = await first.runs.ListRuns(ws.ListRunsRequest(page_size=2))
        assert page.next_page_token
    async with started_harness(dev_certs, database_url, endpoint) as second:
        rest = await second.runs.ListRuns(ws.ListRunsRequest(page_size=2, page_token=page.next_page_token))
        assert len(rest.runs) == 1 and not rest.next_page_token


async def test_a_configured_secret_signs_tokens(
    dev_certs: DevCerts, database_url: str, endpoint: str
) -> None:
    secret = "s3cret-of-this-deployment"
    async with started_harness(dev_certs, database_url, endpoint, api_page_token_secret=secret) as harness:
        for _ in range(2):
            await harness.start({"steps": 0})
        token = (await harness.runs.ListRuns(ws.ListRunsRequest(page_size=1))).next_page_token
        mine = PageTokens(hashlib.sha256(b"failhook page tokens\0s3cret-of-this-deployment").digest())
        filters: list[object] = [[], [], None, None]
        assert mine.decode(token, filters) is not None
