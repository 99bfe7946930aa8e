"""VGG-16/19 (Simonyan & Zisserman), the paper's reference baseline (Fig. 3 left, Table 3).

Keys follow torchvision (``features.{i}``, ``classifier.{0,3,6}``) so its checkpoints load with ``strict=True``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from . import specs
from .layers import ClassifierMixin, run_checkpointed


class VGG(ClassifierMixin, nn.Module):
    classifier_name = "classifier"

    def __init__(self, depth: int, *, num_classes: int = 1000, batch_norm: bool = False, dropout: float = 0.5,
                 in_chans: int = 3) -> None:
        super().__init__()
        if depth not in specs.VGG_CONFIGS:
            raise specs.InvalidDepthError(f"unknown VGG depth {depth}; choose from {sorted(specs.VGG_CONFIGS)}")
        self.num_classes = num_classes
        layers: list[nn.Module] = []
        self.stage_modules = {}
        self.response_bns: tuple[str, ...] = ()  # features.{i} BNs after each 3x3 conv (Fig. 7 responses)
        self.block_ends: tuple[int, ...] = ()  # features[start:end] of each block: its convs up to its max-pool
        in_ch = in_chans
        for v in specs.VGG_CONFIGS[depth]:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
                self.stage_modules[f"stage{len(self.stage_modules) + 1}"] = f"features.{len(layers) - 1}"
                self.block_ends += (len(layers),)
            else:
                layers.append(nn.Conv2d(in_ch, int(v), 3, padding=1))
                if batch_norm:
                    layers.append(nn.BatchNorm2d(int(v)))
                    self.response_bns += (f"features.{len(layers) - 1}",)
                layers.append(nn.ReLU(inplace=True))
                in_ch = int(v)
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))  # 224 input gives 7x7 already; other sizes are pooled to it
        self.num_features = in_ch * 7 * 7
        self.classifier = nn.Sequential(
            nn.Linear(self.num_features, 4096), nn.ReLU(True), nn.Dropout(dropout),
            nn.Linear(4096, 4096), nn.ReLU(True), nn.Dropout(dropout),
            nn.Linear(4096, num_classes),
        )
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def forward_features(self, x: Tensor) -> Tensor:
        if not (self.grad_checkpointing and torch.is_grad_enabled() and self.training):
            return self.features(x)
        starts = (0, *self.block_ends[:-1])  # the feature blocks (convs up to a max-pool), each recomputed in backward
        return run_checkpointed((self.features[a:b] for a, b in zip(starts, self.block_ends, strict=True)), x)

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        x = self.avgpool(x).flatten(1)
        if pre_logits:
            return self.classifier[:-1](x)  # the 4096-d penultimate features
        return self.classifier(x)

    def get_classifier(self) -> nn.Module:
        return self.classifier[-1]

    def reset_classifier(self, num_classes: int) -> None:
        old = self.classifier[-1]
        in_features = getattr(old, "in_features", 4096)
        new: nn.Module = nn.Linear(in_features, num_classes) if num_classes > 0 else nn.Identity()
        new.in_features = in_features  # type: ignore[assignment]
        self.classifier[-1] = new
        self.num_classes = num_classes


def vgg(depth: int, **kwargs: object) -> VGG:
    return VGG(depth, **kwargs)  # type: ignore[arg-type]
