"""BE-MCP: a hardened Model Context Protocol server runtime."""

from bemcp.app import App, CompletionRequest
from bemcp.content import Audio, EmbeddedResource, Image, PromptMessage, ResourceLink, Text, ToolResult
from bemcp.context import Context
from bemcp.errors import BemcpError, ClientError, McpError, NoBackChannel, ToolError

__version__ = "0.1.0"

__all__ = [
    "App",
    "Audio",
    "BemcpError",
    "ClientError",
    "CompletionRequest",
    "Context",
    "EmbeddedResource",
    "Image",
    "McpError",
    "NoBackChannel",
    "PromptMessage",
    "ResourceLink",
    "Text",
    "ToolError",
    "ToolResult",
    "__version__",
]
