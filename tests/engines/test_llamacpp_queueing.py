"""Who goes first between waiting requests and between prompts sharing a step's prefill budget."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from aimi.engines.llamacpp.queueing import (
    OVERTAKE_LIMIT,
    count_overtaken,
    next_to_admit,
    prefill_order,
)


@dataclass(eq=False)
class Req:
    name: str
    left: int
    overtaken: int = 0


def left(r: Req) -> int:
    return r.left


def test_with_fewer_free_slots_than_waiting_the_request_with_least_left_to_evaluate_goes_first() -> None:
    new, returning = Req("new conversation", 900), Req("returning conversation", 40)
    waiting = deque([new, returning])
    assert next_to_admit(waiting, 1, left) is returning
    assert list(waiting) == [new] and new.overtaken == 1


def test_requests_with_as_much_left_keep_their_arrival_order() -> None:
    first, second = Req("first", 100), Req("second", 100)
    waiting = deque([first, second])
    assert next_to_admit(waiting, 1, left) is first
    assert first.overtaken == second.overtaken == 0


def test_while_every_waiting_request_fits_in_a_free_slot_arrival_order_is_kept() -> None:
    long, short = Req("long", 900), Req("short", 10)
    waiting = deque([long, short])
    assert next_to_admit(waiting, 2, left) is long
    assert long.overtaken == 0


def test_a_request_overtaken_the_limit_goes_first_whatever_the_others_have_left() -> None:
    long = Req("long", 900)
    waiting = deque([long])
    for i in range(OVERTAKE_LIMIT):
        waiting.append(Req(f"short {i}", 10))
        assert next_to_admit(waiting, 1, left) is not long
    assert long.overtaken == OVERTAKE_LIMIT
    waiting.append(Req("one more short", 10))
    assert next_to_admit(waiting, 1, left) is long


def test_the_prefill_budget_goes_to_the_fewest_tokens_left_first_and_overtaken_ones_before_all() -> None:
    old_long, starved, short, mid = (
        Req("old long", 800),
        Req("starved", 900),
        Req("short", 30),
        Req("mid", 200),
    )
    starved.overtaken = OVERTAKE_LIMIT
    assert prefill_order([old_long, starved, short, mid], left) == [starved, short, mid, old_long]


def test_a_prompt_that_got_no_budget_while_a_later_one_did_counts_as_overtaken() -> None:
    a, b, c = Req("a", 800), Req("b", 30), Req("c", 500)
    count_overtaken([a, b, c], lambda r: r is b)
    assert (a.overtaken, b.overtaken, c.overtaken) == (1, 0, 0)  # c came after b: not overtaken
