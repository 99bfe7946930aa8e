"""Regenerate tests/expected/model_outputs.pt (run only when an output change is intended, and say why in the commit).

    .venv/bin/python tests/make_expected.py
"""

import torch

import resnetlab
from model_utils import EXPECTED_FILE, expected_output

if __name__ == "__main__":
    torch.set_num_threads(2)
    outputs = {name: expected_output(name) for name in resnetlab.list_models()}
    EXPECTED_FILE.parent.mkdir(exist_ok=True)
    torch.save(outputs, EXPECTED_FILE)
    print(f"wrote {len(outputs)} outputs to {EXPECTED_FILE}")
