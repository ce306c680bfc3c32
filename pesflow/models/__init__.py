"""Energy models: the uMLIP registry, priors, SOAP descriptor, sparse GPR and the Δ-model."""

from pesflow.models.registry import MODELS, ModelInfo, check_model, get_calculator

__all__ = ["MODELS", "ModelInfo", "check_model", "get_calculator"]
