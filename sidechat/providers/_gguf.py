"""Read values from a GGUF file's metadata (e.g. `tokenizer.chat_template`, the layer count)
without loading the model: the header is a flat list of typed key/value pairs, documented in
ggml's gguf.md."""

from __future__ import annotations

import struct
from collections.abc import Collection
from pathlib import Path
from typing import BinaryIO

__all__ = ["read_metadata", "read_metadata_string"]

_SCALAR_SIZES = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
_SCALAR_FORMATS = {
    0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q",
    12: "<d",
}  # fmt: skip
_STRING, _ARRAY = 8, 9
_MAX_KEYS = 1 << 20  # a corrupt count must not keep the loop going for ever


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


def read_metadata(path: Path, keys: Collection[str]) -> dict[str, str | int | float | bool]:
    """The string and scalar values of those of `keys` the file has (arrays are left out).
    Raises ValueError if the file is not a GGUF file or its header is cut short."""
    found: dict[str, str | int | float | bool] = {}
    with path.open("rb") as f:
        if f.read(4) != b"GGUF":
            raise ValueError(f"{path} is not a GGUF file")
        try:
            version = _u32(f)
            if version < 2:
                raise ValueError(f"{path}: GGUF version {version} is too old")
            _u64(f)  # tensor count
            count = _u64(f)
            if count > _MAX_KEYS:
                raise ValueError(f"{path}: {count} metadata keys: not a sane GGUF header")
            for _ in range(count):
                name = f.read(_u64(f)).decode("utf-8", "replace")
                kind = _u32(f)
                if name not in keys:
                    _skip(f, kind)
                elif kind == _STRING:
                    found[name] = f.read(_u64(f)).decode("utf-8", "replace")
                elif kind in _SCALAR_FORMATS:
                    fmt = _SCALAR_FORMATS[kind]
                    found[name] = struct.unpack(fmt, f.read(struct.calcsize(fmt)))[0]
                else:
                    _skip(f, kind)
                if len(found) == len(keys):
                    break
        except struct.error as exc:
            raise ValueError(f"{path}: the GGUF header ends too early") from exc
    return found


def read_metadata_string(path: Path, key: str) -> str | None:
    """The string value of `key`, or None if absent. Raises ValueError if not a GGUF file."""
    value = read_metadata(path, (key,)).get(key)
    return value if isinstance(value, str) else None
