from __future__ import annotations

import pytest

from aimi.errors import InvalidRequest
from aimi.safety.blocklists import Blocklist, BlocklistFilter


def test_terms_match_case_insensitively_and_report_the_list_and_the_term() -> None:
    lists = BlocklistFilter([Blocklist("brands", terms=("Acme Corp", "Globex"))])
    (match,) = lists.match("Have you tried GLOBEX or acme   corp?")
    assert match.blocklist == "brands"
    assert match.terms == ("Acme Corp", "Globex")


def test_terms_match_whole_words_only() -> None:
    lists = BlocklistFilter([Blocklist("words", terms=("ass",))])
    assert lists.match("a class of bass players") == ()
    assert lists.match("what an ass!") != ()


def test_regular_expressions_are_word_bounded_and_case_insensitive() -> None:
    lists = BlocklistFilter([Blocklist("codes", patterns=(r"proj-\d{3}",))])
    assert lists.match("see PROJ-123 for details")[0].terms == (r"proj-\d{3}",)
    assert lists.match("see xproj-123 or proj-1234") == ()


def test_invisible_characters_and_look_alikes_do_not_hide_a_term() -> None:
    lists = BlocklistFilter([Blocklist("secret", terms=("kill",))])
    for text in ("k\u200bill", "ｋｉｌｌ", "kіll", "KI\u00adLL"):
        assert lists.match(text), text


def test_only_lists_that_match_are_reported() -> None:
    lists = BlocklistFilter([Blocklist("a", terms=("apple",)), Blocklist("b", terms=("banana",))])
    assert [m.blocklist for m in lists.match("an apple a day")] == ["a"]


def test_an_invalid_regular_expression_is_rejected_when_the_list_is_made() -> None:
    with pytest.raises(InvalidRequest, match="invalid regular expression"):
        Blocklist("broken", patterns=("(unclosed",))


def test_a_blocklist_needs_a_name() -> None:
    with pytest.raises(InvalidRequest):
        Blocklist(" ", terms=("x",))


def test_empty_terms_are_ignored() -> None:
    lists = BlocklistFilter([Blocklist("blank", terms=("", "   "))])
    assert lists.match("anything at all") == ()


@pytest.mark.anyio
async def test_the_filter_evaluates_no_category_and_lists_its_matches() -> None:
    result = await BlocklistFilter([Blocklist("b", terms=("forbidden",))]).check("a forbidden word")
    assert result.evaluated == frozenset()
    assert result.blocklist_matches[0].terms == ("forbidden",)
    assert "forbidden" in result.evidence[0]


@pytest.mark.anyio
async def test_a_megabyte_of_text_is_scanned_whole() -> None:
    text = "lorem ipsum " * 90_000 + "forbidden"
    result = await BlocklistFilter([Blocklist("b", terms=("forbidden",))]).check(text)
    assert result.blocklist_matches
