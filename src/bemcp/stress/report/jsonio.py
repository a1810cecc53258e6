"""report.json on disk: written atomically, read back with a clear error instead of a traceback."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import orjson

from .schema import SCHEMA_VERSION


class ReportFileError(ValueError):
    """A report file that cannot be used; the message is one line, fit for the terminal."""


def write_json(report: Mapping[str, Any], path: Path) -> Path:
    """Write `report` as indented JSON. A temporary file and a rename: a crash never leaves half a report."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2 | orjson.OPT_APPEND_NEWLINE))
    os.replace(tmp, path)
    return path


def read_json(path: Path) -> dict[str, Any]:
    """A report dict from `path`; raises ReportFileError for a missing, unparseable or foreign file."""
    try:
        data = orjson.loads(path.read_bytes())
    except FileNotFoundError:
        raise ReportFileError(f"{path}: no such file") from None
    except OSError as e:
        raise ReportFileError(f"{path}: cannot read it ({e.strerror})") from None
    except orjson.JSONDecodeError as e:
        raise ReportFileError(f"{path}: not JSON ({e})") from None
    if not isinstance(data, dict) or "schema_version" not in data:
        raise ReportFileError(f"{path}: not a bemcp stress report (no schema_version)")
    if data["schema_version"] != SCHEMA_VERSION:
        raise ReportFileError(
            f"{path}: schema version {data['schema_version']!r}; this tester reads version {SCHEMA_VERSION}"
        )
    return data
