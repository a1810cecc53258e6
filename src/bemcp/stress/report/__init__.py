"""Reports of `bemcp stress`: the report.json schema (v1), its consistency checks, the verdict, and the three
files (report.json, report.md, report.html). The runner builds the report dict, then calls `write_all`."""

from .checks import run_checks
from .files import finalize, write_all
from .html import render_html
from .jsonio import ReportFileError, read_json, write_json
from .markdown import render_markdown
from .schema import PHASE_NAMES, SCHEMA_VERSION, render_field_table, validate
from .summary import build_summary
from .verdict import build_verdict, operating_steps

__all__ = [
    "PHASE_NAMES",
    "SCHEMA_VERSION",
    "ReportFileError",
    "build_summary",
    "build_verdict",
    "finalize",
    "operating_steps",
    "read_json",
    "render_field_table",
    "render_html",
    "render_markdown",
    "run_checks",
    "validate",
    "write_all",
    "write_json",
]
