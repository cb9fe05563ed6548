"""The layout's contracts, executable: which part may import which, and no import circles.

Every import counts -- at module level, inside a function, or under
TYPE_CHECKING -- because a circle hidden in a function is still a circle to
the next person who moves code. Read from the source with `ast`, so nothing
is executed.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PARTS = ("storage", "server", "client")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def project_modules() -> dict[str, Path]:
    return {module_name(p): p for part in PARTS for p in (ROOT / part).rglob("*.py")}


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The project modules `name` imports (a package's submodule, where one is named)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([node.module] if node.module else []))
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                       for alias in node.names]
        else:
            continue
        found.update(t for t in targets if t in modules and t != name)
    return found


def graph() -> dict[str, set[str]]:
    modules = project_modules()
    return {name: imports_of(name, path, modules) for name, path in modules.items()}


def test_dependencies_flow_one_way():
    """client -> server -> storage; storage knows nothing of the other two."""
    allowed = {"storage": {"storage"}, "server": {"server", "storage"},
               "client": {"client", "server", "storage"}}
    wrong = [(a, b) for a, targets in graph().items() for b in targets
             if b.split(".")[0] not in allowed[a.split(".")[0]]]
    assert not wrong


def test_commands_never_import_the_loop():
    """Commands get a narrow context; the loop, the gate and the daemon are not theirs."""
    forbidden = {"server.loop", "server.dispatch", "server.listeners", "server.daemon",
                 "server.cli", "server.commit"}
    wrong = [(a, b) for a, targets in graph().items() if a.startswith("server.commands")
             for b in targets if b in forbidden]
    assert not wrong


def test_no_import_circles():
    edges = graph()
    cycles = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(edges[node]):
            if state.get(nxt) == 1:
                cycles.append(path[path.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node, [node])
    assert not cycles


def test_the_checks_see_real_imports():
    """Guards the guard: the graph finds edges known to exist."""
    edges = graph()
    assert "server.keyspace" in edges["server.commands.strings"] or \
        "server.context" in edges["server.commands.strings"]
    assert "storage" in edges["server.loop"]
    assert "server.commands" in edges["server.dispatch"]
    assert "server.commands.info" in edges["server.commands.admin"]


def test_the_server_knows_stores_only_through_their_interface():
    """storage.interface's Store and CompactionJob, not an engine's classes or its
    compaction module: a new engine needs no change in the server."""
    engines = {"storage.compaction", "storage.logstore", "storage.sqlitestore"}
    wrong = [(a, b) for a, targets in graph().items() if a.startswith("server")
             for b in targets if b in engines]
    assert not wrong
    branching = [str(path) for path in (ROOT / "server").rglob("*.py")
                 if path.name != "cli.py"  # kvd check --repair: the log engine's salvage
                 and ".engine ==" in path.read_text()]
    assert not branching
