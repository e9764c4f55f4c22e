"""`sidechat doctor` run as a real process: what it finds in good and broken set-ups, and its
exit status."""

from __future__ import annotations

import os
import resource
import shutil
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest

from sidechat._checks import Context
from sidechat._remote_checks import check_postgres, check_redis
from tests._servers import ROOT, SidechatProcess, free_port
from tests.content._helpers import ingest
from tests.fakes.anthropic_upstream import FakeAnthropic
from tests.fakes.openai_upstream import FakeOpenAI


def doctor(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("SIDECHAT_")}
    for var in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY"):
        clean.pop(var, None)
    return subprocess.run(
        [sys.executable, "-m", "sidechat", "doctor", "--timeout", "3", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**clean, **(env or {})},
    )


def line(result: subprocess.CompletedProcess[str], name: str) -> str:
    """The line a check printed (and its fix line, if any)."""
    lines = result.stdout.splitlines()
    for i, text in enumerate(lines):
        if text[6:].startswith(name + " "):
            fix = lines[i + 1] if i + 1 < len(lines) and "fix:" in lines[i + 1] else ""
            return f"{text}\n{fix}".strip()
    raise AssertionError(f"no {name!r} line in:\n{result.stdout}{result.stderr}")


@pytest.fixture(scope="module")
def site_index(tmp_path_factory: pytest.TempPathFactory) -> Path:
    index = tmp_path_factory.mktemp("doctor") / "site.db"
    ingest(ROOT / "examples" / "blog", "--index", index)
    return index


def openai_args(base_url: str, *extra: str) -> list[str]:
    return ["--provider", "openai", "--base-url", base_url, "--model", "fake-model", *extra]


def test_a_good_set_up_passes_every_check(
    upstream: FakeOpenAI, site_index: Path, tmp_path: Path
) -> None:
    # The settings come from all three sources `serve` reads: a config file, the environment
    # and flags.
    config = tmp_path / "sidechat.toml"
    config.write_text(f'provider = "openai"\nbase_url = "{upstream.base_url}"\n')
    port = free_port()
    result = doctor(
        "--config",
        str(config),
        "--index",
        str(site_index),
        "--port",
        str(port),
        env={"SIDECHAT_MODEL": "fake-model"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert line(result, "python").startswith("OK")
    assert line(result, "upstream").startswith(
        f"OK    upstream   {upstream.base_url}/models: reachable, model 'fake-model' listed"
    )
    pages = len(list((ROOT / "examples" / "blog" / "content").rglob("*.md")))
    assert f"site.db: {pages} pages," in line(result, "index")
    assert line(result, "port") == f"OK    port       127.0.0.1:{port} is free"
    assert "open-files" in result.stdout
    assert "\nOK    model" not in result.stdout, "no embedded model is used, so none is checked"
    assert "FAIL" not in result.stdout


def test_a_rejected_key_fails() -> None:
    fake = FakeOpenAI()
    fake.api_key = "sk-right"
    fake.start()
    try:
        wrong = doctor(*openai_args(fake.base_url), env={"SIDECHAT_API_KEY": "sk-wrong"})
        right = doctor(*openai_args(fake.base_url), env={"OPENAI_API_KEY": "sk-right"})
        none = doctor(*openai_args(fake.base_url))
    finally:
        fake.stop()
    assert wrong.returncode == 1
    assert "answered 401: key rejected" in line(wrong, "upstream")
    assert "fix: set the right key in SIDECHAT_API_KEY or OPENAI_API_KEY" in line(wrong, "upstream")
    assert "sk-wrong" not in wrong.stdout + wrong.stderr, "keys are never printed"
    assert line(right, "upstream").startswith("OK"), right.stdout
    assert none.returncode == 1
    assert "this upstream needs a key" in line(none, "upstream")


def test_anthropic_key_and_model() -> None:
    fake = FakeAnthropic().start()
    try:
        args = ["--provider", "anthropic", "--base-url", fake.base_url]
        good = doctor(*args, "--model", "claude-fake-1", env={"ANTHROPIC_API_KEY": "sk-ant-test"})
        unknown = doctor(*args, "--model", "claude-nope", env={"SIDECHAT_API_KEY": "sk-ant-test"})
        wrong = doctor(*args, "--model", "claude-fake-1", env={"SIDECHAT_API_KEY": "sk-ant-x"})
        keyless = doctor(*args, "--model", "claude-fake-1")
    finally:
        fake.stop()
    assert "model 'claude-fake-1' listed" in line(good, "upstream"), good.stdout
    assert line(unknown, "upstream").startswith("WARN"), unknown.stdout
    assert "'claude-nope' is not listed" in line(unknown, "upstream")
    assert wrong.returncode == 1
    assert "answered 401: key rejected" in line(wrong, "upstream")
    assert keyless.returncode == 1
    assert "needs an API key" in line(keyless, "upstream")


def test_a_missing_index_fails(upstream: FakeOpenAI, tmp_path: Path) -> None:
    missing = tmp_path / "nope.db"
    result = doctor(*openai_args(upstream.base_url, "--index", str(missing)))
    assert result.returncode == 1
    assert line(result, "index").startswith(f"FAIL  index      no index at {missing}")
    assert f"sidechat ingest SOURCE --index {missing}" in line(result, "index")
    not_an_index = tmp_path / "notes.txt"
    not_an_index.write_text("hello")
    result = doctor(*openai_args(upstream.base_url, "--index", str(not_an_index)))
    assert result.returncode == 1
    assert "is not a sidechat index" in line(result, "index")


def test_no_index_is_only_a_warning(upstream: FakeOpenAI) -> None:
    result = doctor(*openai_args(upstream.base_url))
    assert result.returncode == 0, result.stdout
    assert line(result, "index").startswith("WARN  index      no --index")


def test_a_taken_port_fails(upstream: FakeOpenAI) -> None:
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        result = doctor(*openai_args(upstream.base_url, "--port", str(port)))
    assert result.returncode == 1
    assert line(result, "port").startswith(
        f"FAIL  port       127.0.0.1:{port} is in use by another process"
    )
    assert f"ss -ltnp 'sport = :{port}'" in line(result, "port")


def test_a_port_held_by_sidechat_is_a_warning(
    upstream: FakeOpenAI, server: SidechatProcess
) -> None:
    port = server.url.rsplit(":", 1)[1]
    result = doctor(*openai_args(upstream.base_url, "--port", port))
    assert result.returncode == 0, result.stdout
    assert "is in use by a running sidechat 0." in line(result, "port")


def test_an_unreachable_base_url_fails() -> None:
    base_url = f"http://127.0.0.1:{free_port()}/v1"
    result = doctor(*openai_args(base_url))
    assert result.returncode == 1
    assert line(result, "upstream").startswith(
        f"FAIL  upstream   cannot reach {base_url}/models: connection refused"
    )
    dead_fallback = doctor(
        *openai_args(base_url.replace("/v1", "/x")), "--fallback", f"openai:m@{base_url}"
    )
    assert "FAIL  fallback   cannot reach" in dead_fallback.stdout


def test_a_low_open_files_limit_is_a_warning(upstream: FakeOpenAI) -> None:
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard != resource.RLIM_INFINITY and hard < 4096:
        pytest.skip(f"the hard open-files limit here is {hard}; the test lowers it to 4096")

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 4096))

    result = subprocess.run(
        [sys.executable, "-m", "sidechat", "doctor", *openai_args(upstream.base_url)],
        capture_output=True, text=True, timeout=60, preexec_fn=limit,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout
    assert line(result, "open-files").startswith(
        "WARN  open-files hard limit 4096 (soft 1024): at most about 2048 concurrent streams"
    )
    assert "LimitNOFILE=65536" in line(result, "open-files")


def test_invalid_settings_fail_before_any_check() -> None:
    result = doctor("--port", "99999")
    assert result.returncode == 1
    assert result.stdout.startswith("FAIL  settings   port: Input should be less than or equal")


def test_the_model_header_is_read(tmp_path: Path) -> None:
    from sidechat.providers.local import default_model_path

    real = default_model_path()
    good = doctor("--model-path", str(real), "--provider", "local")
    assert "Gemma 3 270m (gemma3, 236 tensors, 253 MB); header reads" in line(good, "model")
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(real.read_bytes()[:4096])
    text = tmp_path / "text.gguf"
    text.write_text("not a model")
    for path, message in [
        (cut, "the header does not read"),
        (text, "not a GGUF file"),
        (tmp_path / "absent.gguf", "is not a file"),
    ]:
        result = doctor("--model-path", str(path))
        assert result.returncode == 1
        assert message in line(result, "model"), result.stdout


# -- Redis and PostgreSQL: their settings land later, so the checks are driven directly ----
def _context(**settings: Any) -> Context:
    return Context(cast(Any, SimpleNamespace(**settings)), timeout=2)


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    port = free_port()
    workdir = tmp_path_factory.mktemp("redis")
    proc = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--requirepass",
            "s3cret",
            "--dir",
            str(workdir),
        ],
        stdout=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.05)
    yield port
    proc.terminate()
    proc.wait(10)


def test_redis_ping(redis_server: int) -> None:
    url = f"redis://127.0.0.1:{redis_server}/0"
    (ok,) = check_redis(_context(redis_url=url.replace("//", "//:s3cret@")))
    assert (ok.status, ok.message) == (
        "ok",
        f"redis://:***@127.0.0.1:{redis_server}/0: PING answered PONG",
    )
    (no_password,) = check_redis(_context(redis_url=url))
    assert no_password.status == "fail" and "NOAUTH" in no_password.message
    (wrong,) = check_redis(_context(redis_url=url.replace("//", "//:nope@")))
    assert wrong.status == "fail" and "WRONGPASS" in wrong.message and "nope" not in wrong.message
    (down,) = check_redis(_context(redis_url=f"redis://127.0.0.1:{free_port()}"))
    assert down.status == "fail" and "connection refused" in down.message
    assert list(check_redis(_context())) == [], "no redis_url: not checked"


def test_postgres_unreachable() -> None:
    port = free_port()
    (down,) = check_postgres(_context(database_url=f"postgresql://u:pw@127.0.0.1:{port}/db"))
    assert down.status == "fail"
    assert (
        down.message == f"cannot reach 127.0.0.1:{port}: connection refused (nothing listens there)"
    )
    assert list(check_postgres(_context(database_url="sqlite:///x.db"))) == []


@pytest.mark.model
def test_deep_loads_the_embedded_model() -> None:
    result = doctor("--deep", timeout=300)  # loading takes seconds, more on a busy machine
    assert line(result, "model").startswith("OK"), result.stdout
    assert "; loaded in " in line(result, "model")


def test_the_store_check_reads_the_schema(upstream: FakeOpenAI, tmp_path: Path) -> None:
    from sidechat.store.migrate import migrate, migration_ids

    args = openai_args(upstream.base_url)
    fresh = doctor(*args, env={"SIDECHAT_DATA_DIR": str(tmp_path / "new")})
    assert "will be created at start" in line(fresh, "store")
    data = tmp_path / "data"
    data.mkdir()
    url = f"sqlite:///{data / 'sidechat.db'}"
    migrate(url, upto=migration_ids()[0])
    older = doctor(*args, env={"SIDECHAT_DATA_DIR": str(data)})
    assert f"will apply at start ({migration_ids()[-1]})" in line(older, "store")
    migrate(url)
    current = doctor(*args, env={"SIDECHAT_DATA_DIR": str(data)})
    assert line(current, "store").startswith("OK") and "schema current" in line(current, "store")
    with sqlite3.connect(data / "sidechat.db") as conn:
        conn.execute(
            "INSERT INTO _yoyo_migration (migration_hash, migration_id, applied_at_utc) "
            "VALUES ('x', '9999_from_the_future', '2030-01-01 00:00:00')"
        )
    newer = doctor(*args, env={"SIDECHAT_DATA_DIR": str(data)})
    assert newer.returncode == 1
    assert "newer than this sidechat (migration 9999_from_the_future)" in line(newer, "store")
