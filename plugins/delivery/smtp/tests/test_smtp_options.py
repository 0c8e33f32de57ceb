"""The smtp plugin's site-file options.  The pieces of the envelope
encoding are tested with the client, in tests/smtp."""

from __future__ import annotations

import ssl

import pytest
from rpop_delivery_smtp import make_agent

from rpopcore.api import ConfigError
from rpopcore.testing import plugin_manager


def test_the_entry_point_registers_smtp(monkeypatch):
    monkeypatch.setenv("RPOP_PLUGINS", "smtp")
    assert plugin_manager().hook.rpop_delivery_agents() == [{"smtp": make_agent}]


def test_defaults(tmp_path):
    agent = make_agent({"host": "relay.example.net"}, tmp_path)
    assert (agent.host, agent.port, agent.tls, agent.username, agent.timeout) == ("relay.example.net", 25, None, "", 30)
    assert agent.helo


def test_starttls_verifies_by_default_with_a_ca_file_relative_to_the_site(tmp_path, test_ca):
    (tmp_path / "ca.pem").write_bytes(test_ca.ca_pem)
    agent = make_agent({"host": "relay.example.net", "port": 587, "starttls": True, "ca_file": "ca.pem",
                        "username": "u", "password": "p", "helo": "rpop.example.net", "timeout": "1m"}, tmp_path)
    assert agent.tls.verify_mode is ssl.CERT_REQUIRED and agent.tls.check_hostname
    assert (agent.port, agent.helo, agent.timeout) == (587, "rpop.example.net", 60)


def test_credentials_in_clear_text_only_to_this_machine(tmp_path):
    assert make_agent({"host": "127.0.0.1", "username": "u", "password": "p"}, tmp_path).username == "u"
    assert make_agent({"host": "localhost", "username": "u", "password": "p"}, tmp_path).username == "u"


@pytest.mark.parametrize("options, message", [
    ({}, "[delivery] key 'host' is missing"),
    ({"host": " "}, "[delivery] key 'host': must not be empty"),
    ({"host": "h", "port": 70000}, "[delivery] key 'port': expected a port number"),
    ({"host": "h", "starttls": "yes"}, "[delivery] key 'starttls': expected true or false"),
    ({"host": "h", "username": "u"}, "[delivery] key 'password' is missing"),
    ({"host": "h", "password": "p"}, "[delivery] key 'username' is missing"),
    ({"host": "relay.example.net", "username": "u", "password": "p"}, "[delivery] key 'username': set starttls = true"),
    ({"host": "h", "ca_file": "ca.pem"}, "[delivery] key 'ca_file': only means something with starttls = true"),
    ({"host": "h", "starttls": True, "ca_file": "missing.pem"}, "[delivery] key 'ca_file': cannot load"),
    ({"host": "h", "helo": "two words"}, "[delivery] key 'helo': 'two words' is not a host name"),
    ({"host": "h", "timeout": 0}, "[delivery] key 'timeout': must be at least 1s"),
    ({"host": "h", "user": "u"}, "[delivery]: unknown key 'user'"),
])
def test_bad_options_are_config_errors(options, message, tmp_path):
    with pytest.raises(ConfigError) as caught:
        make_agent(options, tmp_path)
    assert str(caught.value).startswith(message)
