"""Run conformance 0.2.0-alpha.12 with `--requirements 2026-07-28` and print the check counts.

python -m tests.conformance.run_alpha
"""

from __future__ import annotations

import sys
import tempfile

from tests.conformance import suite
from tests.procs import http_server


def main() -> int:
    if not suite.available("0.2.0-alpha.12"):
        print("conformance 0.2.0-alpha.12 is not installed: run `make conformance-alpha`", file=sys.stderr)
        return 2
    with (
        tempfile.TemporaryDirectory() as state,
        http_server("--state-dir", state, app="tests.conformance.app:app") as server,
    ):
        run = suite.run("0.2.0-alpha.12", server.url, "--requirements", "2026-07-28")
    tail = run.output[run.output.find("Total:") :] if "Total:" in run.output else run.output[-2000:]
    print(tail)
    print(f"checks by status (scored and not scored): {dict(run.statuses())}")
    print("scored scenarios: " + ("all pass" if run.returncode == 0 else "FAILURES (see above)"))
    return run.returncode


if __name__ == "__main__":
    sys.exit(main())
