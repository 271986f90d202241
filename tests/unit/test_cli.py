"""The command line parses: every subcommand has its handler and its help."""

import pytest

from citybrain.cli import main

COMMANDS = ["kafka", "topics", "registry", "worker", "simulate", "demo", "bench", "tail", "timeline", "kpis", "dashboard",
            "schemas", "sample"]


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
