"""torch.hub entry points: ``torch.hub.load(path_to_this_repo, "resnet56", source="local")``.

Every registered model is an entry point. Without arguments it is randomly initialised; ``weights=NAME`` (a released
name such as ``resnet56.cifar10jpeg_medium``, its tag, or ``"DEFAULT"``) or ``pretrained=True`` (the model's default
weights) loads released weights, checked by SHA-256 (``resnetlab weights`` lists them).
"""

import sys
from functools import partial
from pathlib import Path

dependencies = ["torch", "safetensors"]

sys.path.insert(0, str(Path(__file__).resolve().parent / "src"))

from resnetlab import create_model  # noqa: E402
from resnetlab.models import list_models  # noqa: E402

for _name in list_models():
    globals()[_name] = partial(create_model, _name)
