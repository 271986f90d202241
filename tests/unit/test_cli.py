"""The command line parses: every subcommand has its handler and its help."""

import pytest

from citybrain.cli import main

COMMANDS = ["kafka", "topics", "registry", "worker", "simulate", "demo", "bench", "tail", "timeline", "kpis", "dashboard",
            "schemas", "sample", "pseudonym", "warnings"]


@pytest.mark.parametrize("command", [[], *[[c] for c in COMMANDS]])
def test_help(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([*command, "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert "usage: citybrain" in out


def test_schemas_check_passes_on_the_shipped_schemas(capsys):
    assert main(["schemas"]) == 0
    assert "up to date" in capsys.readouterr().out


def test_pseudonym_prints_what_the_normaliser_writes_under_the_same_key(capsys, monkeypatch):
    from citybrain.domain.pseudonym import Pseudonymiser
    monkeypatch.setenv("CITYBRAIN_REPORTER_KEY", "the city's reporter key, 32 chars")
    assert main(["pseudonym", "13905331234", "GM-0107"]) == 0
    key = Pseudonymiser("the city's reporter key, 32 chars")
    assert capsys.readouterr().out.splitlines() == [f"13905331234\t{key('13905331234')}", f"GM-0107\t{key('GM-0107')}"]
    monkeypatch.setenv("CITYBRAIN_REPORTER_KEY", "short")
    assert main(["pseudonym", "x"]) == 2 and "16 characters" in capsys.readouterr().err
