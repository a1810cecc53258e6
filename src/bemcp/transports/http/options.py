"""`HttpOptions`: what an operator sets for the HTTP transport (`bemcp serve` maps its flags here)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class HttpOptions:
    path: str = "/mcp"
    max_body_bytes: int = 4 * 1024 * 1024
    max_sessions: int = 10_000
    max_sessions_per_client: int = 1000
    session_idle_timeout: float = 1800.0
    # Enforced by the uvicorn protocol `guard.protocol_class()` makes (bemcp serve uses it; see transports.limits).
    max_header_bytes: int = 64 * 1024
    header_timeout: float = 10.0
    body_timeout: float = 30.0
    max_connections: int = 10_000
    allowed_hosts: tuple[str, ...] | None = None  # None: loopback names only
    allowed_origins: tuple[str, ...] | None = None  # None: loopback origins only
    dns_rebinding_protection: bool = True
