"""The step-output codec: JSON with tagged bytes, faithful or refused."""

from __future__ import annotations

import json
import math
import re
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from failhook.worker import decode_output, encode_output, encode_run_output

_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
    | st.binary()
)
_keys = st.text() | st.sampled_from(["$bytes", "$object", "$other"])
values = st.recursive(
    _scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(_keys, children, max_size=4),
    max_leaves=20,
)


@given(values)
def test_every_supported_value_round_trips(value: Any) -> None:
    encoded = encode_output(value)
    assert decode_output(encoded) == value
    json.loads(encoded)  # always standard JSON


@given(values)
def test_encoding_is_deterministic(value: Any) -> None:
    assert encode_output(value) == encode_output(decode_output(encode_output(value)))


def test_bytes_are_tagged_base64() -> None:
    assert encode_output(b"\x00\xff") == b'{"$bytes":"AP8="}'
    assert encode_output({"raw": bytearray(b"a")}) == b'{"raw":{"$bytes":"YQ=="}}'


@pytest.mark.parametrize("value", [{"$bytes": "AP8="}, {"$object": 1}, {"$object": {"$bytes": "x"}}])
def test_tag_like_user_dicts_are_escaped(value: dict[str, Any]) -> None:
    encoded = encode_output(value)
    assert encoded.startswith(b'{"$object":')
    assert decode_output(encoded) == value


def test_dicts_with_more_keys_are_not_escaped() -> None:
    assert encode_output({"$bytes": 1, "b": 2}) == b'{"$bytes":1,"b":2}'


def test_tuples_come_back_as_lists_and_text_stays_unicode() -> None:
    assert decode_output(encode_output(("a", 1))) == ["a", 1]
    assert encode_output("\N{EM DASH}") == '"\N{EM DASH}"'.encode()


@pytest.mark.parametrize(
    ("value", "error", "text"),
    [
        (datetime(2026, 1, 1, tzinfo=UTC), TypeError, "value: a value of type datetime"),
        ({1: "a"}, TypeError, "dict keys must be str"),
        ({"a": [object()]}, TypeError, "value['a'][0]"),
        (math.nan, ValueError, "no JSON representation"),
        ([math.inf], ValueError, "value[0]"),
    ],
)
def test_unfaithful_values_are_refused(value: object, error: type[Exception], text: str) -> None:
    with pytest.raises(error, match=re.escape(text)):
        encode_output(value)


def test_empty_output_decodes_to_none() -> None:
    assert decode_output(b"") is None


@pytest.mark.parametrize("data", [b"{", b"\xff", b'{"$bytes": 3}', b'{"$bytes": "!!"}', b'{"$object": []}'])
def test_corrupt_outputs_raise_value_error(data: bytes) -> None:
    with pytest.raises(ValueError, match=r"\$bytes|\$object|not a JSON step output"):
        decode_output(data)


def test_run_output_bytes_are_raw_and_the_rest_is_json() -> None:
    assert encode_run_output(b"\x00raw") == b"\x00raw"
    assert encode_run_output(memoryview(b"mv")) == b"mv"
    assert encode_run_output({"ok": True, "blob": b"a"}) == b'{"ok":true,"blob":{"$bytes":"YQ=="}}'
    assert encode_run_output(None) == b"null"
