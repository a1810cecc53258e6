"""What a method family needs to run user code as calls, and the shared checks on its parameters."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import pydantic

from bemcp.runtime.pipeline import CallSpec, Cancellable

if TYPE_CHECKING:
    from bemcp.context import Context
    from bemcp.protocol.exchange import Exchange
    from bemcp.runtime.refusal import Refusal

T = TypeVar("T")
Result = dict[str, Any]
RunCall = Callable[[CallSpec, Callable[[], Coroutine[Any, Any, Result]], Cancellable], Coroutine[Any, Any, Result]]
RunSync = Callable[[Callable[..., Any], dict[str, Any]], Coroutine[Any, Any, Any]]


@dataclass(frozen=True, slots=True)
class Calling:
    """The runtime's entry for calls (`Runtime.run_call`), its thread pool for sync functions, the default
    deadline, the debug switch, how a function's `ctx` is made, and the shedding verdict for work that is
    accepted now to run later (a task: `shed(read_only)`, None to accept)."""

    run_call: RunCall
    run_sync: RunSync
    call_timeout: float | None
    debug: bool
    context: Callable[[Exchange], Context]
    shed: Callable[[bool], Refusal | None] = lambda read_only: None


def validation_detail(exc: pydantic.ValidationError) -> list[dict[str, Any]]:
    return [{"loc": ".".join(str(p) for p in e["loc"]), "msg": e["msg"], "type": e["type"]} for e in exc.errors()]


def describe_validation(exc: pydantic.ValidationError) -> str:
    return "; ".join(f"{d['loc'] or '(arguments)'}: {d['msg']}" for d in validation_detail(exc))
