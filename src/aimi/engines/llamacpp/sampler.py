"""Per-sequence sampling: a draw from the logits, an optional grammar, and logprobs.

The common case (no grammar, no penalties, no top-k) is drawn with numpy (`Draw`): greedy, or
temperature, then top-p, then a seeded draw. llama.cpp's native chain spends ~0.4 ms of scalar
`expf` and sorting per token on a 49k vocabulary; vectorized it is a tenth of that, and a decode step
of 8 sequences waits for all of their samples.

Everything else runs a native llama.cpp sampler chain, following llama.cpp's own `common_sampler`:
the chain picks a token from the full logits, and only that one token is checked against the
grammar; the grammar is applied to the whole vocabulary (and the chain run again) only when the
pick is rejected. A grammar therefore costs almost nothing per token, unlike applying it to ~50k
candidates every step.

llama.cpp must be handed only grammars it can digest: it parses GBNF recursively (a C stack frame
per nested group), and it aborts the process when a token is accepted that the grammar has no room
for. So a grammar is bounded before it is parsed (`check_gbnf`), a step whose grammar admits no token
ends the sequence instead of accepting one, and so does a grammar that grows too costly to match
(an ambiguous grammar can keep exponentially many parses alive). A lazy grammar gets the same care
where its trigger appears: llama.cpp replays the text from the trigger on through the grammar, and a
token that completes the trigger and goes on with text the grammar rejects (`>.` closing
`<tool_call>`) would abort the process; such a token is not drawn.
"""

from __future__ import annotations

import ctypes
import itertools
import random
import re
import time
from collections.abc import Callable
from typing import Any

import llama_cpp as ll
import numpy as np

from aimi.engines.base import Grammar, Sampling, TokenLogprob
from aimi.engines.llamacpp.jump import (
    MAX_JUMP_TOKENS,
    NO_JUMP,
    Jump,
    Prober,
    byte_tokens,
    canonical_tokens,
    forced_text,
)
from aimi.engines.llamacpp.model import LlamaModel
from aimi.errors import InvalidRequest

_DEFAULT_SEED = 0xFFFFFFFF  # llama.cpp reads this as "pick a random seed"
MAX_GBNF_CHARS = 2 * 1024 * 1024
"""One grammar's text; the schemas a request may send stay well below (docs/api.md)."""
MAX_GBNF_NESTING = 2_048
"""Groups inside groups: llama.cpp's parser recurses once per level (about 0.5 KiB of stack)."""
MAX_GRAMMAR_STEP_SECONDS = 0.5
"""Matching one token against the grammar; beyond it the sequence ends rather than stall the batch
(the default of `Sampler(max_step_s=...)`)."""
# What does not count as nesting: literals, character classes, comments.
_GBNF_OPAQUE = re.compile(r'"(?:[^"\\]|\\.)*"|\[(?:[^\]\\]|\\.)*\]|#[^\n]*')
_NOT_A_PAREN = re.compile(r"[^()]+")
# `llama_token_data`: {int32 id; float logit; float p}
_TOKEN_DATA = np.dtype([("id", "<i4"), ("logit", "<f4"), ("p", "<f4")])
assert _TOKEN_DATA.itemsize == ctypes.sizeof(ll.llama_token_data)


def native_seed(seed: int | None) -> int:
    """Map any int64 seed onto llama.cpp's uint32 seeds, avoiding the 'random' sentinel."""
    if seed is None:
        return random.getrandbits(31)
    return seed % _DEFAULT_SEED


class _Candidates:
    """A reusable `llama_token_data_array` over a numpy buffer."""

    def __init__(self, size: int) -> None:
        self.ids = np.arange(size, dtype=np.int32)
        self.data = np.zeros(size, dtype=_TOKEN_DATA)
        self.array = ll.llama_token_data_array(
            data=self.data.ctypes.data_as(ll.llama_token_data_p), size=size, selected=-1, sorted=False
        )
        self.ref = ctypes.byref(self.array)

    def fill(self, logits: np.ndarray) -> None:
        self.data["id"] = self.ids
        self.data["logit"] = logits
        self.data["p"] = 0.0
        self.array.size = len(self.ids)
        self.array.selected = -1
        self.array.sorted = False

    def selected(self) -> int:
        return int(self.data["id"][self.array.selected])


class Draw:
    """Greedy, or temperature then top-p then a seeded draw, over one row of logits, in numpy.

    Temperature comes before top-p, as in Hugging Face transformers and vLLM: the nucleus is taken
    from the distribution the token is drawn from. Top-p is exact without sorting the vocabulary:
    tokens below `(1 - top_p) / n_vocab` of the total mass hold less than `1 - top_p` of it all
    together, so the nucleus lies among the tokens above that line, and only those are sorted."""

    def __init__(self, n_vocab: int, sampling: Sampling, *, banned: frozenset[int] = frozenset()) -> None:
        self._banned = np.array(sorted(banned), dtype=np.intp)
        self._greedy = sampling.greedy
        self._inverse_temperature = 0.0 if sampling.greedy else 1.0 / sampling.temperature
        self._top_p = sampling.top_p
        self._floor = (1.0 - sampling.top_p) / n_vocab
        seed = sampling.seed
        self._rng = np.random.default_rng(None if seed is None else seed % 2**64)
        # One scratch row for the whole generation rather than a fresh vocabulary-sized array
        # (an mmap and munmap for glibc at this size) every token.
        self._row = np.empty(0 if sampling.greedy else n_vocab, dtype=np.float32)

    @staticmethod
    def handles(sampling: Sampling, grammar: Grammar | None) -> bool:
        return grammar is None and not (
            sampling.top_k or sampling.presence_penalty or sampling.frequency_penalty
        )

    def __call__(self, logits: np.ndarray) -> int:
        banned = self._banned
        if self._greedy:
            token = int(logits.argmax())
            if banned.size and token in banned:
                row = logits.copy()
                row[banned] = -np.inf
                token = int(row.argmax())
            return token
        z = np.multiply(logits, np.float32(self._inverse_temperature), out=self._row)
        if banned.size:
            z[banned] = -np.inf
        z -= z.max()
        p = np.exp(z, out=z)
        if self._top_p >= 1.0:
            return _inverse_cdf(p, self._rng.random())
        total = float(p.sum(dtype=np.float64))
        candidates = self._nucleus_candidates(p, total)
        nucleus = candidates[np.argsort(-p[candidates], kind="stable")]
        mass = np.cumsum(p[nucleus], dtype=np.float64)
        size = min(int(np.searchsorted(mass, self._top_p * total)) + 1, len(nucleus))
        return int(nucleus[_inverse_cdf(p[nucleus[:size]], self._rng.random())])

    def _nucleus_candidates(self, p: np.ndarray, total: float) -> np.ndarray:
        """Tokens among which the nucleus lies, as few as can be found cheaply. The tokens at or
        above a line hold the nucleus whenever they hold `top_p` of the mass together (every token
        below the line comes after all of them in the sorted order), so lines just under the top
        (the largest weight is 1) are tried first: a small model's long tail would otherwise put
        the whole vocabulary above `(1 - top_p) / n_vocab` and into the sort."""
        target = self._top_p * total
        for line in _LINES:
            candidates = np.flatnonzero(p >= line)
            if float(p[candidates].sum(dtype=np.float64)) >= target:
                return candidates
        return np.flatnonzero(p >= self._floor * total)


_LINES = (1e-2, 1e-3, 1e-4)
"""Weights, relative to the largest, tried in turn as the line above which the nucleus lies."""

_BLOCK = 256


def _inverse_cdf(weights: np.ndarray, u: float) -> int:
    """The index that `u` in [0, 1) falls on when `weights` (not all zero) are laid end to end.
    Through block sums: a cumulative sum over a whole 49k vocabulary costs more than the rest."""
    n = len(weights)
    if n <= _BLOCK:
        return _pick(weights, u * float(weights.sum(dtype=np.float64)))
    whole = n // _BLOCK * _BLOCK
    blocks = weights[:whole].reshape(-1, _BLOCK).sum(axis=1, dtype=np.float64)
    if whole < n:
        blocks = np.append(blocks, weights[whole:].sum(dtype=np.float64))
    cum = np.cumsum(blocks)
    target = u * cum[-1]
    block = _pick(blocks, target, cum)
    start = block * _BLOCK
    before = cum[block - 1] if block else 0.0
    return start + _pick(weights[start : start + _BLOCK], target - before)


def _pick(weights: np.ndarray, target: float, cum: np.ndarray | None = None) -> int:
    """The first index whose cumulative weight exceeds `target`: never one of weight zero, also
    when rounding puts `target` at the very end."""
    if cum is None:
        cum = np.cumsum(weights, dtype=np.float64)
    i = int(np.searchsorted(cum, target, side="right"))
    return i if i < len(weights) else int(np.flatnonzero(weights)[-1])


def check_gbnf(grammar: Grammar) -> bytes:
    """The grammar's text for llama.cpp; InvalidRequest when it is over a limit or unreadable."""
    gbnf = grammar.gbnf
    if len(gbnf) > MAX_GBNF_CHARS:
        raise InvalidRequest(
            f"The output constraint's grammar is {len(gbnf):,} characters long, more than {MAX_GBNF_CHARS:,}."
        )
    try:
        text = gbnf.encode()
    except UnicodeEncodeError as exc:
        raise InvalidRequest(f"The output constraint's grammar is not valid text: {exc}.") from exc
    if b"\0" in text:
        raise InvalidRequest("The output constraint's grammar contains a NUL character.")
    parens = _NOT_A_PAREN.sub("", _GBNF_OPAQUE.sub("", gbnf))
    nesting = max(itertools.accumulate(1 if c == "(" else -1 for c in parens), default=0)
    if nesting > MAX_GBNF_NESTING:
        raise InvalidRequest(
            f"The output constraint's grammar nests groups {nesting:,} deep, more than {MAX_GBNF_NESTING:,}."
        )
    return text


class Sampler:
    """Everything one sequence needs to pick its tokens. Not thread-safe: one owner at a time.

    `on_close` runs once, when the sampler is closed (the engine budgets the grammars it holds)."""

    def __init__(
        self,
        model: LlamaModel,
        sampling: Sampling,
        *,
        max_tokens: int,
        grammar: Grammar | None = None,
        on_close: Callable[[], None] | None = None,
        max_step_s: float = MAX_GRAMMAR_STEP_SECONDS,
        jump_forward: bool = False,
    ) -> None:
        """`jump_forward`: append the text the grammar forces without sampling it (`jump.py`);
        `initial` then holds what it forces before the first token."""
        self._model = model
        self._on_close = on_close
        self._max_step_s = max_step_s
        self.grammar: Any = _grammar_sampler(model, grammar) if grammar is not None else None
        banned = model.eog_tokens if sampling.ignore_eos else frozenset()
        self._draw = Draw(model.n_vocab, sampling, banned=banned) if Draw.handles(sampling, grammar) else None
        self.chain: Any = None if self._draw else _chain(model, sampling, max_tokens=max_tokens)
        # Candidate arrays (all tokens, the one picked) only for the grammar's "check the pick" path.
        self._candidates = (_Candidates(model.n_vocab), _Candidates(1)) if grammar is not None else None
        # A lazy grammar's trigger patterns, and the text generated while it waits for one of them.
        patterns = grammar.trigger_patterns if grammar is not None else ()
        self._triggers = [re.compile(p.encode()) for p in patterns]
        self._before_trigger: bytes | None = b"" if self._triggers else None
        self._ends = not sampling.ignore_eos
        self._prober: Prober | None = None
        if jump_forward and self.grammar is not None:
            table = byte_tokens(model)
            self._prober = Prober(model, table) if table.complete else None
        self.initial: Jump = NO_JUMP
        if self._prober is not None and not (grammar is not None and grammar.lazy):
            self.initial = self.jump([], max_tokens)

    def sample(self, ctx: Any, index: int) -> int:
        if self._draw is not None:
            row = ll.llama_get_logits_ith(ctx, index)
            return self._draw(np.ctypeslib.as_array(row, shape=(self._model.n_vocab,)))
        if self.grammar is None or self._candidates is None:
            # llama.cpp builds the candidates, runs the chain and accepts the pick, all in C.
            return int(ll.llama_sampler_sample(self.chain, ctx, index))
        logits = np.ctypeslib.as_array(ll.llama_get_logits_ith(ctx, index), shape=(self._model.n_vocab,))
        return self.pick(logits)

    def pick(self, logits: np.ndarray) -> int:
        """The token for one row of logits, with a grammar (the native chain, the grammar checked)."""
        assert self._candidates is not None
        every, picked = self._candidates
        every.fill(logits)
        ll.llama_sampler_apply(self.chain, every.ref)
        token = every.selected()
        picked.ids[0] = token
        picked.fill(logits[token : token + 1])
        started = time.perf_counter()
        ll.llama_sampler_apply(self.grammar, picked.ref)
        if not np.isfinite(picked.data["logit"][0]):
            every.fill(logits)
            ll.llama_sampler_apply(self.grammar, every.ref)
            if not np.isfinite(every.data["logit"]).any():
                # Accepting any token now would make llama.cpp abort the whole process.
                raise InvalidRequest("The output constraint allows no next token; the generation ends here.")
            ll.llama_sampler_apply(self.chain, every.ref)
            token = every.selected()
        if self._before_trigger is not None:
            token = self._trigger_safe(token, logits)
        ll.llama_sampler_accept(self.grammar, token)
        took = time.perf_counter() - started
        if took > self._max_step_s:
            raise InvalidRequest(
                f"Matching the output constraint took {took:.2f} s for one token, more than "
                f"{self._max_step_s:g} s; the generation ends here. Make the schema less ambiguous."
            )
        ll.llama_sampler_accept(self.chain, token)
        return token

    @property
    def jumps(self) -> bool:
        """Whether `jump` may append anything (a grammar is active and jump-forward is on)."""
        return self._prober is not None and self._before_trigger is None

    def jump(self, context: list[int], room: int) -> Jump:
        """Accept the tokens of the text the grammar forces next (at most `room`), spelled as the
        tokenizer would after the generated `context`; the caller appends them to the sequence."""
        if self._prober is None or self._before_trigger is not None or room <= 0:
            return NO_JUMP
        forced, after = forced_text(self._prober, self.grammar)
        only_end = self._ends and after.end and not after.values
        if not forced:
            return Jump((), only_end)
        tokens = canonical_tokens(self._model, context, forced, after)[: min(room, MAX_JUMP_TOKENS)]
        assert self._candidates is not None
        _, one = self._candidates
        taken: list[int] = []
        for token in tokens:
            one.ids[0] = token
            one.fill(np.zeros(1, dtype=np.float32))
            ll.llama_sampler_apply(self.grammar, one.ref)
            if not np.isfinite(one.data["logit"][0]):  # cannot happen for forced text; never abort
                break
            ll.llama_sampler_accept(self.grammar, token)
            ll.llama_sampler_accept(self.chain, token)
            taken.append(token)
        spelled = sum(len(self._model.piece(t)) for t in taken)
        return Jump(tuple(taken), only_end and spelled == len(forced))

    def _trigger_safe(self, token: int, logits: np.ndarray) -> int:
        """`token`, or, if it would complete a trigger and go on past it, the pick without it."""
        assert self._candidates is not None and self._before_trigger is not None
        every, _ = self._candidates
        excluded: list[int] = []
        while True:
            text = self._before_trigger + self._model.piece(token)
            found = next((m for m in (p.search(text) for p in self._triggers) if m), None)
            if found is None or found.end() == len(text):
                self._before_trigger = text if found is None else None  # found: the grammar takes over
                return token
            excluded.append(token)
            every.fill(logits)
            every.data["logit"][excluded] = -np.inf
            if not np.isfinite(every.data["logit"]).any():
                raise InvalidRequest("The output constraint allows no next token; the generation ends here.")
            ll.llama_sampler_apply(self.chain, every.ref)
            token = every.selected()

    def close(self) -> None:
        for ptr in (self.chain, self.grammar):
            if ptr is not None:
                ll.llama_sampler_free(ptr)
        self.chain = self.grammar = None
        on_close, self._on_close = self._on_close, None
        if on_close is not None:
            on_close()


def _chain(model: LlamaModel, sampling: Sampling, *, max_tokens: int) -> Any:
    params = ll.llama_sampler_chain_default_params()
    params.no_perf = True
    chain = ll.llama_sampler_chain_init(params)

    def add(sampler: Any) -> None:
        ll.llama_sampler_chain_add(chain, sampler)

    if sampling.ignore_eos and model.eog_tokens:
        biases = (ll.llama_logit_bias * len(model.eog_tokens))()
        for i, token in enumerate(sorted(model.eog_tokens)):
            biases[i] = ll.llama_logit_bias(token, float("-inf"))
        add(ll.llama_sampler_init_logit_bias(model.n_vocab, len(model.eog_tokens), biases))
    if sampling.presence_penalty or sampling.frequency_penalty:
        # Only generated tokens are accepted into the chain, so like OpenAI's penalties these count
        # the completion, not the prompt.
        window = max(1, min(max_tokens, 8192))
        add(
            ll.llama_sampler_init_penalties(
                model.n_vocab, window, 1.0, sampling.frequency_penalty, sampling.presence_penalty
            )
        )
    if sampling.greedy:
        add(ll.llama_sampler_init_greedy())
    else:
        if sampling.top_k > 0:
            add(ll.llama_sampler_init_top_k(sampling.top_k))
        if sampling.top_p < 1.0:
            add(ll.llama_sampler_init_top_p(sampling.top_p, 1))
        add(ll.llama_sampler_init_temp(sampling.temperature))
        add(ll.llama_sampler_init_dist(native_seed(sampling.seed)))
    return chain


def _grammar_sampler(model: LlamaModel, grammar: Grammar) -> Any:
    gbnf, root = check_gbnf(grammar), grammar.root.encode()
    if grammar.lazy:
        patterns = (ctypes.c_char_p * max(1, len(grammar.trigger_patterns)))(
            *(p.encode() for p in grammar.trigger_patterns)
        )
        tokens = (ll.llama_token * max(1, len(grammar.trigger_tokens)))(*grammar.trigger_tokens)
        ptr = ll.llama_sampler_init_grammar_lazy_patterns(
            model.vocab,
            gbnf,
            root,
            patterns,
            len(grammar.trigger_patterns),
            tokens,
            len(grammar.trigger_tokens),
        )
    else:
        ptr = ll.llama_sampler_init_grammar(model.vocab, gbnf, root)
    if not ptr:
        raise InvalidRequest("The output constraint could not be compiled into a grammar.")
    return ptr


def logprobs(
    model: LlamaModel, ctx: Any, index: int, token: int, top: int
) -> tuple[float, tuple[TokenLogprob, ...]]:
    """The model's log-probability of `token` at output `index`, and its `top` most likely tokens."""
    row = np.ctypeslib.as_array(ll.llama_get_logits_ith(ctx, index), shape=(model.n_vocab,))
    peak = float(row.max())
    lse = peak + float(np.log(np.exp(row - peak, dtype=np.float64).sum()))
    chosen = float(row[token]) - lse
    if top <= 0:
        return chosen, ()
    best = np.argpartition(row, -top)[-top:]
    best = best[np.argsort(row[best])[::-1]]
    alternatives = tuple(
        TokenLogprob(int(t), model.piece(int(t), special=True), float(row[t]) - lse) for t in best
    )
    return chosen, alternatives
