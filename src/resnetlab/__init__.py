"""ResNet Lab: the ResNet paper (He, Zhang, Ren, Sun, 2015), complete and exact."""

from .errors import ResNetLabError
from .models import create_model, list_models, model_info

__version__ = "0.1.0"
__all__ = ["ResNetLabError", "__version__", "create_model", "list_models", "model_info"]
