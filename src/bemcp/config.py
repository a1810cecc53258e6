"""Server configuration: CLI flags over `BEMCP_*` environment variables over a TOML file over defaults."""

from __future__ import annotations

import dataclasses
import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(slots=True)
class ServeConfig:
    transport: str = "http"
    host: str = "127.0.0.1"
    port: int = 8000
    app: str | None = None
    path: str = "/mcp"
    call_timeout: float | None = None
    sync_workers: int = 32
    max_body_bytes: int = 4 * 1024 * 1024
    max_sessions: int = 10_000
    session_idle_timeout: float = 1800.0
    allowed_hosts: list[str] | None = None
    allowed_origins: list[str] | None = None
    log_file: str | None = None
    log_level: str = "warning"
    debug: bool = False
    stress_tools: bool = False
    max_concurrency: int = 1000
    queue_size: int = 1000
    queue_timeout_ms: float = 1000.0
    limit: str = "fixed"
    memory_fraction: float = 0.8
    memory_limit_mb: float | None = None
    stall_threshold: float = 1.0
    emergency_threshold: float = 30.0
    drain_timeout: float = 10.0
    task_log: bool = True
    protections: bool = True


LOG_LEVELS = ("debug", "info", "warning", "error")


class ConfigError(ValueError):
    """A configuration value that cannot be used."""


def _coerce(field: dataclasses.Field[Any], raw: Any, source: str) -> Any:
    kind = str(field.type)
    try:
        if raw is None:
            return None
        if "list" in kind:
            return [s.strip() for s in raw.split(",") if s.strip()] if isinstance(raw, str) else list(raw)
        if "bool" in kind:
            if isinstance(raw, bool):
                return raw
            if str(raw).lower() in ("1", "true", "yes", "on"):
                return True
            if str(raw).lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(raw)
        if "float" in kind:
            if isinstance(raw, bool):  # TOML `true` is not a number of seconds
                raise ValueError(raw)
            return float(raw)
        if "int" in kind:
            if isinstance(raw, (bool, float)):  # int() would silently truncate 1.9 or turn true into 1
                raise ValueError(raw)
            return int(raw)
        return str(raw)
    except (TypeError, ValueError):
        raise ConfigError(f"{source}: {raw!r} is not a valid {field.name} ({kind})") from None


def load(cli: dict[str, Any], config_file: str | None = None, env: dict[str, str] | None = None) -> ServeConfig:
    """Merge the sources; `cli` holds only the flags the user actually gave."""
    env = dict(os.environ) if env is None else env
    file_values: dict[str, Any] = {}
    path = config_file or env.get("BEMCP_CONFIG")
    if path:
        try:
            data = tomllib.loads(Path(path).read_text())
        except (OSError, tomllib.TOMLDecodeError) as e:
            raise ConfigError(f"cannot read config file {path}: {e}") from None
        file_values = data.get("serve", data)
    cfg = ServeConfig()
    known = {f.name: f for f in dataclasses.fields(ServeConfig)}
    for key in file_values:
        if key.replace("-", "_") not in known:
            raise ConfigError(f"{path}: unknown setting {key!r}")
    for name, field in known.items():
        value: Any = dataclasses.MISSING
        if name in cli and cli[name] is not None:
            value = _coerce(field, cli[name], f"--{name.replace('_', '-')}")
        elif f"BEMCP_{name.upper()}" in env:
            value = _coerce(field, env[f"BEMCP_{name.upper()}"], f"BEMCP_{name.upper()}")
        elif name in file_values or name.replace("_", "-") in file_values:
            raw = file_values.get(name, file_values.get(name.replace("_", "-")))
            value = _coerce(field, raw, f"{path}: {name}")
        if value is not dataclasses.MISSING:
            setattr(cfg, name, value)
    if cfg.transport not in ("stdio", "http"):
        raise ConfigError(f"transport must be stdio or http, not {cfg.transport!r}")
    if cfg.limit not in ("fixed", "adaptive", "vegas"):
        raise ConfigError(f"limit must be fixed, adaptive or vegas, not {cfg.limit!r}")
    if not 0 < cfg.memory_fraction <= 1:
        raise ConfigError(f"memory_fraction must be in (0, 1], not {cfg.memory_fraction}")
    for name in ("max_concurrency", "sync_workers", "max_sessions"):
        if getattr(cfg, name) < 1:
            raise ConfigError(f"{name} must be at least 1, not {getattr(cfg, name)}")
    if cfg.queue_size < 0 or cfg.queue_timeout_ms < 0:
        raise ConfigError("queue_size and queue_timeout_ms must not be negative")
    if cfg.log_level.lower() not in LOG_LEVELS:  # the CLI's choices; env and TOML values bypass argparse
        raise ConfigError(f"log_level must be one of {', '.join(LOG_LEVELS)}, not {cfg.log_level!r}")
    return cfg
