"""A latency-injecting TCP proxy on loopback: a remote ISP, made locally.

Every chunk read from one side is written to the other ``delay`` seconds
later, in each direction, so a round trip costs ``2 * delay`` (the RTT).
Chunks wait in a queue with their due times, so the link has latency but
no bandwidth limit: a window of pipelined commands costs one RTT, as on a
real link, not one RTT per chunk.

Connection set-up costs what TCP's handshake would: the proxy opens its
upstream connection ``3 * delay`` after accepting, so the server's greeting
(or, for implicit TLS, its ServerHello) reaches the client two RTTs after
``connect()`` -- one for SYN/SYN-ACK, one for the first exchange.

The proxy runs its own event loop in a thread of the harness; the measured
tools are other processes, so its CPU is not counted as theirs.
"""

from __future__ import annotations

import asyncio
import collections
import socket
import threading
import time

#: A direction stops reading while this many bytes wait to be written, so
#: a slow reader pushes back through TCP as it would on a real link.  At
#: 25 ms each way this allows ~600 MB/s: no bandwidth limit in practice.
MAX_QUEUED = 16 << 20
CHUNK = 1 << 16


class LatencyProxy:
    """``LatencyProxy(upstream_host, upstream_port, rtt_ms).start()``;
    clients connect to ``(proxy.host, proxy.port)``.  ``stop()`` closes it."""

    def __init__(self, upstream_host: str, upstream_port: int, rtt_ms: float, host: str = "127.0.0.1"):
        self.upstream = (upstream_host, upstream_port)
        self.delay = rtt_ms / 2000.0
        self.rtt_ms = rtt_ms
        self.host = host
        self.port: int | None = None
        self.connections = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="latency-proxy", daemon=True)
        self._server: asyncio.base_events.Server | None = None
        self._tasks: set[asyncio.Task] = set()

    def start(self) -> "LatencyProxy":
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    async def _start(self) -> None:
        self._server = await asyncio.start_server(self._accept, self.host, 0, backlog=1024)
        self.port = self._server.sockets[0].getsockname()[1]

    def stop(self) -> None:
        if not self._thread.is_alive():
            return
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    async def _stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def __enter__(self) -> "LatencyProxy":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    async def _accept(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        self._tasks.add(task)
        self.connections += 1
        loop = asyncio.get_running_loop()
        up_w = None
        try:
            to_server = _Pipe(self.delay, loop)
            to_client = _Pipe(self.delay, loop)
            # Read from the client at once (its first bytes are "in flight"),
            # connect upstream when the handshake would have completed.
            reader = asyncio.create_task(to_server.read_from(client_r))
            await asyncio.sleep(3 * self.delay)
            up_r, up_w = await asyncio.open_connection(*self.upstream)
            await asyncio.gather(
                reader,
                to_server.write_to(up_w),
                to_client.read_from(up_r),
                to_client.write_to(client_w),
            )
        except (OSError, asyncio.CancelledError):
            pass
        finally:
            for w in (client_w, up_w):
                if w is not None:
                    w.close()
            self._tasks.discard(task)


class _Pipe:
    """One direction: chunks with due times, written in order when due."""

    def __init__(self, delay: float, loop: asyncio.AbstractEventLoop):
        self.delay = delay
        self.loop = loop
        self.queue: collections.deque[tuple[float, bytes]] = collections.deque()
        self.queued = 0
        self.arrived = asyncio.Event()
        self.drained = asyncio.Event()
        self.eof = False

    async def read_from(self, reader: asyncio.StreamReader) -> None:
        try:
            while True:
                while self.queued > MAX_QUEUED:
                    self.drained.clear()
                    await self.drained.wait()
                data = await reader.read(CHUNK)
                if not data:
                    break
                self.queue.append((self.loop.time() + self.delay, data))
                self.queued += len(data)
                self.arrived.set()
        except OSError:
            pass
        finally:
            self.queue.append((self.loop.time() + self.delay, b""))  # EOF travels too
            self.arrived.set()

    async def write_to(self, writer: asyncio.StreamWriter) -> None:
        while True:
            while not self.queue:
                self.arrived.clear()
                await self.arrived.wait()
            due, data = self.queue.popleft()
            wait = due - self.loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            if not data:
                try:
                    if writer.can_write_eof():
                        writer.write_eof()
                except OSError:
                    pass
                return
            self.queued -= len(data)
            self.drained.set()
            writer.write(data)
            try:
                await writer.drain()
            except OSError:
                return


def measure_rtt(host: str, port: int, rounds: int = 5) -> float:
    """Median time in ms of a POP3 ``NOOP``-less round trip: send ``CAPA``
    after the greeting and wait for its first line (no login needed)."""
    times = []
    with socket.create_connection((host, port), timeout=10) as s:
        f = s.makefile("rb")
        f.readline()  # greeting
        for _ in range(rounds):
            t = time.perf_counter()
            s.sendall(b"CAPA\r\n")
            line = f.readline()
            times.append((time.perf_counter() - t) * 1000)
            while line and line.rstrip(b"\r\n") != b".":
                line = f.readline()
        s.sendall(b"QUIT\r\n")
        f.readline()
    times.sort()
    return times[len(times) // 2]
