"""Running the official MCP conformance suite (npm) against a BE-MCP server and reading its checks."""

from __future__ import annotations

import json
import os
import re
import subprocess
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from tests.procs import ROOT

CACHE = ROOT / ".cache"
NODE22_BIN = CACHE / "node22" / "node_modules" / ".bin"
SUITES = {"0.1.16": CACHE / "conformance", "0.2.0-alpha.12": CACHE / "conformance-alpha"}
PASSING = frozenset({"SUCCESS", "INFO"})
_RUN_DIR = re.compile(r"^server-(.+?)-\d{4}-\d{2}-\d{2}T")


@dataclass
class SuiteRun:
    returncode: int
    output: str
    checks: dict[str, list[dict[str, object]]] = field(default_factory=dict)  # scenario -> checks

    def statuses(self) -> Counter[str]:
        return Counter(str(c["status"]) for checks in self.checks.values() for c in checks)

    def not_passed(self, scenarios: set[str] | None = None) -> list[str]:
        """Every check that did not pass: anything but SUCCESS and INFO (a note the suite makes, not a verdict).

        SKIPPED is not a pass: a check the suite could not run proves nothing about the server.
        """
        bad = []
        for scenario, checks in sorted(self.checks.items()):
            if scenarios is not None and scenario not in scenarios:
                continue
            for c in checks:
                if c["status"] not in PASSING:
                    bad.append(f"{scenario}/{c['id']}: {c['status']} {c.get('errorMessage', '')}")
        return bad


def available(version: str) -> bool:
    return (NODE22_BIN / "node").exists() and (SUITES[version] / "node_modules" / ".bin" / "conformance").exists()


def run(version: str, url: str, *args: str, timeout: float = 600) -> SuiteRun:
    suite = SUITES[version]
    env = dict(os.environ)
    env["PATH"] = f"{NODE22_BIN}{os.pathsep}{env.get('PATH', '')}"
    with tempfile.TemporaryDirectory(prefix="bemcp-conformance-") as out:
        cmd = [str(suite / "node_modules" / ".bin" / "conformance"), "server", "--url", url, "-o", out, *args]
        proc = subprocess.run(cmd, cwd=suite, env=env, capture_output=True, text=True, timeout=timeout)
        result = SuiteRun(proc.returncode, proc.stdout + proc.stderr)
        for path in sorted(Path(out).glob("*/checks.json")):
            # server-<scenario>-<ISO timestamp with dashes>; a scenario's name may hold digits (json-schema-2020-12).
            m = _RUN_DIR.match(path.parent.name)
            scenario = m.group(1) if m else path.parent.name.removeprefix("server-")
            result.checks[scenario] = json.loads(path.read_text())
    return result
