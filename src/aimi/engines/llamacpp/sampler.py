"""Per-sequence sampling: a native llama.cpp sampler chain built from `Sampling`, plus logprobs."""

from __future__ import annotations

import random
from typing import Any

import llama_cpp as ll
import numpy as np

from aimi.engines.base import Sampling, TokenLogprob
from aimi.engines.llamacpp.model import LlamaModel

_DEFAULT_SEED = 0xFFFFFFFF  # llama.cpp reads this as "pick a random seed"


def native_seed(seed: int | None) -> int:
    """Map any int64 seed onto llama.cpp's uint32 seeds, avoiding the 'random' sentinel."""
    if seed is None:
        return random.getrandbits(31)
    return seed % _DEFAULT_SEED


class Sampler:
    """A sampler chain for one sequence; `sample` samples and accepts in one call."""

    def __init__(self, model: LlamaModel, sampling: Sampling, *, max_tokens: int) -> None:
        params = ll.llama_sampler_chain_default_params()
        params.no_perf = True
        self.ptr: Any = ll.llama_sampler_chain_init(params)
        add = lambda s: ll.llama_sampler_chain_add(self.ptr, s)  # noqa: E731
        if sampling.ignore_eos and model.eog_tokens:
            biases = (ll.llama_logit_bias * len(model.eog_tokens))()
            for i, token in enumerate(sorted(model.eog_tokens)):
                biases[i] = ll.llama_logit_bias(token, float("-inf"))
            add(ll.llama_sampler_init_logit_bias(model.n_vocab, len(model.eog_tokens), biases))
        if sampling.presence_penalty or sampling.frequency_penalty:
            # Only generated tokens are accepted into the chain, so like OpenAI's penalties these
            # count the completion, not the prompt.
            window = max(1, min(max_tokens, 8192))
            add(
                ll.llama_sampler_init_penalties(
                    window, 1.0, sampling.frequency_penalty, sampling.presence_penalty
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

    def sample(self, ctx: Any, index: int) -> int:
        return int(ll.llama_sampler_sample(self.ptr, ctx, index))

    def close(self) -> None:
        if self.ptr is not None:
            ll.llama_sampler_free(self.ptr)
            self.ptr = None


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
