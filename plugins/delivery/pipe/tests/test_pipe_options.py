"""The pipe plugin's site-file options: the command must name a program
that exists, with only the known placeholders."""

from __future__ import annotations

import shutil

import pytest
from rpop_delivery_pipe import make_agent

from rpopcore.api import ConfigError, Recipient
from rpopcore.testing import plugin_manager


def test_the_entry_point_registers_pipe(monkeypatch):
    monkeypatch.setenv("RPOP_PLUGINS", "pipe")
    assert plugin_manager().hook.rpop_delivery_agents() == [{"pipe": make_agent}]


def test_a_bare_name_is_found_on_path(tmp_path):
    agent = make_agent({"command": ["cat"]}, tmp_path)
    assert agent.command == (shutil.which("cat"),)
    assert agent.timeout == 300


def test_arguments_for_one_recipient(tmp_path):
    agent = make_agent({"command": ["cat", "-d", "{recipient}", "{localpart}/{domain}", "{sender}", "{}", "{ x }"],
                        "timeout": "10m"}, tmp_path)
    argv = agent.argv("s@isp.test", Recipient("alice@example.test"))
    assert argv[1:] == ["-d", "alice@example.test", "alice/example.test", "s@isp.test", "{}", "{ x }"]
    assert agent.timeout == 600
    with pytest.raises(ValueError):
        agent.argv("s\0@isp.test", Recipient("alice@example.test"))


@pytest.mark.parametrize("options, message", [
    ({}, "[delivery] key 'command' is missing"),
    ({"command": "/usr/lib/dovecot/dovecot-lda -d {recipient}"}, "[delivery] key 'command': expected a list of strings"),
    ({"command": []}, "[delivery] key 'command': expected the program and its arguments"),
    ({"command": ["cat", "-d", "{user}"]}, "[delivery] key 'command': unknown placeholder {user}; the placeholders are {recipient}"),
    ({"command": ["/usr/bin/{localpart}"]}, "[delivery] key 'command': the program '/usr/bin/{localpart}' must be fixed"),
    ({"command": ["no-such-mda-anywhere", "{recipient}"]}, "[delivery] key 'command': no program 'no-such-mda-anywhere' on PATH"),
    ({"command": ["/nonexistent/dovecot-lda"]}, "[delivery] key 'command': the program /nonexistent/dovecot-lda does not exist"),
    ({"command": ["cat"], "timeout": "0s"}, "[delivery] key 'timeout': must be at least 1s"),
    ({"command": ["cat"], "comand": ["cat"]}, "[delivery]: unknown key 'comand'; did you mean 'command'?"),
])
def test_bad_options_are_config_errors(options, message, tmp_path):
    with pytest.raises(ConfigError) as caught:
        make_agent(options, tmp_path)
    assert str(caught.value).startswith(message)


def test_a_file_that_cannot_be_run(tmp_path):
    (tmp_path / "mda").write_text("#!/bin/sh\n")
    with pytest.raises(ConfigError, match="is not an executable file"):
        make_agent({"command": ["./mda"]}, tmp_path)
