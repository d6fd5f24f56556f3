"""Contact-center simulation over the real routing engine.

``run_simulation(SimulationParams(...)) -> SimulationReport`` and ``format_report(report) -> str``;
the parameters and the report are documented in :mod:`threadline.sim.simulation`.
"""

from .simulation import (
    ErlangPrediction,
    SimulationParams,
    SimulationReport,
    format_report,
    predict,
    run_simulation,
)

__all__ = [
    "ErlangPrediction",
    "SimulationParams",
    "SimulationReport",
    "format_report",
    "predict",
    "run_simulation",
]
