"""Who goes first: which waiting request gets a free slot, and in which order admitted prompts take
a step's prefill budget.

Both go to the request with the fewest prompt tokens left to evaluate, counting off what a slot or
the prompt cache already holds of its prompt. With more users than slots, a conversation coming back
with a short new turn then starts at once instead of queueing behind a long new prompt: its first
token comes after a fraction of a second of prefill rather than after the whole of the other's, and
it joins the decoding batch sooner (a fuller batch costs little more than an emptier one). Shortest
work first gives the lowest mean wait of any order; SGLang orders its queue the same way (longest
cached prefix first).

So that a long prompt is never starved by a stream of short ones, a request that has been overtaken
`OVERTAKE_LIMIT` times (a later one admitted before it, or given prompt budget while it got none)
goes first, in arrival order, from then on. While every waiting request fits in a free slot nothing
is reordered: all of them are admitted.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from itertools import islice
from typing import Protocol, TypeVar

OVERTAKE_LIMIT = 8
"""How many times a request may be overtaken before it goes first."""
WINDOW = 32
"""How many of the oldest waiting requests are weighed for a free slot: the cost of weighing one is
a prefix comparison with each free slot's cache and a prompt-cache look-up, between two steps."""


class Queued(Protocol):
    overtaken: int


Q = TypeVar("Q", bound=Queued)


def next_to_admit(waiting: deque[Q], free_slots: int, left: Callable[[Q], int]) -> Q:
    """Remove and return the waiting request that gets the next free slot (`waiting` is in arrival
    order and not empty). `left(request)` is how many of its prompt tokens it would evaluate."""
    head = waiting[0]
    if len(waiting) <= free_slots or head.overtaken >= OVERTAKE_LIMIT:
        return waiting.popleft()
    chosen = min(islice(waiting, WINDOW), key=left)  # the first of equals: the oldest
    for request in waiting:
        if request is chosen:
            break
        request.overtaken += 1
    waiting.remove(chosen)
    return chosen


def prefill_order(candidates: list[Q], left: Callable[[Q], int]) -> list[Q]:
    """The order in which `candidates` (in arrival order) take a step's prompt budget: those overtaken
    `OVERTAKE_LIMIT` times first, in arrival order, then the fewest tokens left first."""
    rank = {id(c): i for i, c in enumerate(candidates)}
    return sorted(
        candidates,
        key=lambda c: (0, rank[id(c)], 0) if c.overtaken >= OVERTAKE_LIMIT else (1, left(c), rank[id(c)]),
    )


def count_overtaken(candidates: list[Q], served: Callable[[Q], bool]) -> None:
    """After a step: a candidate (in arrival order) that got no prompt budget while a later one did
    was overtaken once more."""
    later_served = False
    for candidate in reversed(candidates):
        if served(candidate):
            later_served = True
        elif later_served:
            candidate.overtaken += 1
