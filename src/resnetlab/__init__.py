"""ResNet Lab: the ResNet paper (He, Zhang, Ren, Sun, 2015), complete and exact.

    import resnetlab
    model = resnetlab.create_model("resnet56", pretrained=True)        # the model's default released weights
    w = resnetlab.get_weights(resnetlab.list_weights("resnet56")[0])  # their card, classes and preprocessing
    cfg = resnetlab.resolve_config("cifar10_paper", {"model": "resnet20", "data": "../shared/data/cifar10"})
    result = resnetlab.fit(cfg, "runs/r20")                          # train (or resume) a run
"""

from typing import Any

from .errors import ResNetLabError
from .models import list_models, model_info
from .weights import Weights, create_model, get_weights, list_weights

__version__ = "0.1.0"
__all__ = ["ResNetLabError", "TrainConfig", "Weights", "__version__", "create_model", "fit", "get_weights",
           "list_models", "list_weights", "model_info", "resolve_config"]
_TRAINING = ("TrainConfig", "fit", "resolve_config")  # imported on first use: training pulls in the data code


def __getattr__(name: str) -> Any:
    if name in _TRAINING:
        from . import train

        return getattr(train, name)
    raise AttributeError(f"module 'resnetlab' has no attribute {name!r}")
