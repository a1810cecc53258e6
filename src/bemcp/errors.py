"""Exception hierarchy.

`McpError` carries a JSON-RPC error; everything a handler raises that is not
an `McpError` becomes either a tool error result (inside a tool) or an
internal error (elsewhere), never a crash.
"""

from __future__ import annotations

from typing import Any

from bemcp.protocol import codes


class BemcpError(Exception):
    """Base class of every error BE-MCP raises on purpose."""


class McpError(BemcpError):
    """An error that is answered to the client as a JSON-RPC error object."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data

    def to_error(self) -> dict[str, Any]:
        err: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.data is not None:
            err["data"] = self.data
        return err


class InvalidParams(McpError):
    def __init__(self, message: str, data: Any = None) -> None:
        super().__init__(codes.INVALID_PARAMS, message, data)


class MethodNotFound(McpError):
    def __init__(self, method: str) -> None:
        super().__init__(codes.METHOD_NOT_FOUND, f"Method not found: {method}", {"method": method})


class ResourceNotFound(McpError):
    def __init__(self, uri: str) -> None:
        super().__init__(codes.RESOURCE_NOT_FOUND, f"Resource not found: {uri}", {"uri": uri})


class ToolError(BemcpError):
    """Raised by a tool to report a failure to the model (`isError: true`).

    Its message is always shown to the client, unlike an arbitrary exception
    whose text is shown only in debug mode.
    """


class ClientError(BemcpError):
    """The client answered a server-to-client request with an error."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(f"client error {code}: {message}")
        self.code = code
        self.message = message
        self.data = data


class NoBackChannel(BemcpError):
    """A server-to-client request was attempted where the transport has none."""
