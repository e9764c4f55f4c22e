"""The server process that `sidechat serve` runs: everything process-wide lives here.

The ASGI app (`sidechat.app.create_app`) changes nothing outside itself, so it can be mounted in
anyone's server. What a whole process needs is decided here instead, once: the listening sockets
(several on one port, `_listen`), the open-files limit, the garbage-collection policy
(`gc_policy`), uvicorn's configuration, signals with graceful shutdown, and (at debug level)
native code's stderr routed into logging (`_native_log`).

Shutdown, on SIGTERM or SIGINT (uvicorn catches them; a second SIGINT forces the exit): the app's
`shutdown(grace)` hook runs first, while everything still works; then uvicorn stops accepting,
waits up to `GRACE` seconds for open responses, cancels what is left and runs the app's lifespan
exit (turns still generating end with an error event there); the GC policy is uninstalled last.
With `workers` > 1 (which needs Redis, checked by the settings), the process binds the sockets,
then forks that many workers that serve on them (the kernel spreads connections); it forwards
SIGTERM to them, replaces one that dies on its own, and waits for them all.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import sys
import time

import uvicorn

from sidechat._listen import listening_sockets
from sidechat._native_log import route_native_stderr
from sidechat.app import SidechatApp
from sidechat.gc_policy import GCPolicy
from sidechat.guard.connections import connection_guard, guarded_protocol
from sidechat.providers.registry import parse_fallback, provider_spec
from sidechat.settings import Settings

__all__ = ["BACKLOG", "GRACE", "Runtime", "raise_open_files_limit"]

BACKLOG = 4096  # connections the kernel queues per listening socket before they are accepted
GRACE = 3  # seconds open responses get to finish once the process is asked to stop
# Quiet for two seconds: a burst that has just ended is likely followed by more of it, so a full
# collection waits until then.
_QUIET = 2.0
_MAX_RESTARTS = 5  # a minute, per worker: more is a crash loop, not a worker lost now and then


class Runtime:
    """One server process: `listen()`, then `run(app)` until a signal stops it."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.sockets: list[socket.socket] = []

    def listen(self) -> int:
        """Lift the open-files limit and bind the listening sockets; returns the port (the one
        chosen, when asked for port 0). Raises OSError when the address cannot be used."""
        raise_open_files_limit()
        self.sockets = listening_sockets(self.settings.host, self.settings.port, backlog=BACKLOG)
        return int(self.sockets[0].getsockname()[1])

    def config(self, app: SidechatApp) -> uvicorn.Config:
        settings = self.settings
        return uvicorn.Config(
            app,
            host=settings.host,
            port=settings.port,
            loop="uvloop" if sys.platform != "win32" else "asyncio",
            # httptools, with deadlines and caps uvicorn does not enforce (sidechat.guard).
            http=guarded_protocol(connection_guard(settings)),
            lifespan="on",
            access_log=False,
            # uvicorn's own records go to the handler `sidechat serve` installed (sidechat._logfmt),
            # in the process's format: a JSON log stays JSON from the first line.
            log_config=None,
            # sidechat reads neither the client's address nor the scheme, so uvicorn's
            # X-Forwarded-* middleware would only be a layer every request climbs.
            proxy_headers=False,
            log_level=settings.log_level,
            backlog=BACKLOG,
            timeout_graceful_shutdown=GRACE,
        )

    def server(self, app: SidechatApp) -> _Server:
        state = app.state
        gc_policy = GCPolicy(busy=lambda: state.quiet_for() < _QUIET)
        return _Server(self.config(app), app, gc_policy)

    def run(self, app: SidechatApp) -> None:
        """Serve `app` on the sockets `listen()` bound (binding them first if it was not
        called) until SIGTERM or SIGINT; blocks."""
        if not self.sockets:
            self.listen()
        if self.settings.workers > 1:
            sys.exit(self._run_workers(app))
        self._serve(app)

    def _serve(self, app: SidechatApp) -> None:
        if self.settings.log_level == "debug" and self._runs_native_code():
            route_native_stderr(logging.getLogger("sidechat.providers.llama"))
        self.server(app).run(sockets=self.sockets)

    def _run_workers(self, app: SidechatApp) -> int:
        """Fork the workers (before any event loop exists: each makes its own, and opens its own
        Redis connections and provider in its lifespan); forward SIGTERM; wait. A worker that
        dies on its own (`kill -9`, out of memory) is replaced by a new one at once (the turns
        it was generating are taken over by the others through Redis); workers dying too often
        (more than `_MAX_RESTARTS` a minute per worker, e.g. a crash at start) stop the set.
        Returns the exit status."""
        log = logging.getLogger("sidechat.runtime")
        workers = self.settings.workers
        children: set[int] = set()
        stopping = False

        def spawn() -> int:
            pid = os.fork()
            if pid == 0:  # pragma: no cover - runs in the child
                code = 0
                try:
                    signal.signal(signal.SIGTERM, signal.SIG_DFL)
                    signal.signal(signal.SIGINT, signal.default_int_handler)
                    self._serve(app)
                except BaseException:
                    logging.getLogger("sidechat").exception("worker failed")
                    code = 1
                finally:
                    os._exit(code)
            return pid

        def stop_all(signum: int = signal.SIGTERM, frame: object = None) -> None:
            nonlocal stopping
            stopping = True
            for pid in list(children):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGTERM)

        for _ in range(workers):
            children.add(spawn())
        signal.signal(signal.SIGTERM, stop_all)
        # Ctrl-C reaches the workers from the terminal itself (same process group).
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        status = 0
        restarts: list[float] = []
        while children:
            try:
                pid, raw = os.wait()
            except ChildProcessError:
                break
            if pid not in children:
                continue
            children.discard(pid)
            code = os.waitstatus_to_exitcode(raw)
            if stopping:
                status = status or code
                continue
            now = time.monotonic()
            restarts = [t for t in restarts if now - t < 60] + [now]
            if len(restarts) > _MAX_RESTARTS * workers:
                log.error("workers keep dying (the last: %d, status %d): stopping", pid, code)
                status = 1
                stop_all()
                continue
            log.warning("worker %d ended (status %d); starting another", pid, code)
            children.add(spawn())
        return 0 if status < 0 else status  # killed by our own SIGTERM: a clean stop

    def _runs_native_code(self) -> bool:
        names = [self.settings.provider, *(parse_fallback(f)[0] for f in self.settings.fallback)]
        return any(provider_spec(name).native_stderr for name in names)


class _Server(uvicorn.Server):
    """uvicorn's server with the process's GC policy installed while it serves, and the app's
    shutdown hook called before uvicorn's own shutdown."""

    def __init__(self, config: uvicorn.Config, app: SidechatApp, gc_policy: GCPolicy) -> None:
        super().__init__(config)
        self._app = app
        self._gc_policy = gc_policy

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        # After the app's lifespan start: what it loaded is frozen with the rest of start-up.
        self._gc_policy.install()

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        try:
            await self._app.state.shutdown(GRACE)
            await super().shutdown(sockets)
        finally:
            await self._gc_policy.aclose()


def raise_open_files_limit() -> None:
    """Lift the soft limit on open files to the hard one: each stream holds two sockets (the
    visitor's and the upstream's), and the usual soft limit of 1,024 (a shell's, systemd's for
    services) exists only for programs that still use select(); the event loop uses epoll.
    Started with it, sidechat refused connections from about 500 streams on."""
    try:
        import resource
    except ImportError:  # pragma: no cover - not on Windows
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    # Linux refuses an infinite soft limit on files; 2**20 is its default ceiling (nr_open).
    want = max(soft, 1 << 20) if hard == resource.RLIM_INFINITY else hard
    if soft < want:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
