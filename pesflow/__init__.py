"""pesflow: active Δ-learning global optimization and s2DPES on Parsl."""
__version__ = "0.1.0"
