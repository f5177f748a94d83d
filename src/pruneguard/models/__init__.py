"""Model zoo, registry and safe model files."""

from pruneguard.models import zoo as _zoo  # noqa: F401  (registers the zoo entries)
from pruneguard.models.io import ModelMeta, load_model, read_meta, save_model
from pruneguard.models.layers import Normalize
from pruneguard.models.registry import MODELS, create_model, list_models, register_model

__all__ = [
    "MODELS",
    "ModelMeta",
    "Normalize",
    "create_model",
    "list_models",
    "load_model",
    "read_meta",
    "register_model",
    "save_model",
]
