"""Checks of GBNF grammars against llama.cpp's own grammar engine, with the embedded model's vocabulary."""

from __future__ import annotations

import ctypes

import llama_cpp as ll

from aimi.engines.llamacpp.model import LlamaModel


def compiles(model: LlamaModel, gbnf: str) -> bool:
    """Whether llama.cpp builds a grammar from `gbnf` (only for grammars known to be bounded: an
    unbounded one may take the process down, which is what the tests of the bounds are about)."""
    sampler = ll.llama_sampler_init_grammar(model.vocab, gbnf.encode(), b"root")
    if not sampler:
        return False
    ll.llama_sampler_free(sampler)
    return True


def accepts(model: LlamaModel, gbnf: str, text: str) -> bool:
    """Whether the grammar allows exactly `text`, token by token, and then the end of the output."""
    sampler = ll.llama_sampler_init_grammar(model.vocab, gbnf.encode(), b"root")
    assert sampler, "the grammar does not compile"
    try:
        for token in [*model.tokenize(text, add_bos=False, special=False), None]:
            candidate = ll.llama_vocab_eos(model.vocab) if token is None else token
            data = (ll.llama_token_data * 1)(ll.llama_token_data(candidate, 0.0, 0.0))
            array = ll.llama_token_data_array(data=data, size=1, selected=-1, sorted=False)
            ll.llama_sampler_apply(sampler, ctypes.byref(array))
            if data[0].logit == float("-inf"):
                return False
            if token is None:
                return True
            ll.llama_sampler_accept(sampler, token)
        return True
    finally:
        ll.llama_sampler_free(sampler)
