"""Read one string from a GGUF file's metadata (e.g. `tokenizer.chat_template`) without loading
the model: the header is a flat list of typed key/value pairs, documented in ggml's gguf.md."""

from __future__ import annotations

import struct
from pathlib import Path
from typing import BinaryIO

__all__ = ["read_metadata_string"]

_SCALAR_SIZES = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
_STRING, _ARRAY = 8, 9


def _u32(f: BinaryIO) -> int:
    return int(struct.unpack("<I", f.read(4))[0])


def _u64(f: BinaryIO) -> int:
    return int(struct.unpack("<Q", f.read(8))[0])


def _skip(f: BinaryIO, kind: int) -> None:
    if kind in _SCALAR_SIZES:
        f.seek(_SCALAR_SIZES[kind], 1)
    elif kind == _STRING:
        f.seek(_u64(f), 1)
    elif kind == _ARRAY:
        inner, count = _u32(f), _u64(f)
        if inner in _SCALAR_SIZES:
            f.seek(_SCALAR_SIZES[inner] * count, 1)
        else:
            for _ in range(count):
                _skip(f, inner)
    else:
        raise ValueError(f"unknown GGUF value type {kind}")


def read_metadata_string(path: Path, key: str) -> str | None:
    """The string value of `key`, or None if absent. Raises ValueError if not a GGUF file."""
    with path.open("rb") as f:
        if f.read(4) != b"GGUF":
            raise ValueError(f"{path} is not a GGUF file")
        version = _u32(f)
        if version < 2:
            raise ValueError(f"{path}: GGUF version {version} is too old")
        _u64(f)  # tensor count
        for _ in range(_u64(f)):
            name = f.read(_u64(f)).decode("utf-8", "replace")
            kind = _u32(f)
            if name == key and kind == _STRING:
                return f.read(_u64(f)).decode("utf-8", "replace")
            _skip(f, kind)
    return None
