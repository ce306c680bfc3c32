"""Parsl configuration from YAML site configs (labels ``surrogate``, ``dft``, ``gpu``).

>>> site = load_site("site-configs/local-threads.yaml")      # doctest: +SKIP
>>> config = build_config(site, run_dir="my-run")           # doctest: +SKIP
"""

from pesflow.executors.factory import build_config, parsl_session
from pesflow.executors.site import (
    LABELS,
    DFTSettings,
    GPUSettings,
    ProviderSettings,
    SiteConfig,
    SurrogateSettings,
    load_site,
    parse_site,
)

__all__ = [
    "LABELS",
    "DFTSettings",
    "GPUSettings",
    "ProviderSettings",
    "SiteConfig",
    "SurrogateSettings",
    "build_config",
    "load_site",
    "parse_site",
    "parsl_session",
]
