"""Train the semantic classifier's heads from tests/data/safety_corpus.jsonl, reproducibly.

    .venv/bin/python benchmarks/train_safety_heads.py [--encoder minilm|static] [--layers N] [--out PATH]

1. Read the corpus. Its `train` families are used for fitting, its `dev` families for calibration
   and thresholds; the holdout (tests/data/safety_holdout_r3.jsonl) is never read here.
2. Add variants of the training texts (`augment`, seeded): lower case without punctuation, a typo
   or two, chatty openers and closers; for benign rows also the text placed in the middle of a
   few everyday sentences, and a prefix cut off in the middle of a word, as a streamed window
   sees it (a long harmful message is scored window by window, and a cut-off harmful text may
   have lost what made it harmful).
3. Encode every text with the sentence encoder (all-MiniLM-L6-v2, all `LAYERS` of it, mean
   pooling; `--layers` and `--max-pool` train the variants docs/safety.md compares); round the
   vectors to 1e-4 (so that last-bit differences in the arithmetic do not change the heads).
4. Fit the network (one hidden layer of 64 ReLU units, one logistic output per label, balanced
   per label), in float64 with seeded Adam on one BLAS thread.
5. On dev, score each text as the filter does (the worst of its windows), fit Platt scaling per
   label, and choose the severity thresholds (`choose_thresholds`).
6. Write the heads (`aimi.safety.heads.Heads`) and print the dev figures.

Same corpus, same seed, same encoder: the same heads, bit for bit (tests/safety/test_training.py).
"""

from __future__ import annotations

import argparse
import json
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
from threadpoolctl import threadpool_limits

from aimi.safety.chunks import windows
from aimi.safety.encoders import MiniLMEncoder, SentenceEncoder, StaticEncoder
from aimi.safety.heads import HEADS_FILE, LABELS, Heads, Network, fit_network, fit_platt, sigmoid

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "tests" / "data" / "safety_corpus.jsonl"
SEED = 13
HIDDEN = 64
LAYERS = 6
MAX_POOL = False

OPENERS = ("hey ", "ok so ", "quick question: ", "pls ", "Hi! ", "yo ", "So, ", "Honestly, ")
CLOSERS = (" lol", " thanks", " pls", " asap", " :)", " ...", " tbh", "!!")


@dataclass(frozen=True)
class Row:
    text: str
    labels: frozenset[str]
    kind: str
    family: str
    split: str


def load_corpus(path: Path = CORPUS) -> list[Row]:
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [Row(r["text"], frozenset(r["labels"]), r["kind"], r["family"], r["split"]) for r in rows]


def _typo(text: str, rng: random.Random) -> str:
    words = text.split()
    candidates = [i for i, w in enumerate(words) if len(w) > 3 and w.isalpha()]
    for i in rng.sample(candidates, min(len(candidates), rng.choice((1, 2)))):
        w = words[i]
        j = rng.randrange(1, len(w) - 1)
        dropped, doubled = w[:j] + w[j + 1 :], w[:j] + w[j] + w[j:]
        swapped = w[:j] + w[j + 1] + w[j] + w[j + 2 :]
        words[i] = rng.choice((dropped, swapped, doubled))
    return " ".join(words)


def augment(rows: Sequence[Row], seed: int = SEED) -> list[Row]:
    """The training rows and their variants (see the module docstring), in a fixed order."""
    rng = random.Random(seed)
    everyday = [r.text for r in rows if r.kind == "benign" and len(r.text.split()) < 25]
    out = list(rows)
    for row in rows:
        variants = [
            re.sub(r"[^\w\s']", "", row.text).lower(),
            _typo(row.text, rng),
            rng.choice(OPENERS) + row.text[:1].lower() + row.text[1:] + rng.choice(CLOSERS),
        ]
        # A harmful sentence among everyday ones is not trained on as one vector: its mean is
        # mostly everyday text, and the filter scores such a message window by window anyway.
        if row.kind != "harmful" and len(row.text.split()) < 40:
            before = rng.sample(everyday, 2)
            after = rng.sample(everyday, 2)
            variants.append(" ".join([*before, row.text, *after]))
        if row.kind != "harmful" and len(row.text) > 20:
            variants.append(row.text[: rng.randrange(len(row.text) // 2, len(row.text) - 2)])
        out.extend(Row(v, row.labels, row.kind, row.family, row.split) for v in variants if v.strip())
    return out


def targets(rows: Sequence[Row]) -> npt.NDArray[np.bool_]:
    return np.array([[label in r.labels for label in LABELS] for r in rows], dtype=bool)


def encode(encoder: SentenceEncoder, texts: Sequence[str]) -> npt.NDArray[np.float64]:
    vectors = encoder.encode(list(texts)).astype(np.float64)
    return np.round(vectors, 4)


def window_scores(
    encoder: SentenceEncoder, network: Network, texts: Sequence[str]
) -> npt.NDArray[np.float64]:
    """Each text's raw score per label: the maximum over its windows, as the filter scores."""
    spans: list[tuple[int, int]] = []
    pieces: list[str] = []
    for text in texts:
        parts = windows(text) or [text]
        spans.append((len(pieces), len(pieces) + len(parts)))
        pieces.extend(parts)
    scores = network.raw(encode(encoder, pieces)).astype(np.float64)
    return np.stack([scores[a:b].max(axis=0) for a, b in spans])


def choose_thresholds(
    probabilities: npt.NDArray[np.float64],
    y: npt.NDArray[np.bool_],
    benign: npt.NDArray[np.bool_],
    tricky: npt.NDArray[np.bool_],
) -> tuple[float, float, float]:
    """Per label, on dev, from the calibrated probabilities:

    - `medium` (the default policy blocks from here): among the probabilities on a 0.05 grid from
      0.30 to 0.95 at which at most 1 % of the benign look-alikes and no everyday text are flagged
      (the targets are 2 % and 0.5 %, so this keeps a margin for text nobody tuned on), the
      highest whose recall is within 0.02 of the best of them: nearly the most recall the budget
      allows, with the widest margin above the benign texts;
    - `low`: half of `medium` (reported, blocks only under a policy that asks for it);
    - `high`: the lowest grid value above `medium` at which dev has no benign text at all, and
      at least 0.8.
    """
    grid = np.round(np.arange(0.30, 0.951, 0.05), 2)
    everyday = benign & ~tricky

    def fits(t: float) -> bool:
        look_alikes = float((probabilities[tricky] >= t).mean()) if tricky.any() else 0.0
        return look_alikes <= 0.01 and not (probabilities[everyday] >= t).any()

    feasible = [t for t in grid if fits(t)] or [grid[-1]]
    recall = {t: float((probabilities[y] >= t).mean()) if y.any() else 0.0 for t in feasible}
    best = max(recall.values())
    medium = float(max(t for t in feasible if recall[t] >= best - 0.02))
    clean = [t for t in grid if t > medium and not (probabilities[benign] >= t).any()]
    high = max(0.8, float(clean[0]) if clean else 0.95)
    return round(medium / 2, 3), medium, max(high, medium)


def train(
    encoder: SentenceEncoder, corpus: Sequence[Row], seed: int = SEED
) -> tuple[Heads, dict[str, object]]:
    fit_rows = augment([r for r in corpus if r.split == "train"], seed)
    dev = [r for r in corpus if r.split == "dev"]
    x = encode(encoder, [r.text for r in fit_rows])
    # One BLAS thread: a pool's split of each product changes the order of the sums, so the last
    # bits, from one run to the next.
    with threadpool_limits(limits=1, user_api="blas"):
        network = fit_network(x, targets(fit_rows), hidden=HIDDEN, seed=seed)
        dev_y = targets(dev)
        benign = np.array([r.kind != "harmful" for r in dev])
        raw = window_scores(encoder, network, [r.text for r in dev])
    calibration = np.zeros((len(LABELS), 2))
    thresholds = np.zeros((len(LABELS), 3))
    tricky = np.array([r.kind == "benign_tricky" for r in dev])
    for i in range(len(LABELS)):
        calibration[i] = fit_platt(raw[:, i], dev_y[:, i])
        p = sigmoid(raw[:, i] * calibration[i, 0] + calibration[i, 1]).astype(np.float64)
        thresholds[i] = choose_thresholds(p, dev_y[:, i], benign, tricky)
    heads = Heads(
        encoder=encoder.name,
        labels=LABELS,
        weights=network.weights.astype(np.float32),
        bias=network.bias.astype(np.float32),
        calibration=calibration.astype(np.float32),
        thresholds=thresholds.astype(np.float32),
        hidden_weights=network.hidden_weights.astype(np.float32),
        hidden_bias=network.hidden_bias.astype(np.float32),
    )
    return heads, {"fit_rows": len(fit_rows), "dev_rows": len(dev)}


def load_encoder(name: str, layers: int = LAYERS, max_pool: bool = MAX_POOL) -> SentenceEncoder:
    if name == "static":
        return StaticEncoder.load()
    return MiniLMEncoder.load(layers=layers, max_pool=max_pool)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--encoder", choices=("minilm", "static"), default="minilm")
    parser.add_argument("--layers", type=int, default=LAYERS, help="MiniLM layers kept (1 to 6)")
    parser.add_argument("--out", type=Path, default=HEADS_FILE)
    parser.add_argument("--max-pool", action="store_true", help="MiniLM vectors: mean and maximum")
    args = parser.parse_args()
    heads, info = train(load_encoder(args.encoder, args.layers, args.max_pool), load_corpus())
    heads.save(args.out)
    print(f"trained on {info['fit_rows']} texts (with variants), calibrated on {info['dev_rows']} dev texts")
    for label, levels, (a, b) in zip(heads.labels, heads.thresholds, heads.calibration, strict=True):
        low, medium, high = (float(t) for t in levels)
        levels_text = f"low≥{low:.3f} medium≥{medium:.2f} high≥{high:.2f}"
        print(f"{label:10} calibration a={a:.3f} b={b:.3f}  {levels_text}")
    print(f"wrote {args.out}")
