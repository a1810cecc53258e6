"""The "everything" fixture the official MCP conformance suite expects, built on `bemcp.App`.

Names, texts and shapes follow the suite's scenarios (0.1.16 on 2025-11-25,
and 0.2.0-alpha.12 on 2026-07-28, where sampling, elicitation and roots
travel as multi round-trip `input_required` results).
"""

from __future__ import annotations

import asyncio
import json
from typing import Annotated, Any

from pydantic import Field

from bemcp import App, Audio, CompletionRequest, Context, EmbeddedResource, Image, PromptMessage, Text, ToolError
from bemcp.content import ContentBlock
from bemcp.context import elicitation, sampling

PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg=="
WAV = "UklGRiYAAABXQVZFZm10IBAAAAABAAEAQB8AAAB9AAACABAAZGF0YQIAAAA="

app = App("bemcp-conformance", version="1.0.0", instructions="The conformance fixture of BE-MCP.")


def _form(**properties: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "required": list(properties)}


# -- content ---------------------------------------------------------------


@app.tool
async def test_simple_text() -> Text:
    """Returns a simple text response."""
    return Text("This is a simple text response for testing.")


@app.tool
async def test_image_content() -> Image:
    """Returns an image."""
    return Image(PNG, "image/png")


@app.tool
async def test_audio_content() -> Audio:
    """Returns audio."""
    return Audio(WAV, "audio/wav")


@app.tool
async def test_embedded_resource() -> EmbeddedResource:
    """Returns an embedded resource."""
    return EmbeddedResource(
        "test://embedded-resource", text="This is an embedded resource content.", mime_type="text/plain"
    )


@app.tool
async def test_multiple_content_types() -> list[ContentBlock]:
    """Returns text, an image and an embedded resource."""
    return [
        Text("Multiple content types test:"),
        Image(PNG, "image/png"),
        EmbeddedResource(
            "test://mixed-content-resource",
            text=json.dumps({"test": "data", "value": 123}),
            mime_type="application/json",
        ),
    ]


@app.tool
async def test_tool_with_logging(ctx: Context) -> Text:
    """Sends three log messages while it runs."""
    for message in ("Tool execution started", "Tool processing data", "Tool execution completed"):
        await ctx.log("info", message)
        await asyncio.sleep(0.05)
    return Text("Tool with logging executed successfully")


@app.tool
async def test_tool_with_progress(ctx: Context) -> Text:
    """Reports progress 0, 50 and 100 of 100."""
    for done in (0, 50, 100):
        await ctx.progress(done, 100)
        await asyncio.sleep(0.05)
    return Text(f"Progress completed for token {ctx.meta.get('progressToken')}")


@app.tool
async def test_error_handling() -> Text:
    """Always fails with a tool error."""
    raise ToolError("This tool intentionally returns an error for testing")


# -- client requests (2025-11-25: on the call's stream) -----------------------


@app.tool
async def test_sampling(prompt: str, ctx: Context) -> Text:
    """Asks the client's model to answer a prompt."""
    res = await ctx.sample(prompt, max_tokens=100)
    content = res.get("content")
    text = content.get("text", "") if isinstance(content, dict) else ""
    return Text(f"LLM response: {text}")


@app.tool
async def test_elicitation(message: str, ctx: Context) -> Text:
    """Asks the user for a username and an email address."""
    res = await ctx.elicit(
        message,
        _form(
            username={"type": "string", "description": "User's response"},
            email={"type": "string", "description": "User's email address"},
        ),
    )
    return Text(f"User response: action={res.get('action')}, content={json.dumps(res.get('content'))}")


@app.tool
async def test_elicitation_sep1034_defaults(ctx: Context) -> Text:
    """Elicits a form whose fields have defaults (SEP-1034)."""
    schema = {
        "type": "object",
        "required": [],
        "properties": {
            "name": {"type": "string", "description": "User name", "default": "John Doe"},
            "age": {"type": "integer", "description": "User age", "default": 30},
            "score": {"type": "number", "description": "User score", "default": 95.5},
            "status": {
                "type": "string",
                "description": "User status",
                "enum": ["active", "inactive", "pending"],
                "default": "active",
            },
            "verified": {"type": "boolean", "description": "Verification status", "default": True},
        },
    }
    res = await ctx.elicit("Please review and update the form fields with defaults", schema)
    return Text(f"Elicitation completed: action={res.get('action')}, content={json.dumps(res.get('content'))}")


@app.tool
async def test_elicitation_sep1330_enums(ctx: Context) -> Text:
    """Elicits every enum shape of SEP-1330."""
    choices = [
        {"const": f"value{i}", "title": t} for i, t in enumerate(("First Option", "Second Option", "Third Option"), 1)
    ]
    multi = [
        {"const": f"value{i}", "title": t} for i, t in enumerate(("First Choice", "Second Choice", "Third Choice"), 1)
    ]
    schema = {
        "type": "object",
        "required": [],
        "properties": {
            "untitledSingle": {
                "type": "string",
                "description": "Select one option",
                "enum": ["option1", "option2", "option3"],
            },
            "titledSingle": {"type": "string", "description": "Select one option with titles", "oneOf": choices},
            "legacyEnum": {
                "type": "string",
                "description": "Select one option (legacy)",
                "enum": ["opt1", "opt2", "opt3"],
                "enumNames": ["Option One", "Option Two", "Option Three"],
            },
            "untitledMulti": {
                "type": "array",
                "description": "Select multiple options",
                "minItems": 1,
                "maxItems": 3,
                "items": {"type": "string", "enum": ["option1", "option2", "option3"]},
            },
            "titledMulti": {
                "type": "array",
                "description": "Select multiple options with titles",
                "minItems": 1,
                "maxItems": 3,
                "items": {"anyOf": multi},
            },
        },
    }
    res = await ctx.elicit("Please select options from the enum fields", schema)
    return Text(f"Elicitation completed: action={res.get('action')}, content={json.dumps(res.get('content'))}")


# -- 2026-07-28 diagnostics and multi round-trip tools -------------------------

_NAME_FORM = _form(name={"type": "string"})


@app.tool
async def test_missing_capability(ctx: Context) -> Text:
    """Needs the client's sampling capability."""
    res = await ctx.sample("Say hello", max_tokens=10)
    return Text(f"sampled: {res.get('content')}")


@app.tool
async def test_streaming_elicitation(ctx: Context) -> Text:
    """Elicits a value (never as a request on the response stream on 2026-07-28)."""
    res = await ctx.elicit("What is your name?", _NAME_FORM)
    return Text(f"Hello, {res.get('content', {}).get('name')}!")


@app.tool
async def test_logging_tool(ctx: Context) -> Text:
    """Logs one message; clients see it only if they asked for a log level."""
    await ctx.log("info", "test_logging_tool ran")
    return Text("logged")


@app.tool
async def test_input_required_result_elicitation(ctx: Context) -> Text:
    """Asks for the user's name."""
    res = await ctx.elicit("What is your name?", _NAME_FORM, key="user_name")
    return Text(f"Hello, {res.get('content', {}).get('name')}!")


@app.tool
async def test_input_required_result_sampling(ctx: Context) -> Text:
    """Asks the client's model a question."""
    res = await ctx.sample("What is the capital of France?", max_tokens=100, key="capital_question")
    return Text(f"The model answered: {res.get('content', {}).get('text')}")


@app.tool
async def test_input_required_result_list_roots(ctx: Context) -> Text:
    """Lists the client's roots."""
    roots = await ctx.list_roots(key="client_roots")
    return Text(f"Roots: {', '.join(str(r.get('uri')) for r in roots)}")


@app.tool
async def test_input_required_result_request_state(ctx: Context) -> Text:
    """Asks for a confirmation and carries state between rounds."""
    res = await ctx.elicit("Please confirm", _form(ok={"type": "boolean"}), key="confirm")
    return Text(f"state-ok: confirmed={res.get('content', {}).get('ok')}")


@app.tool
async def test_input_required_result_multiple_inputs(ctx: Context) -> Text:
    """Asks for an elicitation, a sampling and the roots at once."""
    got = await ctx.ask(
        {
            "user_name": elicitation("What is your name?", _NAME_FORM),
            "greeting": sampling("Generate a greeting", max_tokens=50),
            "client_roots": {"method": "roots/list", "params": {}},
        }
    )
    name = got["user_name"].get("content", {}).get("name")
    return Text(
        f"Hello {name}: {got['greeting'].get('content', {}).get('text')} "
        f"({len(got['client_roots'].get('roots', []))} roots)"
    )


@app.tool
async def test_input_required_result_multi_round(ctx: Context) -> Text:
    """Asks two questions, one round each."""
    name = (await ctx.elicit("What is your name?", _NAME_FORM, key="step1")).get("content", {}).get("name")
    color = (
        (await ctx.elicit(f"Hi {name}, what is your favourite colour?", _form(color={"type": "string"}), key="step2"))
        .get("content", {})
        .get("color")
    )
    return Text(f"{name} likes {color}")


@app.tool
async def test_input_required_result_tampered_state(ctx: Context) -> Text:
    """Asks for a confirmation; a tampered requestState is refused."""
    res = await ctx.elicit("Please confirm", _form(ok={"type": "boolean"}), key="confirm")
    return Text(f"confirmed={res.get('content', {}).get('ok')}")


# The 2026-07-28 suite changes the lists through these and expects list_changed on an open subscriptions/listen.
_changes = {"tools": 0, "prompts": 0}


@app.tool
async def test_trigger_tool_change() -> Text:
    """Add a tool (a list change the listen streams hear)."""
    _changes["tools"] += 1

    async def added() -> str:
        return "added"

    app.add_tool(added, name=f"test_added_tool_{_changes['tools']}", description="A tool added while serving.")
    return Text("tool added")


@app.tool
async def test_trigger_prompt_change() -> Text:
    """Add a prompt (a list change the listen streams hear)."""
    _changes["prompts"] += 1

    def added() -> str:
        return "added"

    app.prompt(name=f"test_added_prompt_{_changes['prompts']}", description="A prompt added while serving.")(added)
    return Text("prompt added")


@app.tool
async def test_input_required_result_capabilities(ctx: Context) -> Text:
    """Asks only for what the client declared it can answer."""
    caps = ctx.client_capabilities
    if "elicitation" in caps:
        res = await ctx.elicit("What is your name?", _NAME_FORM, key="user_name")
        return Text(f"elicited {res.get('action')}")
    if "sampling" in caps:
        res = await ctx.sample("Say hello", max_tokens=20, key="hello")
        return Text(f"sampled: {res.get('content', {}).get('text')}")
    return Text("the client can answer no input requests")


# -- resources ---------------------------------------------------------------


@app.resource("test://static-text", name="static-text", description="A static text resource", mime_type="text/plain")
def static_text() -> str:
    return "This is the content of the static text resource."


@app.resource(
    "test://static-binary", name="static-binary", description="A static binary resource", mime_type="image/png"
)
def static_binary() -> EmbeddedResource:
    return EmbeddedResource("test://static-binary", blob=PNG, mime_type="image/png")


@app.resource(
    "test://watched-resource",
    name="watched-resource",
    description="A resource clients can subscribe to",
    mime_type="text/plain",
)
def watched() -> str:
    return "Watched resource content."


@app.resource(
    "test://template/{id}/data", name="template-data", description="Data for an id", mime_type="application/json"
)
def template_data(id: str) -> str:
    return json.dumps({"id": id, "templateTest": True, "data": f"Data for ID: {id}"})


# -- prompts -----------------------------------------------------------------


@app.prompt
def test_simple_prompt() -> str:
    """A simple prompt without arguments."""
    return "This is a simple prompt for testing."


@app.prompt
def test_prompt_with_arguments(
    arg1: Annotated[str, Field(description="First test argument")],
    arg2: Annotated[str, Field(description="Second test argument")],
) -> str:
    """A prompt with two arguments."""
    return f"Prompt with arguments: arg1='{arg1}', arg2='{arg2}'"


@app.prompt
def test_prompt_with_embedded_resource(
    resourceUri: Annotated[str, Field(description="URI of the resource to embed")],  # noqa: N803 - the wire name
) -> list[PromptMessage]:
    """A prompt that embeds a resource."""
    return [
        PromptMessage(
            "user", EmbeddedResource(resourceUri, text="Embedded resource content for testing.", mime_type="text/plain")
        ),
        PromptMessage("user", "Please process the embedded resource above."),
    ]


@app.prompt
def test_prompt_with_image() -> list[PromptMessage]:
    """A prompt with an image."""
    return [PromptMessage("user", Image(PNG, "image/png")), PromptMessage("user", "Please analyze the image above.")]


@app.prompt
async def test_input_required_result_prompt(ctx: Context) -> str:
    """A prompt that asks the user for context first."""
    res = await ctx.elicit("What context should the prompt use?", _form(context={"type": "string"}), key="user_context")
    return f"Use this context: {res.get('content', {}).get('context')}"


# -- completion --------------------------------------------------------------

_CANDIDATES = {"arg1": ["test", "testing", "tested", "value1"], "arg2": ["test2", "value2"]}


@app.completion
def complete(req: CompletionRequest) -> list[str]:
    return [c for c in _CANDIDATES.get(req.argument, []) if c.startswith(req.value)]


# -- the alpha suite's pending and extension scenarios -------------------------
# (kept in their own modules: raw JSON Schema and routing headers; tasks)

from tests.conformance import app_schema, app_tasks  # noqa: E402

app_schema.register(app)
app_tasks.register(app)
