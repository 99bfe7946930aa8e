"""``resnetlab predict``: the top-k classes of image files under a trained (or converted) model."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from .data.stream import decode_rgb
from .data.views import make_views
from .errors import ResNetLabError
from .inference import inference_copy
from .train.device import resolve_precision
from .train.protocols import check_protocol, score_views
from .weights import LoadedModel


@dataclass
class Prediction:
    path: str
    top: list[tuple[str, float]]  # (class name, probability), most probable first


def class_name(loaded: LoadedModel, index: int) -> str:
    return loaded.classes[index] if loaded.classes else f"class {index}"


@torch.no_grad()
def predict_files(loaded: LoadedModel, paths: Sequence[str | Path], topk: int = 5, protocol: str = "center",
                  device: str | torch.device = "cpu", batch_size: int = 16,
                  precision: str = "fp32") -> list[Prediction]:
    """Top-``topk`` (class, probability) of each image; ``protocol`` as in evaluation (scores averaged over views).

    The model runs on the inference path (BN folded, channels_last, autocast at ``precision``).
    An image is preprocessed as the model's test images were: ImageNet-style models see it resized (shorter side
    256/224 x crop) and center-cropped; CIFAR-style models see it resized to the crop size and center-cropped.
    """
    check_protocol(protocol)
    device = torch.device(device)
    precision = resolve_precision(precision, device)
    model = inference_copy(loaded.model, precision, device=device)  # the inference path
    out: list[Prediction] = []
    for s in range(0, len(paths), batch_size):
        chunk = [str(p) for p in paths[s:s + batch_size]]
        views = []
        for p in chunk:
            try:
                img = decode_rgb(p)
            except FileNotFoundError:
                raise ResNetLabError(f"image {p} does not exist") from None
            except Exception as exc:
                raise ResNetLabError(f"cannot decode {p}: {type(exc).__name__}: {exc}") from None
            views.append(make_views(img, protocol, loaded.view))
        probs = score_views(model, views, loaded.mean, loaded.std, device=device, precision=precision,
                            channels_last=True).float().cpu()
        values, indices = probs.topk(min(topk, probs.shape[1]), dim=1)
        for p, vals, idx in zip(chunk, values.tolist(), indices.tolist(), strict=True):
            out.append(Prediction(p, [(class_name(loaded, i), v) for i, v in zip(idx, vals, strict=True)]))
    return out
