"""GPAW single points for the oracle: settings, MPI launch, structured results."""

from pesflow.dft.result import OracleResult
from pesflow.dft.runner import mpi_command, prepare_task, read_result, run_single_point
from pesflow.dft.settings import PRESETS, GPAWSettings, get_settings

__all__ = [
    "PRESETS",
    "GPAWSettings",
    "OracleResult",
    "get_settings",
    "mpi_command",
    "prepare_task",
    "read_result",
    "run_single_point",
]
