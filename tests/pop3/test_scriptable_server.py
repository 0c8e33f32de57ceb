"""The scriptable POP3 server, driven with raw sockets on 127.0.0.1."""

from __future__ import annotations

import asyncio
import base64
import datetime
import hashlib
import ipaddress
import random
import re
import ssl
import time

import pytest

from rpopcore.testing.scriptable_server import (
    Faults,
    Message,
    PlainSasl,
    ScriptableServer,
    load_messages,
    multiline_chunks,
    wire_size,
)

pytestmark = pytest.mark.asyncio

TIMEOUT = 2.0

MSG1 = Message("uid-1", b"Subject: one\n\nhello\n")
MSG2 = Message("uid-2", b"Subject: two\r\n\r\n.leading dot\r\n..two dots\r\nend")
MSG3 = Message("uid-3", b"Subject: three\n\nline 1\nline 2\nline 3\n")


def mailbox() -> list[Message]:
    return [MSG1, MSG2, MSG3]


class Client:
    """A bare-bones POP3 client over asyncio streams."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.greeting = ""

    @classmethod
    async def connect(cls, server: ScriptableServer, *, ssl_context: ssl.SSLContext | None = None) -> "Client":
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(
                server.host,
                server.port,
                ssl=ssl_context,
                server_hostname="localhost" if ssl_context else None,
                limit=1 << 20,  # room for the long line of the large-message test
            ),
            TIMEOUT,
        )
        client = cls(reader, writer)
        client.greeting = await client.line()
        return client

    async def send(self, data: str | bytes) -> None:
        self.writer.write(data.encode() + b"\r\n" if isinstance(data, str) else data)
        await self.writer.drain()

    async def line(self, timeout: float = TIMEOUT) -> str:
        raw = await asyncio.wait_for(self.reader.readline(), timeout)
        return raw.decode().rstrip("\r\n")

    async def cmd(self, text: str) -> str:
        await self.send(text)
        return await self.line()

    async def body(self) -> bytes:
        """The raw body of a multi-line response, terminator excluded."""
        lines = []
        while True:
            raw = await asyncio.wait_for(self.reader.readline(), TIMEOUT)
            assert raw, "connection closed inside a multi-line response"
            if raw == b".\r\n":
                return b"".join(lines)
            lines.append(raw)

    async def login(self, user: str = "user", password: str = "pass") -> str:
        assert (await self.cmd(f"USER {user}")).startswith("+OK")
        return await self.cmd(f"PASS {password}")

    async def at_eof(self) -> bool:
        """Whether the server closes the connection (with nothing more to
        say); closes our side too."""
        try:
            return await asyncio.wait_for(self.reader.read(), TIMEOUT) == b""
        except ConnectionResetError:
            return True
        finally:
            await self.close()

    async def close(self) -> None:
        self.writer.close()
        try:
            await self.writer.wait_closed()
        except (ConnectionError, ssl.SSLError):
            pass


async def until(predicate, timeout: float = TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.005)


def unwire(body: bytes) -> bytes:
    """Undo dot-stuffing of a raw multi-line body."""
    lines = re.findall(rb"[^\n]*\n|[^\n]+", body)
    return b"".join(line[1:] if line.startswith(b".") else line for line in lines)


# -- encoding


def reference_encoding(data: bytes) -> bytes:
    """Line by line: what multiline_chunks must produce."""
    if not data:
        return b".\r\n"
    lines = data.split(b"\n")
    if lines[-1] == b"":
        lines.pop()
    out = []
    for i, line in enumerate(lines):
        # A CR is a line ending's only when an LF follows it.
        followed_by_lf = i < len(lines) - 1 or data.endswith(b"\n")
        line = line[:-1] if followed_by_lf and line.endswith(b"\r") else line
        out.append((b"." + line if line.startswith(b".") else line) + b"\r\n")
    return b"".join(out) + b".\r\n"


async def test_multiline_chunks_match_line_by_line_encoding_for_any_chunk_size():
    rng = random.Random(1939)
    samples = [b"", b".", b"\r\n", b"\r", b"a\r", b".\r\n.", b"\r\r\n", b"..\n.\n"]
    samples += [bytes(rng.choice(b"a.\r\n") for _ in range(rng.randrange(1, 40))) for _ in range(300)]
    for data in samples:
        expected = reference_encoding(data)
        for chunk_size in (1, 2, 3, 5, 8, 64):
            assert b"".join(multiline_chunks(data, chunk_size=chunk_size)) == expected, (data, chunk_size)
        # The size is what the client decodes: unstuffed, without terminator.
        assert wire_size(data) == len(unwire(expected[:-3])), data


# -- login


async def test_user_pass_login_and_failures():
    async with ScriptableServer(mailbox()) as server:
        c = await Client.connect(server)
        assert c.greeting == "+OK rpop scriptable server ready"
        assert (await c.cmd("PASS pass")).startswith("-ERR")
        assert (await c.login(password="wrong")) == "-ERR [AUTH] invalid user name or password"
        assert (await c.login(user="other")).startswith("-ERR [AUTH]")
        assert not server.sessions[0].authenticated
        assert (await c.login()).startswith("+OK maildrop has 3 messages")
        assert server.sessions[0].authenticated
        assert await c.cmd("QUIT") == "+OK bye"
        assert await c.at_eof()
        assert server.sessions[0].commands[:2] == ["PASS pass", "USER user"]


async def test_password_with_spaces_and_commands_case_insensitive():
    async with ScriptableServer(mailbox(), password="two words") as server:
        c = await Client.connect(server)
        assert (await c.cmd("user user")).startswith("+OK")
        assert (await c.cmd("pAsS two words")).startswith("+OK")
        assert (await c.cmd("stat")).startswith("+OK 3 ")
        await c.close()


async def test_apop_digest_right_and_wrong():
    async with ScriptableServer(mailbox(), apop=True, password="secret") as server:
        c = await Client.connect(server)
        stamp = re.search(r"<[^>]+@[^>]+>", c.greeting).group(0)
        assert c.greeting == f"+OK rpop scriptable server ready {stamp}"
        assert (await c.cmd("APOP user " + "0" * 32)).startswith("-ERR [AUTH]")
        digest = hashlib.md5((stamp + "secret").encode()).hexdigest()
        assert (await c.cmd(f"APOP user {digest}")).startswith("+OK")
        assert server.sessions[0].authenticated
        # Every session gets its own timestamp.
        c2 = await Client.connect(server)
        assert re.search(r"<[^>]+>", c2.greeting).group(0) != stamp
        await c.close()
        await c2.close()


async def test_apop_refused_when_not_enabled():
    async with ScriptableServer(mailbox()) as server:
        c = await Client.connect(server)
        assert "<" not in c.greeting
        assert (await c.cmd("APOP user " + "0" * 32)).startswith("-ERR")
        await c.close()


async def test_unknown_and_out_of_state_commands():
    async with ScriptableServer(mailbox()) as server:
        c = await Client.connect(server)
        assert await c.cmd("FOO") == "-ERR unknown command"
        assert await c.cmd("") == "-ERR unknown command"
        assert (await c.cmd("STAT")).startswith("-ERR")
        assert (await c.cmd("NOOP")).startswith("-ERR")
        await c.login()
        assert (await c.cmd("USER user")).startswith("-ERR")
        assert (await c.cmd("STLS")).startswith("-ERR")
        assert await c.cmd("NOOP") == "+OK"
        await c.close()


async def test_overlong_line_is_refused_and_the_session_goes_on():
    async with ScriptableServer(mailbox(), max_line=100) as server:
        c = await Client.connect(server)
        # One just over the limit, one far over it (read in several pieces),
        # then a normal command in the same write.
        await c.send("X" * 101 + "\r\n" + "Y" * 200_000 + "\r\nCAPA")
        assert await c.line() == "-ERR line too long"
        assert await c.line() == "-ERR line too long"
        assert (await c.line()).startswith("+OK")
        await c.body()
        assert server.sessions[0].commands == ["CAPA"]
        await c.close()


# -- listings and retrieval


async def test_stat_list_uidl():
    async with ScriptableServer(mailbox()) as server:
        c = await Client.connect(server)
        await c.login()
        sizes = [wire_size(m.data) for m in mailbox()]
        assert sizes[0] == len(b"Subject: one\r\n\r\nhello\r\n")
        assert await c.cmd("STAT") == f"+OK 3 {sum(sizes)}"
        assert (await c.cmd("LIST")).startswith("+OK 3 messages")
        assert await c.body() == b"".join(f"{i} {s}\r\n".encode() for i, s in enumerate(sizes, 1))
        assert await c.cmd("LIST 2") == f"+OK 2 {sizes[1]}"
        assert await c.cmd("LIST 4") == "-ERR no such message"
        assert await c.cmd("LIST x") == "-ERR invalid message number"
        assert (await c.cmd("UIDL")).startswith("+OK")
        assert await c.body() == b"1 uid-1\r\n2 uid-2\r\n3 uid-3\r\n"
        assert await c.cmd("UIDL 3") == "+OK 3 uid-3"
        await c.close()


async def test_retr_converts_line_endings_and_dot_stuffs():
    async with ScriptableServer(mailbox()) as server:
        c = await Client.connect(server)
        await c.login()
        assert await c.cmd("RETR 1") == f"+OK {wire_size(MSG1.data)} octets"
        assert await c.body() == b"Subject: one\r\n\r\nhello\r\n"
        assert await c.cmd("RETR 2") == f"+OK {wire_size(MSG2.data)} octets"
        body = await c.body()
        # The unterminated last line gets its CRLF before the terminator.
        assert body == b"Subject: two\r\n\r\n..leading dot\r\n...two dots\r\nend\r\n"
        assert len(unwire(body)) == wire_size(MSG2.data)
        assert await c.cmd("RETR 9") == "-ERR no such message"
        assert server.sessions[0].retrieved == ["uid-1", "uid-2"]
        await c.close()


async def test_retr_of_a_large_message_in_many_chunks():
    line = b".x" + b"y" * 98 + b"\n"
    data = line * 30_000 + b"." * 250_000 + b"\n."  # ~3.3 MB, a long line and an unterminated dot line
    message = Message("big", data)
    async with ScriptableServer([message]) as server:
        c = await Client.connect(server)
        await c.login()
        assert await c.cmd("RETR 1") == f"+OK {message.octets} octets"
        body = await c.body()
        decoded = unwire(body)
        assert decoded == data.replace(b"\n", b"\r\n") + b"\r\n"
        assert len(decoded) == message.octets
        await c.close()


async def test_top():
    async with ScriptableServer(mailbox()) as server:
        c = await Client.connect(server)
        await c.login()
        assert (await c.cmd("TOP 3 1")).startswith("+OK")
        assert await c.body() == b"Subject: three\r\n\r\nline 1\r\n"
        assert (await c.cmd("TOP 3 0")).startswith("+OK")
        assert await c.body() == b"Subject: three\r\n\r\n"
        assert (await c.cmd("TOP 3 99")).startswith("+OK")
        assert await c.body() == b"Subject: three\r\n\r\nline 1\r\nline 2\r\nline 3\r\n"
        assert (await c.cmd("TOP 3")).startswith("-ERR")
        assert server.sessions[0].retrieved == []
        await c.close()


async def test_wire_is_sent_verbatim_and_size_override():
    odd = Message("odd", b"ignored\n", wire=b"bare\nlf\n..x\n", size=5)
    async with ScriptableServer([odd]) as server:
        c = await Client.connect(server)
        await c.login()
        assert await c.cmd("LIST 1") == "+OK 1 5"
        assert await c.cmd("RETR 1") == "+OK 5 octets"
        assert await c.reader.readuntil(b".\r\n") == b"bare\nlf\n..x\n.\r\n"
        await c.close()


async def test_pipelined_commands_in_one_write():
    async with ScriptableServer(mailbox()) as server:
        c = await Client.connect(server)
        await c.send(b"USER user\r\nPASS pass\r\nSTAT\r\nLIST\r\nUIDL 2\nRETR 1\r\nDELE 1\r\nQUIT\r\n")
        assert (await c.line()).startswith("+OK")
        assert (await c.line()).startswith("+OK maildrop")
        assert (await c.line()).startswith("+OK 3 ")
        assert (await c.line()).startswith("+OK 3 messages")
        assert (await c.body()).count(b"\r\n") == 3
        assert await c.line() == "+OK 2 uid-2"
        assert (await c.line()).startswith("+OK")
        assert await c.body() == b"Subject: one\r\n\r\nhello\r\n"
        assert await c.line() == "+OK message 1 deleted"
        assert await c.line() == "+OK bye"
        assert await c.at_eof()
        assert server.uids() == ["uid-2", "uid-3"]
        assert server.sessions[0].commands == [
            "USER user", "PASS pass", "STAT", "LIST", "UIDL 2", "RETR 1", "DELE 1", "QUIT"
        ]


# -- deletion and the UPDATE state


async def test_dele_then_quit_commits():
    async with ScriptableServer(mailbox()) as server:
        c = await Client.connect(server)
        await c.login()
        assert await c.cmd("DELE 1") == "+OK message 1 deleted"
        assert await c.cmd("DELE 1") == "-ERR message 1 already deleted"
        assert (await c.cmd("RETR 1")).startswith("-ERR")
        assert await c.cmd("STAT") == f"+OK 2 {MSG2.octets + MSG3.octets}"
        assert (await c.cmd("LIST")).startswith("+OK 2 messages")
        assert await c.body() == f"2 {MSG2.octets}\r\n3 {MSG3.octets}\r\n".encode()
        assert await c.cmd("DELE 3") == "+OK message 3 deleted"
        # A message added mid-session is not in this session's maildrop.
        server.add(Message("late", b"x\n"))
        assert await c.cmd("LIST 4") == "-ERR no such message"
        assert server.uids() == ["uid-1", "uid-2", "uid-3", "late"]
        assert await c.cmd("QUIT") == "+OK bye"
        assert await c.at_eof()
        session = server.sessions[0]
        assert session.committed and session.deleted_marked == ["uid-1", "uid-3"]
        assert server.uids() == ["uid-2", "late"]


async def test_rset_unmarks():
    async with ScriptableServer(mailbox()) as server:
        c = await Client.connect(server)
        await c.login()
        await c.cmd("DELE 2")
        assert (await c.cmd("RSET")).startswith("+OK maildrop has 3 messages")
        assert (await c.cmd("STAT")).startswith("+OK 3 ")
        assert await c.cmd("QUIT") == "+OK bye"
        assert await c.at_eof()
        assert server.uids() == ["uid-1", "uid-2", "uid-3"]
        assert server.sessions[0].committed and server.sessions[0].deleted_marked == []


async def test_connection_loss_without_quit_commits_nothing():
    async with ScriptableServer(mailbox()) as server:
        c = await Client.connect(server)
        await c.login()
        assert (await c.cmd("DELE 1")).startswith("+OK")
        await c.close()
        await until(lambda: server.concurrent_now == 0)
        assert server.uids() == ["uid-1", "uid-2", "uid-3"]
        assert not server.sessions[0].committed
        # The lock went with the session.
        c2 = await Client.connect(server)
        assert (await c2.login()).startswith("+OK")
        await c2.close()


async def test_quit_in_authorization_state():
    async with ScriptableServer(mailbox()) as server:
        c = await Client.connect(server)
        assert await c.cmd("QUIT") == "+OK bye"
        assert await c.at_eof()
        assert not server.sessions[0].committed


async def test_in_use_for_a_concurrent_login():
    async with ScriptableServer(mailbox()) as server:
        a = await Client.connect(server)
        b = await Client.connect(server)
        assert (await a.login()).startswith("+OK")
        assert await b.login() == "-ERR [IN-USE] mailbox locked"
        assert not server.sessions[1].authenticated
        assert await a.cmd("QUIT") == "+OK bye"
        assert (await b.login()).startswith("+OK")
        await a.close()
        await b.close()


# -- capabilities


async def test_default_capabilities_and_variants():
    async with ScriptableServer(mailbox()) as server:
        c = await Client.connect(server)
        assert (await c.cmd("CAPA")).startswith("+OK")
        caps = (await c.body()).decode().split("\r\n")
        for cap in ("TOP", "UIDL", "USER", "PIPELINING", "RESP-CODES", "AUTH-RESP-CODE"):
            assert cap in caps
        assert "STLS" not in caps and not any(c.startswith("SASL") for c in caps)
        await c.close()
    async with ScriptableServer(mailbox(), uidl=False, sasl={"plain": PlainSasl("user", "pass")}) as server:
        c = await Client.connect(server)
        await c.cmd("CAPA")
        caps = (await c.body()).decode().split("\r\n")
        assert "UIDL" not in caps and "SASL PLAIN" in caps
        await c.login()
        assert (await c.cmd("UIDL")).startswith("-ERR")
        await c.close()
    async with ScriptableServer(mailbox(), capabilities=["TOP", "X-ODD  spaces"]) as server:
        c = await Client.connect(server)
        await c.cmd("CAPA")
        assert await c.body() == b"TOP\r\nX-ODD  spaces\r\n"
        await c.close()
    async with ScriptableServer(mailbox(), capa_supported=False) as server:
        c = await Client.connect(server)
        assert (await c.cmd("CAPA")).startswith("-ERR")
        await c.close()


# -- faults


async def test_fault_pass_error():
    faults = Faults(pass_error="[SYS/TEMP] try later")
    async with ScriptableServer(mailbox(), apop=True, faults=faults, sasl={"PLAIN": PlainSasl("user", "pass")}) as server:
        c = await Client.connect(server)
        assert await c.login() == "-ERR [SYS/TEMP] try later"
        assert await c.cmd("APOP user " + "0" * 32) == "-ERR [SYS/TEMP] try later"
        plain = base64.b64encode(b"\0user\0pass").decode()
        assert await c.cmd(f"AUTH PLAIN {plain}") == "-ERR [SYS/TEMP] try later"
        faults.pass_error = None
        assert (await c.login()).startswith("+OK")
        await c.close()


async def test_fault_greeting_error():
    async with ScriptableServer(mailbox(), faults=Faults(greeting_error="[SYS/PERM] go away")) as server:
        c = await Client.connect(server)
        assert c.greeting == "-ERR [SYS/PERM] go away"
        assert await c.at_eof()


async def test_fault_drop_during_retr():
    async with ScriptableServer(mailbox(), faults=Faults(drop_during_retr=(3, 10))) as server:
        c = await Client.connect(server)
        await c.login()
        await c.cmd("DELE 1")
        assert (await c.cmd("RETR 2")).startswith("+OK")
        await c.body()  # other messages are unaffected
        assert await c.cmd("RETR 3") == f"+OK {MSG3.octets} octets"
        assert await asyncio.wait_for(c.reader.read(), TIMEOUT) == b"Subject: three\r\n"[:10]
        await c.close()
        await until(lambda: server.concurrent_now == 0)
        assert server.uids() == ["uid-1", "uid-2", "uid-3"]


async def test_fault_drop_on_quit():
    async with ScriptableServer(mailbox(), faults=Faults(drop_on_quit=True)) as server:
        c = await Client.connect(server)
        await c.login()
        await c.cmd("DELE 1")
        await c.send("QUIT")
        assert await c.at_eof()
        await until(lambda: server.concurrent_now == 0)
        assert server.uids() == ["uid-1", "uid-2", "uid-3"]
        assert not server.sessions[0].committed


async def test_fault_drop_after_commands():
    async with ScriptableServer(mailbox(), faults=Faults(drop_after_commands=2)) as server:
        c = await Client.connect(server)
        assert (await c.login()).startswith("+OK")
        assert await c.at_eof()
        server.faults.drop_after_commands = 0
        c = await Client.connect(server)
        assert c.greeting.startswith("+OK")
        assert await c.at_eof()


async def test_fault_response_delay():
    async with ScriptableServer(mailbox(), faults=Faults(response_delay=0.1)) as server:
        c = await Client.connect(server)
        started = time.monotonic()
        assert (await c.cmd("USER user")).startswith("+OK")
        assert time.monotonic() - started >= 0.09
        await c.close()


async def test_fault_listing_overrides():
    faults = Faults(uidl_override=["1 same", "2 same", "garbage line"], list_override=["1", "x y z"])
    async with ScriptableServer(mailbox(), faults=faults) as server:
        c = await Client.connect(server)
        await c.login()
        assert (await c.cmd("UIDL")).startswith("+OK")
        assert await c.body() == b"1 same\r\n2 same\r\ngarbage line\r\n"
        assert (await c.cmd("LIST")).startswith("+OK")
        assert await c.body() == b"1\r\nx y z\r\n"
        assert await c.cmd("UIDL 1") == "+OK 1 uid-1"  # single-message forms are untouched
        await c.close()


async def test_fault_hang_on():
    server = ScriptableServer(mailbox(), faults=Faults(hang_on="retr"))
    await server.start()
    c = await Client.connect(server)
    await c.login()
    await c.send("RETR 1")
    with pytest.raises(asyncio.TimeoutError):
        await c.line(timeout=0.2)
    assert server.sessions[0].commands[-1] == "RETR 1"
    assert server.concurrent_now == 1
    # stop() ends a hanging session.
    await asyncio.wait_for(server.stop(), TIMEOUT)
    assert server.concurrent_now == 0
    assert await c.at_eof()
    await c.close()


# -- TLS


@pytest.fixture(scope="module")
def tls_contexts(tmp_path_factory):
    """A self-signed certificate for localhost: (server context, client context)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    folder = tmp_path_factory.mktemp("tls")
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert_file, key_file)
    client_ctx = ssl.create_default_context(cafile=str(cert_file))
    return server_ctx, client_ctx


async def test_stls(tls_contexts):
    server_ctx, client_ctx = tls_contexts
    async with ScriptableServer(mailbox(), ssl_context=server_ctx) as server:
        c = await Client.connect(server)
        await c.cmd("CAPA")
        assert "STLS" in (await c.body()).decode().split("\r\n")
        assert await c.cmd("STLS") == "+OK begin TLS"
        await asyncio.wait_for(c.writer.start_tls(client_ctx, server_hostname="localhost"), TIMEOUT)
        assert c.writer.get_extra_info("ssl_object") is not None
        await c.cmd("CAPA")
        assert "STLS" not in (await c.body()).decode().split("\r\n")
        assert (await c.cmd("STLS")).startswith("-ERR")
        assert (await c.login()).startswith("+OK")
        assert (await c.cmd("RETR 1")).startswith("+OK")
        assert await c.body() == b"Subject: one\r\n\r\nhello\r\n"
        assert await c.cmd("QUIT") == "+OK bye"
        assert server.sessions[0].tls and server.sessions[0].committed
        await c.close()


async def test_stls_unavailable_without_context():
    async with ScriptableServer(mailbox()) as server:
        c = await Client.connect(server)
        assert (await c.cmd("STLS")).startswith("-ERR")
        await c.close()


async def test_implicit_tls(tls_contexts):
    server_ctx, client_ctx = tls_contexts
    async with ScriptableServer(mailbox(), ssl_context=server_ctx, implicit_tls=True) as server:
        c = await Client.connect(server, ssl_context=client_ctx)
        assert c.greeting.startswith("+OK")
        await c.cmd("CAPA")
        assert "STLS" not in (await c.body()).decode().split("\r\n")
        assert (await c.cmd("STLS")).startswith("-ERR")
        assert (await c.login()).startswith("+OK")
        assert server.sessions[0].tls
        await c.close()


# -- SASL


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


async def test_sasl_plain():
    async with ScriptableServer(mailbox(), sasl={"PLAIN": PlainSasl("user", "pass")}) as server:
        c = await Client.connect(server)
        assert (await c.cmd("AUTH")).startswith("+OK")
        assert await c.body() == b"PLAIN\r\n"
        assert await c.cmd("AUTH CRAM-MD5") == "-ERR unsupported mechanism"
        assert await c.cmd("AUTH PLAIN !!!") == "-ERR invalid base64"
        assert await c.cmd("AUTH PLAIN =") == "-ERR [AUTH] malformed PLAIN response"
        assert await c.cmd("AUTH PLAIN " + b64(b"\0user\0wrong")) == "-ERR [AUTH] invalid user name or password"
        # Without an initial response: an empty challenge, then the response.
        assert await c.cmd("AUTH PLAIN") == "+ "
        assert await c.cmd("*") == "-ERR authentication cancelled"
        assert await c.cmd("auth plain") == "+ "
        assert (await c.cmd(b64(b"user\0user\0pass"))).startswith("+OK")
        assert server.sessions[0].authenticated
        await c.close()
        c = await Client.connect(server)
        assert (await c.cmd("AUTH PLAIN " + b64(b"\0user\0pass"))).startswith("+OK")
        await c.close()


class _EchoSasl:
    """A two-step async mechanism: challenge "who?", expect "me"."""

    def start(self):
        return self

    async def step(self, client_response):
        if client_response is None:
            return ("challenge", b"who?")
        return ("ok", None) if client_response == b"me" else ("fail", b"not you")


async def test_sasl_multi_step_async_handler():
    async with ScriptableServer(mailbox(), sasl={"X-ECHO": _EchoSasl()}) as server:
        c = await Client.connect(server)
        assert await c.cmd("AUTH X-ECHO") == "+ " + b64(b"who?")
        assert await c.cmd(b64(b"you")) == "-ERR [AUTH] not you"
        assert await c.cmd("AUTH X-ECHO") == "+ " + b64(b"who?")
        assert (await c.cmd(b64(b"me"))).startswith("+OK")
        assert server.sessions[0].commands == ["AUTH X-ECHO", "AUTH X-ECHO"]
        await c.close()


# -- counters


async def test_concurrency_counters_and_peer_addresses():
    async with ScriptableServer(mailbox()) as server:
        clients = [await Client.connect(server) for _ in range(3)]
        assert server.concurrent_now == 3 and server.max_concurrent == 3
        assert server.sessions_total == 3
        assert server.peer_addresses == ["127.0.0.1"] * 3
        assert [s.peer for s in server.sessions] == ["127.0.0.1"] * 3
        for c in clients:
            await c.close()
        await until(lambda: server.concurrent_now == 0)
        c = await Client.connect(server)
        assert server.concurrent_now == 1 and server.max_concurrent == 3 and server.sessions_total == 4
        await c.close()
        assert server.bytes_sent == sum(s.bytes_sent for s in server.sessions) > 0


async def test_load_messages(tmp_path):
    (tmp_path / "b.eml").write_bytes(b"Subject: b\n\nb\n")
    (tmp_path / "a.eml").write_bytes(b"Subject: a\n\na\n")
    extra = tmp_path / "extra.msg"
    messages = load_messages([tmp_path])
    assert [m.uid for m in messages] == ["a.eml", "b.eml"]
    extra.write_bytes(b"x\n")
    assert [m.uid for m in load_messages([extra])] == ["extra.msg"]
