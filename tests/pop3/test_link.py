"""The byte stream under the POP3 client: everything the peer sends arrives,
in order, with bounded buffering; an end or a reset is reported."""

from __future__ import annotations

import asyncio
import os
import socket
import struct

import pytest

from rpopcore.pop3 import link as link_module
from rpopcore.pop3.link import open_link


async def serve(handler):
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


async def test_a_reader_that_falls_behind_pauses_the_transport_and_loses_nothing():
    payload = os.urandom(8 * link_module.HIGH_WATER)

    async def send(reader, writer):
        writer.write(payload)
        await writer.drain()
        writer.close()

    server, port = await serve(send)
    async with server:
        link = await open_link("127.0.0.1", port)
        received = []
        paused_seen = False
        while True:
            await asyncio.sleep(0.01)  # fall behind: the peer fills our buffer
            paused_seen = paused_seen or not link.transport.is_reading()
            chunk = await link.read()
            if not chunk:
                break
            assert len(chunk) <= max(link_module.READ_SIZE, 1 << 18), "reads are bounded"
            received.append(chunk)
        await link.close()
    assert b"".join(received) == payload
    assert paused_seen


async def test_written_bytes_arrive_and_the_answer_comes_back():
    async def echo(reader, writer):
        writer.write((await reader.readline()).upper())
        await writer.drain()
        writer.close()

    server, port = await serve(echo)
    async with server:
        link = await open_link("127.0.0.1", port)
        link.write(b"capa\r\n")
        await link.drain()
        assert await link.read() == b"CAPA\r\n"
        assert await link.read() == b""
        await link.close()


async def test_a_reset_connection_is_an_error_not_an_end():
    async def reset(reader, writer):
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close sends RST
        writer.transport.abort()

    server, port = await serve(reset)
    async with server:
        link = await open_link("127.0.0.1", port)
        with pytest.raises(ConnectionResetError):
            await link.read()
        await link.close()
