"""How step outputs and run outputs are written to and read from the wire.

The orchestrator treats every output as opaque bytes; this module is the SDK's convention.

Step outputs (``StepResult.output``) are UTF-8 JSON, compact, with a two-rule extension so that
``bytes`` survive the round trip:

* ``bytes`` (also ``bytearray`` and ``memoryview``), at any depth, is written as the object
  ``{"$bytes": "<standard base64>"}`` and read back as ``bytes``;
* a user ``dict`` whose only key is ``"$bytes"`` or ``"$object"`` is escaped as
  ``{"$object": {...}}``, so that no user value is ever mistaken for a tagged one.

Everything else is plain JSON: ``None``, ``bool``, ``int``, finite ``float``, ``str``, ``list``
and ``tuple`` (read back as ``list``) and ``dict`` with ``str`` keys. Other values (``datetime``,
dataclasses, ``NaN``, non-``str`` keys, ...) are refused with ``TypeError`` / ``ValueError``
rather than silently changed, because a replay must see exactly what the first run recorded.

The run's output (``RunStepResponse.run_output``) is the returned ``bytes`` as is, or the JSON
encoding above of any other value (``None`` becomes ``null``).
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from typing import Any

__all__ = ["decode_output", "encode_output", "encode_run_output"]

_BYTES_TAG = "$bytes"
_OBJECT_TAG = "$object"
_TAGS = frozenset({_BYTES_TAG, _OBJECT_TAG})


def _to_json(value: Any, path: str) -> Any:
    """Return ``value`` as a JSON-ready tree, bytes tagged and tag-like dicts escaped."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{path}: {value!r} has no JSON representation")
        return value
    if isinstance(value, bytes | bytearray | memoryview):
        return {_BYTES_TAG: base64.b64encode(bytes(value)).decode("ascii")}
    if isinstance(value, list | tuple):
        return [_to_json(item, f"{path}[{index}]") for index, item in enumerate(value)]
    if isinstance(value, dict):
        tree: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"{path}: dict keys must be str, got {type(key).__name__} {key!r}")
            tree[key] = _to_json(item, f"{path}[{key!r}]")
        if len(tree) == 1 and next(iter(tree)) in _TAGS:
            return {_OBJECT_TAG: tree}
        return tree
    raise TypeError(f"{path}: a value of type {type(value).__name__} cannot be recorded as JSON")


def _from_json(tree: Any) -> Any:
    """Invert :func:`_to_json` on a parsed JSON tree."""
    if isinstance(tree, list):
        return [_from_json(item) for item in tree]
    if isinstance(tree, dict):
        if len(tree) == 1:
            ((key, item),) = tree.items()
            if key == _BYTES_TAG:
                if not isinstance(item, str):
                    raise ValueError('"$bytes" must hold a base64 string')
                try:
                    return base64.b64decode(item, validate=True)
                except binascii.Error as err:
                    raise ValueError(f'"$bytes" holds invalid base64: {err}') from None
            if key == _OBJECT_TAG:
                if not isinstance(item, dict):
                    raise ValueError('"$object" must hold an object')
                return {name: _from_json(value) for name, value in item.items()}
        return {name: _from_json(value) for name, value in tree.items()}
    return tree


def encode_output(value: object) -> bytes:
    """Encode a step's return value (see the module docstring for the rules).

    Args:
        value: The value the step function returned.

    Returns:
        Compact UTF-8 JSON.

    Raises:
        TypeError: If the value (or a part of it) has no faithful JSON representation.
        ValueError: If it contains a non-finite float.
    """
    tree = _to_json(value, "value")
    return json.dumps(tree, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()


def decode_output(data: bytes) -> Any:
    """Decode a recorded step output written by :func:`encode_output`.

    Args:
        data: The recorded bytes. Empty bytes (a sleep's output) decode to ``None``.

    Returns:
        The value, equal to the one that was encoded (tuples come back as lists).

    Raises:
        ValueError: If the bytes are not output of :func:`encode_output`.
    """
    if not data:
        return None
    try:
        tree = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"not a JSON step output: {err}") from None
    return _from_json(tree)


def encode_run_output(value: object) -> bytes:
    """Encode the workflow's return value as ``RunStepResponse.run_output``.

    Args:
        value: The value the workflow function returned.

    Returns:
        ``value`` itself when it is ``bytes`` (or ``bytearray`` / ``memoryview``), otherwise its
        JSON encoding as for step outputs.

    Raises:
        TypeError: If the value has no faithful JSON representation.
        ValueError: If it contains a non-finite float.
    """
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    return encode_output(value)
