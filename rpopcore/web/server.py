"""Serving the web interface with uvicorn, inside rpop's own event loop:
``rpop run`` beside the daemon, ``rpop web`` alone.

The listening socket is bound when the server is made, so a port in use is
one line at start-up (exit 2), not a log line from a server that never
came up.  rpop's own signal handlers stop it (uvicorn's are not
installed), and its access log is off: rpop logs what matters itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket

import uvicorn

from rpopcore import errors, logs
from rpopcore.config.site import WebConfig
from rpopcore.web.app import build_app

log = logging.getLogger("rpop.web")


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self):
        yield  # the caller's stop event ends the server


class WebServer:
    """The web interface of an opened site, bound and ready to serve."""

    def __init__(self, site, config: WebConfig):
        self.config = config
        self.socket = _bind(config)
        self.port = self.socket.getsockname()[1]
        self._server = _Server(uvicorn.Config(
            build_app(site, config), lifespan="off", access_log=False, log_config=None, log_level="warning",
            ssl_certfile=str(config.tls_cert) if config.tls_cert else None,
            ssl_keyfile=str(config.tls_key) if config.tls_key else None,
        ))

    @property
    def url(self) -> str:
        host = f"[{self.config.host}]" if ":" in self.config.host else self.config.host
        return f"{'https' if self.config.tls else 'http'}://{host}:{self.port}/"

    async def serve(self, stop: asyncio.Event) -> None:
        """Serve until ``stop`` is set."""
        task = asyncio.ensure_future(self._server.serve(sockets=[self.socket]))
        log.log(logs.MAJOR, "[web] serving %s", self.url)
        waiter = asyncio.ensure_future(stop.wait())
        await asyncio.wait([task, waiter], return_when=asyncio.FIRST_COMPLETED)
        self._server.should_exit = True
        waiter.cancel()
        await task
        self.socket.close()


def _bind(config: WebConfig) -> socket.socket:
    family = socket.AF_INET6 if ":" in config.host else socket.AF_INET
    try:
        return socket.create_server((config.host, config.port), family=family, reuse_port=False)
    except OSError as exc:
        raise errors.ConfigError(
            f"[web] key 'listen': cannot listen on {config.host}:{config.port} ({exc.strerror}); "
            "choose a free port on an address of this machine",
            field="listen",
        ) from None
