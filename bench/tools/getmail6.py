"""getmail6 (Debian ``getmail6``): one rc file per mailbox (its way of
polling several), SimplePOP3Retriever (SimplePOP3SSLRetriever for pop3s),
Maildir destination, ``delete = false``, ``read_all = true``, a fresh
``--getmaildir`` per run.  The domain mailbox uses MultidropPOP3Retriever
with ``envelope_recipient = x-real-to:1`` and a MultiSorter with one
Maildir per local user."""

from __future__ import annotations

import re
from pathlib import Path

from bench.scenarios import Job
from bench.tools import Prepared, Tool, base_env, make_maildir, write_private


class Getmail6(Tool):
    name = "getmail6"
    package = "getmail6"
    binary = "getmail"

    def prepare(self, job: Job, run_dir: Path) -> Prepared:
        mail = run_dir / "mail"
        maildirs = {user: make_maildir(mail / user) for user in job.locals}
        (run_dir / "rc").mkdir()
        (run_dir / "state").mkdir()
        argv = ["/usr/bin/getmail", "--getmaildir", str(run_dir / "state")]
        for box in job.mailboxes:
            if job.multidrop:
                kind = "MultidropPOP3SSLRetriever" if job.tls else "MultidropPOP3Retriever"
            else:
                kind = "SimplePOP3SSLRetriever" if job.tls else "SimplePOP3Retriever"
            text = (f"[retriever]\ntype = {kind}\nserver = {job.host}\nport = {job.port}\n"
                    f"username = {box.account}\npassword = {job.password}\ntimeout = {job.timeout}\n")
            if job.tls:
                text += f"ca_certs = {job.ca_file}\n"
            if job.multidrop:
                md = job.multidrop
                text += f"envelope_recipient = {md.header.lower()}:1\n\n"
                pairs = ",\n".join(f"    ('^{u}@{re.escape(md.domain)}$', '[{u}]')" for u in md.users)
                text += f"[destination]\ntype = MultiSorter\ndefault = [postmaster]\nlocals = (\n{pairs},\n    )\n\n"
                for user in (*md.users, "postmaster"):
                    text += f"[{user}]\ntype = Maildir\npath = {maildirs[user]}/\n\n"
            else:
                text += f"\n[destination]\ntype = Maildir\npath = {maildirs[box.local]}/\n\n"
            text += "[options]\nverbose = 0\nread_all = true\ndelete = false\nmessage_log_syslog = false\n"
            rc = write_private(run_dir / "rc" / box.account, text)
            argv += ["--rcfile", str(rc)]
        return Prepared(tuple(argv), base_env(run_dir), maildirs)
