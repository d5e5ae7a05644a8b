"""The plain-data wire between the sandbox and the grader: frames, encoding and decoding.

A frame is a 4-byte big-endian length and that many bytes of JSON. What the student's code
returns is *encoded* in the sandbox into plain JSON data (numbers, strings, lists, dicts, and
arrays as base64 bytes with dtype and shape; never pickle; anything else is named only) and
*decoded* in the grader, where every byte is untrusted: a malformed array or a non-finite float
in an unexpected form decodes to a marker that no verdict accepts, never to an exception.

This file is loaded by the sandboxed worker by path (``worker.py``), so it imports nothing from
the ``autograder`` package, and only numpy at module level (torch when a tensor is encoded).
"""

from __future__ import annotations

import base64
import json
import struct

import numpy as np

MAX_DEPTH = 8
ALLOWED_DTYPES = {"<f2", "<f4", "<f8", "<i1", "<i2", "<i4", "<i8", "|u1", "|b1", "|i1"}


def frame(payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + payload


def split_frames(raw: bytes) -> list[dict]:
    """The JSON objects of a stream of frames; a frame cut short or not JSON is dropped."""
    messages, offset = [], 0
    while offset + 4 <= len(raw):
        (length,) = struct.unpack(">I", raw[offset:offset + 4])
        payload = raw[offset + 4:offset + 4 + length]
        offset += 4 + length
        if len(payload) < length:
            break
        try:
            message = json.loads(payload)
        except (ValueError, RecursionError):
            continue
        if isinstance(message, dict):
            messages.append(message)
    return messages


def encode(value, depth: int = 0):
    """Plain JSON-able data from what the student's code returned; anything else is named only."""
    if depth > MAX_DEPTH:
        return {"__object__": "too deeply nested"}
    kind = type(value)
    if value is None or kind is bool or kind is str:
        return value
    if kind is int:
        return value if abs(value) < 2**53 else float(value)
    if kind is float:
        return value if np.isfinite(value) else {"__float__": repr(value)}
    if _is_tensor(value):
        import torch

        array = torch.Tensor.detach(value).cpu().contiguous().numpy()
        return {"__array__": array.dtype.str, "shape": list(array.shape), "data": base64.b64encode(array.tobytes()).decode()}
    if kind in (list, tuple):
        return [encode(v, depth + 1) for v in value]
    if kind is dict:
        return {str(k): encode(v, depth + 1) for k, v in value.items()}
    return {"__object__": kind.__name__}


def _is_tensor(value) -> bool:
    import sys

    torch = sys.modules.get("torch")  # a tensor exists only if torch was imported
    return torch is not None and isinstance(value, torch.Tensor)


def decode(value):
    """The data ``encode`` made, from untrusted JSON: arrays back as numpy arrays."""
    if isinstance(value, dict):
        if "__array__" in value:
            dtype, shape = value.get("__array__"), value.get("shape")
            if dtype not in ALLOWED_DTYPES or not isinstance(shape, list) or not all(isinstance(n, int) and n >= 0 for n in shape):
                return {"__object__": "malformed array"}
            buffer = base64.b64decode(value.get("data", ""), validate=False)
            array = np.frombuffer(buffer, dtype=np.dtype(dtype))
            if array.size != int(np.prod(shape, dtype=np.int64)):
                return {"__object__": "malformed array"}
            return array.reshape(shape)
        if "__float__" in value:
            return float(value["__float__"]) if value["__float__"] in ("nan", "inf", "-inf") else None
        return {k: decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [decode(v) for v in value]
    return value
