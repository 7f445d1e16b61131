"""Exemplars: the training texts themselves, a memory beside the trained network.

The network (`heads.Heads`) learns one boundary from all training texts at once; a request phrased
like a look-alike in most of its words (a rifle question "for the attack") lands on the look-alikes'
side of it. The exemplars keep each training text's sentence vector with its labels and score a
window by its nearest neighbours: per label, the mean cosine similarity of its `k` nearest
training texts with that label minus the mean of its `k` nearest without it. Near texts of one
idea count, however the rest of the corpus pulls the boundary (round 23 in docs/safety.md).

To stay small and fast, the vectors are centred and projected on their first principal axes
(`PROJECTED` of them), made unit vectors again, and stored as int8 (one scale for all): 0.8 MB
for thirteen thousand texts; a 100-word prompt costs about 1.3 ms (the product with that matrix
and a partial sort per group of texts that share their labels). `fit` builds them (in
`benchmarks/train_safety_heads.py`), and they ship inside the heads file (`Heads.exemplars`).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

PROJECTED = 64
"""Principal axes kept (round 23 measured 64, 128, 256 and all 768 on dev: the same recall; 64
halves the product with the exemplars, the part of their cost that grows with them)."""
NEAREST = 5
"""Neighbours per side (round 23 measured 3 to 20 on dev)."""


def _unit(vectors: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    norms: npt.NDArray[np.float64] = np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    return vectors / norms


def _mean_of_top(similarity: npt.NDArray[np.float32], k: int) -> npt.NDArray[np.float64]:
    """Each row's `k` highest values, added from the highest down, divided by `k`."""
    top = np.partition(similarity, similarity.shape[1] - k, axis=1)[:, -k:]
    ranked = np.sort(top, axis=1)[:, ::-1].astype(np.float64)
    total = np.zeros(len(ranked), np.float64)
    for column in ranked.T:
        total += column
    return total / k


@dataclass(frozen=True, eq=False)
class Exemplars:
    """Labelled training vectors, projected and quantized (see the module docstring)."""

    mean: npt.NDArray[np.float32]
    """The training vectors' mean (dimension,), subtracted before projecting."""
    axes: npt.NDArray[np.float32]
    """The principal axes (projected × dimension)."""
    vectors: npt.NDArray[np.int8]
    """Each training text's projected unit vector times `scale`, rounded (texts × projected)."""
    scale: float
    labels: npt.NDArray[np.bool_]
    """Which labels each training text has (texts × labels)."""
    nearest: int = NEAREST
    _stored: npt.NDArray[np.float32] = field(init=False, repr=False)
    """The vectors as floats, ordered by group: each group (texts sharing one set of labels) a
    slice of rows, from `_bounds[g]` to `_bounds[g + 1]`."""
    _bounds: npt.NDArray[np.intp] = field(init=False, repr=False)
    _label_sets: npt.NDArray[np.bool_] = field(init=False, repr=False)
    """Each group's set of labels (groups × labels)."""

    def __post_init__(self) -> None:
        # A label's nearest texts with it, or without it, are the nearest among the nearest of
        # each group on that side.
        label_sets, group = np.unique(self.labels, axis=0, return_inverse=True)
        order = np.argsort(group.ravel(), kind="stable")
        bounds = np.searchsorted(group.ravel()[order], np.arange(len(label_sets) + 1))
        object.__setattr__(self, "_stored", self.vectors[order].astype(np.float32) / np.float32(self.scale))
        object.__setattr__(self, "_bounds", bounds)
        object.__setattr__(self, "_label_sets", label_sets)
        with_label = np.diff(bounds) @ label_sets
        if (np.minimum(with_label, len(self.labels) - with_label) < self.nearest).any():
            raise ValueError(f"every label needs {self.nearest} exemplars with it and without it")

    def project(self, vectors: npt.NDArray[np.floating]) -> npt.NDArray[np.float32]:
        centred = vectors.astype(np.float32) - self.mean
        return _unit((centred @ self.axes.T).astype(np.float64)).astype(np.float32)

    def scores(self, vectors: npt.NDArray[np.floating]) -> npt.NDArray[np.float64]:
        """Per window and label: mean similarity of the `nearest` exemplars with the label minus
        that of the `nearest` without it, shape (len(vectors), labels), in [-2, 2].

        Each group of exemplars that share a set of labels gives its `nearest` most similar (one
        partial sort per group, every window at once); a label's side is then the most similar
        of the groups' on that side. Means add the similarities from the highest down."""
        label_sets = self._label_sets
        similarity = self.project(vectors) @ self._stored.T
        k = self.nearest
        nearest = np.full((len(similarity), len(label_sets), k), -np.inf, np.float32)
        for g, (start, end) in enumerate(itertools.pairwise(self._bounds)):
            part = similarity[:, start:end]
            if end - start > k:
                part = np.partition(part, end - start - k, axis=1)[:, -k:]
            nearest[:, g, : part.shape[1]] = part
        out = np.empty((len(similarity), label_sets.shape[1]), np.float64)
        for label, has in enumerate(label_sets.T):
            with_label = nearest[:, has].reshape(len(similarity), int(has.sum()) * k)
            without = nearest[:, ~has].reshape(len(similarity), int((~has).sum()) * k)
            out[:, label] = _mean_of_top(with_label, k) - _mean_of_top(without, k)
        return out

    def arrays(self) -> dict[str, npt.NDArray[np.generic]]:
        """The arrays a heads file stores them as (`heads.Heads.save`), named `exemplar_*`."""
        return {
            "exemplar_mean": self.mean,
            "exemplar_axes": self.axes,
            "exemplar_vectors": self.vectors,
            "exemplar_scale": np.array(self.scale),
            "exemplar_labels": self.labels,
            "exemplar_nearest": np.array(self.nearest),
        }

    @classmethod
    def from_arrays(cls, data: Mapping[str, npt.NDArray[np.generic]]) -> Exemplars:
        """The exemplars `arrays` stored."""
        return cls(
            mean=data["exemplar_mean"].astype(np.float32),
            axes=data["exemplar_axes"].astype(np.float32),
            vectors=data["exemplar_vectors"].astype(np.int8),
            scale=float(data["exemplar_scale"]),
            labels=data["exemplar_labels"].astype(bool),
            nearest=int(data["exemplar_nearest"]),
        )

    @classmethod
    def fit(
        cls,
        vectors: npt.NDArray[np.float64],
        labels: npt.NDArray[np.bool_],
        projected: int = PROJECTED,
        nearest: int = NEAREST,
    ) -> Exemplars:
        """The exemplars of `vectors` (float64, one training text each) and their `labels`:
        principal axes by SVD (each axis's sign fixed so that its largest entry is positive, so
        the same vectors give the same bytes), int8 at the scale that maps the largest entry to
        127."""
        mean = vectors.mean(axis=0)
        _, _, axes = np.linalg.svd(vectors - mean, full_matrices=False)
        axes = axes[:projected]
        axes = axes * np.sign(axes[np.arange(len(axes)), np.abs(axes).argmax(axis=1)])[:, None]
        unit = _unit((vectors - mean) @ axes.T)
        scale = float(127.0 / np.abs(unit).max())
        return cls(
            mean=mean.astype(np.float32),
            axes=axes.astype(np.float32),
            vectors=np.round(unit * scale).astype(np.int8),
            scale=scale,
            labels=labels.astype(bool),
            nearest=nearest,
        )
