"""The multi-line decoder: dot-unstuffing, the terminator, CRLF -> LF, in any
chunking the network may produce."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from rpopcore.pop3.multiline import MultilineDecoder


def encode(lines: list[bytes]) -> bytes:
    """What a server sends for a message made of ``lines``."""
    return b"".join((b"." + line if line.startswith(b".") else line) + b"\r\n" for line in lines) + b".\r\n"


def decode_in_chunks(wire: bytes, cuts: list[int]) -> tuple[bytes, bytes]:
    decoder = MultilineDecoder()
    out = []
    points = sorted({c % (len(wire) + 1) for c in cuts} | {0, len(wire)})
    for start, end in zip(points, points[1:]):
        chunk = wire[start:end]
        out.append(decoder.feed(chunk))
        if decoder.done:
            rest = chunk[decoder.end:] + wire[end:]
            return b"".join(out), rest
    raise AssertionError("the terminator was not found")


line = st.binary(max_size=40).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b""))


@settings(max_examples=400, deadline=None)
@given(st.lists(line, max_size=30), st.lists(st.integers(min_value=0), max_size=12), st.binary(max_size=20))
def test_any_message_in_any_chunking_decodes_to_its_lines(lines, cuts, after):
    body, rest = decode_in_chunks(encode(lines) + after, cuts)
    assert body == b"".join(line + b"\n" for line in lines)
    assert rest == after


line_with_cr = st.binary(max_size=40).map(lambda b: b.replace(b"\n", b""))


@settings(max_examples=400, deadline=None)
@given(st.lists(line_with_cr, max_size=30), st.lists(st.integers(min_value=0), max_size=12))
def test_a_cr_that_is_not_part_of_a_line_end_is_kept(lines, cuts):
    body, rest = decode_in_chunks(encode(lines), cuts)
    assert body == b"".join(line + b"\n" for line in lines)
    assert rest == b""


def test_a_big_plain_message_in_network_sized_chunks():
    lines = [b"%076d" % i for i in range(20000)] + [b".stuffed", b"last"]
    wire = encode(lines) + b"+OK next\r\n"
    body, rest = decode_in_chunks(wire, list(range(0, len(wire), 65536)))
    assert body == b"".join(line + b"\n" for line in lines)
    assert rest == b"+OK next\r\n"


def test_long_lines_are_passed_on_before_they_end():
    decoder = MultilineDecoder()
    big = b"x" * (MultilineDecoder.LONG_LINE * 3)
    out = decoder.feed(b".." + big)
    assert out.startswith(b".x") and len(out) > MultilineDecoder.LONG_LINE
    out += decoder.feed(b"\r\n.\r\n")
    assert out == b"." + big + b"\n" and decoder.done


def test_bare_lf_terminator_is_accepted():
    decoder = MultilineDecoder()
    data = b"a\n..b\n.\n+OK"
    assert decoder.feed(data) == b"a\n.b\n"
    assert decoder.done and data[decoder.end:] == b"+OK"


def test_feeding_from_an_offset_leaves_the_rest_in_place():
    data = b"+OK first\r\nx\r\n.\r\ny\r\n.\r\n"
    first = MultilineDecoder()
    assert first.feed(data, 11) == b"x\n" and first.end == 17
    second = MultilineDecoder()
    assert second.feed(data, first.end) == b"y\n" and data[second.end:] == b""


def test_empty_response():
    decoder = MultilineDecoder()
    assert decoder.feed(b".\r\n") == b"" and decoder.done
