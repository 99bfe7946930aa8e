"""Trained weights, in one place: the released ones as records (``registry``), their files and the one format
(``files``), where released files come from (``hub``), their preprocessing (``preprocess``), fitting a state dict
into a model (``state``), outside checkpoints (``convert``), and one resolver and one loader for every way a user
names weights (``api``).

    import resnetlab
    model = resnetlab.create_model("resnet20", pretrained=True)   # the model's default released weights
    loaded = resnetlab.weights.load("runs/cifar10/paper/resnet20-s0-2e84114b")  # a run folder, a file or a name
"""

from .api import LoadedModel, Source, TrainedWeights, Weights, create_model, get_weights, load, read, resolve
from .files import WeightsFile, WeightsFileError, load_weights, save_weights
from .preprocess import ImagePreprocess
from .registry import RELEASED, UnknownWeightsError, WeightsEntry, list_weights, weights_entry
from .state import IncompatibleWeightsError, load_state_dict, strip_prefixes

__all__ = ["RELEASED", "ImagePreprocess", "IncompatibleWeightsError", "LoadedModel", "Source", "TrainedWeights",
           "UnknownWeightsError", "Weights", "WeightsEntry", "WeightsFile", "WeightsFileError", "create_model",
           "get_weights", "list_weights", "load", "load_state_dict", "load_weights", "read", "resolve",
           "save_weights", "strip_prefixes", "weights_entry"]
