"""The official MCP conformance suite 0.1.16 against `bemcp serve`: all 30 active scenarios, every check passing."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conformance import suite
from tests.procs import http_server

pytestmark = pytest.mark.skipif(
    not suite.available("0.1.16"), reason="run through `make test`, which installs Node 22 and the suite"
)


def test_conformance_0_1_16_all_checks_pass(tmp_path: Path) -> None:
    with http_server(app="tests.conformance.app:app", tmp=tmp_path) as server:
        run = suite.run("0.1.16", server.url)
        assert server.alive(), server.log.read_text()
    counts = run.statuses()
    print(f"conformance 0.1.16: {len(run.checks)} scenarios, checks {dict(counts)}")
    assert len(run.checks) == 30, run.output
    assert run.not_passed() == [], run.output
    assert counts["SUCCESS"] >= 30
    assert run.returncode == 0, run.output


@pytest.mark.skipif(not suite.available("0.2.0-alpha.12"), reason="the alpha suite is not installed")
def test_conformance_alpha_2026_07_28_scored_scenarios_pass(tmp_path: Path) -> None:
    with http_server(app="tests.conformance.app:app", tmp=tmp_path) as server:
        run = suite.run("0.2.0-alpha.12", server.url, "--requirements", "2026-07-28")
        assert server.alive(), server.log.read_text()
    print(f"conformance 0.2.0-alpha.12 (2026-07-28): checks {dict(run.statuses())}")
    # With --requirements the suite exits 1 iff a scored scenario has a failing check.
    assert run.returncode == 0, run.output
    assert run.statuses()["SUCCESS"] >= 100
