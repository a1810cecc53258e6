"""An app whose resources and lists change while it serves, for the change-notification tests.

bemcp serve tests.apps.changes:app
"""

from __future__ import annotations

from bemcp import App

app = App("changes", version="1.0.0")
_content = {"memo://today": "nothing yet"}


@app.resource("memo://today")
def today() -> str:
    return _content["memo://today"]


@app.prompt
def greeting(name: str) -> str:
    return f"Say hello to {name}."


@app.tool
async def write_memo(text: str) -> str:
    """Change memo://today and tell its subscribers (from the event loop)."""
    _content["memo://today"] = text
    app.notify_resource_updated("memo://today")
    return "written"


@app.tool
def write_memo_from_thread(text: str) -> str:
    """The same from a sync tool, which runs in a worker thread."""
    _content["memo://today"] = text
    app.notify_resource_updated("memo://today")
    return "written"


@app.tool
async def add_tools(count: int) -> int:
    """Register `count` new tools at once: listeners hear one tools/list_changed."""
    for i in range(count):

        async def extra() -> str:
            return "extra"

        app.add_tool(extra, name=f"extra_{i}")
    return count


@app.tool
async def remove_tools(count: int) -> int:
    for i in range(count):
        app.remove_tool(f"extra_{i}")
    return count


@app.tool
async def add_prompt(name: str) -> str:
    def dynamic() -> str:
        return "dynamic"

    app.prompt(name=name)(dynamic)
    return name
