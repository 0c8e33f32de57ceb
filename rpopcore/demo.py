"""``rpop demo``: the whole product in one minute, on a fresh machine.

Starts two POP3 servers on loopback (the project's scriptable server) holding
sample mail for alice and bob, makes a site in a temporary folder, applies a
declarative file, polls, and shows what arrived where -- then polls again to
show that nothing arrives twice.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from rpopcore.testing.scriptable_server import Message, ScriptableServer

SAMPLES = {
    "alice": [
        ("Return-Path: <carol@isp.test>", "Carol <carol@isp.test>", "Lunch on Friday?", "Shall we try the new place?"),
        ("Return-Path: <news@shop.test>", "Shop <news@shop.test>", "Your order has shipped", "It arrives on Monday."),
        ("", "Dave <dave@isp.test>", "Photos", ".a line that starts with a dot survives dot-stuffing"),
    ],
    "bob": [
        ("Return-Path: <erin@isp.test>", "Erin <erin@isp.test>", "Minutes of the meeting", "Attached, as promised."),
    ],
}


def _message(index: int, owner: str, sample) -> Message:
    return_path, sender, subject, body = sample
    head = [return_path] if return_path else []
    head += [f"From: {sender}", f"To: {owner}@isp.test", f"Subject: {subject}", f"Message-ID: <{owner}.{index}@demo.test>"]
    return Message(uid=f"{owner}-{index}", data=("\r\n".join(head) + "\r\n\r\n" + body + "\r\n").encode())


async def run_demo(keep: bool = False) -> int:
    from rpopcore.cli import _init
    from rpopcore.service import Site

    folder = Path(tempfile.mkdtemp(prefix="rpop-demo-"))
    servers = {
        "alice": ScriptableServer([_message(i, "alice", s) for i, s in enumerate(SAMPLES["alice"])],
                                  user="alice.smith", password="alice-secret", apop=True),
        "bob": ScriptableServer([_message(i, "bob", s) for i, s in enumerate(SAMPLES["bob"])],
                                user="bob", password="bob-secret"),
    }
    try:
        for server in servers.values():
            await server.start()
        _init(folder)
        decl = folder / "accounts.toml"
        decl.write_text(
            f"""[rpop]
allow_self_poll = true   # the demo's servers run on this machine

[[domain]]
name = "example.test"
main = true
accounts = ["alice", "bob", "postmaster"]

[[remote]]               # alice's ISP mailbox, with APOP; mail is deleted once delivered
owner = "alice@example.test"
account = "alice.smith"
host = "127.0.0.1:{servers['alice'].port}"
password = "alice-secret"
apop = true
leave = false

[[remote]]               # bob's ISP mailbox; mail is left there, UIDs remembered
owner = "bob@example.test"
account = "bob"
host = "127.0.0.1:{servers['bob'].port}"
password = "bob-secret"
leave = true
"""
        )
        site = await Site.open(folder / "rpop.toml")
        try:
            await site.apply(decl)
            print(f"\nSite in {folder}; two POP3 servers on 127.0.0.1 ports "
                  f"{servers['alice'].port} and {servers['bob'].port}.\n")
            print("First poll:")
            for result in await site.poll_once():
                print(f"  record {result.record_id}: {result.retrieved} retrieved, {result.delivered} delivered"
                      + (f", error {result.error}" if result.error else ""))
            print("\nWhat arrived where:")
            for path in sorted((folder / "mail").glob("*/*/new/*")):
                head = path.read_bytes().split(b"\n\n", 1)[0].decode()
                subject = next((l[9:] for l in head.splitlines() if l.startswith("Subject: ")), "")
                trace = " / ".join(head.splitlines()[:2])
                print(f"  {path.relative_to(folder)}\n      {trace}\n      Subject: {subject}")
            print(f"\nLeft on alice's server: {len(servers['alice'].mailbox)} (leave = false deletes after delivery)")
            print(f"Left on bob's server:   {len(servers['bob'].mailbox)} (leave = true keeps mail, skips it next time)")
            print("\nSecond poll (nothing new, nothing twice):")
            for result in await site.poll_once():
                print(f"  record {result.record_id}: {result.retrieved} retrieved, {result.delivered} delivered")
            print("\nStatus:")
            for row in await site.status():
                print(f"  record {row['id']} {row['owner']:<20} {row['account']}@{row['host']:<22} last {row['last']}")
        finally:
            await site.close()
    finally:
        for server in servers.values():
            await server.stop()
        if keep:
            print(f"\nkept {folder}")
        else:
            shutil.rmtree(folder, ignore_errors=True)
    return 0
