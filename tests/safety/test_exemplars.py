from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest

from aimi.safety.exemplars import Exemplars


def _clusters(seed: int = 0) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.bool_]]:
    """Two tight clusters in 16 dimensions: 20 texts with the label around one centre, 20 without
    it around another."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(2, 16))
    vectors = np.concatenate([centres[k] + 0.05 * rng.normal(size=(20, 16)) for k in (0, 1)])
    labels = np.zeros((40, 1), bool)
    labels[:20, 0] = True
    return vectors, labels


def test_a_window_near_texts_with_a_label_scores_above_zero_and_one_near_texts_without_it_below() -> None:
    vectors, labels = _clusters()
    memory = Exemplars.fit(vectors, labels, projected=8, nearest=3)
    near_yes, near_no = vectors[:1] + 0.01, vectors[20:21] + 0.01
    scores = memory.scores(np.concatenate([near_yes, near_no]))
    assert scores.shape == (2, 1)
    assert scores[0, 0] > 0.5 and scores[1, 0] < -0.5


def test_the_same_vectors_give_the_same_exemplars_byte_for_byte() -> None:
    vectors, labels = _clusters()
    one, two = Exemplars.fit(vectors, labels, projected=8), Exemplars.fit(vectors.copy(), labels, projected=8)
    assert np.array_equal(one.vectors, two.vectors) and np.array_equal(one.axes, two.axes)
    assert one.vectors.dtype == np.int8 and np.abs(one.vectors).max() == 127
    # Each axis's largest entry is positive, whatever sign the SVD returned it with.
    assert np.all(one.axes[np.arange(8), np.abs(one.axes).argmax(axis=1)] > 0)


def test_a_label_with_fewer_exemplars_than_neighbours_on_a_side_is_refused() -> None:
    vectors, labels = _clusters()
    labels[:18, 0] = False  # two texts left with the label
    with pytest.raises(ValueError, match="exemplars"):
        Exemplars.fit(vectors, labels, projected=8, nearest=5)


def test_no_windows_give_no_scores() -> None:
    vectors, labels = _clusters()
    assert Exemplars.fit(vectors, labels, projected=8).scores(np.zeros((0, 16))).shape == (0, 1)


def test_the_scores_are_those_of_a_search_of_every_exemplar() -> None:
    rng = np.random.default_rng(3)
    vectors = rng.normal(size=(300, 16))
    labels = rng.random((300, 3)) < (0.2, 0.1, 0.3)  # texts with none, one, two or three labels
    memory = Exemplars.fit(vectors, labels, projected=8, nearest=4)
    windows = rng.normal(size=(7, 16))
    stored = memory.vectors.astype(np.float32) / np.float32(memory.scale)
    similarity = memory.project(windows) @ stored.T
    for label in range(3):
        column = memory.labels[:, label]
        with_label = np.sort(similarity[:, column], axis=1)[:, -4:].mean(axis=1)
        without = np.sort(similarity[:, ~column], axis=1)[:, -4:].mean(axis=1)
        assert np.allclose(memory.scores(windows)[:, label], with_label - without, atol=1e-6)
