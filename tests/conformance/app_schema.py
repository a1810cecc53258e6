"""Fixture tools for the alpha suite's `json-schema-2020-12` and `http-custom-header-server-validation`."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field

from bemcp import App, Text

DRAFT_2020_12 = "https://json-schema.org/draft/2020-12/schema"

# The scenario's schema as it prints it: every keyword must come back in `tools/list`.
CONTACT_SCHEMA: dict[str, Any] = {
    "$schema": DRAFT_2020_12,
    "type": "object",
    "$defs": {
        "address": {
            "$anchor": "addressDef",
            "type": "object",
            "properties": {"street": {"type": "string"}, "city": {"type": "string"}},
        }
    },
    "properties": {
        "name": {"type": "string"},
        "address": {"$ref": "#/$defs/address"},
        "contactMethod": {"type": "string", "enum": ["phone", "email"]},
        "phone": {"type": "string"},
        "email": {"type": "string"},
    },
    "allOf": [{"anyOf": [{"required": ["phone"]}, {"required": ["email"]}]}],
    "if": {"properties": {"contactMethod": {"const": "phone"}}, "required": ["contactMethod"]},
    "then": {"required": ["phone"]},
    "else": {"required": ["email"]},
    "additionalProperties": False,
}


def register(app: App) -> None:
    @app.tool(
        name="json_schema_2020_12_tool",
        description="Tool with JSON Schema 2020-12 features",
        input_schema=CONTACT_SCHEMA,
    )
    async def contact(**arguments: Any) -> Text:
        return Text(f"contact: {', '.join(f'{k}={v}' for k, v in sorted(arguments.items()))}")

    @app.tool
    async def routed_echo(
        region: Annotated[str, Field(description="Where to route", json_schema_extra={"x-mcp-header": "Region"})],
        priority: Annotated[int, Field(json_schema_extra={"x-mcp-header": "Priority"})],
        query: str,
    ) -> Text:
        """Echoes its arguments; `region` and `priority` travel in Mcp-Param headers too (SEP-2243)."""
        return Text(f"{region}/{priority}: {query}")
