"""Parsl configuration from YAML site configs (labels ``surrogate``, ``dft``, ``gpu``).

>>> site = load_site("site-configs/local-threads.yaml")      # doctest: +SKIP
>>> config = build_config(site, run_dir="my-run")           # doctest: +SKIP
"""

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


def __getattr__(name: str):
    # Parsl is imported only by what starts it: `pesflow status` and config checks stay quick
    if name in ("build_config", "parsl_session"):
        from pesflow.executors import factory

        return getattr(factory, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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
