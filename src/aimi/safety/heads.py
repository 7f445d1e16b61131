"""The semantic classifier's heads: a small network on a sentence vector with one output per
label, a calibration of each output, and the probabilities at which a label becomes low, medium
or high.

The network is one hidden layer of ReLU units shared by the labels, then one logistic output per
label (without the hidden layer it is a plain logistic regression per label, which the format
also allows). The heads are trained by `benchmarks/train_safety_heads.py` from
`tests/data/safety_corpus.jsonl` and ship in aimi as `safety/data/semantic_heads.npz` (about
4 MB with the exemplars): `hidden_weights` (hidden × dimension) and `hidden_bias`, `weights`
(labels × hidden) and `bias`, `calibration` (per label `a, b` of Platt scaling, p = σ(a·z + b)
for the raw output z), and `thresholds` (per label the calibrated probability from which it is
low, medium and high), optionally `output_thresholds` (the same for completions, chosen on
sampled answers of the embedded model: an assistant's answer is judged in context and is held to
its own thresholds),
with the `labels` and the `encoder` they were trained for; optionally the word-pieces model
(`pieces.py`): `piece_weights` (labels × buckets), `piece_bias` and `piece_scale`, whose output,
times its label's scale, is added to the network's raw output before calibration; optionally the
exemplars (`exemplars.py`): `exemplar_mean`, `exemplar_axes`, `exemplar_vectors` (int8),
`exemplar_scale`, `exemplar_labels`, `exemplar_nearest` and `exemplar_share` (per label), whose
score, times its label's share, is added the same way; optionally `window_penalty` (β), by which
a text's worst window is discounted for the number of windows it has (`Heads.penalized`). Fitting the
network lives here too, in float64, seeded, on one BLAS thread, so the same vectors give the same
heads bit for bit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from aimi.safety.base import Severity
from aimi.safety.exemplars import Exemplars
from aimi.safety.pieces import BUCKETS, piece_scores

LABELS = ("hate", "sexual", "violence", "self_harm", "jailbreak")
HEADS_FILE = Path(__file__).resolve().parent / "data" / "semantic_heads.npz"
"""The heads prompts are judged with."""
OUTPUT_HEADS_FILE = Path(__file__).resolve().parent / "data" / "semantic_output_heads.npz"
"""The heads completions are judged with (at their `output_thresholds`), on the same encoder: trained
without the families the prompts' heads gained in round 16, which moved benign sampled answers
above a plain threat's score (docs/safety.md)."""
MULTILINGUAL_HEADS_FILE = Path(__file__).resolve().parent / "data" / "semantic_multilingual_heads.npz"
"""The heads of the multilingual member, which judges the windows of a prompt that are not in
English on the multilingual encoder (`train_safety_heads.py --multilingual`; no completions'
thresholds)."""
OTHER_LANGUAGES_HEADS_FILE = Path(__file__).resolve().parent / "data" / "semantic_other_languages_heads.npz"
"""The heads of the other-languages member, which judges the windows of a prompt in a language the
multilingual encoder was not trained on, on multilingual-e5-small (`train_safety_heads.py
--other-languages`; no completions' thresholds)."""

Floats = npt.NDArray[np.float64]


def sigmoid(x: npt.NDArray[np.floating]) -> npt.NDArray[np.floating]:
    return 0.5 * np.tanh(0.5 * x) + 0.5


def penalize(
    probabilities: npt.NDArray[np.floating], windows: int | npt.NDArray[np.integer], beta: float
) -> npt.NDArray[np.float64]:
    """σ(logit(p) − β·ln(windows)), in float64: `probabilities` of texts of `windows` windows each
    (one count, or one per row), discounted for their number of windows (`Heads.penalized`)."""
    p = np.clip(np.asarray(probabilities, np.float64), 1e-7, 1 - 1e-7)
    shift = beta * np.log(np.asarray(windows, np.float64))
    if np.ndim(shift) == 1 and p.ndim == 2:
        shift = shift[:, None]
    return np.asarray(sigmoid(np.log(p) - np.log1p(-p) - shift), np.float64)


@dataclass(frozen=True, eq=False)
class Heads:
    """Per-label logistic heads over one encoder's vectors (see the module docstring)."""

    encoder: str
    labels: tuple[str, ...]
    weights: npt.NDArray[np.float32]
    bias: npt.NDArray[np.float32]
    calibration: npt.NDArray[np.float32]
    thresholds: npt.NDArray[np.float32]
    hidden_weights: npt.NDArray[np.float32] | None = None
    hidden_bias: npt.NDArray[np.float32] | None = None
    output_thresholds: npt.NDArray[np.float32] | None = None
    """Per label low, medium, high for completions; `thresholds` when None."""
    piece_weights: npt.NDArray[np.float32] | None = None
    piece_bias: npt.NDArray[np.float32] | None = None
    piece_scale: npt.NDArray[np.float32] | None = None
    """Per label, how much of the word-pieces model's output joins the network's (0: none)."""
    exemplars: Exemplars | None = None
    exemplar_share: npt.NDArray[np.float32] | None = None
    """Per label, how much of the exemplars' score joins the network's."""
    window_penalty: float = 0.0
    """β of `penalized`: 0 (no discount) unless the training chose one on dev."""

    @property
    def reads_pieces(self) -> bool:
        """Whether the heads need each window's token ids beside its vector."""
        return self.piece_weights is not None

    def raw(
        self, vectors: npt.NDArray[np.floating], pieces: Sequence[Sequence[int]] | None = None
    ) -> npt.NDArray[np.floating]:
        """The uncalibrated output per label: shape (n, labels). Heads that read pieces need each
        window's token ids (`pieces.WordPieces.ids`) in `pieces`."""
        inputs = vectors
        if self.hidden_weights is not None and self.hidden_bias is not None:
            vectors = np.maximum(vectors @ self.hidden_weights.T + self.hidden_bias, 0.0)
        scores = vectors @ self.weights.T + self.bias
        if self.exemplars is not None and self.exemplar_share is not None:
            scores = scores + self.exemplars.scores(inputs) * self.exemplar_share
        if self.piece_weights is None or self.piece_bias is None or self.piece_scale is None:
            return scores
        if pieces is None or len(pieces) != len(vectors):
            raise ValueError("these heads read word pieces: pass each window's token ids")
        return scores + piece_scores(pieces, self.piece_weights, self.piece_bias) * self.piece_scale

    def probabilities(
        self, vectors: npt.NDArray[np.float32], pieces: Sequence[Sequence[int]] | None = None
    ) -> npt.NDArray[np.float32]:
        """Calibrated probability of each label for each vector: shape (n, labels)."""
        scores = self.raw(vectors, pieces)
        return sigmoid(scores * self.calibration[:, 0] + self.calibration[:, 1]).astype(np.float32)

    def penalized(self, probabilities: npt.NDArray[np.floating], windows: int) -> npt.NDArray[np.floating]:
        """Each label's worst-window probability of a text judged in `windows` distinct windows,
        lowered by `window_penalty`·ln(windows) in log-odds (`penalize`): a text of many windows
        gets as many chances for one benign sentence to look harmful when read alone, so its
        worst window must stand out further (docs/safety.md, Heads, "Round 71")."""
        if self.window_penalty == 0.0 or windows <= 1:
            return probabilities
        return penalize(probabilities, windows, self.window_penalty).astype(probabilities.dtype)

    def severity(self, label: int, probability: float, *, output: bool = False) -> Severity:
        """The severity of `probability` for `label`, at the thresholds for prompts, or for
        completions (`output`) when the heads have their own."""
        table = self.output_thresholds if output and self.output_thresholds is not None else self.thresholds
        low, medium, high = (float(t) for t in table[label])
        if probability >= high:
            return Severity.HIGH
        if probability >= medium:
            return Severity.MEDIUM
        return Severity.LOW if probability >= low else Severity.SAFE

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        arrays: dict[str, npt.NDArray[np.generic]] = {
            "encoder": np.array(self.encoder),
            "labels": np.array(self.labels),
            "weights": self.weights,
            "bias": self.bias,
            "calibration": self.calibration,
            "thresholds": self.thresholds,
        }
        if self.hidden_weights is not None and self.hidden_bias is not None:
            arrays.update(hidden_weights=self.hidden_weights, hidden_bias=self.hidden_bias)
        if self.output_thresholds is not None:
            arrays.update(output_thresholds=self.output_thresholds)
        if self.piece_weights is not None and self.piece_bias is not None and self.piece_scale is not None:
            arrays.update(
                piece_weights=self.piece_weights, piece_bias=self.piece_bias, piece_scale=self.piece_scale
            )
        if self.exemplars is not None and self.exemplar_share is not None:
            arrays.update(self.exemplars.arrays(), exemplar_share=self.exemplar_share)
        if self.window_penalty:
            arrays.update(window_penalty=np.array(self.window_penalty, np.float32))
        with path.open("wb") as f:  # compressed: most buckets of the word-pieces model are never used
            np.savez_compressed(f, **arrays)  # type: ignore[arg-type]

    @classmethod
    def load(cls, path: Path = HEADS_FILE) -> Heads:
        with np.load(path, allow_pickle=False) as data:
            hidden = "hidden_weights" in data
            heads = cls(
                encoder=str(data["encoder"]),
                labels=tuple(str(label) for label in data["labels"]),
                weights=data["weights"].astype(np.float32),
                bias=data["bias"].astype(np.float32),
                calibration=data["calibration"].astype(np.float32),
                thresholds=data["thresholds"].astype(np.float32),
                hidden_weights=data["hidden_weights"].astype(np.float32) if hidden else None,
                hidden_bias=data["hidden_bias"].astype(np.float32) if hidden else None,
                output_thresholds=(
                    data["output_thresholds"].astype(np.float32) if "output_thresholds" in data else None
                ),
                **{
                    name: data[name].astype(np.float32)
                    for name in ("piece_weights", "piece_bias", "piece_scale")
                    if name in data
                },
                **(
                    {
                        "exemplars": Exemplars.from_arrays(data),
                        "exemplar_share": data["exemplar_share"].astype(np.float32),
                    }
                    if "exemplar_share" in data
                    else {}
                ),
                window_penalty=float(data["window_penalty"]) if "window_penalty" in data else 0.0,
            )
        n = len(heads.labels)
        outputs = heads.output_thresholds
        if (
            heads.weights.shape[0] != n
            or heads.bias.shape != (n,)
            or heads.thresholds.shape != (n, 3)
            or (outputs is not None and outputs.shape != (n, 3))
            or (heads.piece_weights is not None and heads.piece_weights.shape != (n, BUCKETS))
            or (heads.piece_bias is not None and heads.piece_bias.shape != (n,))
            or (heads.piece_scale is not None and heads.piece_scale.shape != (n,))
            or (heads.piece_weights is None) != (heads.piece_scale is None)
            or (heads.piece_weights is None) != (heads.piece_bias is None)
            or (heads.exemplar_share is not None and heads.exemplar_share.shape != (n,))
            or (heads.exemplars is not None and heads.exemplars.labels.shape[1] != n)
        ):
            raise ValueError(f"{path}: the head arrays do not match its {n} labels")
        return heads


@dataclass(frozen=True)
class Network:
    """A fitted one-hidden-layer network (float64): hidden = relu(x·W1ᵀ + b1), out = hidden·W2ᵀ + b2."""

    hidden_weights: Floats
    hidden_bias: Floats
    weights: Floats
    bias: Floats

    def raw(self, x: Floats) -> Floats:
        return np.maximum(x @ self.hidden_weights.T + self.hidden_bias, 0.0) @ self.weights.T + self.bias

    @classmethod
    def averaged(cls, networks: list[Network]) -> Network:
        """One network whose output is the mean of `networks`' outputs: their hidden layers side by
        side, each one's output weights divided by their number (an ensemble of seeds in the
        format `Heads` already ships)."""
        k = len(networks)
        return cls(
            hidden_weights=np.concatenate([n.hidden_weights for n in networks]),
            hidden_bias=np.concatenate([n.hidden_bias for n in networks]),
            weights=np.concatenate([n.weights for n in networks], axis=1) / k,
            bias=np.mean([n.bias for n in networks], axis=0),
        )


def fit_network(
    x: Floats,
    y: npt.NDArray[np.bool_],
    *,
    hidden: int = 64,
    decay: float = 1e-4,
    epochs: int = 20,
    batch: int = 128,
    rate: float = 1e-3,
    seed: int = 13,
) -> Network:
    """One hidden layer, one logistic output per label, balanced per label (each label's positives
    and negatives weigh half each), trained with Adam on seeded mini-batches. Deterministic for a
    given seed when BLAS runs on one thread (the caller's business; see the training script)."""
    rng = np.random.default_rng(seed)
    n, dimension = x.shape
    labels = y.shape[1]
    w1 = rng.normal(0.0, np.sqrt(2.0 / dimension), (dimension, hidden))
    b1 = np.zeros(hidden)
    w2 = rng.normal(0.0, np.sqrt(1.0 / hidden), (hidden, labels))
    b2 = np.zeros(labels)
    share = np.clip(y.mean(axis=0), 1e-6, 1 - 1e-6)
    positive_weight, negative_weight = 0.5 / share, 0.5 / (1 - share)
    params = [w1, b1, w2, b2]
    first = [np.zeros_like(p) for p in params]
    second = [np.zeros_like(p) for p in params]
    step = 0
    for _ in range(epochs):
        order = rng.permutation(n)
        for start in range(0, n, batch):
            rows = order[start : start + batch]
            xb, yb = x[rows], y[rows].astype(np.float64)
            h = np.maximum(xb @ w1 + b1, 0.0)
            p = sigmoid(h @ w2 + b2)
            g = (p - yb) * np.where(yb > 0, positive_weight, negative_weight) / len(rows)
            gh = (g @ w2.T) * (h > 0)
            grads = [xb.T @ gh + decay * w1, gh.sum(axis=0), h.T @ g + decay * w2, g.sum(axis=0)]
            step += 1
            for k, (param, grad) in enumerate(zip(params, grads, strict=True)):
                first[k] = 0.9 * first[k] + 0.1 * grad
                second[k] = 0.999 * second[k] + 0.001 * grad * grad
                corrected = first[k] / (1 - 0.9**step)
                param -= rate * corrected / (np.sqrt(second[k] / (1 - 0.999**step)) + 1e-8)
                _flush_subnormal(param)
                _flush_subnormal(first[k])
    return Network(hidden_weights=w1.T.copy(), hidden_bias=b1, weights=w2.T.copy(), bias=b2)


def _flush_subnormal(values: Floats) -> None:
    """Set to 0, in place, the values too small for a normal float64 (below about 2.2e-308).

    The weights into a hidden unit that no training text turns on shrink under weight decay until
    they are subnormal, and products with subnormal numbers run about twenty times slower on these
    CPUs: on multilingual-e5-small's vectors a training that takes minutes took hours. They cannot
    change a result: added to a normal number they vanish, and the heads are saved in float32,
    where they are 0 anyway, so the heads are the same bit for bit."""
    values[np.abs(values) < _SMALLEST_NORMAL] = 0.0


_SMALLEST_NORMAL = float(np.finfo(np.float64).tiny)


def fit_platt(scores: Floats, y: npt.NDArray[np.bool_], *, iterations: int = 50) -> tuple[float, float]:
    """Platt scaling: `a, b` so that σ(a·score + b) is a calibrated probability (Newton's method,
    with Platt's smoothed targets so that a separable set does not blow up, and each step halved
    until it lowers the loss: from a = 1, a full step can overshoot on scores spread over tens)."""
    positives, negatives = float(y.sum()), float((~y).sum())
    target = np.where(y, (positives + 1) / (positives + 2), 1 / (negatives + 2))
    design = np.stack([scores, np.ones_like(scores)], axis=1)

    def loss(theta: Floats) -> float:
        z = design @ theta
        return float((np.logaddexp(0.0, z) - target * z).sum())

    theta = np.array([1.0, 0.0])
    for _ in range(iterations):
        p = sigmoid(design @ theta)
        gradient = design.T @ (p - target)
        hessian = (design * (p * (1 - p))[:, None]).T @ design + 1e-9 * np.eye(2)
        step = np.linalg.solve(hessian, gradient)
        before = loss(theta)
        for _ in range(40):
            if loss(theta - step) <= before:
                break
            step = step / 2
        theta = theta - step
        if np.abs(step).max() < 1e-10:
            break
    return float(theta[0]), float(theta[1])
