"""The DATA stream: CRLF line endings and dot-stuffing, whatever the chunks."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from rpopcore.smtp.data import DataEncoder


def encode(*chunks: bytes) -> bytes:
    encoder = DataEncoder()
    return b"".join(encoder.feed(c) for c in chunks) + encoder.finish()


def test_data_is_crlf_and_dot_stuffed():
    assert encode(b"a\n.b\n..c\n.\nd\n") == b"a\r\n..b\r\n...c\r\n..\r\nd\r\n.\r\n"
    assert encode(b".first\n") == b"..first\r\n.\r\n"
    assert encode(b"no final newline") == b"no final newline\r\n.\r\n"
    assert encode(b"") == b".\r\n"
    assert encode(b"crlf already\r\n.x\r\n") == b"crlf already\r\n..x\r\n.\r\n"
    assert encode(b"lone\rcr\n", b"end\r") == b"lone\rcr\r\nend\r\r\n.\r\n"


def test_a_dot_after_a_chunk_boundary_is_stuffed():
    assert encode(b".a\nb", b"\n.", b"c") == b"..a\r\nb\r\n..c\r\n.\r\n"


@given(st.binary(), st.lists(st.integers(min_value=0, max_value=200), max_size=8))
def test_data_does_not_depend_on_where_chunks_split(data, cuts):
    cuts = sorted({min(c, len(data)) for c in cuts})
    pieces = [data[a:b] for a, b in zip([0] + cuts, cuts + [len(data)])]
    assert encode(*pieces) == encode(data)


@given(st.lists(st.binary().filter(lambda b: b"\n" not in b and b"\r" not in b), max_size=10))
def test_data_unstuffs_back_to_the_lf_message(lines):
    message = b"".join(line + b"\n" for line in lines)
    wire = encode(message)
    assert wire.endswith(b"\r\n.\r\n") or wire == b".\r\n"
    body = wire[:-3].split(b"\r\n")[:-1]
    assert all(not line.startswith(b".") or line.startswith(b"..") for line in body)
    assert b"".join((line[1:] if line.startswith(b".") else line) + b"\n" for line in body) == message
