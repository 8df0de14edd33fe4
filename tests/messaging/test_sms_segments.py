"""SMS segment counts: the GSM-7 and UCS-2 boundaries, extension characters, emoji, and a
property (a longer text never costs fewer segments)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from patron.messaging.sms import GSM_BASIC, GSM_EXTENSION, count


@pytest.mark.parametrize(("length", "segments"), [
    (1, 1), (160, 1), (161, 2), (306, 2), (307, 3), (459, 3), (460, 4)])
def test_gsm_boundaries(length: int, segments: int) -> None:
    result = count("a" * length)
    assert (result.encoding, result.units, result.segments) == ("GSM-7", length, segments)


@pytest.mark.parametrize(("length", "segments"), [
    (1, 1), (70, 1), (71, 2), (134, 2), (135, 3), (201, 3), (202, 4)])
def test_ucs2_boundaries(length: int, segments: int) -> None:
    result = count("会" * length)
    assert (result.encoding, result.units, result.segments) == ("UCS-2", length, segments)


def test_one_chinese_character_makes_the_whole_text_ucs2() -> None:
    result = count("a" * 69 + "中")
    assert (result.encoding, result.segments) == ("UCS-2", 1)
    assert count("a" * 70 + "中").segments == 2


@pytest.mark.parametrize("char", sorted(GSM_EXTENSION))
def test_extension_characters_cost_two_septets(char: str) -> None:
    assert count(char * 80).units == 160
    assert count(char * 80).segments == 1
    assert count(char * 81).segments == 2
    assert count("a" * 159 + char).segments == 2


def test_euro_sign_is_gsm_but_2_septets() -> None:
    result = count("Total €12")
    assert (result.encoding, result.characters, result.units) == ("GSM-7", 9, 10)


def test_an_escape_pair_is_never_split_across_parts() -> None:
    # 152 + 2 + 152 = 306 septets would fit two parts by division, but the € cannot start
    # at septet 153 of part one, so it moves whole to part two and a third part is needed.
    assert count("a" * 152 + "€" + "a" * 152).segments == 3
    assert count("a" * 153 + "€" + "a" * 151).segments == 2


def test_an_emoji_counts_two_units_and_is_never_split() -> None:
    assert count("😀" * 35).units == 70
    assert count("😀" * 35).segments == 1
    assert count("😀" * 36).segments == 2
    assert count("会" * 66 + "😀" + "会" * 66).segments == 3  # 134 units, yet 3 parts
    assert count("会" * 67 + "😀" + "会" * 65).segments == 2


def test_characters_count_code_points() -> None:
    result = count("【帕创】生日快乐😀")
    assert (result.characters, result.units) == (9, 10)


def test_the_basic_alphabet_has_127_characters_plus_escape() -> None:
    assert len(GSM_BASIC) == 127
    assert "\x1b" not in GSM_BASIC
    assert not GSM_BASIC & GSM_EXTENSION


def test_lookalikes_outside_the_alphabet_force_ucs2() -> None:
    assert count("it’s").encoding == "UCS-2"  # a curly apostrophe
    assert count("it's").encoding == "GSM-7"
    assert count("ç").encoding == "UCS-2"  # only the capital Ç is in GSM 03.38


def test_an_empty_text_is_no_segment() -> None:
    assert count("").segments == 0


def test_per_segment_capacity() -> None:
    assert count("a").per_segment == 160
    assert count("a" * 200).per_segment == 153
    assert count("中").per_segment == 70
    assert count("中" * 100).per_segment == 67


ALPHABET = st.sampled_from(["a", "Z", "0", " ", "@", "€", "^", "{", "\n", "中", "ü", "😀", "ç"])


@given(st.lists(ALPHABET, max_size=400), st.lists(ALPHABET, min_size=1, max_size=50))
def test_segments_never_decrease_as_a_text_grows(head: list[str], tail: list[str]) -> None:
    text = "".join(head)
    before, after = count(text), count(text + "".join(tail))
    assert after.segments >= before.segments
    assert after.characters > before.characters


@given(st.text(max_size=500))
def test_every_text_gets_a_consistent_count(text: str) -> None:
    result = count(text)
    assert result.characters == len(text)
    assert result.units >= result.characters
    if result.encoding == "UCS-2":
        assert result.units == len(text.encode("utf-16-le")) // 2
    if text:
        assert result.units <= result.segments * result.per_segment
        assert result.segments >= 1
