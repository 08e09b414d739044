"""C++ unit tests of csrc/text_stream.* (UTF-8 boundaries, stop strings), driven through the
private binding ``_core._TextStream`` (csrc/bindings_testing.cpp)."""

from __future__ import annotations

import pytest

from llama_mtp import _core


def feed(pieces: list[bytes], stops: list[str] = []) -> tuple[list[bytes], _core._TextStream]:
    """What each push released, and the stream."""
    stream = _core._TextStream(stops)
    return [stream.push(p) for p in pieces], stream


def test_ascii_passes_straight_through() -> None:
    out, stream = feed([b"Hello", b", ", b"world"])
    assert out == [b"Hello", b", ", b"world"]
    assert stream.flush() == b"" and stream.text == b"Hello, world" and not stream.stopped


@pytest.mark.parametrize("char", ["é", "你", "🦊"])
def test_a_character_split_across_tokens_is_released_whole(char: str) -> None:
    data = char.encode("utf-8")
    out, stream = feed([b"a"] + [data[i:i + 1] for i in range(len(data))] + [b"b"])
    assert out == [b"a"] + [b""] * (len(data) - 1) + [data, b"b"]
    assert stream.text == b"a" + data + b"b"


def test_a_trailing_incomplete_character_comes_out_at_flush() -> None:
    out, stream = feed([b"ok \xe4\xbd"])
    assert out == [b"ok "]
    assert stream.flush() == b"\xe4\xbd"  # the generation ended mid-character: nothing is lost


def test_invalid_bytes_are_released_at_once() -> None:
    # bytes that can never complete a character are not held back (Python decodes with 'replace')
    assert feed([b"\xff", b"a\xff\xfe"])[0] == [b"\xff", b"a\xff\xfe"]
    assert feed([b"\x80", b"\x80\x80"])[0] == [b"\x80", b"\x80\x80"]  # no lead byte before them
    assert feed([b"a\xe4\x80\x80\x80"])[0] == [b"a\xe4\x80\x80\x80"]  # too many continuations


def test_stop_string_across_token_boundaries() -> None:
    out, stream = feed([b"the la", b"zy do", b"g barks"], ["lazy dog"])
    assert out == [b"the ", b"", b""]
    assert stream.stopped and stream.matched_stop == b"lazy dog" and stream.text == b"the "
    assert stream.push(b"more") == b"" and stream.flush() == b""


def test_a_partial_stop_prefix_is_held_until_it_diverges() -> None:
    out, stream = feed([b"abc ST", b"ART", b" S"], ["STOP"])
    assert out == [b"abc ", b"START", b" "]
    assert not stream.stopped
    assert stream.flush() == b"S"  # still a possible "STOP" when generation ended
    assert stream.text == b"abc START S"


def test_the_longest_partial_prefix_is_held() -> None:
    out, _ = feed([b"xa", b"a", b"a", b"b"], ["aab"])
    assert out == [b"x", b"", b"a", b""]


def test_text_after_a_stop_in_the_same_token_is_dropped() -> None:
    out, stream = feed([b"one STOP two"], ["STOP"])
    assert out == [b"one "] and stream.text == b"one " and stream.stopped


def test_the_earliest_stop_wins() -> None:
    out, stream = feed([b"a <b> <a>"], ["<a>", "<b>"])
    assert out == [b"a "] and stream.matched_stop == b"<b>"


def test_a_multibyte_stop_split_inside_its_characters() -> None:
    stop = "。"
    data = "好。后".encode("utf-8")
    out, stream = feed([data[i:i + 1] for i in range(len(data))], [stop])
    assert b"".join(out) == "好".encode("utf-8") and stream.matched_stop == stop.encode("utf-8")


def test_empty_stop_strings_are_ignored() -> None:
    out, stream = feed([b"abc"], [""])
    assert out == [b"abc"] and not stream.stopped


@pytest.mark.parametrize("text, end, expected", [
    (b"", 0, 0), (b"abc", 3, 3), (b"abc", 2, 2),
    ("a你".encode(), 4, 4), ("a你".encode(), 3, 1), ("a你".encode(), 2, 1),
    ("🦊".encode(), 3, 0), ("🦊".encode(), 4, 4), (b"\xff", 1, 1),
])
def test_utf8_complete_prefix(text: bytes, end: int, expected: int) -> None:
    assert _core._utf8_complete_prefix(text, end) == expected


def test_utf8_complete_prefix_rejects_an_end_past_the_text() -> None:
    with pytest.raises(ValueError):
        _core._utf8_complete_prefix(b"ab", 3)
