"""fetchmail (Debian ``fetchmail``) delivering to Maildir through safecat
(Debian ``safecat``) as its MDA: the fast, safe way to give fetchmail a
Maildir (fetchmail itself only hands mail to an MDA or an SMTP/LMTP
server).  One poll entry per mailbox, ``keep fetchall``, a fresh idfile and
pidfile per run.  The domain mailbox uses fetchmail's multidrop mode:
``envelope "X-Real-To:"``, ``localdomains``, and ``%T`` in the MDA so each
local user gets their own Maildir."""

from __future__ import annotations

import shutil
from pathlib import Path

from bench.scenarios import Job
from bench.tools import Prepared, Tool, base_env, make_maildir, write_private

#: The local name a single-drop mailbox maps to; with an MDA that does not
#: use %T it only has to be a valid user.
LOCAL_USER = "rpopbench"


class Fetchmail(Tool):
    name = "fetchmail"
    package = "fetchmail"
    binary = "fetchmail"

    def available(self) -> bool:
        return shutil.which("fetchmail") is not None and shutil.which("safecat") is not None

    def version(self) -> str:
        from bench.tools import debian_version

        return f"{debian_version('fetchmail')} (safecat {debian_version('safecat')})"

    def prepare(self, job: Job, run_dir: Path) -> Prepared:
        safecat = shutil.which("safecat")
        mail = run_dir / "mail"
        if job.multidrop:
            # %T in the MDA is the local address, domain included
            maildirs = {user: make_maildir(mail / f"{user}@{job.multidrop.domain}") for user in job.locals}
        else:
            maildirs = {user: make_maildir(mail / user) for user in job.locals}
        if job.tls:
            # fetchmail checks the poll's label, not the address, against
            # the certificate: name one of the certificate's DNS names
            security = f"ssl sslcertck sslcommonname localhost sslcertfile \"{job.ca_file}\""
        else:
            security = "sslproto ''"
        lines = ["set no bouncemail", "set no spambounce", ""]
        for i, box in enumerate(job.mailboxes):
            lines.append(f"poll box{i} via {job.host} service {job.port} protocol pop3 auth password timeout {job.timeout}")
            if job.multidrop:
                md = job.multidrop
                lines += [f"  envelope \"{md.header}:\" localdomains {md.domain} no dns",
                          f"  user \"{box.account}\" there with password \"{job.password}\" "
                          f"to {' '.join(md.users)} here",
                          f"  keep fetchall {security} mda \"{safecat} {mail}/%T/tmp {mail}/%T/new\""]
            else:
                md_path = maildirs[box.local]
                lines += [f"  user \"{box.account}\" there with password \"{job.password}\" is {LOCAL_USER} here",
                          f"  keep fetchall {security} mda \"{safecat} {md_path}/tmp {md_path}/new\""]
        rc = write_private(run_dir / "fetchmailrc", "\n".join(lines) + "\n")
        env = {**base_env(run_dir), "FETCHMAILHOME": str(run_dir)}
        argv = ("/usr/bin/fetchmail", "-f", str(rc), "--nosyslog", "--nodetach", "--silent",
                "--pidfile", str(run_dir / "fetchmail.pid"), "--idfile", str(run_dir / "fetchids"))
        return Prepared(argv, env, maildirs)
