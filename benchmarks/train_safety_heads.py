"""Train the semantic classifier's heads from tests/data/safety_corpus.jsonl, reproducibly.

    .venv/bin/python benchmarks/train_safety_heads.py [--completions | --multilingual | --other-languages]
        [--encoder minilm|static|multilingual|e5] [--layers N] [--out PATH]

1. Read the corpus and the embedded model's labelled sampled answers
   (tests/data/safety_answers.jsonl, a family per question). Their `train` families are used for
   fitting, their `dev` families for calibration and thresholds; the untouched holdout
   (`safety_eval.HOLDOUT`) is never read here. Every text is read as the filter
   reads it (`aimi.safety.normalization.normalize`: look-alike letters and leetspeak folded), so
   the heads learn the text they will be shown. With `--completions`, the heads
   completions are judged by (`aimi.safety.heads.OUTPUT_HEADS_FILE`): the same steps on the corpus
   without the families merged for the prompts only (`for_completions`, `COMPLETIONS_WITHOUT`).
2. Add variants of the training texts (`augment`, seeded): lower case without punctuation, a typo
   or two, chatty openers and closers; for benign rows also the text placed in the middle of a
   few everyday sentences, and a prefix cut off in the middle of a word, as a streamed window
   sees it (a long harmful message is scored window by window, and a cut-off harmful text may
   have lost what made it harmful). The benign training texts judged in more than one window
   also give each window as a row (`benign_windows`): every sentence of a benign text is benign.
3. Encode every text with the sentence encoder (all-MiniLM-L6-v2, all `LAYERS` of it, mean
   pooling; `--layers`, `--max-pool` and `--earlier`, an earlier layer's mean from the same call,
   train the variants docs/safety.md compares); round the vectors to 1e-4 (so that last-bit
   differences in the arithmetic do not change the heads).
4. Fit the networks (`SEEDS` of them, each one hidden layer of `HIDDEN` ReLU units and one
   logistic output per label, balanced per label, `EPOCHS` passes) in float64 with seeded Adam
   on one BLAS thread, and average them into one; keep the training texts' own vectors (not
   their variants') as exemplars (`aimi.safety.exemplars`, for the prompts' heads only), whose
   score joins the network's at `EXEMPLAR_SHARE`; fit the word-pieces model on the same rows
   (`fit_pieces`, `aimi.safety.pieces`).
5. On dev, score each text as the filter does (the worst of its windows; for the prompts' heads
   the windows the language test finds in English, `aimi.safety.language`, since the
   multilingual member judges the others), choose per label how much of the word-pieces model's
   output joins the network's (`choose_scales`), fit Platt scaling per label, and choose the
   severity thresholds (`choose_thresholds`: the prompts' heads the most recall their budget of
   false flags allows, the completions' within `RECALL_MARGIN` of it; for a prompts' reader, on
   scores discounted for the number of windows by the `window_penalty` that blocks the most dev
   harm within those budgets, `choose_penalty`); then score dev and the
   dev answers as completions (whole texts, windows in context) and choose the completions'
   thresholds (`choose_output_threshold`).
6. Write the heads (`aimi.safety.heads.Heads`) and print the dev figures.

With `--multilingual`, the heads of the multilingual member (`aimi.safety.heads.MULTILINGUAL_HEADS_FILE`):
the same steps on the multilingual encoder's vectors, but steps 5 and 6 on the dev texts with a
window the language test finds in a language other than English that the encoder reads, scored
on those windows alone, as the member judges them, and without completions' thresholds. With
`--other-languages`, the heads of the other-languages member
(`aimi.safety.heads.OTHER_LANGUAGES_HEADS_FILE`): the same on multilingual-e5-small's vectors and
the windows in languages the multilingual encoder does not read.

Same corpus, same seed, same encoder, and numpy's OpenBLAS running the kernels the shipped heads
were made with (`BLAS_KERNELS`; `OPENBLAS_CORETYPE=Haswell` on x86-64, which `make` sets): the
same heads, bit for bit (tests/safety/test_training.py). OpenBLAS picks its kernels by CPU, and
its AVX-512 ones (`SkylakeX`) sum in another order, so on such a CPU left to itself the heads come
out a few last bits apart; the script says so when it starts.
"""

from __future__ import annotations

import argparse
import json
import random
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import numpy.typing as npt
from scipy import optimize, sparse
from threadpoolctl import threadpool_info, threadpool_limits

from aimi.safety import pieces as pieces_module
from aimi.safety.chunks import any_window, windows
from aimi.safety.encoders import E5Encoder, MiniLMEncoder, MultilingualEncoder, SentenceEncoder, StaticEncoder
from aimi.safety.exemplars import Exemplars
from aimi.safety.heads import (
    HEADS_FILE,
    LABELS,
    MULTILINGUAL_HEADS_FILE,
    OTHER_LANGUAGES_HEADS_FILE,
    OUTPUT_HEADS_FILE,
    Heads,
    Network,
    fit_network,
    fit_platt,
    penalize,
    sigmoid,
)
from aimi.safety.language import LanguageGate
from aimi.safety.normalization import normalize
from aimi.safety.pieces import WordPieces, piece_scores

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data"
CORPUS = DATA / "safety_corpus.jsonl"
ANSWERS = DATA / "safety_answers.jsonl"
COMPLETIONS_WITHOUT = tuple(
    DATA / f"safety_{name}.jsonl"
    for name in (
        *("holdout_r10", "holdout_r11", "holdout_r12", "candidates_c18"),  # round 16, then 17
        *("holdout_r14", "holdout_r17", "candidates_c20"),  # round 19
        *("holdout_r21", "candidates_c22"),  # round 23
        *("holdout_r19", "holdout_r23", "candidates_c24"),  # round 25
        *("holdout_r25",),  # round 27
        *("candidates_c28",),  # round 29
        *("holdout_r27", "holdout_r29", "holdout_r31", "holdout_r33", "candidates_c39"),  # round 39
        *("holdout_r35", "holdout_r37", "holdout_r39", "candidates_c43"),  # round 43
        *("candidates_c45", "holdout_r41"),  # round 45
        *("candidates_c47", "holdout_r43"),  # round 47
        *("candidates_c49", "holdout_r45"),  # round 49
        *("candidates_c51", "holdout_r47"),  # round 51
        *("candidates_c53", "holdout_r49"),  # round 53
        *("holdout_r51", "holdout_r53", "holdout_r55", "candidates_c57"),  # round 57
        *("holdout_r57", "candidates_c59"),  # round 59
        *("holdout_r59", "candidates_c61"),  # round 61
        *("holdout_r61", "candidates_c63"),  # round 63
        *("holdout_r63", "candidates_c65"),  # round 65
        *("holdout_r65", "candidates_c67"),  # round 67
        *("holdout_r67", "candidates_c69", "candidates_c71"),  # round 71
        *("holdout_r69", "candidates_c75", "candidates_c77"),  # round 79
    )
)
"""The files merged into the corpus for the prompts' heads only: the scored holdouts of rounds 10
to 12 (round 16), round 16's training candidates c18 (round 17), the scored holdouts of rounds 14
and 17 and round 17's candidates c20 (round 19), the scored holdout of round 21 and round 21's
candidates c22 (round 23), the scored holdouts of rounds 19 and 23 and round 23's candidates c24
(round 25), the scored holdout of round 25 (round 27), c28's translations (round 29), and the
scored holdouts of rounds 27 to 33 and round 39's candidates c39 (round 39), and the scored
holdouts of rounds 35 to 39 and round 43's candidates c43 (round 43), and round 43's candidates
c45 and the scored holdout of round 41 (round 45), round 45's candidates c47 and the scored
holdout of round 43 (round 47), round 47's candidates c49 and the scored holdout of round 45
(round 49), round 49's candidates c51 and the scored holdout of round 47 (round 51), and round
51's candidates c53 and the scored holdout of round 49 (round 53), and the scored holdouts of
rounds 51 to 55 and round 57's candidates c57 (round 57), and the scored holdout of round 57 and
round 57's candidates c59 (round 59), the scored holdout of round 59 and round 59's
candidates c61 (round 61), the scored holdout of round 61 and round 61's candidates c63
(round 63), the scored holdout of round 63 and round 63's candidates c65 (round 65), and the
scored holdout of round 65 and round 65's candidates c67 (round 67), and the scored holdout of
round 67 and the candidates c69 and c71 (round 71), and the scored holdout of round 69 and
the candidates c75 and c77 (round 79). The completions' heads are
not trained on them: trained with the holdouts, benign sampled answers scored higher, the
completions' violence threshold rose from 0.90 to 0.97, above a plain threat's score, and more
fresh answers were withheld (docs/safety.md, Heads, "Round 16")."""
SEED = 13
HIDDEN = 128
SEEDS = 3
"""Networks trained from seeds `SEED`, `SEED + 1`, ... and averaged (`Network.averaged`)."""
EPOCHS = 100
"""Passes over the training rows (round 8 measured 20 to 150, docs/safety.md)."""
LAYERS = 6
MAX_POOL = False
EARLIER: int | None = 4
"""A layer whose mean joins the last layer's (`--earlier`; round 5 measured 4, docs/safety.md)."""
FUSED = True
"""MiniLM with its attention and GELU fused (`--unfused` for the graph as exported; round 7)."""
EVERYDAY_OUTLIERS = 1 / 800
"""The share of dev's everyday texts (rounded down) that may reach a label's `medium`: a quarter of
the 0.5 % target, so one odd text among dev's 814 does not set the threshold (round 10: "Can you
pick up Jake from football tonight? ... he'll wait by the back gate of the sports hall", violence
0.95, would have put violence's `medium` at 0.95 and its dev recall at 0.50 instead of 0.83)."""
GRID = np.round(np.arange(0.30, 0.951, 0.05), 2)
"""The values a severity threshold is chosen among (the completions' `medium` also 0.97 and 0.99)."""
RECALL_MARGIN = 0.02
"""How much dev recall a label's `medium` may give up to sit higher above the benign texts
(`choose_thresholds`), for the completions' heads. The prompts' heads (both members) take the most
recall their budget allows (margin 0): on three writers' holdouts the margin, and round 39's joint
budget of look-alikes for all labels, cost 1.8 points of harm blocked and spared no look-alike
(docs/safety.md, Heads, "Round 43")."""
ANSWER_MARGIN = 0.05
"""How far under the completions' `medium` the benign sampled answers of dev must stay."""
ANSWER_OUTLIERS = 0.001
"""The share of benign sampled dev answers (rounded down) that may score above `medium -
ANSWER_MARGIN`: one odd answer in a thousand does not set the threshold (round 6: one greeting,
"You're here to learn how to make a campfire!", would have put violence's above a plain threat)."""
REQUESTS = "a4-request-"
"""The answers' families of requests for harm (a threat): their benign answers (a refusal, a
friendly note) are trained on, but do not hold up the thresholds for completions."""

EXEMPLAR_SHARE = 60.0
"""How much of the exemplars' score (`aimi.safety.exemplars`, a difference of mean similarities,
mostly within ±0.2) joins the network's raw output, for every label of the prompts' heads (round
23 measured 5 to 160 on dev). The completions' heads have none (`train(exemplars=False)`)."""

WINDOW_PENALTIES = (0.0, 0.25, 0.5, 0.75, 1.0)
"""The values a prompts' reader's `window_penalty` (`aimi.safety.heads.Heads.penalized`: a text's
worst window lowered by β·ln(windows) in log-odds) is chosen among on dev (`choose_penalty`).
Round 69 measured the shipped MiniLM heads flag 16 of 77 English everyday texts of 100 words or
more and 1 of 167 short ones; with β = 0.25, 6 of 77, for 5 of 3,332 harmful dev texts (docs/safety.md,
What is left, "Round 69"). Round 71 chose 1 for MiniLM and the multilingual member, 0.5 for the
other-languages member (docs/safety.md, Heads, "Round 71")."""

PIECE_DECAY = 3e-6
"""The word-pieces model's L2 penalty (round 14 compared 1e-6 to 3e-5 on dev: docs/safety.md)."""
PIECE_SCALES = (0.0, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0)
"""The shares of the word-pieces model's output a label may take (`choose_scales`)."""

Pieces = tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]
"""The word-pieces model: weights (labels × buckets) and bias."""

OPENERS = ("hey ", "ok so ", "quick question: ", "pls ", "Hi! ", "yo ", "So, ", "Honestly, ")
CLOSERS = (" lol", " thanks", " pls", " asap", " :)", " ...", " tbh", "!!")


@dataclass(frozen=True)
class Row:
    text: str
    labels: frozenset[str]
    kind: str
    family: str
    split: str
    role: str = "user"
    """`system` for an application's system prompt: a jailbreak found in one never blocks (the
    service asks again about the other messages), so system prompts do not hold up jailbreak's
    thresholds; the harm categories judge them like any text."""


def _lines(path: Path) -> list[str]:
    return [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


BLAS_KERNELS = frozenset({"Haswell", "Zen"})
"""The OpenBLAS kernels the shipped heads were trained with: Haswell's (the completions' heads
measured the same with its Zen kernels). With AVX-512's (`SkylakeX`) the products sum in another
order and the heads come out a few last bits apart; `OPENBLAS_CORETYPE=Haswell` asks for these on
any x86-64 CPU."""


def blas_kernels() -> frozenset[str]:
    """The kernels numpy's OpenBLAS runs in this process (`threadpoolctl`; empty when its BLAS
    is not OpenBLAS)."""
    return frozenset(
        str(info.get("architecture")) for info in threadpool_info() if info.get("internal_api") == "openblas"
    )


def other_kernels() -> str | None:
    """Why this process will not reproduce the shipped heads bit for bit (None when it will)."""
    kernels = blas_kernels()
    if kernels and kernels <= BLAS_KERNELS:
        return None
    return (
        f"numpy's OpenBLAS runs {sorted(kernels) or 'no OpenBLAS'} kernels, not the {sorted(BLAS_KERNELS)}"
        " the shipped heads were trained with, so the last bits differ: run with OPENBLAS_CORETYPE=Haswell"
        " (make sets it on x86-64)"
    )


def load_corpus(path: Path = CORPUS) -> list[Row]:
    rows = [json.loads(line) for line in _lines(path)]
    return [
        Row(r["text"], frozenset(r["labels"]), r["kind"], r["family"], r["split"], r.get("role", "user"))
        for r in rows
    ]


def for_completions(corpus: Sequence[Row]) -> list[Row]:
    """The corpus the completions' heads are trained on (`--completions`): without the families of
    `COMPLETIONS_WITHOUT`."""
    left_out = {str(json.loads(line)["family"]) for path in COMPLETIONS_WITHOUT for line in _lines(path)}
    return [r for r in corpus if r.family not in left_out]


def load_answers(path: Path = ANSWERS) -> list[Row]:
    """The embedded model's sampled answers, labelled (`benchmarks/sample_safety_answers.py`): a
    family per question, `train` or `dev` by question."""
    return load_corpus(path) if path.is_file() else []


def answer_windows(answers: Sequence[Row]) -> list[Row]:
    """The benign training answers as the windows a completion is judged by (sentences in
    context), each a row of its own: an answer is never judged whole, and its mean over 300
    words says little about its sentences. Harmful answers are not cut up (not every sentence of
    one is harmful); they stay on dev, where the cut of each is checked."""
    rows = [r for r in answers if r.split == "train" and r.kind != "harmful"]
    pieces = dict.fromkeys((w, r) for r in rows for w in windows(r.text, context=True))
    return [Row(w, r.labels, r.kind, r.family, r.split, r.role) for w, r in pieces]


def benign_windows(rows: Sequence[Row]) -> list[Row]:
    """The windows of the benign training texts that are judged in more than one window, each a
    row of its own: every sentence of a benign text is benign, and the filter judges it alone."""
    pieces: dict[str, Row] = {}
    for r in rows:
        if r.kind == "harmful":
            continue
        parts = windows(r.text)
        if len(parts) > 1:
            for w in parts:
                pieces.setdefault(w, r)
    return [Row(w, r.labels, r.kind, r.family, r.split, r.role) for w, r in pieces.items()]


def as_read(rows: Sequence[Row]) -> list[Row]:
    """The rows with their texts as the filter reads them (`normalize`, before any window is cut)."""
    return [replace(r, text=normalize(r.text)) for r in rows]


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
        out.extend(
            Row(v, row.labels, row.kind, row.family, row.split, row.role) for v in variants if v.strip()
        )
    return out


def targets(rows: Sequence[Row]) -> npt.NDArray[np.bool_]:
    return np.array([[label in r.labels for label in LABELS] for r in rows], dtype=bool)


def encode(encoder: SentenceEncoder, texts: Sequence[str]) -> npt.NDArray[np.float64]:
    vectors = encoder.encode(list(texts)).astype(np.float64)
    return np.round(vectors, 4)


@dataclass(frozen=True)
class WindowScores:
    """The raw outputs of the network and of the word-pieces model per distinct window, and which
    windows make each text (a text's score is the worst of its windows, as the filter scores)."""

    members: list[npt.NDArray[np.intp]]
    network: npt.NDArray[np.float64]
    pieces: npt.NDArray[np.float64]

    def raw(self, scale: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        """Each text's raw score per label with `scale` of the word-pieces model's output added."""
        per_window = self.network + self.pieces * scale
        return np.stack([per_window[m].max(axis=0) for m in self.members])


@dataclass(frozen=True)
class Scorer:
    """The network, and the exemplars' share added to its raw output as `Heads.raw` adds it."""

    network: Network
    exemplars: Exemplars | None = None
    share: float = 0.0

    def raw(self, x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        out = self.network.raw(x)
        return out if self.exemplars is None else out + self.exemplars.scores(x) * self.share


def window_scores(
    encoder: SentenceEncoder,
    scorer: Scorer,
    texts: Sequence[Sequence[str]],
    pieces: Pieces | None = None,
    *,
    context: bool = False,
    select: Callable[[str], bool] | None = None,
) -> WindowScores:
    """Each text's windows scored (with `context`, as completions are; every string of a text's
    sequence is cut into windows, so a streamed completion is the checks it was judged in); with
    `select`, only the windows it keeps (each text must have one: `chunks.any_window`)."""
    index: dict[str, int] = {}
    members = []
    for parts in texts:
        found = [w for text in parts for w in (windows(text, context=context) or [text])]
        found = found if select is None else [w for w in found if select(w)]
        members.append(np.array(sorted({index.setdefault(w, len(index)) for w in found}), np.intp))
    unique = list(index)
    network_raw = scorer.raw(encode(encoder, unique)).astype(np.float64)
    if pieces is None:
        return WindowScores(members, network_raw, np.zeros_like(network_raw))
    return WindowScores(members, network_raw, piece_scores(WordPieces().ids(unique), *pieces))


def within_budget(
    probabilities: npt.NDArray[np.float64],
    threshold: float,
    benign: npt.NDArray[np.bool_],
    tricky: npt.NDArray[np.bool_],
) -> bool:
    """Whether at most 1 % of dev's benign look-alikes (rounded down, but one text at least: the
    multilingual member's dev has 98, and one Italian kiss scene would otherwise have set its sexual
    `medium` at 0.85, round 39) and `EVERYDAY_OUTLIERS` of its everyday texts reach `threshold`."""
    everyday = benign & ~tricky
    look_alikes = int((probabilities[tricky] >= threshold).sum())
    flagged = int((probabilities[everyday] >= threshold).sum())
    allowed = max(int(tricky.sum() * 0.01), 1), int(everyday.sum() * EVERYDAY_OUTLIERS)
    return look_alikes <= allowed[0] and flagged <= allowed[1]


def choose_thresholds(
    probabilities: npt.NDArray[np.float64],
    y: npt.NDArray[np.bool_],
    benign: npt.NDArray[np.bool_],
    tricky: npt.NDArray[np.bool_],
    margin: float = RECALL_MARGIN,
) -> tuple[float, float, float]:
    """Per label, on dev, from the calibrated probabilities:

    - `medium` (the default policy blocks from here): among the probabilities on a 0.05 grid from
      0.30 to 0.95 at which at most 1 % of the benign look-alikes and `EVERYDAY_OUTLIERS` of the
      everyday texts (rounded down: one of 814) are flagged (the targets are 2 % and 0.5 %, so
      this keeps a margin for text nobody tuned on), the highest whose recall is within `margin`
      of the best of them: nearly the most recall the budget allows, with the widest margin above
      the benign texts (with `margin` 0, the most recall the budget allows);
    - `low`: half of `medium` (reported, blocks only under a policy that asks for it);
    - `high`: the lowest grid value above `medium` at which dev has no benign text at all, and
      at least 0.8.
    """
    feasible = [t for t in GRID if within_budget(probabilities, t, benign, tricky)] or [GRID[-1]]
    recall = {t: float((probabilities[y] >= t).mean()) if y.any() else 0.0 for t in feasible}
    best = max(recall.values())
    medium = float(max(t for t in feasible if recall[t] >= best - margin))
    clean = [t for t in GRID if t > medium and not (probabilities[benign] >= t).any()]
    high = max(0.8, float(clean[0]) if clean else 0.95)
    return round(medium / 2, 3), medium, max(high, medium)


def blocked_harm(
    probabilities: npt.NDArray[np.float64],
    thresholds: npt.NDArray[np.float64],
    y: npt.NDArray[np.bool_],
    judged: npt.NDArray[np.bool_],
) -> int:
    """How many harmful texts reach `medium` in at least one of their own labels (a label counts
    only where it is `judged`: jailbreak not in system prompts)."""
    hit = (probabilities >= thresholds[:, 1]) & y & judged
    return int(hit.any(axis=1).sum())


def choose_penalty(
    probabilities: npt.NDArray[np.float64],
    windows: npt.NDArray[np.intp],
    y: npt.NDArray[np.bool_],
    judged: npt.NDArray[np.bool_],
    benign: npt.NDArray[np.bool_],
    tricky: npt.NDArray[np.bool_],
    margin: float = 0.0,
    penalties: Sequence[float] = WINDOW_PENALTIES,
) -> tuple[float, npt.NDArray[np.float64]]:
    """Of `penalties`, the β whose thresholds (`choose_thresholds`, chosen on the dev texts' scores
    discounted by β·ln(their windows), `aimi.safety.heads.penalize`) block the most of dev's
    harmful texts; the smaller β on a tie. Each β is held to the same budget of look-alikes and
    everyday texts, so a larger one wins only where it lets the thresholds sit lower: where long
    benign texts, not harmful ones, held them up. Returns β and its thresholds."""
    best: tuple[int, float, npt.NDArray[np.float64]] | None = None
    for beta in penalties:
        p = penalize(probabilities, windows, beta) if beta else probabilities
        thresholds = np.zeros((y.shape[1], 3))
        for i in range(y.shape[1]):
            mine = judged[:, i]
            thresholds[i] = choose_thresholds(p[mine, i], y[mine, i], benign[mine], tricky[mine], margin)
        blocked = blocked_harm(p, thresholds, y, judged)
        if best is None or blocked > best[0]:
            best = (blocked, beta, thresholds)
    assert best is not None
    return best[1], best[2]


def stream_checks(text: str, size: int = 400, every: int = 100, piece: int = 4) -> list[str]:
    """The texts an output window (`aimi.safety.window.OutputWindow`, its defaults) checks when
    `text` streams in pieces of `piece` characters: each check is the new text with the end of
    the checked text before it, cut mid-word, as a completion is judged."""
    checks: list[str] = []
    context = pending = ""
    for start in range(0, len(text), piece):
        pending += text[start : start + piece]
        if len(pending) >= every:
            checks.append(context + pending)
            context, pending = checks[-1][-(size - every) :], ""
    if pending:
        checks.append(context + pending)
    return checks


def completion_scores(
    encoder: SentenceEncoder, scorer: Scorer, texts: Sequence[str], pieces: Pieces | None = None
) -> WindowScores:
    """Each text scored as a streamed completion: the worst window of the worst check of the
    output window (`stream_checks`), windows in context."""
    return window_scores(encoder, scorer, [stream_checks(t) or [t] for t in texts], pieces, context=True)


def choose_output_threshold(
    probabilities: npt.NDArray[np.float64], benign_answers: npt.NDArray[np.bool_], medium: float
) -> float:
    """Per label, for completions: the prompts' `medium`, raised on the 0.05 grid (then 0.97 and
    0.99) until no benign sampled answer of dev to a benign question (`benign_answers`) scores
    within `ANSWER_MARGIN` of it (an answer that helps someone must not be withheld one time in
    a few samples; a plain threat, 0.98 and more, is still cut)."""
    benign = probabilities[benign_answers]
    worst = float(benign.max()) if benign.size else 0.0
    grid = [*GRID, 0.97, 0.99]
    above = [float(t) for t in grid if t >= medium and t >= worst + ANSWER_MARGIN]
    return above[0] if above else 0.99


def output_thresholds_of(
    probabilities: npt.NDArray[np.float64],
    benign_answers: npt.NDArray[np.bool_],
    mediums: Sequence[float],
    questions: Sequence[str],
) -> list[float]:
    """The completions' `medium` of every label (`choose_output_threshold`, from the prompts'
    `mediums`), with the `ANSWER_OUTLIERS` share of each question's benign answers (rounded down:
    none of a question sampled 20 times, one of one sampled 1,282 times), in all labels together,
    left out: one at a time, the answer whose leaving lowers the thresholds most. So one odd answer
    in a thousand does not set a threshold (round 6: one greeting put violence's above a plain
    threat), and no question has more than one answer in a thousand withheld."""
    held = benign_answers.copy()
    labels = range(probabilities.shape[1])
    allowed = {q: int(n * ANSWER_OUTLIERS) for q, n in Counter(np.array(questions)[benign_answers]).items()}

    def chosen(mask: npt.NDArray[np.bool_]) -> list[float]:
        return [choose_output_threshold(probabilities[:, i], mask, mediums[i]) for i in labels]

    while True:
        current = sum(chosen(held))
        open_ = held & np.array([allowed.get(q, 0) > 0 for q in questions])
        worst = {int(np.argmax(np.where(open_, probabilities[:, i], -1.0))) for i in labels if open_.any()}
        gains = {j: current - sum(chosen(held & (np.arange(held.size) != j))) for j in sorted(worst)}
        best = max(gains, key=lambda j: gains[j], default=None)
        if best is None or gains[best] <= 0:
            return chosen(held)
        held[best] = False
        allowed[questions[best]] -= 1


def completions_thresholds(
    raw_out: npt.NDArray[np.float64],
    calibration: npt.NDArray[np.float64],
    thresholds: npt.NDArray[np.float64],
    dev: Sequence[Row],
    dev_answers: Sequence[Row],
) -> npt.NDArray[np.float32]:
    """Per label low, medium, high for completions, from the raw scores of dev's texts and then its
    sampled answers judged as streamed completions (`completion_scores`): `medium` from
    `output_thresholds_of`, `low` half of it, `high` the prompts' when above it."""
    completions = [*dev, *dev_answers]
    benign_answers = np.array(
        [
            i >= len(dev) and r.kind != "harmful" and not r.family.startswith(REQUESTS)
            for i, r in enumerate(completions)
        ]
    )
    p_out = sigmoid(raw_out * calibration[:, 0] + calibration[:, 1]).astype(np.float64)
    questions = [r.family for r in completions]
    mediums = output_thresholds_of(p_out, benign_answers, [float(t) for t in thresholds[:, 1]], questions)
    out = np.zeros((len(LABELS), 3))
    for i, medium in enumerate(mediums):
        out[i] = (round(medium / 2, 3), medium, max(float(thresholds[i, 2]), medium))
    return out.astype(np.float32)


def fit_pieces(ids: Sequence[Sequence[int]], y: npt.NDArray[np.bool_], decay: float = PIECE_DECAY) -> Pieces:
    """The word-pieces model (`aimi.safety.pieces`): per label a logistic regression over the
    windows' buckets, balanced (positives and negatives weigh half each), with an L2 penalty,
    fitted by L-BFGS from zero (deterministic: sparse products in a fixed order). Buckets no
    training text has keep a weight of exactly 0."""
    rows = [pieces_module.buckets(window) for window in ids]
    share = [1.0 / np.sqrt(len(r)) if len(r) else 0.0 for r in rows]
    matrix = sparse.csr_matrix(
        (
            np.concatenate([np.full(len(r), v) for r, v in zip(rows, share, strict=True)]),
            np.concatenate(rows),
            np.cumsum([0, *(len(r) for r in rows)]),
        ),
        shape=(len(rows), pieces_module.BUCKETS),
    )
    weights = np.zeros((y.shape[1], pieces_module.BUCKETS))
    bias = np.zeros(y.shape[1])
    for label in range(y.shape[1]):
        target = y[:, label].astype(np.float64)
        positive = float(target.mean())
        weight = np.where(target > 0, 0.5 / positive, 0.5 / (1 - positive)) / len(target)

        def loss(
            params: npt.NDArray[np.float64],
            target: npt.NDArray[np.float64] = target,
            weight: npt.NDArray[np.float64] = weight,
        ) -> tuple[float, npt.NDArray[np.float64]]:
            w, b = params[:-1], params[-1]
            z = matrix @ w + b
            error = (sigmoid(z) - target) * weight
            value = float(weight @ (np.logaddexp(0.0, z) - target * z) + decay * (w @ w))
            return value, np.append(matrix.T @ error + 2 * decay * w, error.sum())

        found = optimize.minimize(
            loss, np.zeros(pieces_module.BUCKETS + 1), jac=True, method="L-BFGS-B", options={"maxiter": 300}
        )
        weights[label], bias[label] = found.x[:-1], found.x[-1]
    return weights, bias


def choose_scales(
    scores: WindowScores,
    y: npt.NDArray[np.bool_],
    benign: npt.NDArray[np.bool_],
    tricky: npt.NDArray[np.bool_],
    trusted: npt.NDArray[np.bool_],
) -> npt.NDArray[np.float64]:
    """Per label, how much of the word-pieces model's output joins the network's: of
    `PIECE_SCALES`, the one whose `medium` (`choose_thresholds`, within the budget of look-alikes
    and everyday texts) blocks the most of dev's texts with that label; a larger share only when
    it blocks at least 0.5 % more, so that a label the words do not help keeps the network alone."""
    chosen = np.zeros(y.shape[1])
    for i, label in enumerate(LABELS[: y.shape[1]]):
        judged = ~trusted if label == "jailbreak" else np.ones(len(y), dtype=bool)
        best = -1.0
        for share in PIECE_SCALES:
            scale = np.zeros(y.shape[1])
            scale[i] = share
            raw = scores.raw(scale)[:, i]
            a, b = fit_platt(raw, y[:, i])
            p = sigmoid(raw * a + b).astype(np.float64)[judged]
            _, medium, _ = choose_thresholds(p, y[judged, i], benign[judged], tricky[judged])
            recall = float((p[y[judged, i]] >= medium).mean())
            if within_budget(p, medium, benign[judged], tricky[judged]) and recall > best + 0.005:
                chosen[i], best = share, recall
    return chosen


def train(
    encoder: SentenceEncoder,
    corpus: Sequence[Row],
    seed: int = SEED,
    answers: Sequence[Row] = (),
    seeds: int = SEEDS,
    *,
    exemplars: bool = True,
    select: Callable[[str], bool] | None = None,
    outputs: bool = True,
    margin: float = RECALL_MARGIN,
    penalize_windows: bool = False,
) -> tuple[Heads, dict[str, object]]:
    """The heads trained on `corpus` (see the module docstring); with `exemplars`, the training
    texts (not their variants) ship as exemplars beside the network. With `select`, the heads
    judge only the windows it keeps (in the prompts' ensemble the multilingual member judges the
    windows not in English and the semantic classifier the others): they are calibrated and their
    thresholds chosen on the dev texts with such a window, scored on those windows alone. With
    `outputs`, they also get completions' thresholds, chosen on whole dev texts and answers as
    completions are judged. `margin`: `choose_thresholds`'s. With `penalize_windows` (a prompts'
    reader), the prompts' thresholds are chosen with a `window_penalty` (`choose_penalty`); the
    completions' thresholds are chosen on scores without it, as completions are judged."""
    corpus, answers = as_read(corpus), as_read(answers)
    train_rows = [r for r in corpus if r.split == "train"]
    fit_rows = augment(train_rows, seed) + answer_windows(answers) + benign_windows(train_rows)
    dev = [r for r in corpus if r.split == "dev" and (select is None or any_window(r.text, select))]
    dev_answers = [r for r in answers if r.split == "dev"]
    x = encode(encoder, [r.text for r in fit_rows])
    # One BLAS thread: a pool's split of each product changes the order of the sums, so the last
    # bits, from one run to the next.
    with threadpool_limits(limits=1, user_api="blas"):
        y = targets(fit_rows)
        network = Network.averaged(
            [fit_network(x, y, hidden=HIDDEN, epochs=EPOCHS, seed=seed + k) for k in range(seeds)]
        )
        # `augment` keeps the training rows first, in order: their vectors are the exemplars'.
        memory = Exemplars.fit(x[: len(train_rows)], y[: len(train_rows)]) if exemplars else None
        scorer = Scorer(network, memory, EXEMPLAR_SHARE if exemplars else 0.0)
        pieces = fit_pieces(WordPieces().ids([r.text for r in fit_rows]), y)
        dev_y = targets(dev)
        benign = np.array([r.kind != "harmful" for r in dev])
        tricky = np.array([r.kind == "benign_tricky" for r in dev])
        trusted = np.array([r.role == "system" for r in dev])
        dev_scores = window_scores(encoder, scorer, [[r.text] for r in dev], pieces, select=select)
        scale = choose_scales(dev_scores, dev_y, benign, tricky, trusted)
        raw = dev_scores.raw(scale)
    calibration = np.zeros((len(LABELS), 2))
    probabilities = np.zeros((len(dev), len(LABELS)))
    judged = np.ones((len(dev), len(LABELS)), dtype=bool)
    for i in range(len(LABELS)):
        calibration[i] = fit_platt(raw[:, i], dev_y[:, i])
        probabilities[:, i] = sigmoid(raw[:, i] * calibration[i, 0] + calibration[i, 1])
        if LABELS[i] == "jailbreak":
            judged[:, i] = ~trusted
    windows_of = np.array([len(m) for m in dev_scores.members], np.intp)
    penalties = WINDOW_PENALTIES if penalize_windows else (0.0,)
    penalty, thresholds = choose_penalty(
        probabilities, windows_of, dev_y, judged, benign, tricky, margin, penalties
    )
    output_thresholds = None
    if outputs:
        with threadpool_limits(limits=1, user_api="blas"):
            raw_out = completion_scores(encoder, scorer, [r.text for r in [*dev, *dev_answers]], pieces).raw(
                scale
            )
        output_thresholds = completions_thresholds(raw_out, calibration, thresholds, dev, dev_answers)
    heads = Heads(
        encoder=encoder.name,
        labels=LABELS,
        weights=network.weights.astype(np.float32),
        bias=network.bias.astype(np.float32),
        calibration=calibration.astype(np.float32),
        thresholds=thresholds.astype(np.float32),
        hidden_weights=network.hidden_weights.astype(np.float32),
        hidden_bias=network.hidden_bias.astype(np.float32),
        output_thresholds=output_thresholds,
        piece_weights=pieces[0].astype(np.float32),
        piece_bias=pieces[1].astype(np.float32),
        piece_scale=scale.astype(np.float32),
        exemplars=memory,
        exemplar_share=np.full(len(LABELS), EXEMPLAR_SHARE, np.float32) if memory is not None else None,
        window_penalty=penalty,
    )
    return heads, {"fit_rows": len(fit_rows), "dev_rows": len(dev), "dev_answers": len(dev_answers)}


def load_encoder(
    name: str,
    layers: int = LAYERS,
    max_pool: bool = MAX_POOL,
    earlier: int | None = EARLIER,
    fused: bool = FUSED,
) -> SentenceEncoder:
    if name == "static":
        return StaticEncoder.load()
    if name == "multilingual":
        return MultilingualEncoder.load()
    if name == "e5":
        return E5Encoder.load(workers=2)
    return MiniLMEncoder.load(layers=layers, max_pool=max_pool, earlier=earlier, fused=fused)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--encoder", choices=("minilm", "static", "multilingual", "e5"), default="minilm")
    parser.add_argument("--layers", type=int, default=LAYERS, help="MiniLM layers kept (1 to 6)")
    parser.add_argument("--completions", action="store_true", help="the completions' heads")
    parser.add_argument(
        "--multilingual",
        action="store_true",
        help="the multilingual member's heads: the multilingual encoder, judging windows not in English",
    )
    parser.add_argument(
        "--other-languages",
        action="store_true",
        help="the other-languages member's heads: multilingual-e5-small, judging windows in other languages",
    )
    parser.add_argument("--out", type=Path, help="default: the shipped heads file of that side")
    parser.add_argument("--corpus", type=Path, default=CORPUS, help="default: the committed corpus")
    parser.add_argument("--max-pool", action="store_true", help="MiniLM vectors: mean and maximum")
    parser.add_argument("--unfused", action="store_true", help="MiniLM as exported (attention not fused)")
    parser.add_argument("--seeds", type=int, default=SEEDS, help="average networks of this many seeds")
    parser.add_argument(
        "--earlier", type=int, default=EARLIER, help="MiniLM vectors: also this layer's mean (0: none)"
    )
    args = parser.parse_args()
    if (why := other_kernels()) is not None:
        print(f"note: {why}")
    name = "multilingual" if args.multilingual else "e5" if args.other_languages else args.encoder
    encoder = load_encoder(name, args.layers, args.max_pool, args.earlier or None, not args.unfused)
    corpus = for_completions(load_corpus(args.corpus)) if args.completions else load_corpus(args.corpus)
    gate = LanguageGate.load()
    heads, info = train(
        encoder,
        corpus,
        answers=load_answers(),
        seeds=args.seeds,
        exemplars=not args.completions,
        select=(
            None
            if args.completions
            else gate.multilingual
            if args.multilingual
            else gate.other_language
            if args.other_languages
            else gate.english
        ),
        outputs=not (args.multilingual or args.other_languages),
        margin=RECALL_MARGIN if args.completions else 0.0,
        penalize_windows=not args.completions,
    )
    default = (
        MULTILINGUAL_HEADS_FILE
        if args.multilingual
        else OTHER_LANGUAGES_HEADS_FILE
        if args.other_languages
        else HEADS_FILE
    )
    args.out = args.out or (OUTPUT_HEADS_FILE if args.completions else default)
    heads.save(args.out)
    outputs = heads.output_thresholds
    also = (
        "" if outputs is None else f", completions' thresholds also on {info['dev_answers']} sampled answers"
    )
    print(f"trained on {info['fit_rows']} texts (with variants), on dev {info['dev_rows']} texts{also}")
    for i, (label, levels, (a, b)) in enumerate(
        zip(heads.labels, heads.thresholds, heads.calibration, strict=True)
    ):
        low, medium, high = (float(t) for t in levels)
        levels_text = f"low≥{low:.3f} medium≥{medium:.2f} high≥{high:.2f}"
        outputs_text = "" if outputs is None else f"completions medium≥{outputs[i][1]:.2f}"
        print(f"{label:10} calibration a={a:.3f} b={b:.3f}  {levels_text}  {outputs_text}")
    if heads.piece_scale is not None:
        print("word pieces' share:", ", ".join(f"{x:g}" for x in heads.piece_scale))
    print(f"window penalty: {heads.window_penalty:g}")
    print(f"wrote {args.out}")
