"""The CLI is tested as a user runs it: the installed ``rpop`` command in a
subprocess, with a POP3 server running in a thread of the test process."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from rpopcore.testing.scriptable_server import ScriptableServer


class ThreadedServer:
    """A ScriptableServer on its own event loop in a thread."""

    def __init__(self, *args, **kwargs):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.server = self._call(self._make(*args, **kwargs))

    async def _make(self, *args, **kwargs):
        server = ScriptableServer(*args, **kwargs)
        await server.start()
        return server

    def _call(self, coro):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)

    def stop(self):
        self._call(self.server.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@pytest.fixture
def threaded_pop3():
    servers = []

    def start(*args, **kwargs) -> ScriptableServer:
        threaded = ThreadedServer(*args, **kwargs)
        servers.append(threaded)
        return threaded.server

    yield start
    for threaded in servers:
        threaded.stop()


def rpop_command() -> str:
    """The installed console script: beside this Python, else on PATH."""
    beside = Path(sys.executable).parent / "rpop"
    found = str(beside) if beside.exists() else shutil.which("rpop")
    if not found:
        pytest.fail("the rpop console script is not installed; run: bash scripts/setup", pytrace=False)
    return found


def run_rpop(*args, cwd=None, env=None, timeout=120) -> subprocess.CompletedProcess:
    """Run the installed console script."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([rpop_command(), *map(str, args)], cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def rpop():
    return run_rpop


def json_out(result: subprocess.CompletedProcess):
    assert result.stdout, result.stderr
    return json.loads(result.stdout)


@pytest.fixture
def site(tmp_path):
    """A fresh site made by ``rpop init``."""
    result = run_rpop("init", tmp_path / "site")
    assert result.returncode == 0, result.stderr
    return tmp_path / "site"
