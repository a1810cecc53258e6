"""JSON-RPC and MCP error codes used on the wire."""

from typing import Final

PARSE_ERROR: Final = -32700
INVALID_REQUEST: Final = -32600
METHOD_NOT_FOUND: Final = -32601
INVALID_PARAMS: Final = -32602
INTERNAL_ERROR: Final = -32603

# The SDKs' "connection closed": a call whose 2025-11-25 session was deleted before it finished.
CONNECTION_CLOSED: Final = -32000

# MCP-defined codes (spec and SDK agree on these values).
RESOURCE_NOT_FOUND: Final = -32002
REQUEST_TIMEOUT: Final = -32001
HEADER_MISMATCH: Final = -32020
MISSING_REQUIRED_CLIENT_CAPABILITY: Final = -32021
UNSUPPORTED_PROTOCOL_VERSION: Final = -32022

# BE-MCP's own codes, in the implementation-defined server range.
OVERLOADED: Final = -32050
"""Admission refused: `data.reason` is concurrency_limit, queue_timeout, memory_pressure or draining."""
CALL_TIMEOUT: Final = -32051
"""A call ran past its deadline and was cancelled."""
