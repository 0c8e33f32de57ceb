"""The module settings page: the seed's groups, each setting's kind of
field, and its help text -- the settings reference's (docs/settings.md;
a test keeps the two the same)."""

from __future__ import annotations

from typing import Mapping

#: The seed's "Processing" table first, then what rpop adds.
GROUPS = (
    ("Processing", ("log_level", "processors", "delay_failed_hosts", "default_ip_address", "delay_failed_accounts",
                    "use_domain_ip_addresses", "min_poll_period_for_users", "use_apop", "max_accounts_per_user",
                    "allow_self_poll")),
    ("Activity schedule", ("activity_schedule", "time_zone")),
    ("Network", ("own_addresses", "timeout", "max_status_line")),
)

LABELS = {
    "log_level": "Log Level", "processors": "Processors", "delay_failed_hosts": "Delay Failed Hosts for",
    "default_ip_address": "Default IP Address", "delay_failed_accounts": "Delay Failed Accounts for",
    "use_domain_ip_addresses": "Use Domain IP Addresses", "min_poll_period_for_users": "Minimum Poll Period for Users",
    "use_apop": "Use APOP", "max_accounts_per_user": "Maximum Number of Accounts per User",
    "allow_self_poll": "Allow Self-Poll", "activity_schedule": "Activity Schedule (one window a line)",
    "time_zone": "Time Zone", "own_addresses": "Own Addresses (one a line)", "timeout": "Network Timeout",
    "max_status_line": "Longest Status Line (bytes)",
}

BOOLEANS = ("use_apop", "allow_self_poll", "use_domain_ip_addresses")
INTEGERS = ("processors", "max_accounts_per_user", "max_status_line")
LISTS = ("activity_schedule", "own_addresses")
CHOICES = {"log_level": ("none", "major", "problems", "low-level", "all")}


def from_form(form: Mapping[str, str]) -> dict:
    """The settings a submitted form gives, as the JSON API takes them: a
    whole number where one is due (text that is none is passed on, for the
    shared check to name), a list from lines, a box unticked is false."""
    values: dict = {}
    for _group, keys in GROUPS:
        for key in keys:
            if key in BOOLEANS:
                values[key] = key in form
            elif key not in form:
                continue
            elif key in INTEGERS:
                text = form[key].strip()
                values[key] = int(text) if text.lstrip("-").isdigit() else text
            elif key in LISTS:
                values[key] = [line.strip() for line in form[key].splitlines() if line.strip()]
            else:
                values[key] = form[key].strip()
    return values


SETTINGS_HELP = {
    'processors': (
        'At most this many POP3 sessions at once, across all records, per process: with several workers on a shared state store ([Deployment](deployment.md)) each may run this many. `0` stops all polling: the daemon starts none and `poll --once` refuses (exit 2).'
    ),
    'delay_failed_hosts': (
        "When connecting to a host fails (`connect-failed`), no record on that host is polled until this long after the failure, so one dead ISP does not tie up the processors. Workers sharing a state store share this delay: one worker's failure spares the others the attempt. A record that comes due meanwhile is not contacted; its status shows `host-delayed` with the time it waits for."
    ),
    'delay_failed_accounts': (
        'When a mailbox cannot be opened (`auth-failed`, `mailbox-locked`, `login-delay`, `tls-failed`, …) or the connection breaks during retrieval (`protocol-error`, `timeout`), the next attempt for that record waits this long instead of its poll period.'
    ),
    'min_poll_period_for_users': (
        'A record with `set_by = "user"` may not have a shorter `poll_every`; applying one is refused with a message naming this setting. Administrators\' records are not limited.'
    ),
    'max_accounts_per_user': (
        'A user may set at most this many records for themselves (`set_by = "user"`, counted per owner).'
    ),
    'use_apop': (
        "Global switch over the records' `apop`: off, rpop never uses APOP. APOP is used only when this is on, the record asks for it, and the server's greeting carries a `<timestamp>`."
    ),
    'allow_self_poll': (
        "Off: before connecting, the host name is resolved, and if any address is one of this machine's own (every interface, loopback included) or listed in `own_addresses`, the record fails with `self-poll-refused` and no connection is made."
    ),
    'own_addresses': (
        "More addresses to treat as this machine's (a NAT's public address, a cluster's addresses)."
    ),
    'default_ip_address': (
        'Source address of POP3 connections; `""` lets the operating system choose.'
    ),
    'use_domain_ip_addresses': (
        "On: per-user records connect from the first `ip_addresses` entry of their owner's `[[domain]]`. Unified records, and domains without addresses, use `default_ip_address`."
    ),
    'activity_schedule': (
        'Weekly windows when rpop may connect, e.g. `["Mon-Fri 08:00-18:30", "Sat 09:00-12:00"]`. Days: `Mon`…`Sun`, a range `Mon-Fri` (`Fri-Mon` wraps the week), or `Daily`. A window whose end is not after its start runs past midnight (`"Daily 22:00-06:00"`). Outside every window nothing connects: the daemon waits for the next window and `poll --once` refuses (exit 2) naming when it opens. Empty: always.'
    ),
    'time_zone': (
        'The zone of `activity_schedule`, as an IANA name (`"Europe/Berlin"`). Windows keep their wall-clock hours across daylight-saving changes.'
    ),
    'log_level': (
        '`none`; `major` (message transfers); `problems` (plus non-fatal errors: failed polls, retries, reports); `low-level` (plus protocol lines `C:`/`S:`); `all` (plus link-level detail: connects, TLS, bytes received). Every line carries `RPOP` and the record it concerns. Secrets — the PASS argument, the APOP digest, AUTH payloads — never appear at any level; the protocol layer logs `PASS ****`. A running daemon follows a change at its next look at the stored configuration (within 5 s, at once on SIGHUP) and logs `[daemon] log level OLD -> NEW`.'
    ),
    'timeout': (
        "Every network step — connect, TLS handshake, each wait for the server — fails with `timeout` after this long without progress. A record's own `timeout` overrides it."
    ),
    'max_status_line': (
        'The longest status line accepted from a server; a longer one is `protocol-error`. Message lines have no limit.'
    ),
}
