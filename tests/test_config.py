"""Settings: one declaration per setting, read from flags, then BEMCP_* variables, then TOML, then defaults."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from bemcp import cli, config
from bemcp.config import ConfigError, ServeSettings, load


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(__import__("os").environ):
        if key.upper().startswith("BEMCP_"):
            monkeypatch.delenv(key)


def test_defaults() -> None:
    assert load({}) == ServeSettings()
    assert load({}).port == 8000 and load({}).transport == "http"


def test_precedence_flags_over_env_over_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    toml = tmp_path / "bemcp.toml"
    toml.write_text(
        '[serve]\nport = 9000\nmax-sessions = 5\nhost = "0.0.0.0"\nallowed_hosts = ["A.example", "b.example"]\n'
    )
    cfg = load({}, str(toml))
    assert (cfg.port, cfg.max_sessions, cfg.host) == (9000, 5, "0.0.0.0")
    assert cfg.allowed_hosts == ["a.example", "b.example"]
    assert cfg.transport == "http"  # untouched default

    monkeypatch.setenv("BEMCP_PORT", "9100")
    monkeypatch.setenv("bemcp_max_sessions", "6")  # variable names are not case-sensitive
    monkeypatch.setenv("BEMCP_ALLOWED_HOSTS", " x.example, ,y.example ")
    cfg = load({}, str(toml))
    assert (cfg.port, cfg.max_sessions, cfg.host) == (9100, 6, "0.0.0.0")
    assert cfg.allowed_hosts == ["x.example", "y.example"]

    cfg = load({"port": "9200", "max_sessions": None, "call_timeout": "0.5"}, str(toml))
    assert (cfg.port, cfg.max_sessions, cfg.call_timeout) == (9200, 6, 0.5)


def test_config_file_from_env_and_top_level_keys(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    toml = tmp_path / "flat.toml"
    toml.write_text('transport = "stdio"\ndebug = true\nsession_idle_timeout = 2\n')
    monkeypatch.setenv("BEMCP_CONFIG", str(toml))
    cfg = load({})
    assert cfg.transport == "stdio"
    assert cfg.debug is True
    assert cfg.session_idle_timeout == 2.0


@pytest.mark.parametrize(("raw", "expected"), [("yes", True), ("0", False), ("ON", True), ("false", False)])
def test_bool_from_env(raw: str, expected: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BEMCP_DEBUG", raw)
    assert load({}).debug is expected


@pytest.mark.parametrize(
    ("key", "raw", "expected"),
    [
        ("BEMCP_PORT", "eighty", "BEMCP_PORT must be a whole number from 0 to 65535, not 'eighty'"),
        ("BEMCP_PORT", "70000", "BEMCP_PORT must be a whole number from 0 to 65535, not '70000'"),
        ("BEMCP_DEBUG", "maybe", "BEMCP_DEBUG must be true or false, not 'maybe'"),
        ("BEMCP_CALL_TIMEOUT", "soon", "BEMCP_CALL_TIMEOUT must be a number greater than 0, not 'soon'"),
        ("BEMCP_TRANSPORT", "carrier-pigeon", "BEMCP_TRANSPORT must be one of stdio, http, not 'carrier-pigeon'"),
        ("BEMCP_LOG_LEVEL", "loud", "BEMCP_LOG_LEVEL must be one of debug, info, warning, error, not 'loud'"),
    ],
)
def test_bad_env_values_name_the_variable_and_the_range(
    key: str, raw: str, expected: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(key, raw)
    with pytest.raises(ConfigError) as e:
        load({})
    assert str(e.value) == expected


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ({"port": 70000}, "--port must be a whole number from 0 to 65535, not 70000"),
        ({"port": -1}, "--port must be a whole number from 0 to 65535, not -1"),
        ({"memory_fraction": 1.5}, "--memory-fraction must be a number greater than 0 and at most 1, not 1.5"),
        ({"memory_fraction": 0}, "--memory-fraction must be a number greater than 0 and at most 1, not 0"),
        ({"call_timeout": -2}, "--call-timeout must be a number greater than 0, not -2"),
        ({"drain_timeout": "-1"}, "--drain-timeout must be a number at least 0, not '-1'"),
        ({"queue_size": -1}, "--queue-size must be a whole number at least 0, not -1"),
        ({"max_concurrency": 0}, "--max-concurrency must be a whole number from 1 to 1000000, not 0"),
        ({"max_body_bytes": "lots"}, "--max-body-bytes must be a whole number at least 1024, not 'lots'"),
        (
            {"task_store": "postgres"},
            "--task-store: expected sqlite, memory, or a redis://HOST:PORT/DB URL, not 'postgres'",
        ),
        ({"max_tasks": 0}, "--max-tasks must be a whole number at least 1, not 0"),
        ({"memory_limit_mb": 0}, "--memory-limit-mb must be a number greater than 0, not 0"),
        ({"path": "mcp"}, "--path: must start with /, not 'mcp'"),
    ],
)
def test_out_of_range_values_name_the_flag_and_the_range(given: dict[str, object], expected: str) -> None:
    with pytest.raises(ConfigError) as e:
        load(given)
    assert str(e.value) == expected


def test_contradictory_values() -> None:
    with pytest.raises(ConfigError, match=r"--emergency-threshold \(2 s\) must be greater than --stall-threshold"):
        load({"stall_threshold": 5, "emergency_threshold": 2})


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ('port = "x"', "port must be a whole number"),
        ("port = 1.9", "port must be a whole number"),
        ("sync_workers = true", "sync_workers must be a whole number"),  # not silently 1
        ("call_timeout = true", "call_timeout must be a number"),
        ("allowed_hosts = 5", "allowed_hosts"),
        ("debug = 3", "debug must be true or false"),
    ],
)
def test_bad_toml_values(tmp_path: Path, body: str, expected: str) -> None:
    toml = tmp_path / "bad.toml"
    toml.write_text(body + "\n")
    with pytest.raises(ConfigError, match=expected) as e:
        load({}, str(toml))
    assert str(e.value).startswith(f"{toml}: ")


def test_unknown_key_unreadable_and_malformed(tmp_path: Path) -> None:
    unknown = tmp_path / "unknown.toml"
    unknown.write_text("[serve]\nport = 1\nporrt = 2\n")
    with pytest.raises(ConfigError, match="unknown setting 'porrt'"):
        load({}, str(unknown))
    with pytest.raises(ConfigError, match="cannot read"):
        load({}, str(tmp_path / "missing.toml"))
    broken = tmp_path / "broken.toml"
    broken.write_text("port = = 1\n")
    with pytest.raises(ConfigError, match="cannot read"):
        load({}, str(broken))
    with pytest.raises(ConfigError, match="unknown setting 'prot'"):
        load({"prot": 1})


def _serve_flags() -> dict[str, argparse.Action]:
    parser = argparse.ArgumentParser()
    cli._serve_parser(parser.add_subparsers())
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return {a.dest: a for a in sub.choices["serve"]._actions}


def test_every_setting_has_exactly_one_flag_and_every_flag_is_a_setting() -> None:
    flags = _serve_flags()
    for name in config.fields():
        if name == "app":  # the positional TARGET, and --app
            assert flags["target"].metavar == "TARGET" and "--app" in flags["app"].option_strings
            continue
        assert config.flag_name(name) in flags[name].option_strings, name
    cli_only = {"help", "target", "config"}
    assert set(flags) - cli_only == set(config.fields())


def test_help_comes_from_the_declaration() -> None:
    flags = _serve_flags()
    assert flags["port"].help == config.fields()["port"].description
    assert flags["transport"].metavar == "{stdio,http}"
    assert flags["protections"].help == argparse.SUPPRESS  # benchmarks only
    assert isinstance(flags["debug"], argparse.BooleanOptionalAction)


def test_http_limit_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    cfg = load({})
    assert (cfg.max_header_bytes, cfg.header_timeout, cfg.body_timeout) == (64 * 1024, 10.0, 30.0)
    assert (cfg.max_connections, cfg.max_sessions_per_client, cfg.forwarded_allow_ips) == (10_000, 1000, None)
    monkeypatch.setenv("BEMCP_MAX_HEADER_BYTES", "8192")
    monkeypatch.setenv("BEMCP_FORWARDED_ALLOW_IPS", "10.0.0.1, 10.0.0.0/8")
    toml = tmp_path / "limits.toml"
    toml.write_text("[serve]\nheader-timeout = 2.5\nmax_connections = 50\n")
    cfg = load({"body_timeout": "4", "max_sessions_per_client": 3}, str(toml))
    assert (cfg.max_header_bytes, cfg.header_timeout, cfg.body_timeout) == (8192, 2.5, 4.0)
    assert (cfg.max_connections, cfg.max_sessions_per_client) == (50, 3)
    assert cfg.forwarded_allow_ips == ["10.0.0.1", "10.0.0.0/8"]
    monkeypatch.setenv("BEMCP_FORWARDED_ALLOW_IPS", "")  # empty: trust no proxy
    assert load({}).forwarded_allow_ips == []


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ({"max_header_bytes": 100}, "--max-header-bytes must be a whole number from 1024 to 16777216, not 100"),
        ({"header_timeout": 0}, "--header-timeout must be a number greater than 0, not 0"),
        ({"body_timeout": "never"}, "--body-timeout must be a number greater than 0, not 'never'"),
        ({"max_connections": 0}, "--max-connections must be a whole number at least 1, not 0"),
        ({"max_sessions_per_client": 0}, "--max-sessions-per-client must be a whole number at least 1, not 0"),
    ],
)
def test_http_limit_ranges(given: dict[str, object], expected: str) -> None:
    with pytest.raises(ConfigError) as e:
        load(given)
    assert str(e.value) == expected
