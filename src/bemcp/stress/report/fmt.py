"""Number formatting shared by the markdown and HTML reports, so both print every number the same way."""

from __future__ import annotations

from typing import Any

NA = "—"


def is_num(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool)


def integer(x: Any) -> str:
    return f"{int(x):,}" if is_num(x) else NA


def number(x: Any, digits: int = 3) -> str:
    """Significant digits for small values, thousands separators and one decimal for large ones."""
    if not is_num(x):
        return NA
    v = float(x)
    if v == 0:
        return "0"
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    if abs(v) >= 100:
        return f"{v:.1f}".rstrip("0").rstrip(".")
    return f"{v:.{digits}g}"


def rate(x: Any) -> str:
    return f"{number(x)}/s" if is_num(x) else NA


def ms(x: Any) -> str:
    if not is_num(x):
        return NA
    return f"{float(x) / 1000:.3g} s" if float(x) >= 10_000 else f"{number(x)} ms"


def pct(x: Any, digits: int = 2) -> str:
    """A fraction as a percentage; tiny non-zero fractions keep a visible digit."""
    if not is_num(x):
        return NA
    v = float(x) * 100
    if v == 0:
        return "0%"
    if abs(v) < 0.01:
        return f"{v:.1g}%"
    return f"{v:.{digits}f}".rstrip("0").rstrip(".") + "%"


_BYTE_UNITS = ("B", "KiB", "MiB", "GiB", "TiB")


def _byte_unit(v: float) -> int:
    """The index in _BYTE_UNITS `bytes_` shows `v` in."""
    for i in range(len(_BYTE_UNITS) - 1):
        if abs(v) < 1024 ** (i + 1):
            return i
    return len(_BYTE_UNITS) - 1


def bytes_(x: Any) -> str:
    if not is_num(x):
        return NA
    i = _byte_unit(float(x))
    v = float(x) / 1024**i
    return f"{v:.0f} {_BYTE_UNITS[i]}" if i == 0 else f"{v:.1f} {_BYTE_UNITS[i]}"


def bytes_like(x: Any, like: Any) -> str:
    """`x` bytes in the unit `bytes_(like)` shows, so the two read side by side: 0.0446 GiB against 18.8 GiB."""
    if not is_num(x) or not is_num(like):
        return bytes_(x)
    i = _byte_unit(float(like))
    return f"{number(float(x) / 1024**i)} {_BYTE_UNITS[i]}"


def ms_like(x: Any, like: Any) -> str:
    """`x` milliseconds in the unit `ms(like)` shows (seconds from 10 s up)."""
    if not is_num(x) or not is_num(like):
        return ms(x)
    return f"{number(float(x) / 1000)} s" if float(like) >= 10_000 else f"{number(x)} ms"


def seconds(x: Any) -> str:
    if not is_num(x):
        return NA
    v = float(x)
    if v < 60:
        return f"{v:.1f} s"
    minutes, sec = divmod(v, 60)
    return f"{int(minutes)} min {sec:.0f} s"


def value(x: Any, unit: str = "") -> str:
    """A limit's or criterion's value with its unit, in the unit's natural format."""
    if x is None:
        return "not found" if unit else NA
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, str):
        return x
    if unit in ("bytes", "B"):
        return bytes_(x)
    if unit == "ms":
        return ms(x)
    if unit == "fraction":
        return pct(x)
    if unit in ("calls", "findings", "callers", "tasks") and x == 1:
        unit = unit[:-1]  # "1 call", not "1 calls"
    return f"{number(x)} {unit}".strip()


def value_like(x: Any, unit: str, like: Any) -> str:
    """`value(x, unit)`, in the display unit of the threshold `like` when it has one (bytes, ms)."""
    if is_num(x) and is_num(like):
        if unit in ("bytes", "B"):
            return bytes_like(x, like)
        if unit == "ms":
            return ms_like(x, like)
    return value(x, unit)


def plural(n: int, noun: str) -> str:
    return f"{n:,} {noun}" + ("" if n == 1 else "s")
