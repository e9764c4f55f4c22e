"""The embedded default model really loads from the installed package and streams."""

from __future__ import annotations

import asyncio
import json
import re
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from sidechat.providers._gguf import read_metadata_string
from sidechat.providers.local import default_model_path
from tests._servers import SidechatProcess, free_port, start_sidechat
from tests.providers._gguf_edit import with_metadata_string
from tests.providers.test_faults import ask, error_of, text

pytestmark = pytest.mark.model


@pytest.fixture(scope="module")
def embedded() -> Iterator[SidechatProcess]:
    # A proxy that answers nobody: the embedded server is reached direct all the same.
    dead = f"http://127.0.0.1:{free_port()}"
    env = {"http_proxy": dead, "HTTP_PROXY": dead, "no_proxy": "", "NO_PROXY": ""}
    with start_sidechat(env=env) as proc:  # no provider flags: the embedded default
        yield proc


def _status(url: str) -> int:
    # llama.cpp holds the GIL for seconds while it loads the model, so the event loop may not
    # answer meanwhile (how long depends on when the load starts): wait it out, a few times.
    for _ in range(5):
        try:
            with urllib.request.urlopen(url, timeout=10) as r:
                return int(r.status)
        except urllib.error.HTTPError as exc:
            return exc.code
        except TimeoutError:
            continue
    raise TimeoutError(f"{url} did not answer")


async def test_turns_before_ready_wait_then_stream(embedded: SidechatProcess) -> None:
    # /healthz answered at once (the fixture waited for it); a turn sent now waits for the model.
    chunks, status, content = await ask(embedded, "What is a chat widget?")
    assert status == "done", chunks
    assert sum(c["type"] == "text-delta" for c in chunks) >= 3
    assert content == text(chunks) and content.strip()
    finish = chunks[-1]
    assert finish["type"] == "finish"
    metadata = finish["messageMetadata"]
    assert isinstance(metadata, dict) and metadata["model"] == "gemma-3-270m-q4_k_m.gguf"
    assert _status(embedded.url + "/readyz") == 200


async def test_concurrent_turns_share_the_model(embedded: SidechatProcess) -> None:
    results = await asyncio.gather(*(ask(embedded, f"Say hello number {i}.") for i in range(3)))
    assert all(status == "done" for _, status, _ in results)


async def test_the_embedded_server_answers_only_sidechat(embedded: SidechatProcess) -> None:
    # It has loaded (the turns above streamed, so sidechat sent the key); the log names its port.
    chunks, status, _ = await ask(embedded, "Hello?")
    assert status == "done", chunks
    found = re.search(r"embedded model \S+ ready in [\d.]+ s on 127\.0\.0\.1:(\d+)", embedded.log())
    assert found, embedded.log()
    llama = f"http://127.0.0.1:{found[1]}"
    prompt = json.dumps({"prompt": "Say something", "max_tokens": 4}).encode()
    for key in (None, "not-the-key"):
        headers = {"Content-Type": "application/json"}
        if key is not None:
            headers["Authorization"] = f"Bearer {key}"
        for method, path, body in (
            ("GET", "/slots", None),
            ("GET", "/props", None),
            ("POST", "/props", b"{}"),
            ("POST", "/v1/completions", prompt),
            ("POST", "/v1/chat/completions", prompt),
            ("POST", "/completion", prompt),
        ):
            request = urllib.request.Request(llama + path, body, headers, method=method)
            assert _request_status(request) == 401, (method, path, key)
    # Bound to loopback only: the machine's other addresses do not answer.
    with socket.socket() as probe:
        probe.settimeout(2)
        other = _non_loopback_address()
        if other is not None:
            assert probe.connect_ex((other, int(found[1]))) != 0


def _request_status(request: urllib.request.Request) -> int:
    try:
        with urllib.request.urlopen(request, timeout=30) as r:
            return int(r.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def _non_loopback_address() -> str | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))  # TEST-NET-1: no packet is sent for a UDP connect
        except OSError:
            return None
        address = str(s.getsockname()[0])
    return None if address.startswith("127.") else address


def test_readyz_is_503_until_loaded(tmp_path: Path) -> None:
    with start_sidechat() as proc:
        seen = _status(proc.url + "/readyz")
        assert seen in (200, 503)
        for _ in range(600):
            if _status(proc.url + "/readyz") == 200:
                break
            asyncio.run(asyncio.sleep(0.1))
        assert _status(proc.url + "/readyz") == 200
        assert "embedded model" in proc.log()
        assert "srv " not in proc.log(), "llama.cpp's own log lines stay out of the terminal"


def test_model_path_must_be_a_gguf(tmp_path: Path) -> None:
    bogus = tmp_path / "model.gguf"
    bogus.write_bytes(b"not a model")
    for path, message in ((bogus, "not a GGUF file"), (tmp_path / "missing.gguf", "not a file")):
        result = subprocess.run(
            [sys.executable, "-m", "sidechat", "serve", "--model-path", str(path)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode != 0 and message in result.stderr


def test_default_weights_come_from_the_package() -> None:
    path = default_model_path()
    assert path.stat().st_size > 100_000_000
    assert read_metadata_string(path, "general.architecture") == "gemma3"
    assert read_metadata_string(path, "tokenizer.chat_template") is None, "a base model"


async def test_fallback_to_local_with_llama_log_routed_to_debug() -> None:
    dead = f"http://127.0.0.1:{free_port()}/v1"
    args = ("--provider", "openai", "--base-url", dead, "--model", "gone", "--retry-budget", "0.3")
    with start_sidechat(*args, "--fallback", "local", "--log-level", "debug") as proc:
        chunks, status, content = await ask(proc, "What is this site about?")
        assert status == "done" and content.strip(), chunks
        metadata = chunks[-1]["messageMetadata"]
        assert isinstance(metadata, dict) and metadata["model"] == "gemma-3-270m-q4_k_m.gguf"
        lines = proc.log().splitlines()
    native = [line for line in lines if "srv " in line]
    assert native, "llama.cpp's log is there at debug level"
    assert all("DEBUG sidechat.providers.llama:" in line for line in native), native[:3]


GEMMA_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}<start_of_turn>"
    "{{ 'model' if message['role'] == 'assistant' else 'user' }}\n"
    "{{ message['content'] | trim }}<end_of_turn>\n{% endfor %}"
    "{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
)


async def test_model_path_with_a_chat_template_uses_chat_mode(tmp_path: Path) -> None:
    path = with_metadata_string(
        default_model_path(), tmp_path / "chat.gguf", "tokenizer.chat_template", GEMMA_TEMPLATE
    )
    assert read_metadata_string(path, "tokenizer.chat_template") == GEMMA_TEMPLATE
    env = {"SIDECHAT_MAX_OUTPUT_TOKENS": "16"}
    with start_sidechat("--model-path", str(path), env=env) as proc:
        chunks, status, content = await ask(proc, "What is a blog?")
        assert status == "done" and content.strip(), chunks
        metadata = chunks[-1]["messageMetadata"]
        assert isinstance(metadata, dict) and metadata["model"] == "chat.gguf"
        assert "chat mode" in proc.log()


async def test_a_model_that_fails_to_load_fails_turns_clearly(tmp_path: Path) -> None:
    broken = tmp_path / "truncated.gguf"
    with default_model_path().open("rb") as f:
        broken.write_bytes(f.read(20_000_000))  # a GGUF header, then the file ends
    with start_sidechat("--model-path", str(broken)) as proc:
        chunks, status, _ = await ask(proc, "Hello?")
        assert "built-in model could not be loaded" in error_of(chunks) and status == "error"
        assert _status(proc.url + "/readyz") == 503
        assert proc.log().count("embedded model failed to load") == 1


async def test_one_slot_of_2048_tokens_on_one_thread_answers() -> None:
    flags = ("--slots", "1", "--ctx-size", "2048", "--threads", "1", "--prompt-cache-mb", "0")
    with start_sidechat(*flags, ready_path="/readyz", timeout=120) as proc:
        # a message of the longest size allowed still fits the small context
        chunks, status, content = await ask(proc, "What is a chat widget? " + "x" * 3_900)
        assert status == "done" and content.strip(), chunks
        chunks, status, content = await ask(proc, "What is a blog?")
        assert status == "done" and content.strip(), chunks
        log = proc.log()
    assert "1 threads, 1 slots x 2048 tokens, prompt cache 0 MB" in log
    assert "srv " not in log, "llama.cpp's own log lines stay out of the terminal"
