"""Streamable HTTP as a raw ASGI app: /mcp, /healthz, /readyz, /metrics.

Raw ASGI rather than a framework: the hot path is one header scan, one body
read, one dispatch and one `send`. A request answers JSON unless the handler
sends something first (progress, a log line, a client request), in which case
the response turns into an SSE stream on the spot.
"""

from bemcp.transports.http.headers import McpHeaders
from bemcp.transports.http.options import HttpOptions
from bemcp.transports.http.transport import HttpTransport

__all__ = ["HttpOptions", "HttpTransport", "McpHeaders"]
