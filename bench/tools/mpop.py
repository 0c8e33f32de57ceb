"""mpop (Debian ``mpop``): one configuration file with an account per
mailbox, native Maildir delivery, ``keep on``, a fresh ``uidls_file``
folder per run, pipelining as the server offers it; ``mpop -a`` polls every
account, one after another."""

from __future__ import annotations

from pathlib import Path

from bench.scenarios import Job
from bench.tools import Prepared, Tool, base_env, make_maildir, write_private


class Mpop(Tool):
    name = "mpop"
    package = "mpop"
    binary = "mpop"
    multidrop = False  # mpop has no multidrop mode

    def prepare(self, job: Job, run_dir: Path) -> Prepared:
        lines = ["defaults", "auth user", "keep on", "pipelining auto", f"timeout {job.timeout}"]
        if job.tls:
            lines += ["tls on", "tls_starttls off", f"tls_trust_file {job.ca_file}"]
        else:
            lines += ["tls off"]
        lines += [f"uidls_file {run_dir}/uidls/%U_at_%H", ""]
        maildirs = {}
        for box in job.mailboxes:
            maildirs[box.local] = md = make_maildir(run_dir / "mail" / box.local)
            lines += [f"account {box.account}", f"host {job.host}", f"port {job.port}", f"user {box.account}",
                      f"password {job.password}", f"delivery maildir {md}", ""]
        rc = write_private(run_dir / "mpoprc", "\n".join(lines))
        return Prepared(("/usr/bin/mpop", "-C", str(rc), "-q", "-a"), base_env(run_dir), maildirs)
