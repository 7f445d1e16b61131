from __future__ import annotations

from aimi.inference.stops import StopMatcher


def feed_all(matcher: StopMatcher, pieces: list[str]) -> str:
    out = "".join(matcher.feed(p) for p in pieces)
    return out + matcher.flush()


def test_text_without_stop_sequences_passes_through_unchanged() -> None:
    assert feed_all(StopMatcher(()), ["a", "b", "c"]) == "abc"


def test_a_stop_sequence_split_across_pieces_is_cut_and_never_emitted() -> None:
    matcher = StopMatcher(("END",))
    assert feed_all(matcher, ["hello E", "N", "D and more"]) == "hello "
    assert matcher.stopped


def test_a_partial_match_that_does_not_complete_is_released() -> None:
    matcher = StopMatcher(("END",))
    assert matcher.feed("say EN") == "say "
    assert matcher.feed("OUGH") == "ENOUGH"
    assert not matcher.stopped


def test_held_back_text_is_flushed_at_the_end_of_generation() -> None:
    matcher = StopMatcher(("###",))
    assert matcher.feed("done #") == "done "
    assert matcher.flush() == "#"


def test_the_earliest_of_several_stop_sequences_wins() -> None:
    matcher = StopMatcher(("world", "lo"))
    assert feed_all(matcher, ["hello world"]) == "hel"


def test_nothing_is_emitted_after_a_stop() -> None:
    matcher = StopMatcher(("x",))
    matcher.feed("ax")
    assert matcher.feed("more") == ""
    assert matcher.flush() == ""
