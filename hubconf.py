"""torch.hub entry points: ``torch.hub.load(path_to_this_repo, "resnet56", source="local")``.

Every registered model is an entry point (randomly initialised; load weights with ``load_state_dict``).
"""

import sys
from functools import partial
from pathlib import Path

dependencies = ["torch"]

sys.path.insert(0, str(Path(__file__).resolve().parent / "src"))

from resnetlab.models import create_model, list_models  # noqa: E402

for _name in list_models():
    globals()[_name] = partial(create_model, _name)
