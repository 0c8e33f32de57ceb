"""The benchmark's POP3 server: the test suite's Dovecot, tuned for load.

:class:`rpopcore.testing.dovecot.Dovecot` writes a standalone configuration
and runs Dovecot on loopback; here it gets a TLS certificate from the test
CA (for the pop3s scenario) and these additions:

* ``pop3_no_flag_updates = yes``: retrieving does not rename files (no
  \\Seen flag, no new/ -> cur/ move), so every run finds the server as the
  first one did.
* Enough processes for 50+ sessions at once, and pop3-login in Dovecot's
  "high-performance" mode (a few long-lived login processes instead of a
  fork per connection), so the server is not what limits concurrency.

After seeding, every mailbox is opened once (STAT, LIST, UIDL) so Dovecot
builds its index and caches message sizes before anything is measured.
"""

from __future__ import annotations

import os
import poplib
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterable

from bench.corpus import fingerprint
from bench.scenarios import PASSWORD, Corpus, Expected

_ROOT = Path(__file__).resolve().parent.parent
if str(_ROOT) not in sys.path:  # the test support code lives in tests/
    sys.path.insert(0, str(_ROOT))

from rpopcore.testing.dovecot import Dovecot, default_parent  # noqa: E402
from rpopcore.testing.tlsca import TestCA  # noqa: E402

EXTRA_CONFIG = """\
pop3_no_flag_updates = yes
mail_max_userip_connections = 100
default_process_limit = 1000
default_client_limit = 5000
service pop3-login {
  service_count = 0
  process_min_avail = 2
  client_limit = 1000
}
service pop3 {
  process_limit = 1000
}
service auth {
  client_limit = 5000
}
"""


class BenchServer:
    """Dovecot with TLS and every mailbox of the selected corpora."""

    def __init__(self, corpora: Iterable[Corpus], work: Path):
        self.corpora = list(corpora)
        self.work = work
        self.ca = TestCA.create(work / "ca")
        cert = self.ca.issue(work / "ca", ("127.0.0.1", "localhost"), stem="server")
        users = {box.account: PASSWORD for c in self.corpora for box in c.mailboxes}
        self.dovecot = Dovecot(users=users, tls=cert, auth_mechanisms="plain login",
                               extra_config=EXTRA_CONFIG, start_timeout=30)
        self.expected: dict[str, Expected] = {}
        self.bytes: dict[str, int] = {}
        self.counts: dict[str, int] = {}

    @property
    def host(self) -> str:
        return self.dovecot.host

    @property
    def ca_file(self) -> str:
        return str(self.ca.ca_pem_path)

    def start(self, log=print) -> "BenchServer":
        t = time.perf_counter()
        self.dovecot.start()
        for c in self.corpora:
            self._seed(c)
            log(f"  seeded {c.name}: {self.counts[c.name]:,} messages, {self.bytes[c.name] / 1e6:,.1f} MB "
                f"in {len(c.mailboxes):,} mailbox(es)")
        self._warm_up()
        log(f"  Dovecot ready in {time.perf_counter() - t:.1f} s ({self.dovecot.root})")
        return self

    def stop(self) -> None:
        self.dovecot.stop()

    def _seed(self, c: Corpus) -> None:
        expected: Expected = {}
        total = count = 0
        for box in c.mailboxes:
            batch: list[bytes] = []
            for local, data in c.messages(box):
                fp = fingerprint(data)
                expected.setdefault(local, {})[fp.message_id] = fp
                batch.append(data)
                total += len(data)
                count += 1
                if len(batch) >= 256:
                    self.dovecot.put_many(box.account, batch)
                    batch = []
            if batch:
                self.dovecot.put_many(box.account, batch)
        self.expected[c.name] = expected
        self.bytes[c.name] = total
        self.counts[c.name] = count

    def _warm_up(self) -> None:
        accounts = [box.account for c in self.corpora for box in c.mailboxes]

        def visit(account: str) -> None:
            pop = poplib.POP3(self.host, self.dovecot.pop3_port, timeout=600)
            try:
                pop.user(account)
                pop.pass_(PASSWORD)
                pop.stat()
                pop.list()
                pop.uidl()
            finally:
                pop.quit()

        with ThreadPoolExecutor(8) as pool:
            list(pool.map(visit, accounts))


def work_parent(explicit: str | None) -> Path:
    """Where run folders go: ``--out-dir``, else beside Dovecot's (tmpfs
    when there is room), else the system temporary folder."""
    if explicit:
        return Path(explicit)
    return Path(default_parent() or tempfile.gettempdir())


def free_bytes(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize
