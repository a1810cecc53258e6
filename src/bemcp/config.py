"""Server settings, each declared once: its type, range, default and help.

The same declaration makes the `bemcp serve` flag, the `BEMCP_<NAME>` environment variable and the TOML key.
Values come from flags (or `App.run()` keywords), then the environment, then the TOML file given with `--config`
(or `BEMCP_CONFIG`; top-level keys or a `[serve]` table), then the defaults. pydantic validates every source the
same way, and a bad value is reported with where it came from and what is allowed.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import pydantic
from pydantic import Field, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    InitSettingsSource,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

ENV_PREFIX = "BEMCP_"
LOG_LEVELS = ("debug", "info", "warning", "error")


class ConfigError(ValueError):
    """A configuration value that cannot be used."""


def _opt(default: Any, help: str, *, group: str = "server", flag: bool = True, **constraints: Any) -> Any:
    """A setting: `group` places its flag in `--help`; `flag=False` keeps it out of `--help` (still settable)."""
    return Field(default, description=help, json_schema_extra={"group": group, "flag": flag}, **constraints)


CommaList = Annotated[list[str] | None, NoDecode]


class ServeSettings(BaseSettings):
    """Everything `bemcp serve` and `App.run()` accept."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, case_sensitive=False, extra="forbid", validate_default=False, frozen=True
    )

    app: str | None = _opt(
        None,
        "the app to serve: MODULE:ATTR, MODULE (its one bemcp.App), FILE.py or FILE.py:ATTR "
        "(default: the built-in app)",
        flag=False,  # the positional TARGET and --app
    )
    app_dir: str = _opt(".", "folder put first on the import path, so its modules can be served (default: .)")
    transport: Literal["stdio", "http"] = _opt("http", "stdio, or Streamable HTTP (default: http)")
    host: str = _opt("127.0.0.1", "bind address (default 127.0.0.1)", min_length=1)
    port: int = _opt(8000, "TCP port; 0 picks a free one (default 8000)", ge=0, le=65535)
    path: str = _opt("/mcp", "the MCP endpoint path (default /mcp)")
    call_timeout: float | None = _opt(None, "seconds before a call is cancelled (default: none)", gt=0)
    sync_workers: int = _opt(32, "threads for sync tools (default 32)", ge=1, le=4096)
    max_body_bytes: int = _opt(4 * 1024 * 1024, "larger HTTP bodies get 413 (default 4 MiB)", ge=1024)
    max_sessions: int = _opt(10_000, "sessions past this get 503 (default 10000)", ge=1)
    max_sessions_per_client: int = _opt(1000, "sessions one client may hold; past it: 503 (default 1000)", ge=1)
    session_idle_timeout: float = _opt(1800.0, "seconds before an idle session ends (default 1800)", gt=0)
    forwarded_allow_ips: CommaList = _opt(
        None, "proxies trusted to name the client in X-Forwarded-For (default 127.0.0.1,::1)"
    )
    max_connections: int = _opt(10_000, "open HTTP connections; past it: 503 (default 10000)", ge=1)
    max_header_bytes: int = _opt(
        64 * 1024, "larger request heads get 431 (default 64 KiB)", ge=1024, le=16 * 1024 * 1024
    )
    header_timeout: float = _opt(10.0, "seconds to receive a request's headers; then 408 (default 10)", gt=0)
    body_timeout: float = _opt(30.0, "seconds to receive a body after its headers; then 408 (default 30)", gt=0)
    allowed_hosts: CommaList = _opt(None, "comma-separated Host names accepted besides the loopback names (* for any)")
    allowed_origins: CommaList = _opt(None, "comma-separated Origins accepted besides loopback origins (* for any)")
    log_file: str | None = _opt(None, "write the task log here (JSON lines) instead of stderr")
    log_level: Literal["debug", "info", "warning", "error"] = _opt("warning", "default: warning")
    debug: bool = _opt(False, "tracebacks in tool errors and on a failed start")
    stress_tools: bool = _opt(
        False,
        "register the workload tools (denial-of-service by design; never in production)",
        group="protection",
    )
    max_concurrency: int = _opt(1000, "calls running at once (default 1000)", group="protection", ge=1, le=1_000_000)
    queue_size: int = _opt(
        1000, "calls waiting for a slot; past it: overload error (default 1000)", group="protection", ge=0
    )
    queue_timeout_ms: float = _opt(
        1000.0, "how long a call may wait for a slot (default 1000)", group="protection", ge=0
    )
    limit: Literal["fixed", "adaptive", "vegas"] = _opt(
        "fixed",
        "the concurrency limit: fixed at --max-concurrency, or adaptive (Gradient2) / vegas, "
        "learning the limit from latency up to --max-concurrency (default fixed)",
        group="protection",
    )
    memory_fraction: float = _opt(
        0.8, "memory budget as a fraction of the limit (default 0.8)", group="protection", gt=0, le=1
    )
    memory_limit_mb: float | None = _opt(
        None,
        "the memory limit to budget from, instead of the detected cgroup or physical limit",
        group="protection",
        gt=0,
    )
    stall_threshold: float = _opt(
        1.0, "seconds of event-loop stall the watchdog records (default 1)", group="protection", gt=0
    )
    emergency_threshold: float = _opt(
        30.0,
        "seconds of stall after which the server exits with code 75 (default 30)",
        group="protection",
        gt=0,
    )
    drain_timeout: float = _opt(
        10.0, "seconds a drain waits for in-flight calls (default 10)", group="protection", ge=0
    )
    supervise: bool = _opt(
        False, "run the server as a child process, restarting it after an abnormal exit", group="protection"
    )
    task_store: str = _opt(
        "sqlite",
        "where tasks are kept: sqlite (a file under --state-dir), redis://HOST:PORT/DB (shared by many "
        "servers), or memory (lost at exit) (default sqlite)",
        group="tasks",
        min_length=1,
    )
    state_dir: str | None = _opt(
        None, "folder for the task store's file (default: $XDG_STATE_HOME/bemcp/APP-NAME)", group="tasks"
    )
    max_tasks: int = _opt(
        10_000, "unfinished tasks at once; past it: overload error task_limit (default 10000)", group="tasks", ge=1
    )
    task_timeout: float | None = _opt(
        None, "seconds a task may run, unless its tool sets its own timeout (default: none)", group="tasks", gt=0
    )
    task_ttl: float = _opt(
        3600.0, "seconds a task and its result are kept after creation (default 3600)", group="tasks", gt=0
    )
    task_lease: float = _opt(
        15.0, "seconds a silent server keeps its tasks before another takes them over (default 15)", group="tasks", gt=0
    )
    worker_id: str | None = _opt(
        None,
        "this process's name in a shared task store; keep it across restarts so that they resume or fail its "
        "tasks at once (default: HOST:PORT for HTTP, else random)",
        group="tasks",
    )
    task_log: bool = _opt(True, "write a record per call to --log-file", group="protection", flag=False)
    # Off only to measure what the protections cost (benchmarks/bench_overhead.py), never for serving.
    protections: bool = _opt(True, "shedding, admission, watchdog, sampler, metrics", group="protection", flag=False)

    @field_validator("allowed_hosts", "allowed_origins", "forwarded_allow_ips", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [s.strip().lower() for s in value.split(",") if s.strip()]
        if isinstance(value, list):
            return [s.strip().lower() if isinstance(s, str) else s for s in value]
        return value

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_numbers(cls, value: Any, info: pydantic.ValidationInfo) -> Any:
        # pydantic's lax mode reads TOML `true` as 1; a number of seconds or workers is never a boolean.
        field = ServeSettings.model_fields[info.field_name] if info.field_name else None
        if isinstance(value, bool) and field is not None and _base_type(field.annotation) in (int, float):
            raise ValueError("not a number")
        return value

    @field_validator("task_store")
    @classmethod
    def _store(cls, value: str) -> str:
        if value in ("sqlite", "memory") or value.startswith(("redis://", "rediss://", "unix://")):
            return value
        raise ValueError("expected sqlite, memory, or a redis://HOST:PORT/DB URL")

    @field_validator("path")
    @classmethod
    def _absolute(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError("must start with /")
        return value

    @field_validator("log_level", "transport", "limit", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _consistent(self) -> ServeSettings:
        if self.emergency_threshold <= self.stall_threshold:
            raise ValueError(
                f"--emergency-threshold ({self.emergency_threshold:g} s) must be greater than "
                f"--stall-threshold ({self.stall_threshold:g} s)"
            )
        return self


def _with_file(values: dict[str, Any]) -> type[ServeSettings]:
    """ServeSettings whose lowest-priority source is the TOML file's values."""

    class FromFile(ServeSettings):
        @classmethod
        def settings_customise_sources(
            cls,
            settings_cls: type[BaseSettings],
            init_settings: PydanticBaseSettingsSource,
            env_settings: PydanticBaseSettingsSource,
            dotenv_settings: PydanticBaseSettingsSource,
            file_secret_settings: PydanticBaseSettingsSource,
        ) -> tuple[PydanticBaseSettingsSource, ...]:
            return init_settings, env_settings, InitSettingsSource(settings_cls, values)

    return FromFile


def fields() -> dict[str, FieldInfo]:
    return dict(ServeSettings.model_fields)


def flag_name(name: str) -> str:
    return "--" + name.replace("_", "-")


def env_name(name: str) -> str:
    return ENV_PREFIX + name.upper()


def _base_type(annotation: Any) -> Any:
    args = [a for a in getattr(annotation, "__args__", ()) if a is not type(None)]
    return args[0] if getattr(annotation, "__origin__", None) is not Literal and len(args) == 1 else annotation


def allowed(field: FieldInfo) -> str | None:
    """What values a field takes, in words: 'one of stdio, http', 'a whole number from 0 to 65535'."""
    kind = _base_type(field.annotation)
    if getattr(kind, "__origin__", None) is Literal:
        return "one of " + ", ".join(map(str, kind.__args__))
    if kind is bool:
        return "true or false"
    noun = {int: "a whole number", float: "a number"}.get(kind)
    if noun is None:
        return None
    bounds: dict[str, Any] = {}
    for m in field.metadata:
        for key in ("ge", "gt", "le", "lt"):
            if hasattr(m, key):
                bounds[key] = getattr(m, key)
    if "ge" in bounds and "le" in bounds:
        return f"{noun} from {bounds['ge']} to {bounds['le']}"
    words = {"ge": "at least", "gt": "greater than", "le": "at most", "lt": "less than"}
    parts = [f"{words[k]} {v}" for k, v in bounds.items()]
    return f"{noun} {' and '.join(parts)}" if parts else noun


def _read_file(path: str) -> dict[str, Any]:
    try:
        data = tomllib.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise ConfigError(f"cannot read config file {path}: {e}") from None
    table = data.get("serve", data)
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: [serve] must be a table")
    known = ServeSettings.model_fields
    values: dict[str, Any] = {}
    for key, value in table.items():
        name = key.replace("-", "_")
        if name not in known:
            raise ConfigError(f"{path}: unknown setting {key!r}")
        values[name] = value
    return values


def load(given: Mapping[str, Any], config_file: str | None = None) -> ServeSettings:
    """Merge the sources; `given` holds only what the user actually set (flags or keywords), by field name."""
    path = config_file or os.environ.get("BEMCP_CONFIG")
    file_values = _read_file(path) if path else {}
    supplied = {k: v for k, v in given.items() if v is not None}
    unknown = sorted(set(supplied) - set(ServeSettings.model_fields))
    if unknown:
        raise ConfigError(f"unknown setting {unknown[0]!r}")
    try:
        return _with_file(file_values)(**supplied) if file_values else ServeSettings(**supplied)
    except pydantic.ValidationError as e:
        raise ConfigError(_explain(e, supplied, os.environ, path)) from None


def _explain(
    exc: pydantic.ValidationError, given: Mapping[str, Any], environ: Mapping[str, str], path: str | None
) -> str:
    """The first error as one line: where the value came from, what is allowed, and the value."""
    err = exc.errors()[0]
    loc = err.get("loc") or ()
    if not loc:  # a rule across settings
        return str(err.get("msg", "invalid settings")).removeprefix("Value error, ")
    name = str(loc[0])
    env_key = next((k for k in environ if k.upper() == env_name(name)), None)
    if name in given:
        source, value = flag_name(name), given[name]
    elif env_key is not None:
        source, value = env_key, environ[env_key]
    else:
        source, value = f"{path}: {name}", err.get("input")
    field = ServeSettings.model_fields.get(name)
    rule = allowed(field) if field is not None else None
    if rule is not None:
        return f"{source} must be {rule}, not {value!r}"
    detail = str(err.get("msg", "invalid")).removeprefix("Value error, ")
    return f"{source}: {detail}, not {value!r}"
