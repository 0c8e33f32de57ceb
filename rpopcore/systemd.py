"""Speaking to systemd: ``sd_notify`` messages when ``NOTIFY_SOCKET`` is
set (a ``Type=notify`` unit), and whether stderr goes to the journal.

The protocol is one datagram per message on a Unix socket (sd_notify(3)):
``READY=1`` once the daemon polls, ``STATUS=...`` with what it is doing,
``WATCHDOG=1`` at half the ``WATCHDOG_USEC`` interval, ``STOPPING=1`` when
it begins to stop.  Without ``NOTIFY_SOCKET`` every call does nothing.
"""

from __future__ import annotations

import os
import socket


class Notifier:
    """sd_notify for this process; inert when systemd did not ask for it."""

    def __init__(self, environ=os.environ):
        address = environ.get("NOTIFY_SOCKET", "")
        if address.startswith("@"):  # the abstract namespace
            address = "\0" + address[1:]
        self.address = address if address.startswith(("/", "\0")) else ""
        self._socket = None
        usec = environ.get("WATCHDOG_USEC", "")
        pid = environ.get("WATCHDOG_PID", "")
        mine = not pid or pid == str(os.getpid())
        #: Seconds between watchdog pings (half systemd's interval), or None.
        self.watchdog_interval = int(usec) / 2e6 if usec.isdigit() and int(usec) > 0 and mine else None

    @property
    def enabled(self) -> bool:
        return bool(self.address)

    def notify(self, *lines: str) -> None:
        """Send ``KEY=VALUE`` lines as one message; a failure is ignored
        (systemd going away must not stop mail).  Never blocks: a listener
        that stopped reading would otherwise stop the daemon once its queue
        is full; the message is dropped instead."""
        if not self.address:
            return
        try:
            if self._socket is None:
                self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                self._socket.setblocking(False)
            self._socket.sendto("\n".join(lines).encode("utf-8"), self.address)
        except OSError:
            pass

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None


def under_journald(environ=os.environ, stream_fd: int = 2) -> bool:
    """Whether stderr is connected to the journal (``JOURNAL_STREAM`` names
    its device and inode, systemd.exec(5)): then the journal adds the time,
    and log lines need not."""
    value = environ.get("JOURNAL_STREAM", "")
    device, _, inode = value.partition(":")
    if not (device.isdigit() and inode.isdigit()):
        return False
    try:
        st = os.fstat(stream_fd)
    except OSError:
        return False
    return st.st_dev == int(device) and st.st_ino == int(inode)
