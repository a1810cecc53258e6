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
    if cfg.log_level.lower() not in LOG_LEVELS:  # the CLI's choices; env and TOML values bypass argparse
        raise ConfigError(f"log_level must be one of {', '.join(LOG_LEVELS)}, not {cfg.log_level!r}")
    return cfg
