"""ResNet Lab: the ResNet paper (He, Zhang, Ren, Sun, 2015), complete and exact."""

from .errors import ResNetLabError
from .models import list_models, list_weights, model_info
from .pretrained import Weights, create_model, get_weights

__version__ = "0.1.0"
__all__ = ["ResNetLabError", "Weights", "__version__", "create_model", "get_weights", "list_models", "list_weights",
           "model_info"]
