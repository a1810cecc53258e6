"""Protocol revisions BE-MCP speaks."""

from typing import Final

MODERN: Final = ("2026-07-28",)
"""Revisions with the stateless per-request `_meta` envelope."""

HANDSHAKE: Final = ("2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05")
"""Revisions negotiated with `initialize`, newest first."""

SUPPORTED: Final = MODERN + HANDSHAKE
LATEST_HANDSHAKE: Final = HANDSHAKE[0]
DEFAULT_HTTP: Final = "2025-03-26"
"""What an HTTP request without `MCP-Protocol-Version` is assumed to speak (spec rule)."""

META_PROTOCOL_VERSION: Final = "io.modelcontextprotocol/protocolVersion"
META_CLIENT_CAPABILITIES: Final = "io.modelcontextprotocol/clientCapabilities"
META_CLIENT_INFO: Final = "io.modelcontextprotocol/clientInfo"
META_LOG_LEVEL: Final = "io.modelcontextprotocol/logLevel"
META_SERVER_INFO: Final = "io.modelcontextprotocol/serverInfo"
