"""A retrieved message: finding header fields, removing them, and writing the
copy to deliver to a file or a pipe, from memory or from a spool file."""

from __future__ import annotations

import os
import threading

from rpopcore.message import MessageSpool, RetrievedMessage

HEADER = (
    b"Return-Path: <first@far.test>\n"
    b"X-Real-To: alice@example.test,\n"
    b"\tbob@example.test\n"
    b"return-path : <second@far.test>\n"
    b"Return-Path-Extra: not the field\n"
    b"Subject: hi\n"
)


def message(header: bytes, body: bytes, spill_at: int = 1 << 20) -> RetrievedMessage:
    spool = MessageSpool(spill_at=spill_at)
    spool.write(header + b"\n")
    spool.write(body)
    spool.finish()
    return RetrievedMessage("u1", 1, spool)


def test_fields_are_found_by_name_in_any_case_unfolded_and_in_order():
    m = message(HEADER, b"body\n")
    assert m.field_values("RETURN-PATH") == ["<first@far.test>", "<second@far.test>"]
    assert m.field_values("x-real-to") == ["alice@example.test, bob@example.test"]
    assert m.field_values("Cc") == []
    assert m.return_path == "first@far.test"


def test_removed_fields_go_with_their_continuation_lines_and_nothing_else_changes():
    m = message(HEADER, b"body\n")
    assert m.header_without(frozenset({"return-path", "x-real-to"})) == (
        b"Return-Path-Extra: not the field\nSubject: hi\n"
    )
    assert m.header_without(frozenset()) == HEADER


def test_the_copy_written_to_a_file_is_the_copy_chunks_yields(tmp_path):
    for spill_at in (1 << 20, 10):  # body in memory; body in a spool file
        m = message(HEADER, b"line\n" * 1000, spill_at=spill_at)
        remove = frozenset({"return-path"})
        expected = b"".join(m.chunks(remove, b"Delivered-To: a@b\n"))
        path = tmp_path / f"copy{spill_at}"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT)
        try:
            assert m.write_to(fd, remove, b"Delivered-To: a@b\n") == len(expected)
        finally:
            os.close(fd)
        assert path.read_bytes() == expected


def test_a_pipe_that_takes_part_of_a_write_still_gets_every_byte():
    body = os.urandom(3 << 20)  # larger than a pipe's buffer
    for spill_at in (8 << 20, 1 << 16):
        m = message(b"Subject: big\n", body, spill_at=spill_at)
        read_fd, write_fd = os.pipe()
        received = []
        reader = threading.Thread(target=lambda: received.append(_read_all(read_fd)))
        reader.start()
        try:
            m.write_to(write_fd, frozenset())
        finally:
            os.close(write_fd)
        reader.join()
        os.close(read_fd)
        assert received == [b"Subject: big\n\n" + body]


def _read_all(fd: int) -> bytes:
    parts = []
    while chunk := os.read(fd, 1 << 16):
        parts.append(chunk)
    return b"".join(parts)
