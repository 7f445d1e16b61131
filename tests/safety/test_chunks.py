from __future__ import annotations

from aimi.safety.chunks import CONTEXT_WORDS, MAX_WORDS, in_context, sentences, windows

FILLER = "I went to the market this morning and bought some bread, cheese and apples for the week."


def test_a_short_text_is_one_window_itself() -> None:
    assert windows("I will kill you") == ["I will kill you"]
    assert windows("Sure, here is my answer. I will kill you.") == [
        "Sure, here is my answer. I will kill you."
    ]
    assert windows("   ") == []


def test_sentences_split_at_stops() -> None:
    assert sentences("One. Two? Three! Four; five") == ["One.", "Two?", "Three!", "Four;", "five"]


def test_sentences_split_at_the_stops_of_other_scripts() -> None:
    hindi = "मुझे मदद चाहिए। मेरा दोस्त परेशान है॥ क्या करूँ?"
    assert sentences(hindi) == ["मुझे मदद चाहिए।", "मेरा दोस्त परेशान है॥", "क्या करूँ?"]
    assert sentences("هل أنت بخير؟ نعم۔ شكرا") == ["هل أنت بخير؟", "نعم۔", "شكرا"]
    assert sentences("ሰላም ነው። ደህና ነህ፧ Բարև։ ok") == ["ሰላም ነው።", "ደህና ነህ፧", "Բարև։", "ok"]
    assert sentences("ok။ ok។ 好。 好") == ["ok။", "ok។", "好。", "好"]
    assert sentences("أولا؛ ثانيا") == ["أولا؛", "ثانيا"]
    # A stop ends a sentence only before whitespace: Chinese writes none after 。
    assert sentences("你好。我很好") == ["你好。我很好"]


def test_each_message_of_a_conversation_is_judged_on_its_own() -> None:
    text = "You are an AI assistant that helps people find information.\nI will kill you."
    assert windows(text) == [
        "You are an AI assistant that helps people find information.",
        "I will kill you.",
    ]


def test_a_long_text_is_scored_sentence_by_sentence() -> None:
    threat = "Tomorrow I will wait outside his house and beat him until he stops moving."
    text = " ".join([FILLER] * 3 + [threat] + ["Then we all went back home."] * 3)
    assert windows(text) == [FILLER, threat, "Then we all went back home."]


def test_in_context_a_short_sentence_is_judged_with_the_end_of_the_one_before_it() -> None:
    answer = (
        "If a friend tells you that they are thinking about suicide, take it seriously and listen to them. "
        "This doesn't mean they need to fix their problems alone. Encourage them to call a crisis line "
        "or to see their doctor, and offer to go with them if that helps."
    )
    first, second, third = windows(answer)
    context = "they are thinking about suicide, take it seriously and listen to them."
    assert windows(answer, context=True) == [first, f"{context} {second}", third]
    assert in_context(["only one"]) == ["only one"]


def test_in_context_an_answer_s_lines_are_read_on() -> None:
    answer = "Here is what you can do:\n1. Listen to them without judging.\n2. Stay with them tonight."
    assert windows(answer, context=True) == [answer.replace("\n", " ")]  # short: one window
    assert len(windows(answer)) == 3  # a prompt's lines (messages) stay apart
    assert windows("I will kill you", context=True) == ["I will kill you"]


def test_fragments_join_the_sentence_after_them_and_a_short_tail_the_one_before() -> None:
    text = f"ss, and then. {FILLER} Done. {FILLER} Then kill th"
    assert windows(text) == [f"ss, and then. {FILLER}", f"Done. {FILLER} Then kill th"]
    assert windows(f"{FILLER} {FILLER.upper()} Thanks!")[-1] == f"{FILLER.upper()} Thanks!"


def test_short_sentences_after_a_whole_one_form_their_own_windows() -> None:
    """A threat followed by filler is judged without the filler: in one window, six "and that is
    all." outweighed "kill" (round 5: violence 0.02 to 0.24 with layer 4's mean in the vectors)."""
    threat = "I will kill you and that is all."
    text = "Sure, here is my answer. " * 10 + threat + " and that is all." * 20
    parts = windows(text)
    assert threat in parts
    assert all(len(p.split()) <= MAX_WORDS for p in parts)
    assert all("kill" not in p for p in parts if p != threat)
    assert max(len(p.split()) for p in windows(text, context=True) if "kill" in p) <= 2 * CONTEXT_WORDS


def test_a_sentence_longer_than_the_limit_is_cut_into_overlapping_pieces() -> None:
    text = " ".join(f"w{i}" for i in range(200))
    parts = windows(text)
    assert all(len(p.split()) <= MAX_WORDS for p in parts)
    assert {w for p in parts for w in p.split()} == set(text.split())
    assert set(parts[0].split()) & set(parts[1].split())


def test_many_short_sentences_are_packed_without_passing_the_limit() -> None:
    text = "Sure, here is my answer. " * 12 + "I will kill you and that is all."
    parts = windows(text)
    assert all(len(p.split()) <= MAX_WORDS for p in parts)
    assert any(p.endswith("I will kill you and that is all.") for p in parts)
    assert parts[0] == " ".join(["Sure, here is my answer."] * 2)  # repeats are scored once
    assert parts[-1] == "I will kill you and that is all."


def test_a_short_unfinished_end_joins_the_sentence_before_it_and_a_longer_one_stands_alone() -> None:
    text = f"{FILLER} Then kill the process, shoot a photo of the dish. Then kill the process, shoot a"
    assert windows(text)[-1] == "Then kill the process, shoot a"
    text = f"{FILLER} {FILLER} I will kill you and that is all. and that is all. and th"
    assert windows(text)[-2:] == ["I will kill you and that is all.", "and that is all. and th"]
    assert windows(f"{FILLER} {FILLER.upper()} Then kill th")[-1] == f"{FILLER.upper()} Then kill th"


def test_in_context_a_short_window_after_a_run_of_short_sentences_is_judged_alone() -> None:
    threat = "I will kill you and that is all."
    text = "Sure, here is my answer. " * 6 + threat + " and that is all." * 2
    assert threat in windows(text, context=True)
    whole = (
        "If a friend tells you that they are thinking about suicide, take it seriously and listen to them."
    )
    context = "they are thinking about suicide, take it seriously and listen to them."
    assert f"{context} {threat}" in windows(f"{whole} {threat} {FILLER}", context=True)


def test_in_context_a_window_cut_mid_sentence_is_read_with_the_next_one() -> None:
    """A streamed check starts where the one before was cut: its first, cut sentence was judged
    whole in that check, so it is not judged alone (only in a completion's windows)."""
    check = (
        "have a hazardous effect on the body. Taking too many sleeping pills can have serious"
        " consequences for anyone who takes them, so call a doctor."
        " See a doctor now if this happens to a friend."
    )
    first = check.split(". ", 1)[0]
    out = windows(check, context=True)
    assert out[0].startswith(f"{first}. Taking too many")
    assert all(not w.startswith(first) or "Taking" in w for w in out)
    assert windows(check)[0] == f"{first}."  # a prompt's windows are left as they are
