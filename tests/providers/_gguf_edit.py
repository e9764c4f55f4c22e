"""Copy a GGUF file with one more string in its metadata (e.g. a chat template), so that the
embedded provider's chat mode can be tested with the one model that is installed."""

from __future__ import annotations

import shutil
import struct
from pathlib import Path

from sidechat.providers._gguf import _skip, _u32, _u64

__all__ = ["with_metadata_string"]

_STRING = 8


def _string(value: str) -> bytes:
    raw = value.encode()
    return struct.pack("<Q", len(raw)) + raw


def with_metadata_string(source: Path, target: Path, key: str, value: str) -> Path:
    with source.open("rb") as f:
        assert f.read(4) == b"GGUF"
        version, n_tensors, n_kv = _u32(f), _u64(f), _u64(f)
        kv_start = f.tell()
        alignment = 32
        for _ in range(n_kv):
            name = f.read(_u64(f)).decode()
            kind = _u32(f)
            if name == "general.alignment":
                alignment = _u32(f)
            else:
                _skip(f, kind)
        kv_end = f.tell()
        for _ in range(n_tensors):
            f.seek(_u64(f), 1)  # name
            f.seek(8 * _u32(f) + 4 + 8, 1)  # dims, type, offset
        infos_end = f.tell()
        data_start = -(-infos_end // alignment) * alignment
        f.seek(kv_start)
        kvs = f.read(kv_end - kv_start)
        infos = f.read(infos_end - kv_end)
        with target.open("wb") as out:
            out.write(b"GGUF" + struct.pack("<IQQ", version, n_tensors, n_kv + 1))
            out.write(kvs + _string(key) + struct.pack("<I", _STRING) + _string(value) + infos)
            out.write(b"\0" * (-out.tell() % alignment))
            f.seek(data_start)
            shutil.copyfileobj(f, out, 1 << 22)
    return target
