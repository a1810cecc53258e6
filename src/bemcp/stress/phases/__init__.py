"""The phases of a stress run: tsunami, tasks, avalanche, chaos, rate, soak."""

from bemcp.stress.phases.avalanche import avalanche
from bemcp.stress.phases.base import PhaseContext, PhaseOutcome
from bemcp.stress.phases.chaos import chaos
from bemcp.stress.phases.rate import rate
from bemcp.stress.phases.soak import soak
from bemcp.stress.phases.tasks import tasks
from bemcp.stress.phases.tsunami import tsunami

PHASES = {"tsunami": tsunami, "tasks": tasks, "avalanche": avalanche, "chaos": chaos, "rate": rate, "soak": soak}

__all__ = ["PHASES", "PhaseContext", "PhaseOutcome"]
