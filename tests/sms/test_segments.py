"""Segment counting as a sender is billed: GSM-7 160/153, UCS-2 70/67, and what forces UCS-2."""

from __future__ import annotations

import pytest

from portal.sms_text import segment_info


@pytest.mark.parametrize(
    "length, segments",
    [
        (0, 0),
        (1, 1),
        (160, 1),
        (161, 2),
        (306, 2),
        (307, 3),
        (459, 3),
        (460, 4),
    ],
)
def test_gsm7_single_message_holds_160_and_each_part_153(length, segments):
    info = segment_info("a" * length)
    assert info.encoding == "GSM-7"
    assert info.characters == length
    assert info.segments == segments
    assert info.ucs2_chars == []


def test_limit_per_segment_switches_to_153_once_the_text_is_split():
    assert segment_info("a" * 160).per_segment_limit == 160
    assert segment_info("a" * 161).per_segment_limit == 153


def test_remaining_counts_what_still_fits_in_the_last_segment():
    assert segment_info("a" * 150).remaining == 10
    assert segment_info("a" * 160).remaining == 0
    assert segment_info("a" * 161).remaining == 153 * 2 - 161


@pytest.mark.parametrize("ch", list("{}[]~^|€\\") + ["\f"])
def test_extension_characters_count_two_septets_and_stay_gsm7(ch):
    info = segment_info("Save 10" + ch)
    assert info.encoding == "GSM-7"
    assert info.characters == 7 + 2


def test_extension_characters_push_a_text_over_160():
    assert segment_info("a" * 158 + "€").segments == 1  # 158 + 2 = 160
    assert segment_info("a" * 159 + "€").segments == 2  # 159 + 2 = 161


def test_an_extension_character_is_not_split_across_parts():
    # 152 septets then "€": the escape and the character would straddle parts 1 and 2,
    # so "€" moves to part 2; 2 + 152 more fit there, the last "a" opens part 3.
    text = "a" * 152 + "€" + "a" * 152
    info = segment_info(text)
    assert info.characters == 306
    assert info.segments == 3
    # The same 306 septets without a straddle fit in 2 parts.
    assert segment_info("€" + "a" * 304).segments == 2


def test_gsm7_accented_and_greek_letters_do_not_force_ucs2():
    info = segment_info("Café Ñoño: ΔΦΓ £5 ¥ §¿¡ äöüß Ø à è ù")
    assert info.encoding == "GSM-7"
    assert info.ucs2_chars == []


@pytest.mark.parametrize(
    "length, segments",
    [
        (1, 1),
        (70, 1),
        (71, 2),
        (134, 2),
        (135, 3),
        (201, 3),
        (202, 4),
    ],
)
def test_ucs2_single_message_holds_70_and_each_part_67(length, segments):
    info = segment_info("ж" * length)
    assert info.encoding == "UCS-2"
    assert info.characters == length
    assert info.segments == segments
    assert info.per_segment_limit == (70 if segments == 1 else 67)


def test_one_character_forces_the_whole_text_into_ucs2():
    text = "Hi Ann, your reward is ready" + "a" * 100 + "’"  # a curly apostrophe
    info = segment_info(text)
    assert info.encoding == "UCS-2"
    assert info.ucs2_chars == ["’"]
    assert info.segments == 2  # 129 UCS-2 units; as GSM-7 (129 septets) it would be 1


def test_ucs2_chars_lists_each_culprit_once_in_order_of_appearance():
    # Lower-case ç and ú are not in the GSM alphabet (Ç and ù are).
    info = segment_info("ç “quoted” ç — Ñandú")
    assert info.ucs2_chars == ["ç", "“", "”", "—", "ú"]


def test_emoji_counts_two_code_units():
    info = segment_info("Thanks 🎉")
    assert info.encoding == "UCS-2"
    assert info.characters == 7 + 2
    assert info.ucs2_chars == ["🎉"]
    assert segment_info("a" * 68 + "🎉").segments == 1  # 70 units
    assert segment_info("a" * 69 + "🎉").segments == 2  # 71 units


def test_an_emoji_is_not_split_across_parts():
    # 66 units, then an emoji that would straddle parts 1 and 2: it moves to part 2.
    info = segment_info("a" * 66 + "🎉" + "a" * 66)
    assert info.characters == 134
    assert info.segments == 3
    assert segment_info("🎉" + "a" * 132).segments == 2


def test_gsm7_escape_character_itself_is_not_gsm_text():
    assert segment_info("a\x1bb").encoding == "UCS-2"
