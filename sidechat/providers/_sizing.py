"""Threads, slots, context and prompt-cache size for the embedded model: what the owner set, the
rest derived from the machine (the cores this process may use, the memory it may take) and from
the model file's shape, with a clear error for a combination that cannot work."""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

from sidechat.errors import ConfigError
from sidechat.providers._gguf import read_metadata

__all__ = ["Machine", "ModelShape", "Sizing", "machine", "model_shape", "plan"]

DEFAULT_CTX = 4096  # a grounded turn: ~2,000 tokens of passages, some history, a 512-token answer
MIN_CTX = 512
MAX_SLOTS = 8
# At most this share of the memory still free goes to the KV cache, and to the prompt cache.
KV_SHARE = 0.25
PROMPT_CACHE_SHARE = 0.10
PROMPT_CACHE_MAX_MB = 256
_MB = 1 << 20


@dataclass(frozen=True, slots=True)
class Machine:
    cpus: int  # logical CPUs this process may run on (affinity, cgroup quota)
    cores: int  # physical cores among them: llama.cpp gains nothing from a core's second thread
    memory: int  # bytes this process can still take (MemAvailable, cgroup limit)


@dataclass(frozen=True, slots=True)
class ModelShape:
    kv_bytes_per_token: int  # the KV cache of one token in every layer, f16
    train_context: int | None
    sliding_window: bool = False  # some layers attend to the last N tokens only


@dataclass(frozen=True, slots=True)
class Sizing:
    threads: int
    slots: int
    ctx_size: int  # tokens per slot
    prompt_cache_mb: int
    kv_bytes: int  # the KV cache of every slot at full context, sliding-window layers included
    sliding_window: bool = False


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return None


def _cgroup_cpus() -> float | None:
    quota = _read("/sys/fs/cgroup/cpu.max")  # cgroup v2: "max 100000" or "200000 100000"
    if quota:
        limit, _, period = quota.partition(" ")
        with contextlib.suppress(ValueError, ZeroDivisionError):
            return None if limit == "max" else int(limit) / int(period)
    return None


def _cgroup_memory() -> int | None:
    limit, used = _read("/sys/fs/cgroup/memory.max"), _read("/sys/fs/cgroup/memory.current")
    if limit and used and limit != "max":
        with contextlib.suppress(ValueError):
            return max(0, int(limit) - int(used))
    return None


def _physical(cpus: set[int]) -> int:
    cores = set()
    for cpu in cpus:
        siblings = _read(f"/sys/devices/system/cpu/cpu{cpu}/topology/thread_siblings_list")
        cores.add(siblings or str(cpu))
    return len(cores)


def machine() -> Machine:
    try:
        allowed = set(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        allowed = set(range(os.cpu_count() or 1))
    cpus = len(allowed)
    cores = _physical(allowed)
    quota = _cgroup_cpus()
    if quota is not None:
        cpus = max(1, min(cpus, int(quota)))
        cores = max(1, min(cores, int(quota)))
    memory = 0
    for line in (_read("/proc/meminfo") or "").splitlines():
        if line.startswith("MemAvailable:"):
            memory = int(line.split()[1]) * 1024
    memory = memory or 4 << 30  # unknown (not Linux): assume a small machine
    if (cgroup := _cgroup_memory()) is not None:
        memory = min(memory, cgroup)
    return Machine(cpus, cores, memory)


def model_shape(path: Path) -> ModelShape:
    """From the GGUF header; a layout it cannot read counts as a large model's."""
    try:
        arch = read_metadata(path, ("general.architecture",)).get("general.architecture")
        keys = [
            f"{arch}.{k}"
            for k in (
                "block_count",
                "context_length",
                "embedding_length",
                "attention.head_count",
                "attention.head_count_kv",
                "attention.key_length",
                "attention.value_length",
                "attention.sliding_window",
            )
        ]
        meta = read_metadata(path, keys) if isinstance(arch, str) else {}
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc

    def num(key: str) -> int | None:
        value = meta.get(f"{arch}.{key}")
        return int(value) if isinstance(value, (int, float)) and value > 0 else None

    layers, heads = num("block_count"), num("attention.head_count")
    embedding = num("embedding_length")
    kv_heads = num("attention.head_count_kv") or heads
    head_dim = embedding // heads if embedding and heads else None
    key, value = num("attention.key_length") or head_dim, num("attention.value_length") or head_dim
    window = num("attention.sliding_window") is not None
    if not (layers and kv_heads and key and value):
        return ModelShape(128 * 1024, num("context_length"), window)  # a 7B model's, to be safe
    return ModelShape(layers * kv_heads * (key + value) * 2, num("context_length"), window)


def plan(
    shape: ModelShape,
    host: Machine,
    *,
    threads: int | None = None,
    slots: int | None = None,
    ctx_size: int | None = None,
    prompt_cache_mb: int | None = None,
) -> Sizing:
    """Fill in what is None from the machine; refuse what was given and cannot work."""
    if threads is None:
        threads = max(1, host.cores)
    if slots is None:
        slots = min(MAX_SLOTS, max(2, host.cores))
    per_token = shape.kv_bytes_per_token
    train = shape.train_context
    if ctx_size is None:
        budget = int(host.memory * KV_SHARE)
        ctx_size = min(DEFAULT_CTX, train or DEFAULT_CTX, budget // (slots * per_token))
        ctx_size = max(MIN_CTX, ctx_size // 256 * 256)
    elif train is not None and ctx_size > train:
        raise ConfigError(
            f"--ctx-size {ctx_size} is more than this model's context of {train} tokens"
        )
    kv_bytes = slots * ctx_size * per_token
    if kv_bytes > host.memory * 0.8:
        raise ConfigError(
            f"--slots {slots} x --ctx-size {ctx_size} needs about {kv_bytes // _MB} MB of KV "
            f"cache, and only {host.memory // _MB} MB of memory is free: lower one of them"
        )
    if prompt_cache_mb is None:
        prompt_cache_mb = min(PROMPT_CACHE_MAX_MB, int(host.memory * PROMPT_CACHE_SHARE) // _MB)
    return Sizing(threads, slots, ctx_size, prompt_cache_mb, kv_bytes, shape.sliding_window)
