"""Problems (template + atoms to place + confinement), test systems, generators, identity."""

from pesflow.structures.problem import (
    BUILDERS,
    Confinement,
    Problem,
    ag2s_cluster,
    ag100_sqrt17,
    ag111_sqrt7,
    emt_cluster,
    emt_surface,
    lj_cluster,
)

__all__ = [
    "BUILDERS",
    "Confinement",
    "Problem",
    "ag2s_cluster",
    "ag100_sqrt17",
    "ag111_sqrt7",
    "emt_cluster",
    "emt_surface",
    "lj_cluster",
]
