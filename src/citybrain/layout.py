"""The package picture of docs/architecture.md ("The modules"), derived from the imports.

Each subpackage of ``citybrain`` (``stream/``, ``domain/`` …) and each top-level module
(``config.py`` …) is one node; an arrow means some module of the one imports some module of
the other — every import, lazy (inside a function) and type-only ones included, because each
is a dependency someone must keep working. ``citybrain layout --write`` (``make docs``)
rewrites the picture between the markers; a unit test fails when the doc differs.
"""

from __future__ import annotations

import ast
from pathlib import Path

from citybrain.paths import PROJECT_ROOT

SRC = Path(__file__).resolve().parent
ARCHITECTURE_DOC = PROJECT_ROOT / "docs" / "architecture.md"
BEGIN = "<!-- module-graph:begin — generated from the imports by `citybrain layout --write`; do not edit -->"
END = "<!-- module-graph:end -->"


class MarkersMissing(ValueError):
    """The document lacks the begin/end markers the picture goes between."""


def _unit_of(module: str) -> str | None:
    """``citybrain.stream.app`` → ``stream``; ``citybrain.config`` → ``config``; others → None."""
    parts = module.split(".")
    if parts[0] != "citybrain" or len(parts) < 2:
        return None
    return parts[1]


def _imported(node: ast.Import | ast.ImportFrom, package: list[str]) -> list[str]:
    """Absolute names an import statement reaches (``package``: the importing module's package)."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    base = node.module or ""
    if node.level:   # relative: resolved against the importing module's package
        anchor = package[:len(package) - node.level + 1]
        base = ".".join([*anchor, base] if base else anchor)
    if base == "citybrain":   # ``from citybrain import config``: the names are modules
        return [f"citybrain.{a.name}" for a in node.names]
    return [base]


def import_graph(src: Path = SRC) -> dict[str, set[str]]:
    """Every node → the other nodes it imports."""
    graph: dict[str, set[str]] = {}
    for path in sorted(src.rglob("*.py")):
        rel = path.relative_to(src).parts
        if rel == ("__init__.py",):
            continue
        unit = rel[0] if len(rel) > 1 else rel[0].removesuffix(".py")
        package = ["citybrain", *rel[:-1]]
        targets = graph.setdefault(unit, set())
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
            if isinstance(node, ast.Import | ast.ImportFrom):
                for name in _imported(node, package):
                    target = _unit_of(name)
                    if target is not None and target != unit:
                        targets.add(target)
    return graph


def _components(graph: dict[str, set[str]]) -> list[set[str]]:
    """Strongly connected components (Tarjan), each a set of nodes."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    out: list[set[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = set()
            while True:
                w = stack.pop()
                comp.add(w)
                if w == v:
                    break
            out.append(comp)

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Groups of nodes that import each other (directly or round a loop)."""
    return sorted(sorted(c) for c in _components(graph) if len(c) > 1)


def layers(graph: dict[str, set[str]]) -> dict[str, int]:
    """Node → its height: 0 imports nothing of ours, else 1 + the highest it imports (a
    cycle's nodes share one height)."""
    comps = _components(graph)
    comp_of = {v: i for i, comp in enumerate(comps) for v in comp}
    height: dict[int, int] = {}
    # Tarjan emits a component after everything it reaches: heights fill bottom-up.
    for i, comp in enumerate(comps):
        below = [height[comp_of[w]] for v in comp for w in graph.get(v, ()) if comp_of[w] != i]
        height[i] = 1 + max(below) if below else 0
    return {v: height[comp_of[v]] for v in graph}


def _label(unit: str, src: Path) -> str:
    return f"{unit}/" if (src / unit).is_dir() else f"{unit}.py"


def render(graph: dict[str, set[str]], src: Path = SRC) -> str:
    """The picture (mermaid, top layer first), a table of the same arrows, and any cycles."""
    height = layers(graph)
    order = sorted(graph, key=lambda v: (-height[v], v))
    ident = {v: v.strip("_") + ("_" if v.strip("_") == "end" else "") for v in order}   # ``end`` breaks mermaid
    lines = ["```mermaid", "flowchart TD"]
    for v in order:   # packages square, single modules round
        text = _label(v, src)
        lines.append(f'  {ident[v]}["{text}"]' if text.endswith("/") else f'  {ident[v]}("{text}")')
    for v in order:   # one line per importer: ``a --> b & c``
        if graph[v]:
            lines.append(f"  {ident[v]} --> " + " & ".join(ident[w] for w in sorted(graph[v], key=order.index)))
    lines += ["```", "", "| package or module | imports | imported by |", "|---|---|---|"]
    for v in order:
        users = sorted((u for u in graph if v in graph[u]), key=order.index)
        lines.append(f"| `{_label(v, src)}` | "
                     + (", ".join(f"`{_label(w, src)}`" for w in sorted(graph[v], key=order.index)) or "—")
                     + " | " + (", ".join(f"`{_label(u, src)}`" for u in users) or "—") + " |")
    loops = cycles(graph)
    lines += ["", "Import cycles: " + ("; ".join(" ⇄ ".join(f"`{_label(v, src)}`" for v in c) for c in loops)
                                       if loops else "none") + "."]
    return "\n".join(lines) + "\n"


def with_picture(doc: str, picture: str) -> str:
    """``doc`` with ``picture`` between the markers (replacing what was there)."""
    start, end = doc.find(BEGIN), doc.find(END)
    if start < 0 or end < start:
        raise MarkersMissing(f"the document needs the lines {BEGIN!r} and {END!r}, in that order")
    return doc[:start + len(BEGIN)] + "\n" + picture + doc[end:]


def drifted(doc_path: Path = ARCHITECTURE_DOC, src: Path = SRC) -> bool:
    """True when the document's picture differs from the one the imports give."""
    doc = doc_path.read_text(encoding="utf-8")
    return with_picture(doc, render(import_graph(src), src)) != doc


def write(doc_path: Path = ARCHITECTURE_DOC, src: Path = SRC) -> None:
    doc = doc_path.read_text(encoding="utf-8")
    doc_path.write_text(with_picture(doc, render(import_graph(src), src)), encoding="utf-8")
