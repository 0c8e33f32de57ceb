"""``rpop probe``: what an administrator learns about a server before
writing a record for it, asked of a real Dovecot."""

from __future__ import annotations

import socket

from tests.cli.conftest import json_out, run_rpop


def probe(*args):
    return run_rpop("probe", *args, timeout=60)


def test_a_server_without_tls_shows_capa_apop_and_the_clear_text_risk(dovecot_factory):
    server = dovecot_factory(tls=False, auth_mechanisms="plain cram-md5 apop")
    result = probe(f"127.0.0.1:{server.pop3_port}")
    assert result.returncode == 0, result.stderr
    lines = dict(line.split(None, 1) if not line.startswith("CAPA ") else
                 (line[:line.index(" ", 5)], line[line.index(" ", 5):].strip()) for line in result.stdout.splitlines())
    assert lines["greeting"].startswith("Dovecot")
    assert lines["APOP"].startswith("offered")
    assert lines["CAPA SASL"] == "PLAIN CRAM-MD5"
    assert lines["CAPA UIDL"] == "yes" and lines["CAPA PIPELINING"] == "yes" and lines["CAPA EXPIRE"] == "no"
    assert lines["STLS"] == "not offered"
    assert lines["TLS"].startswith("none")
    assert lines["auth"].startswith("rpop would use cram-md5")  # no TLS: the password must not cross in clear


def test_stls_certificate_facts_and_verification(dovecot_factory, test_ca):
    server = dovecot_factory(tls=True)
    trusted = json_out(probe(f"127.0.0.1:{server.pop3_port}", "--ca-file", test_ca.ca_pem_path, "--json"))
    assert trusted["stls_offered"] and trusted["tls_version"].startswith("TLSv1.")
    assert trusted["cipher"]
    cert = trusted["certificate"]
    assert cert["subject"] == "CN=localhost" and "rpop test CA" in cert["issuer"]
    assert "127.0.0.1" in cert["names"] and cert["days_left"] > 0 and cert["verified"] is True
    assert trusted["auth"][0] == "plain"  # under TLS, the simplest mechanism is safe

    # the system's CAs do not know the test CA: reported, and the facts still shown
    untrusted = probe(f"127.0.0.1:{server.pop3_port}", "--starttls")
    assert untrusted.returncode == 0, untrusted.stderr
    assert "verifies" in untrusted.stdout and "NO: the certificate of 127.0.0.1" in untrusted.stdout
    assert "CN=localhost" in untrusted.stdout


def test_implicit_tls_port(dovecot_factory, test_ca):
    server = dovecot_factory(tls=True)
    report = json_out(probe(f"127.0.0.1:{server.pop3s_port}", "--tls", "--ca-file", test_ca.ca_pem_path, "--json"))
    assert report["mode"] == "tls" and report["certificate"]["verified"] is True and report["error"] is None
    assert "UIDL" in report["capabilities"]


def test_nothing_listening_is_exit_1_with_the_reason():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = probe(f"127.0.0.1:{port}")
    assert result.returncode == 1
    assert "connect-failed" in result.stdout and "Traceback" not in result.stderr


def test_a_url_is_bad_input():
    result = probe("pop3s://pop.isp.example")
    assert result.returncode == 2 and result.stderr.startswith("rpop: probe: 'pop3s://pop.isp.example' is a URL")
