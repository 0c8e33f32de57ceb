"""``rpop probe HOST[:PORT]``: what a POP3 server offers, before a record
is written for it -- the questions ``mpop --serverinfo`` answers.

It connects as a poll would (implicit TLS with ``--tls``; otherwise STLS
when offered, required with ``--starttls``), reads the greeting and CAPA,
describes the TLS session and the server's certificate, and says which
authentication mechanism rpop would choose.  It never logs in.  A
certificate that does not verify is reported, then the connection is made
again without verification to show what the certificate says.
"""

from __future__ import annotations

import datetime as dt
import ssl
from typing import Sequence

import attrs

from rpopcore import auth, errors
from rpopcore.model import ModuleSettings, RecordKind, RemoteRecord, check_host, split_host
from rpopcore.pop3.client import ConnectOptions, Pop3Client
from rpopcore.pop3.responses import Capabilities

#: CAPA capabilities a mail administrator asks about, in this order.
ASKED = ("PIPELINING", "UIDL", "TOP", "USER", "SASL", "STLS", "EXPIRE", "LOGIN-DELAY", "RESP-CODES",
         "AUTH-RESP-CODE", "IMPLEMENTATION")


@attrs.frozen
class Certificate:
    """The facts of the server's certificate, and whether it verifies
    (against ``--ca-file`` or the system's CAs, for the name connected to)."""

    subject: str
    issuer: str
    names: tuple[str, ...]
    not_before: str
    not_after: str
    days_left: int
    verified: bool
    verify_error: str = ""


@attrs.frozen
class ProbeReport:
    """What ``rpop probe`` prints (``--json``: these fields)."""

    host: str
    port: int
    mode: str  # "tls" (implicit), "starttls" or "plain"
    greeting: str = ""
    apop: bool = False
    capa: bool = False
    capabilities: tuple[str, ...] = ()
    stls_offered: bool = False
    tls_version: str = ""
    cipher: str = ""
    certificate: Certificate | None = None
    capabilities_after_tls: tuple[str, ...] = ()
    auth: tuple[str, ...] = ()
    auth_note: str = ""
    error: str | None = None
    detail: str = ""

    def as_json(self) -> dict:
        return attrs.asdict(self)


async def probe(
    target: str,
    *,
    implicit_tls: bool = False,
    require_starttls: bool = False,
    ca_file: str = "",
    timeout: float = 30.0,
    mechanisms: Sequence[auth.AuthMechanism] = (),
    settings: ModuleSettings | None = None,
) -> ProbeReport:
    """Probe ``target`` (``host``, ``host:port``, ``[v6]:port``)."""
    try:
        check_host(target)
        host, port = split_host(target, implicit_tls)
    except ValueError as exc:
        raise errors.ConfigError(f"probe: {exc}") from None
    if ca_file:
        try:
            ssl.create_default_context(cafile=ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise errors.ConfigError(f"--ca-file {ca_file}: not a readable PEM CA bundle ({exc}); give one") from None
    mode = "tls" if implicit_tls else "starttls" if require_starttls else "plain"
    base = ProbeReport(host=host, port=port, mode=mode)
    verified, verify_error = True, ""
    try:
        try:
            report = await _session(base, ca_file, True, timeout, require_starttls, mechanisms, settings)
        except errors.TlsFailed as exc:
            if "certificate" not in str(exc).lower() and "verif" not in str(exc).lower():
                raise
            verified, verify_error = False, str(exc)
            report = await _session(base, ca_file, False, timeout, require_starttls, mechanisms, settings)
    except errors.PollError as exc:
        return attrs.evolve(base, error=exc.code, detail=str(exc))
    if report.certificate is not None:
        report = attrs.evolve(report, certificate=attrs.evolve(report.certificate, verified=verified,
                                                               verify_error=verify_error))
    return report


async def _session(base: ProbeReport, ca_file: str, verify: bool, timeout: float, require_starttls: bool,
                   mechanisms, settings) -> ProbeReport:
    context = ssl.create_default_context(cafile=ca_file or None)
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    options = ConnectOptions(host=base.host, port=base.port, timeout=timeout, implicit_tls=base.mode == "tls",
                             tls_context=context)
    client = Pop3Client(options)
    try:
        greeting = await client.connect()
        capabilities = await client.capa()
        report = attrs.evolve(base, greeting=greeting.text, apop=client.apop_timestamp is not None,
                              capa=capabilities.known, capabilities=capabilities.lines,
                              stls_offered=capabilities.has("STLS"))
        if not client.tls_active:
            if capabilities.has("STLS"):
                await client.stls(context)
                report = attrs.evolve(report, capabilities_after_tls=client.capabilities.lines)
            elif require_starttls:
                raise errors.TlsFailed(f"{base.host} does not offer STLS (CAPA lists no STLS)")
        report = _tls_facts(report, client)
        names, note = _auth_choice(base, client, mechanisms, settings or ModuleSettings())
        report = attrs.evolve(report, auth=names, auth_note=note)
        await client.quit()
        return report
    finally:
        await client.close()


def _tls_facts(report: ProbeReport, client: Pop3Client) -> ProbeReport:
    tls = client.tls_object
    if tls is None:
        return report
    cipher = tls.cipher()
    der = tls.getpeercert(binary_form=True)
    return attrs.evolve(report, tls_version=tls.version() or "", cipher=cipher[0] if cipher else "",
                        certificate=certificate_facts(der) if der else None)


def certificate_facts(der: bytes) -> Certificate:
    """Subject, issuer, names and validity of a DER certificate."""
    from cryptography import x509

    cert = x509.load_der_x509_certificate(der)
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = tuple(san.get_values_for_type(x509.DNSName)) + tuple(
            str(a) for a in san.get_values_for_type(x509.IPAddress))
    except x509.ExtensionNotFound:
        names = ()
    not_after = cert.not_valid_after_utc
    now = dt.datetime.now(dt.timezone.utc)
    return Certificate(
        subject=cert.subject.rfc4514_string(),
        issuer=cert.issuer.rfc4514_string(),
        names=names,
        not_before=_iso(cert.not_valid_before_utc),
        not_after=_iso(not_after),
        days_left=(not_after - now).days,
        verified=True,
    )


def _iso(moment: dt.datetime) -> str:
    return moment.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _auth_choice(base: ProbeReport, client: Pop3Client, mechanisms, settings: ModuleSettings):
    """The mechanisms a record with ``auth = "auto"`` would try, in order."""
    record = RemoteRecord(kind=RecordKind.REMOTE, owner="probe@localhost", account="probe",
                          host=f"[{base.host}]:{base.port}" if ":" in base.host else f"{base.host}:{base.port}",
                          tls=base.mode == "tls")
    context = auth.AuthContext(record=record, settings=settings, host_name=base.host,
                               apop_timestamp=client.apop_timestamp, capabilities=client.capabilities,
                               tls_active=client.tls_active)
    offered = sorted((m for m in mechanisms if m.offered(context)), key=lambda m: m.auto_rank)
    note = ""
    if offered and not client.tls_active and getattr(offered[0], "sends_password_in_clear", False):
        note = f"{offered[0].name} sends the password in clear text: this connection has no TLS"
    if not offered:
        note = "no installed mechanism is offered: a record could not log in"
    return tuple(m.name for m in offered), note


def render(report: ProbeReport) -> str:
    """The report as aligned lines for a terminal."""
    rows: list[tuple[str, str]] = [("server", f"{report.host} port {report.port} ({_mode(report.mode)})")]
    if report.error:
        rows.append(("error", f"{report.error}: {report.detail}"))
        return _table(rows)
    rows += [("greeting", report.greeting or "-"),
             ("APOP", "offered (timestamp in the greeting)" if report.apop else "not offered")]
    capabilities = Capabilities(lines=report.capabilities_after_tls or report.capabilities, known=report.capa)
    if not report.capa:
        rows.append(("CAPA", "not supported (only RFC 1939 commands)"))
    else:
        for name in ASKED:
            if name == "STLS":
                continue
            if capabilities.has(name):
                rows.append((f"CAPA {name}", " ".join(capabilities.args(name)) or "yes"))
            elif name in ("PIPELINING", "UIDL", "SASL", "EXPIRE", "LOGIN-DELAY"):
                rows.append((f"CAPA {name}", "no"))
        extra = [line for line in capabilities.lines if line.split()[0].upper() not in (*ASKED, "CAPA")]
        if extra:
            rows.append(("CAPA other", ", ".join(extra)))
    if report.mode != "tls":
        rows.append(("STLS", "offered, used" if report.stls_offered else "not offered"))
    if report.tls_version:
        rows.append(("TLS", f"{report.tls_version}, {report.cipher}"))
    else:
        rows.append(("TLS", "none: passwords and mail cross the network in clear"))
    cert = report.certificate
    if cert is not None:
        rows += [("certificate", cert.subject), ("  issuer", cert.issuer),
                 ("  names", ", ".join(cert.names) or "(none: only the subject's CN)"),
                 ("  valid", f"{cert.not_before} to {cert.not_after} ({_days(cert.days_left)})"),
                 ("  verifies", "yes" if cert.verified else f"NO: {cert.verify_error}")]
    chosen = report.auth[0] if report.auth else "none"
    rest = f" (then {', '.join(report.auth[1:])})" if len(report.auth) > 1 else ""
    rows.append(("auth", f"rpop would use {chosen}{rest}" + (f"; {report.auth_note}" if report.auth_note else "")))
    return _table(rows)


def _mode(mode: str) -> str:
    return {"tls": "implicit TLS", "starttls": "STLS required", "plain": "STLS if offered"}[mode]


def _days(days: int) -> str:
    if days < 0:
        return f"EXPIRED {-days} day{'s' if days != -1 else ''} ago"
    return f"{days} day{'s' if days != 1 else ''} left"


def _table(rows: list[tuple[str, str]]) -> str:
    width = max(len(label) for label, _ in rows)
    return "\n".join(f"{label:<{width}}  {value}" for label, value in rows) + "\n"
