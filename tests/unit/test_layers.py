"""The layering of docs/architecture.md ("The modules"): what each layer may not import."""

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "citybrain"

# layer → module prefixes it must never import
FORBIDDEN = {
    "domain": ["faust", "aiokafka", "aiohttp", "rocksdict", "prometheus_client", "citybrain.stream",
               "citybrain.web", "citybrain.kafka", "citybrain.cli", "citybrain.readmodels", "citybrain.metrics"],
    "wire": ["faust", "aiokafka", "aiohttp", "citybrain.domain", "citybrain.stream", "citybrain.web",
             "citybrain.kafka", "citybrain.cli"],
    "readmodels": ["faust", "aiokafka", "citybrain.stream", "citybrain.web", "citybrain.cli"],
    "kafka": ["faust", "citybrain.stream", "citybrain.web", "citybrain.cli"],
    "stream": ["citybrain.web", "citybrain.cli"],   # but app.py, console.py: the worker's composition root
    "web": ["citybrain.stream", "citybrain.cli"],
}


def imports_of(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_a_layer_imports_nothing_above_it(layer):
    wrong = {}
    for path in sorted((SRC / layer).rglob("*.py")):
        # The worker's composition root: app.py wires the stages, and console.py the read
        # models and the API, into one worker process.
        if path in (SRC / "stream" / "app.py", SRC / "stream" / "console.py"):
            continue
        bad = sorted(m for m in imports_of(path)
                     if any(m == f or m.startswith(f + ".") for f in FORBIDDEN[layer]))
        if bad:
            wrong[str(path.relative_to(SRC))] = bad
    assert wrong == {}


def test_the_product_never_imports_the_tooling():
    """bench, simulate, sample and the local Kafka live in citybrain_tools; the product runs
    without them (their commands join the CLI through the citybrain.commands entry point)."""
    wrong = {str(path.relative_to(SRC)): sorted(m for m in imports_of(path)
                                                if m == "citybrain_tools" or m.startswith("citybrain_tools."))
             for path in sorted(SRC.rglob("*.py"))}
    assert {k: v for k, v in wrong.items() if v} == {}


def test_the_tooling_commands_join_the_command_line():
    from citybrain.cli import main
    for command in ("kafka", "simulate", "demo", "bench", "sample"):
        with pytest.raises(SystemExit) as exit_:
            main([command, "--help"])
        assert exit_.value.code == 0
