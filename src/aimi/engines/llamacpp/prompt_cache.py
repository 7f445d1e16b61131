"""The prompt cache beyond the slots: copies of sequence states in host memory, found by token prefix.

A slot keeps the KV cells of its last sequence, so the next request with the same beginning skips
evaluating it. When the slot goes to another request, those cells would be lost, and with more users
than slots a returning conversation would be evaluated again from its first token. So before a slot's
cells are dropped, the engine copies the sequence's state here (llama.cpp's sequence state: every cell
of every layer, about 23 KB a token for SmolLM2-135M), and a later request whose prompt starts with
the same tokens restores it into its slot and evaluates only the rest. Restoring 1,024 tokens takes
about 2-18 ms and evaluating them about 2 s on two cores, so any prefix over `MIN_RESTORE` tokens is
worth restoring.

Entries are indexed by a hash of their first `BLOCK` tokens (a prompt shorter than that is not worth
a copy), compared token by token only within that bucket, and evicted least recently used once the
bytes exceed the bound. An entry whose tokens are a prefix of a newer one is dropped for it.
"""

from __future__ import annotations

import ctypes
from collections import OrderedDict
from dataclasses import dataclass

BLOCK = 32
"""Tokens hashed to find the entries a prompt may share a prefix with; also the fewest worth saving."""
MIN_RESTORE = 32
"""Fewest more tokens (than the slot would keep anyway) that make a restore worth its copy."""


@dataclass(eq=False)
class Entry:
    """One saved sequence: its tokens and its state as llama.cpp serialises it."""

    tokens: list[int]
    state: ctypes.Array[ctypes.c_uint8]

    @property
    def size(self) -> int:
        return len(self.state)


@dataclass
class CacheStats:
    entries: int = 0
    bytes: int = 0
    saved: int = 0
    restored: int = 0
    evicted: int = 0


class PromptCache:
    """Saved sequence states, at most `limit_bytes` of them (see the module docstring)."""

    def __init__(self, limit_bytes: int) -> None:
        self.limit_bytes = limit_bytes
        self._buckets: dict[int, list[Entry]] = {}
        self._lru: OrderedDict[int, Entry] = OrderedDict()  # id(entry) -> entry, oldest first
        self.stats = CacheStats()

    def longest(self, prompt: list[int]) -> tuple[Entry | None, int]:
        """The entry sharing the longest prefix with `prompt`, and how many tokens it shares."""
        if len(prompt) < BLOCK:
            return None, 0
        best: Entry | None = None
        shared = 0
        for entry in self._buckets.get(_key(prompt), ()):
            n = common_prefix(entry.tokens, prompt)
            if n > shared:
                best, shared = entry, n
        return best, shared

    def covers(self, tokens: list[int]) -> bool:
        """Whether an entry already holds all of `tokens` (saving them again would add nothing)."""
        entry, n = self.longest(tokens)
        return entry is not None and n == len(tokens)

    def used(self, entry: Entry) -> None:
        self._lru.move_to_end(id(entry))
        self.stats.restored += 1

    def put(self, tokens: list[int], state: ctypes.Array[ctypes.c_uint8]) -> bool:
        """Keep a sequence's state; False when it alone is over the bound."""
        if len(tokens) < BLOCK or len(state) > self.limit_bytes:
            return False
        entry = Entry(list(tokens), state)
        key = _key(tokens)
        for old in [
            e for e in self._buckets.get(key, ()) if common_prefix(e.tokens, tokens) == len(e.tokens)
        ]:
            self._drop(old)  # the new entry holds all of it and more
        self._buckets.setdefault(key, []).append(entry)
        self._lru[id(entry)] = entry
        self.stats.bytes += entry.size
        self.stats.entries += 1
        self.stats.saved += 1
        while self.stats.bytes > self.limit_bytes:
            oldest = next(iter(self._lru.values()))
            self._drop(oldest)
            self.stats.evicted += 1
        return True

    def _drop(self, entry: Entry) -> None:
        key = _key(entry.tokens)
        bucket = self._buckets[key]
        bucket.remove(entry)
        if not bucket:
            del self._buckets[key]
        del self._lru[id(entry)]
        self.stats.bytes -= entry.size
        self.stats.entries -= 1


def _key(tokens: list[int]) -> int:
    return hash(tuple(tokens[:BLOCK]))


def common_prefix(a: list[int], b: list[int]) -> int:
    """How many leading tokens `a` and `b` share. Admission compares a prompt with every slot's
    cache between two decode steps, so the comparing is done by list slices (in C), halving the
    range, rather than a token at a time in Python."""
    n = min(len(a), len(b))
    if a[:n] == b[:n]:
        return n
    lo, hi = 0, n  # a[:lo] == b[:lo] and a[:hi] != b[:hi]
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if a[lo:mid] == b[lo:mid]:
            lo = mid
        else:
            hi = mid
    return lo
