"""Jump-forward: the text a grammar leaves no choice about, appended without sampling it.

Where a JSON schema or tool grammar allows only one continuation (a key's name, a function name,
`<tool_call>`), sampling it token by token spends a decode step on each token for nothing. The
grammar is asked instead, character by character: llama.cpp's grammar sampler is applied to one
token per byte value (every byte a token of the vocabulary can start with has a single-byte token in
a byte-level vocabulary), on a copy of the grammar's state (`llama_sampler_clone`). While exactly one
byte is allowed, and not the end of generation, that byte is forced; the forced bytes are the
*forced text*.

The forced text is then tokenized as the tokenizer would, together with the last generated tokens
(`canonical_tokens`): what is appended is the canonical tokenization of that text, not whatever
pieces the walk happened to use. Its end is held back where the text that follows could merge with
it (`name"` before `:` is `name` + `":`), so the model still writes that seam itself.

A probe costs ~30 us on SmolLM2's vocabulary and a forced byte ~70 us; a decode step costs 7 ms
(one sequence) to 30 ms (eight) on the 2-core machine, so detection always pays where a grammar is
active (it is skipped where none is: no grammar, or a lazy grammar waiting for its trigger).
"""

from __future__ import annotations

import ctypes
import time
from dataclasses import dataclass
from typing import Any

import llama_cpp as ll
import numpy as np

from aimi.engines.llamacpp.model import LlamaModel

MAX_FORCED_BYTES = 256
"""The most bytes one jump walks (a long `const` is appended over several steps)."""
MAX_WALK_SECONDS = 0.02
"""The longest one walk may take (a grammar with many parses alive makes every probe slow); the
bytes found by then are appended, the rest waits for the next step."""
MAX_JUMP_TOKENS = 32
"""The most tokens one jump appends (they share the batch with other sequences' tokens)."""
CONTEXT_TOKENS = 3
"""Generated tokens tokenized together with the forced text, to see how it joins them."""
MAX_SEAM_PROBES = 4
"""Continuations tried after the forced text to find where its tokenization is settled."""


@dataclass(frozen=True)
class ByteTokens:
    """One single-byte token per byte value, as far as the vocabulary has them."""

    ids: np.ndarray
    """Token ids, one per probed byte value."""
    values: bytes
    """The byte each of `ids` stands for."""
    complete: bool
    """Every byte a token of the vocabulary starts with has one here: a probe sees every next byte
    the model could write, so a byte found forced is forced."""


def byte_tokens(model: LlamaModel) -> ByteTokens:
    """The model's single-byte tokens, as a probe needs them."""
    single, complete = model.byte_tokens()
    values = bytes(sorted(single))
    ids = np.array([single[b] for b in values], dtype=np.int32)
    return ByteTokens(ids=ids, values=values, complete=complete)


@dataclass(frozen=True)
class Jump:
    """What one jump appended (already accepted by the grammar), and whether the grammar allows
    nothing but the end of generation after it."""

    tokens: tuple[int, ...] = ()
    end: bool = False


NO_JUMP = Jump()


@dataclass(frozen=True)
class Allowed:
    """What a grammar allows next: these bytes, and the end of generation or not. A quick probe
    (`whole=False`) stopped at the first two bytes it found allowed: enough to know nothing is forced,
    and `end` was not asked."""

    values: bytes
    end: bool
    whole: bool = True

    @property
    def forced(self) -> int | None:
        return self.values[0] if len(self.values) == 1 and not self.end and self.whole else None


QUICK_BYTES = b' "\n,:{}[]<0123456789-aeinorstlu'
"""Bytes tried first: where a grammar leaves a choice, two of these are usually allowed (a space and
a quote, letters inside a string, digits), and a probe of ~30 tokens says so for a tenth of the cost."""


class _Probe:
    """A `llama_token_data_array` over some token ids, applied to a grammar at once."""

    def __init__(self, ids: np.ndarray) -> None:
        self.ids = ids
        self.data = np.zeros(len(ids), dtype=[("id", "<i4"), ("logit", "<f4"), ("p", "<f4")])
        data = self.data.ctypes.data_as(ll.llama_token_data_p)
        self.array = ll.llama_token_data_array(data=data, size=len(ids), selected=-1, sorted=False)
        self.ref = ctypes.byref(self.array)

    def __call__(self, grammar: Any) -> np.ndarray:
        """Which of the ids the grammar allows."""
        self.data["id"] = self.ids
        self.data["logit"] = 0.0
        self.array.size = len(self.ids)
        self.array.selected = -1
        self.array.sorted = False
        ll.llama_sampler_apply(grammar, self.ref)
        ok: np.ndarray = np.isfinite(self.data["logit"])
        return ok


class Prober:
    """Applies a grammar sampler to the single-byte tokens (and one end-of-generation token)."""

    def __init__(self, model: LlamaModel, table: ByteTokens) -> None:
        eog = sorted(model.eog_tokens)[:1]
        self._values = np.frombuffer(table.values, dtype=np.uint8)
        self._has_end = bool(eog)
        self._every = _Probe(np.concatenate([table.ids, np.array(eog, dtype=np.int32)]))
        self._token_of: dict[int, int] = dict(zip(table.values, table.ids.tolist(), strict=True))
        quick = bytes(b for b in QUICK_BYTES if b in self._token_of)
        self._quick_values = np.frombuffer(quick, dtype=np.uint8)
        self._quick = _Probe(np.array([self._token_of[b] for b in quick], dtype=np.int32))

    def token_of(self, value: int) -> int:
        return self._token_of[value]

    def allowed(self, grammar: Any, *, quick: bool = True) -> Allowed:
        """What `grammar` allows next; `quick`: try the common bytes first (where the last byte
        was forced, the next one usually is too, and the quick probe would only add its cost)."""
        if quick:
            ok = self._quick(grammar)
            if np.count_nonzero(ok) >= 2:
                return Allowed(self._quick_values[ok].tobytes(), end=False, whole=False)
        ok = self._every(grammar)
        n = len(self._values)
        return Allowed(self._values[ok[:n]].tobytes(), self._has_end and bool(ok[n]))


def forced_text(prober: Prober, grammar: Any) -> tuple[bytes, Allowed]:
    """The bytes `grammar` forces from its current state, and what it allows after them. The
    grammar itself is left as it was (the walk runs on a clone)."""
    allowed = prober.allowed(grammar)
    if allowed.forced is None:
        return b"", allowed
    clone = ll.llama_sampler_clone(grammar)
    deadline = time.perf_counter() + MAX_WALK_SECONDS
    try:
        out = bytearray()
        while (value := allowed.forced) is not None and len(out) < MAX_FORCED_BYTES:
            if out and time.perf_counter() > deadline:  # an ambiguous grammar: what was found stands
                allowed = Allowed(b"", end=False, whole=False)
                break
            out.append(value)
            ll.llama_sampler_accept(clone, prober.token_of(value))
            allowed = prober.allowed(clone, quick=False)
        return bytes(out), allowed
    finally:
        ll.llama_sampler_free(clone)


def canonical_tokens(model: LlamaModel, context: list[int], forced: bytes, after: Allowed) -> list[int]:
    """The tokens to append for `forced` after the generated `context`: the forced text's tokens
    when it is tokenized together with the end of the context, as far as no continuation `after`
    allows would tokenize it otherwise. Empty when the text does not join the context cleanly (its
    last token would merge with the forced text) or is not whole UTF-8."""
    text = _whole_utf8(forced)
    if not text:
        return []
    # The last few tokens as context (a pre-token may span them); if the model wrote those in a way
    # the tokenizer would not, the last one alone.
    for n in dict.fromkeys((min(CONTEXT_TOKENS, len(context)), min(1, len(context)))):
        found = _joined(model, context[len(context) - n :], text, after)
        if found is not None:
            return found
    return []


def _joined(model: LlamaModel, base: list[int], text: bytes, after: Allowed) -> list[int] | None:
    """`_within` the tokenization of `base` + `text` + each continuation, in common; None when the
    tokenizer would not keep `base` as it is."""
    try:
        whole = (b"".join(model.piece(t) for t in base) + text).decode("utf-8")
    except UnicodeDecodeError:
        return None
    common: list[int] | None = None
    for tail in _seam_probes(after):
        tokens = model.tokens_of(whole + tail)
        if list(tokens[: len(base)]) != base:
            return None  # the context's last token would merge with the forced text
        inside = _within(model, tokens[len(base) :], text)
        common = inside if common is None else _common(common, inside)
        if not common:
            return []
    return common or []


def _whole_utf8(data: bytes) -> bytes:
    """`data` cut back to its last whole UTF-8 character (a forced run may end inside one)."""
    for cut in range(len(data), max(-1, len(data) - 4), -1):
        try:
            data[:cut].decode("utf-8")
        except UnicodeDecodeError:
            continue
        return data[:cut]
    return b""


def _seam_probes(after: Allowed) -> list[str]:
    """A few of the texts that may follow the forced text: each allowed ASCII character when there
    are few, else one of each kind (letter, digit, space, quote, other punctuation)."""
    chars = [chr(b) for b in after.values if b < 0x80]
    if len(chars) > MAX_SEAM_PROBES:
        kinds = (str.isalpha, str.isspace, lambda c: c == '"', lambda c: not c.isalnum())
        picked: list[str] = []
        for kind in kinds:
            hit = next((c for c in chars if kind(c) and c not in picked), None)
            if hit is not None:
                picked.append(hit)
        chars = picked
    probes = chars
    if after.end or not probes or any(b >= 0x80 for b in after.values):
        probes = [*probes, ""]
    return probes


def _within(model: LlamaModel, tokens: tuple[int, ...], text: bytes) -> list[int]:
    """The leading `tokens` that spell a prefix of `text`, each whole."""
    out: list[int] = []
    at = 0
    for token in tokens:
        piece = model.piece(token)
        if not piece or text[at : at + len(piece)] != piece:
            break
        out.append(token)
        at += len(piece)
    return out


def _common(a: list[int], b: list[int]) -> list[int]:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return a[:n]
