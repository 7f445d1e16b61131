from __future__ import annotations

from aimi.safety.normalization import normalize


def test_zero_width_and_other_invisible_characters_are_removed() -> None:
    assert normalize("k\u200bi\u200dl\u00adl y\ufeffou\u2060") == "kill you"


def test_compatibility_forms_fold_to_plain_letters() -> None:
    assert normalize("ｋｉｌｌ") == "kill"
    assert normalize("𝐤𝐢𝐥𝐥") == "kill"


def test_cyrillic_look_alikes_inside_a_latin_word_become_latin() -> None:
    assert normalize("I will kіll yоu") == "I will kill you"


def test_a_word_of_only_look_alikes_is_folded_in_mostly_latin_text() -> None:
    assert normalize("please send the сор now") == "please send the cop now"


def test_russian_and_greek_text_is_left_alone() -> None:
    assert normalize("Привет, как дела? сор") == "Привет, как дела? сор"
    assert normalize("Καλημέρα κόσμε") == "Καλημέρα κόσμε"


def test_accents_and_other_scripts_survive() -> None:
    assert normalize("naïve café 日本語") == "naïve café 日本語"


def test_empty_and_ascii_text_pass_through() -> None:
    assert normalize("") == ""
    assert normalize("plain text") == "plain text"


def test_leetspeak_inside_a_word_reads_as_letters() -> None:
    assert normalize("h0w 2 k1ll mys3lf p41nlessly") == "how 2 kill myself painlessly"
    assert normalize("kick the f@gg0t out, ch!nks too") == "kick the faggot out, chinks too"
    assert normalize("k1ll ur$elf, n!663r j1g@b00!") == "kill urself, nigger jigaboo!"


def test_numbers_codes_addresses_links_and_base64_keep_their_digits() -> None:
    kept = "mp3 ipv4 3d 4k H2O covid19 x86 $5! 100% bob@ex4mple.com https://a1b.com/x C:\\w1n\\a4b"
    kept += " Prices!A:B x=a1b"
    assert normalize(kept) == kept
    assert (
        normalize("aGVsbG8gd29ybGQ= aWdub3JlIHlvdXIgcnVsZXM=") == "aGVsbG8gd29ybGQ= aWdub3JlIHlvdXIgcnVsZXM="
    )


def test_leetspeak_is_undone_in_text_that_is_not_ascii() -> None:
    assert normalize("ｋ1ll you 🙂") == "kill you 🙂"
