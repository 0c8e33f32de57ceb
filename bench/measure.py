"""Running one retriever as a child process and measuring it.

The tool runs under a tiny wrapper (``python3 -S -I``, about 5 MiB) that
forks it, waits for it with ``os.wait4`` and writes what it measured to a
file:

* **Wall**: ``time.perf_counter()`` from just before the fork to the moment
  ``os.wait4`` reaps the tool.
* **CPU** (user + sys) and **peak RSS**: the ``rusage`` ``os.wait4``
  returns.  On Linux that is the tool's own usage plus that of every
  descendant it waited for (RUSAGE_BOTH on reaping): fetchmail's safecat
  processes count as fetchmail's CPU.  Peak RSS (``ru_maxrss``) is the
  largest resident set of any single process of that tree -- for fetchmail
  the larger of fetchmail and one safecat, not their sum (they do not run
  at the same time anyway).

Why a wrapper: a process's ``ru_maxrss`` starts from the memory of the
process it was forked from (Linux keeps the old address space's high-water
mark across ``exec``), so a tool forked straight from the harness would
report at least the harness's own ~50 MiB.  Forked from the wrapper, the
floor is about 5 MiB (what ``/bin/true`` measures, see
:func:`wrapper_floor_kib`); a figure at that floor means "at most this" and
is printed as ``<=5``.

The server (Dovecot) and the latency proxy are not the tool's descendants,
so their CPU is never counted.  The wrapper runs in its own session, so a
run that exceeds its time limit is killed with its whole process group.
"""

from __future__ import annotations

import functools
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Mapping, Sequence

import attrs


@attrs.frozen
class Measurement:
    wall: float  # seconds
    user: float  # seconds
    sys: float  # seconds
    maxrss_kib: int
    exit_code: int
    timed_out: bool
    floor_kib: int = 0  # what /bin/true measures under the wrapper: no figure can be lower

    @property
    def rss_at_floor(self) -> bool:
        """The tool's own peak may be lower than what was measured."""
        return self.maxrss_kib <= self.floor_kib + 256

    @property
    def cpu(self) -> float:
        return self.user + self.sys


_WRAPPER = """\
import os, sys, time
report, uid, gid, argv = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4:]
start = time.perf_counter()
pid = os.fork()
if pid == 0:
    try:
        if uid >= 0:
            os.setgroups([])
            os.setgid(gid)
            os.setuid(uid)
        os.execv(argv[0], argv)
    finally:
        os._exit(127)
_, status, ru = os.wait4(pid, 0)
wall = time.perf_counter() - start
import json
with open(report, "w") as f:
    json.dump({"wall": wall, "user": ru.ru_utime, "sys": ru.ru_stime, "maxrss": ru.ru_maxrss,
               "exit": os.waitstatus_to_exitcode(status)}, f)
"""


def run_measured(argv: Sequence[str], *, cwd: Path, env: Mapping[str, str], log_dir: Path,
                 timeout: float, user: tuple[int, int] | None = None, floor: bool = True) -> Measurement:
    """Run ``argv`` (``argv[0]`` an absolute path) to its end under the
    wrapper, as ``user`` (uid, gid) when given; its stdout and stderr go to
    ``log_dir``."""
    log_dir.mkdir(parents=True, exist_ok=True)
    report = log_dir / "rusage.json"
    timed_out = threading.Event()
    with open(log_dir / "stdout", "wb") as out, open(log_dir / "stderr", "wb") as err:
        start = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, "-S", "-I", "-c", _WRAPPER, str(report), *map(str, user or (-1, -1)), *argv],
            cwd=cwd, env=dict(env), stdin=subprocess.DEVNULL, stdout=out, stderr=err,
            start_new_session=True, close_fds=True,
        )

        def kill() -> None:
            timed_out.set()
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

        timer = threading.Timer(timeout, kill)
        timer.daemon = True
        timer.start()
        try:
            proc.wait()
        finally:
            timer.cancel()
            if proc.poll() is None:  # the harness itself is being stopped
                kill()
                proc.wait()
        outer = time.perf_counter() - start
    try:
        got = json.loads(report.read_text())
    except (OSError, ValueError):  # killed, or the wrapper itself failed
        return Measurement(outer, 0.0, 0.0, 0, proc.returncode or -1, timed_out.is_set())
    return Measurement(
        wall=got["wall"],
        user=got["user"],
        sys=got["sys"],
        maxrss_kib=got["maxrss"],
        exit_code=got["exit"],
        timed_out=timed_out.is_set(),
        floor_kib=wrapper_floor_kib() if floor else 0,
    )


@functools.cache
def wrapper_floor_kib() -> int:
    """The peak RSS the wrapper reports for ``/bin/true``: the part of
    every figure that is inherited from the wrapper, not the tool's own."""
    with tempfile.TemporaryDirectory() as tmp:
        runs = [run_measured(["/bin/true"], cwd=Path(tmp), env={}, log_dir=Path(tmp) / str(i), timeout=30,
                             floor=False)
                for i in range(3)]
    return max(m.maxrss_kib for m in runs)


def run_setup(argv: Sequence[str], *, cwd: Path, env: Mapping[str, str], timeout: float = 600) -> None:
    """An unmeasured preparation step (``rpop init``/``apply``); raises
    with its output when it fails."""
    result = subprocess.run(list(argv), cwd=cwd, env=dict(env), stdin=subprocess.DEVNULL,
                            capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, argv))} failed ({result.returncode}):\n{result.stdout}{result.stderr}")
