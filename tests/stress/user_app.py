"""BE-MCP apps as a user would write them, for the tests of which tools the stress tester loads.

    bemcp serve --app tests.stress.user_app:one     # one read-only tool, `lookup`
    bemcp serve --app tests.stress.user_app:two     # two read-only tools, `forecast` and `geocode`
    bemcp serve --app tests.stress.user_app:writes  # only tools that write (`save_note`) or destroy (`wipe`)

Each app counts the calls its own tools receive and serves the counts as the resource `stats://calls`, so a test
can check what the tester says it called against what the server saw, with no help from the tester's bookkeeping.
"""

from __future__ import annotations

from collections import Counter

from bemcp import App


def _counted(name: str) -> tuple[App, Counter[str]]:
    app = App(name, version="1.0.0")
    calls: Counter[str] = Counter()

    @app.resource("stats://calls")
    def stats() -> dict[str, int]:
        return dict(calls)

    return app, calls


def build_one() -> App:
    app, calls = _counted("user-one")

    @app.tool(read_only=True)
    async def lookup(city: str) -> dict[str, str]:
        """Where a city is."""
        calls["lookup"] += 1
        return {"city": city, "country": "somewhere"}

    return app


def build_two() -> App:
    app, calls = _counted("user-two")

    @app.tool(read_only=True)
    async def forecast(city: str, days: int = 1) -> str:
        """A forecast for a city."""
        calls["forecast"] += 1
        return f"{city}: sunny for {days} days"

    @app.tool(read_only=True)
    async def geocode(place: str) -> dict[str, float]:
        """Coordinates of a place."""
        calls["geocode"] += 1
        return {"lat": 1.0, "lon": 2.0}

    return app


def build_writes() -> App:
    app, calls = _counted("user-writes")

    @app.tool
    async def save_note(text: str) -> str:
        """Store a note (not read-only: the tester may call it only with --allow-writes)."""
        calls["save_note"] += 1
        return "saved"

    @app.tool(destructive=True)
    async def wipe() -> str:
        """Delete every note (destructive: never called)."""
        calls["wipe"] += 1
        return "wiped"

    return app


one = build_one()
two = build_two()
writes = build_writes()
