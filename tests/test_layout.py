"""The layout shows the path of a call: import rules between the packages, checked on the source (AST).

- `runtime/` decides whether and how a call runs; it knows nothing of JSON-RPC or HTTP, so it imports nothing
  from `protocol/` or `transports/`.
- `protocol/` decides what a call is and hands it to `Runtime.run_call`; from `runtime/` it may use only the
  call pipeline's types (`pipeline`: CallSpec, Cancellable, Suspended), refusals and cancel reasons, and the
  snapshot types. `Runtime` itself only as a type (under `TYPE_CHECKING`).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import bemcp

PACKAGE = Path(bemcp.__file__).parent
# What protocol/ may import from runtime/ at run time.
PROTOCOL_MAY_USE = frozenset({"bemcp.runtime.pipeline", "bemcp.runtime.refusal", "bemcp.runtime.cancel"})
SNAPSHOT_MODULES = frozenset({"bemcp.runtime.health"})


def _module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> list[tuple[str, int, bool]]:
    """(module imported, line, only for type checking) for every import in the file, relative ones resolved."""
    tree = ast.parse(path.read_text(), str(path))
    here = _module_name(path).split(".")
    if path.name != "__init__.py":
        here.pop()
    typing_only: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for inner in node.body:
                for sub in ast.walk(inner):
                    typing_only.add(id(sub))
    found: list[tuple[str, int, bool]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(a.name, node.lineno, id(node) in typing_only) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = here[: len(here) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found.append((base, node.lineno, id(node) in typing_only))
            # `from bemcp.runtime import tasks` imports the module bemcp.runtime.tasks
            found += [(f"{base}.{a.name}", node.lineno, id(node) in typing_only) for a in node.names]
    return found


def _files(sub: str) -> list[Path]:
    return sorted((PACKAGE / sub).rglob("*.py"))


def _under(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def test_the_rules_see_real_imports() -> None:
    """The walker is not vacuous: it finds the imports these rules are about."""
    server = {m for m, _, _ in _imports(PACKAGE / "protocol" / "server.py")}
    assert "bemcp.runtime.refusal" in server and "bemcp.protocol.jsonrpc" in server
    runtime = {m for m, _, _ in _imports(PACKAGE / "runtime" / "runtime.py")}
    assert "bemcp.runtime.admission" in runtime


@pytest.mark.parametrize("path", _files("runtime"), ids=lambda p: p.name)
def test_runtime_imports_nothing_from_protocol_or_transports(path: Path) -> None:
    bad = [
        f"{path.name}:{line} imports {mod}"
        for mod, line, _ in _imports(path)
        if _under(mod, "bemcp.protocol") or _under(mod, "bemcp.transports")
    ]
    assert not bad, "; ".join(bad)


@pytest.mark.parametrize("path", _files("protocol"), ids=lambda p: p.name)
def test_protocol_uses_only_the_call_pipeline_from_runtime(path: Path) -> None:
    bad = []
    for mod, line, typing_only in _imports(path):
        if not _under(mod, "bemcp.runtime") or mod == "bemcp.runtime":
            continue
        allowed = PROTOCOL_MAY_USE | SNAPSHOT_MODULES
        if any(_under(mod, ok) for ok in allowed):
            continue
        if typing_only and _under(mod, "bemcp.runtime.runtime"):
            continue  # Runtime as a type: the server is handed one and calls its run_call
        bad.append(f"{path.name}:{line} imports {mod}")
    assert not bad, "; ".join(bad)
