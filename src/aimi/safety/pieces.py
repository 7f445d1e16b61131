"""Word pieces: a lexical reader beside the sentence vector.

The semantic heads read a window's meaning from its sentence vector, which blurs what lies in the
words themselves: a slur's spelling, coded hate, explicit words, a jailbreak's stock phrases. This
reader sees them. A window's WordPiece tokens (all-MiniLM-L6-v2's own tokenizer, the instance the
encoder loaded, without `[CLS]` and `[SEP]`; a new window is tokenized a second time here, about
0.2 ms per 100-word prompt) and each pair of consecutive tokens are hashed into
`BUCKETS` buckets; a window is the set of its buckets, each weighing 1/√(their number), and a
logistic model per label scores it. `heads.Heads` adds that score, scaled per label, to its
network's before calibration (trained and measured in `benchmarks/train_safety_heads.py`; round
14 in docs/safety.md). Scoring a window is a sum over its buckets: a few microseconds.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
from tokenizers import Tokenizer

from aimi.safety.encoders import encodable, minilm_tokenizer

BITS = 16
BUCKETS = 1 << BITS
_MULTIPLIER = np.uint64(0x9E3779B97F4A7C15)  # Fibonacci hashing: the top bits of the product
_PAIR = np.uint64(1 << 32)  # a pair (a, b) is hashed as a·2³² + b + 2⁶²: apart from every single token
_PAIRS = np.uint64(1 << 62)


def buckets(ids: Sequence[int]) -> npt.NDArray[np.int64]:
    """The distinct buckets of a window's tokens and token pairs (sorted)."""
    tokens = np.asarray(ids, dtype=np.uint64)
    grams = np.concatenate([tokens, tokens[:-1] * _PAIR + tokens[1:] + _PAIRS])
    with np.errstate(over="ignore"):  # the product wraps around 2⁶⁴, as the hash means it to
        hashed = (grams * _MULTIPLIER) >> np.uint64(64 - BITS)
    return np.unique(hashed.astype(np.int64))


class WordPieces:
    """Turns windows into their token ids with all-MiniLM-L6-v2's tokenizer (cut at 256 tokens,
    as the encoder cuts them; `encoders.minilm_tokenizer`, shared with the encoder)."""

    def __init__(self, tokenizer: Tokenizer | None = None) -> None:
        self._tokenizer = tokenizer or minilm_tokenizer()

    def ids(self, texts: Sequence[str]) -> list[list[int]]:
        return [encoding.ids[1:-1] for encoding in self._tokenizer.encode_batch(encodable(texts))]


def piece_scores(
    windows: Sequence[Sequence[int]], weights: npt.NDArray[np.floating], bias: npt.NDArray[np.floating]
) -> npt.NDArray[np.float64]:
    """The logistic model's raw output per window and label, shape (len(windows), labels), for
    `weights` of shape (labels, BUCKETS)."""
    out = np.empty((len(windows), len(bias)), np.float64)
    for row, ids in enumerate(windows):
        found = buckets(ids)
        share = 1.0 / np.sqrt(len(found)) if len(found) else 0.0
        out[row] = weights[:, found].sum(axis=1, dtype=np.float64) * share + bias
    return out
