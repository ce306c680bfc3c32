"""All engines, by name."""

from pesflow.search.base import ENGINES, Engine, engine_from_state
from pesflow.search.basin_hopping import BasinHopping, BasinHoppingSettings
from pesflow.search.gofee import GOFEE, GOFEESettings
from pesflow.search.rex import REX, REXSettings
from pesflow.search.rss import OracleRandomSearch, OracleRSSSettings, RandomSearch, RSSSettings

__all__ = [
    "ENGINES",
    "GOFEE",
    "REX",
    "BasinHopping",
    "BasinHoppingSettings",
    "Engine",
    "GOFEESettings",
    "OracleRSSSettings",
    "OracleRandomSearch",
    "REXSettings",
    "RSSSettings",
    "RandomSearch",
    "engine_from_state",
]
