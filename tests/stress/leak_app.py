"""Two BE-MCP apps with the same read-only `lookup` tool, different only in what it keeps, for the soak's verdict.

    bemcp serve --app tests.stress.leak_app:leaky   # each call keeps 1 KiB in a module-level list: a leak
    bemcp serve --app tests.stress.leak_app:clean   # each call makes the same 1 KiB and lets it go

At the few thousand calls per second of the quick profile's soak (8 callers) the leaky one grows by megabytes per
second, far past the verdict's threshold of about 1 MiB a minute; the clean one levels off.
"""

from __future__ import annotations

from bemcp import App

CHUNK = 1024
KEPT: list[bytes] = []  # the leak: nothing ever removes from it


def build(*, keep: bool) -> App:
    app = App("leaky" if keep else "clean", version="1.0.0")

    @app.tool(read_only=True)
    async def lookup(key: str) -> str:
        """Look the key up (and, in the leaky app, remember the work for ever)."""
        block = key.encode() + b"x" * CHUNK  # a fresh block, its pages written (touched), each call
        if keep:
            KEPT.append(block)
        return str(len(block))

    return app


leaky = build(keep=True)
clean = build(keep=False)
