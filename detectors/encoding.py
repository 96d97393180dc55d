"""Detector arrays in stored state: the array's bytes, little-endian, as a base64 string.

A state's ``to_dict`` is stored as JSON (a changelog record, a stage snapshot). Written as
a JSON list, a single-precision number takes 17 digits for 4 bytes; base64 of the raw
bytes takes 5.3 characters, is exact (NaN, -0.0 and every bit kept) and decodes in one
call. The typecode is not stored: each state knows its own. States written before this
form (JSON lists of numbers) still decode, as they did, so a worker upgraded mid-stream
reads its predecessor's records.

>>> from array import array
>>> packed = pack(array("f", [1.5, -0.0]))
>>> packed
'AADAPwAAAIA='
>>> unpack("f", packed), unpack("f", [1.5, -0.0])
(array('f', [1.5, -0.0]), array('f', [1.5, -0.0]))
"""

from __future__ import annotations

import base64
import binascii
import sys
from array import array
from collections.abc import Sequence
from typing import Any

_SWAP = sys.byteorder != "little"


def pack(values: array) -> str:
    """The array's items as little-endian bytes, base64 (standard alphabet, padded)."""
    if _SWAP:
        values = array(values.typecode, values)
        values.byteswap()
    return base64.b64encode(values).decode("ascii")


def unpack(typecode: str, data: str | Sequence[Any], size: int | None = None) -> array:
    """An array of ``typecode`` from :func:`pack`'s string, or from a list of numbers (the
    form written before). With ``size``, a different number of items is an error.

    Raises ValueError for a string that is not base64 of whole items.
    """
    out: array = array(typecode)
    if isinstance(data, str):
        try:
            raw = base64.b64decode(data, validate=True)
        except binascii.Error as e:
            raise ValueError(f"state array: not base64 ({e})") from None
        if len(raw) % out.itemsize:
            raise ValueError(
                f"state array: {len(raw)} bytes are not whole items of {out.itemsize} bytes"
            )
        out.frombytes(raw)
        if _SWAP:
            out.byteswap()
    else:
        out.fromlist(list(data))
    if size is not None and len(out) != size:
        raise ValueError(f"state array: {len(out)} items, expected {size}")
    return out
