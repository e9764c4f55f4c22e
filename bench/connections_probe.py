"""What the connection layer holds and for how long, with real sockets against a real
`sidechat serve`: memory per idle connection, how long slowloris connections survive, and the
cost of giant headers.

    .venv/bin/python -m bench.connections_probe [--idle 10000] [--slowloris 4000] [--giant 10]

Connections come from many loopback addresses (127.0.4.x), at most 200 per address, so the
per-address cap (256) does not refuse them.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import sys
import time
from pathlib import Path

from bench.procs import Proc, free_port, stop_all

ROOT = Path(__file__).resolve().parent.parent


def _rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


Conn = tuple[asyncio.StreamReader, asyncio.StreamWriter]


async def _open(port: int, n: int, first: bytes) -> list[Conn]:
    conns = []
    for i in range(n):
        source = f"127.0.4.{1 + i // 200}"
        reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
        if first:
            writer.write(first)
        conns.append((reader, writer))
    return conns


async def _closed(conn: Conn) -> bool:
    """Whether the server has closed `conn` (whatever it sent first is read and dropped)."""
    reader = conn[0]
    try:
        while data := await asyncio.wait_for(reader.read(65536), 0.001):
            del data
    except TimeoutError:
        return False
    except ConnectionError:
        return True
    return True


async def _count_closed(conns: list[Conn]) -> int:
    return sum([await _closed(c) for c in conns])


async def probe(args: argparse.Namespace) -> None:
    port = free_port()
    argv = [sys.executable, "-m", "sidechat", "serve", "--provider", "openai", "--model", "m"]
    argv += ["--base-url", "http://127.0.0.1:9/v1", "--port", str(port), "--log-level", "warning"]
    argv += ["--header-timeout", str(args.header_timeout)]
    server = Proc("sidechat", argv, port=port, log_dir=ROOT / "bench/results/tmp/conn", cwd=ROOT)
    try:
        server.wait_ready(60.0)
        base = _rss_kb(server.pid)
        if args.idle:
            t0 = time.monotonic()
            conns = await _open(port, args.idle, b"")
            await asyncio.sleep(0.5)
            grown = _rss_kb(server.pid) - base
            print(
                f"idle: {args.idle} connections opened in {time.monotonic() - t0:.1f} s, server "
                f"RSS +{grown / 1024:.1f} MB ({grown * 1024 / args.idle:.0f} bytes each)"
            )
            gone = 0
            while time.monotonic() - t0 < args.header_timeout + 10 and gone < len(conns):
                await asyncio.sleep(1.0)
                gone = await _count_closed(conns)
            print(
                f"idle: {gone}/{len(conns)} closed by the server {time.monotonic() - t0:.1f} s "
                f"after the first opened (header timeout {args.header_timeout} s)"
            )
            for _, w in conns:
                w.close()
        if args.slowloris:
            head = b"GET /healthz HTTP/1.1\r\nHost: x\r\n"
            t0 = time.monotonic()
            conns = await _open(port, args.slowloris, head)
            gone = 0
            while time.monotonic() - t0 < args.header_timeout + 10 and gone < len(conns):
                for _, w in conns:
                    if not w.is_closing():
                        w.write(b"X-a: b\r\n")
                await asyncio.sleep(1.0)
                gone = await _count_closed(conns)
            print(
                f"slowloris: {gone}/{len(conns)} closed by the server "
                f"{time.monotonic() - t0:.1f} s after the first opened (a header line a second)"
            )
            for _, w in conns:
                w.close()
        if args.giant:
            before = _rss_kb(server.pid)
            for i in range(args.giant):
                _, w = await asyncio.open_connection(
                    "127.0.0.1", port, local_addr=(f"127.0.5.{i + 1}", 0)
                )
                w.write(b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: ")
                try:
                    for _ in range(40):
                        w.write(b"a" * (1 << 20))
                        await asyncio.wait_for(w.drain(), 2.0)
                except (ConnectionError, TimeoutError):
                    pass
                w.close()
            await asyncio.sleep(0.5)
            print(
                f"giant headers: {args.giant} connections sending up to 40 MB each, server RSS "
                f"{before / 1024:.0f} -> {_rss_kb(server.pid) / 1024:.0f} MB"
            )
    finally:
        stop_all()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--idle", type=int, default=10_000)
    parser.add_argument("--slowloris", type=int, default=4_000)
    parser.add_argument("--giant", type=int, default=10)
    parser.add_argument("--header-timeout", type=float, default=10.0)
    args = parser.parse_args()
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    asyncio.run(probe(args))


if __name__ == "__main__":
    main()
