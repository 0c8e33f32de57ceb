"""The seed's "Allow Self-Poll" check: is a host one of this machine's own
addresses?  Polling ourselves makes mail loops, so unless allowed the record
is refused before any connection is made."""

from __future__ import annotations

import array
import asyncio
import fcntl
import ipaddress
import socket
import struct
import time
from typing import Iterable

from rpopcore import errors

_SIOCGIFCONF = 0x8912


_CACHE_SECONDS = 60.0
_cached: tuple[float, frozenset] | None = None


def local_addresses() -> frozenset[ipaddress._BaseAddress]:
    """Every address of this machine's interfaces (loopback included), read
    at most once a minute: a thousand polls need not ask the kernel (and the
    resolver, for the host name) a thousand times."""
    global _cached
    now = time.monotonic()
    if _cached is None or now - _cached[0] > _CACHE_SECONDS:
        _cached = (now, frozenset(_read_local_addresses()))
    return _cached[1]


def _read_local_addresses() -> set[ipaddress._BaseAddress]:
    found: set[ipaddress._BaseAddress] = {ipaddress.ip_address("::1")}
    found.update(_ipv4_interface_addresses())
    try:
        with open("/proc/net/if_inet6") as f:
            for line in f:
                raw = line.split()[0]
                found.add(ipaddress.ip_address(":".join(raw[i : i + 4] for i in range(0, 32, 4))))
    except OSError:
        pass
    try:
        for info in socket.getaddrinfo(socket.gethostname(), None):
            found.add(ipaddress.ip_address(info[4][0].split("%")[0]))
    except OSError:
        pass
    return found


def _ipv4_interface_addresses() -> Iterable[ipaddress.IPv4Address]:
    """IPv4 addresses of all interfaces, via SIOCGIFCONF (Linux)."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            size = 40 * 128
            buf = array.array("B", b"\0" * size)
            ptr, _ = buf.buffer_info()
            result = fcntl.ioctl(s.fileno(), _SIOCGIFCONF, struct.pack("iL", size, ptr))
            used = struct.unpack("iL", result)[0]
            data = buf.tobytes()[:used]
            for offset in range(0, used, 40):
                yield ipaddress.IPv4Address(data[offset + 20 : offset + 24])
    except OSError:
        return


def is_loopback_host(host: str) -> bool:
    """Whether ``host`` names this machine by itself: ``localhost`` or a
    loopback address (127.0.0.0/8, ::1).  No name is resolved."""
    if host.lower().rstrip(".") == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def is_own(address: ipaddress._BaseAddress, extra: Iterable[str]) -> bool:
    if address.is_loopback or address.is_unspecified:
        return True
    if getattr(address, "ipv4_mapped", None) is not None:
        return is_own(address.ipv4_mapped, extra)
    return address in local_addresses() or address in {ipaddress.ip_address(a) for a in extra}


async def refuse_self_poll(host: str, port: int, own_addresses: Iterable[str]) -> None:
    """Raise :class:`SelfPollRefused` if ``host`` resolves to one of our
    own addresses (or one listed in ``own_addresses``).  Makes no connection."""
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise errors.ConnectFailed(f"cannot resolve {host}: {exc.strerror or exc}") from None
    extra = list(own_addresses)
    for info in infos:
        address = ipaddress.ip_address(info[4][0].split("%")[0])
        if is_own(address, extra):
            raise errors.SelfPollRefused(
                f"{host} resolves to {address}, an address of this machine; polling it would loop mail. "
                "Set allow_self_poll = true in [rpop] if this is really wanted"
            )
