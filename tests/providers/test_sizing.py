"""Threads, slots, context and prompt cache of the embedded model: derived from the machine and
the model's header, and refused clearly when they cannot work."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from sidechat.errors import ConfigError
from sidechat.providers._gguf import read_metadata
from sidechat.providers._sizing import Machine, ModelShape, machine, model_shape, plan
from sidechat.providers.local import default_model_path
from sidechat.settings import Settings, load_settings

GIB = 1 << 30
GEMMA = ModelShape(kv_bytes_per_token=18 * 1024, train_context=32768, sliding_window=True)


def test_two_cores_get_two_threads_two_slots_and_4096_tokens() -> None:
    sizing = plan(GEMMA, Machine(cpus=2, cores=2, memory=8 * GIB))
    assert (sizing.threads, sizing.slots, sizing.ctx_size) == (2, 2, 4096)
    assert sizing.kv_bytes == 2 * 4096 * 18 * 1024
    assert sizing.prompt_cache_mb == 256
    assert sizing.sliding_window, "a sliding-window model gets the full KV cache"


def test_hyperthreads_do_not_count_and_slots_stay_between_2_and_8() -> None:
    assert plan(GEMMA, Machine(cpus=2, cores=1, memory=8 * GIB)).threads == 1
    assert plan(GEMMA, Machine(cpus=2, cores=1, memory=8 * GIB)).slots == 2
    assert plan(GEMMA, Machine(cpus=8, cores=4, memory=8 * GIB)).slots == 4
    big = plan(GEMMA, Machine(cpus=64, cores=32, memory=64 * GIB))
    assert (big.threads, big.slots) == (32, 8)


def test_short_memory_shrinks_the_context_and_the_prompt_cache() -> None:
    seven_b = ModelShape(kv_bytes_per_token=128 * 1024, train_context=32768)
    sizing = plan(seven_b, Machine(cpus=4, cores=4, memory=2 * GIB))
    # a quarter of 2 GiB over 4 slots of 128 KiB a token: 1,024 tokens each
    assert (sizing.slots, sizing.ctx_size) == (4, 1024)
    assert sizing.prompt_cache_mb == 204  # 10% of 2 GiB
    assert plan(GEMMA, Machine(2, 2, 8 * GIB), ctx_size=8192).ctx_size == 8192


def test_the_context_never_exceeds_what_the_model_was_trained_on() -> None:
    short = ModelShape(kv_bytes_per_token=1024, train_context=2048)
    assert plan(short, Machine(2, 2, 8 * GIB)).ctx_size == 2048
    with pytest.raises(ConfigError, match="more than this model's context of 2048 tokens"):
        plan(short, Machine(2, 2, 8 * GIB), ctx_size=4096)


def test_a_kv_cache_larger_than_memory_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"--slots 64 x --ctx-size 32768 needs about 36864 MB"):
        plan(GEMMA, Machine(2, 2, 8 * GIB), slots=64, ctx_size=32768)


def test_explicit_values_are_kept() -> None:
    sizing = plan(
        GEMMA, Machine(2, 2, 8 * GIB), threads=1, slots=1, ctx_size=2048, prompt_cache_mb=0
    )
    assert (sizing.threads, sizing.slots, sizing.ctx_size, sizing.prompt_cache_mb) == (
        1,
        1,
        2048,
        0,
    )


def test_this_machine_is_read_from_affinity_and_meminfo() -> None:
    host = machine()
    assert host.cpus == len(os.sched_getaffinity(0)) or host.cpus < len(os.sched_getaffinity(0))
    assert 1 <= host.cores <= host.cpus
    assert host.memory > 64 << 20


def test_the_default_models_shape_comes_from_its_header() -> None:
    shape = model_shape(default_model_path())
    # Gemma 3 270M: 18 layers, 1 KV head, keys and values of 256, f16
    assert shape == ModelShape(18 * 1 * (256 + 256) * 2, 32768, sliding_window=True)


def test_a_cut_header_is_a_clear_error(tmp_path: Path) -> None:
    cut = tmp_path / "cut.gguf"
    with default_model_path().open("rb") as f:
        cut.write_bytes(f.read(200))
    with pytest.raises(ValueError, match="ends too early"):
        read_metadata(cut, ("general.name", "gemma3.block_count", "missing.key"))
    with pytest.raises(ConfigError, match="ends too early"):
        model_shape(cut)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("threads", 0, "greater than or equal to 1"),
        ("slots", 65, "less than or equal to 64"),
        ("ctx_size", 100, "greater than or equal to 512"),
        ("prompt_cache_mb", -1, "greater than or equal to 0"),
    ],
)
def test_settings_refuse_impossible_values(field: str, value: int, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        Settings.model_validate({field: value})


def test_settings_default_to_derived_and_read_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    defaults = Settings()
    assert (defaults.threads, defaults.slots, defaults.ctx_size) == (None, None, None)
    monkeypatch.setenv("SIDECHAT_THREADS", "3")
    monkeypatch.setenv("SIDECHAT_CTX_SIZE", "2048")
    settings = load_settings(slots=1)
    assert (settings.threads, settings.slots, settings.ctx_size) == (3, 1, 2048)


def _serve(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sidechat", "serve", "--port", "0", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_serve_refuses_bad_sizes_before_listening() -> None:
    default_model_path()  # assembled, so that its header is read at start
    result = _serve("--slots", "0")
    assert result.returncode != 0 and "slots: Input should be greater than or equal to 1" in (
        result.stderr
    )
    result = _serve("--ctx-size", "65536")
    assert result.returncode != 0
    assert "--ctx-size 65536 is more than this model's context of 32768 tokens" in result.stderr
    assert "sidechat 0" not in result.stderr, "it never started listening"
