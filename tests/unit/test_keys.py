import string

import pytest

from vmtest.machine import keys


def test_combos_split_into_qemu_key_codes():
    assert keys.parse_combo("ctrl-alt-delete") == ["ctrl", "alt", "delete"]
    assert keys.parse_combo("alt-f2") == ["alt", "f2"]
    assert keys.parse_combo("ret") == ["ret"]
    assert keys.parse_combo("ctrl-minus") == ["ctrl", "minus"]


def test_aliases_and_case():
    assert keys.parse_combo("Enter") == ["ret"]
    assert keys.parse_combo("ctrl-Space") == ["ctrl", "spc"]
    assert keys.parse_combo("escape") == ["esc"]


def test_single_characters_are_typed_as_in_send_chars():
    assert keys.parse_combo("A") == ["shift", "a"]
    assert keys.parse_combo("-") == ["minus"]


def test_unknown_names_suggest_a_fix():
    with pytest.raises(keys.UnknownKey, match="did you mean 'ret'"):
        keys.parse_combo("rett")
    with pytest.raises(keys.UnknownKey, match="minus"):
        keys.parse_combo("ctrl--")


def test_every_printable_ascii_character_maps_to_known_codes():
    for char in string.printable:
        if char in "\x0b\x0c":
            continue
        combo = keys.char_keys(char)
        assert all(code in keys.QKEYCODES for code in combo), (char, combo)
    # 95 printable characters, all distinct key combinations
    combos = {tuple(keys.char_keys(chr(c))) for c in range(0x20, 0x7F)}
    assert len(combos) == 95


def test_shifted_characters_press_shift():
    assert keys.char_keys("~") == ["shift", "grave_accent"]
    assert keys.char_keys("`") == ["grave_accent"]
    assert keys.char_keys("|") == ["shift", "backslash"]
    assert keys.char_keys("\n") == ["ret"]


def test_untypable_text_fails_before_anything_is_sent():
    with pytest.raises(keys.UnknownKey, match="cannot type"):
        keys.text_keys("abc\u00e9")


def test_qmp_arguments():
    assert keys.qmp_keys(["shift", "a"]) == [{"type": "qcode", "data": "shift"}, {"type": "qcode", "data": "a"}]
