"""Interop: torchvision and CIFAR-reference checkpoints (written here from their key layouts) convert to models whose
outputs equal an independent functional forward of the source architecture; predict and export from checkpoints."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from resnetlab.cli import main
from resnetlab.models import create_model
from resnetlab.train import fit
from resnetlab.weights import load, load_state_dict
from resnetlab.weights.convert import CIFAR10_CLASSES
from train_utils import synthetic_arrays, tiny_bundle, tiny_config


# --- checkpoints in the sources' layouts, and their forward passes ------------------------------------------------
class _Maker:
    def __init__(self, seed: int) -> None:
        self.g = torch.Generator().manual_seed(seed)
        self.sd: dict[str, Tensor] = {}

    def conv(self, name: str, out_ch: int, in_ch: int, k: int) -> None:
        self.sd[f"{name}.weight"] = torch.randn(out_ch, in_ch, k, k, generator=self.g) * (2 / (in_ch * k * k)) ** 0.5

    def bn(self, name: str, c: int, counters: bool = True) -> None:
        self.sd[f"{name}.weight"] = 1 + 0.1 * torch.randn(c, generator=self.g)
        self.sd[f"{name}.bias"] = 0.1 * torch.randn(c, generator=self.g)
        self.sd[f"{name}.running_mean"] = 0.1 * torch.randn(c, generator=self.g)
        self.sd[f"{name}.running_var"] = 0.5 + torch.rand(c, generator=self.g)
        if counters:
            self.sd[f"{name}.num_batches_tracked"] = torch.tensor(1000)

    def fc(self, name: str, out_f: int, in_f: int) -> None:
        self.sd[f"{name}.weight"] = 0.05 * torch.randn(out_f, in_f, generator=self.g)
        self.sd[f"{name}.bias"] = 0.05 * torch.randn(out_f, generator=self.g)


def torchvision_state_dict(bottleneck: bool, layers: tuple[int, ...], num_classes: int = 7) -> dict[str, Tensor]:
    """torchvision's ResNet keys: conv1 bn1 layerS.I.conv1/bn1/conv2/bn2[/conv3/bn3][.downsample.0/.1] fc."""
    m = _Maker(1)
    m.conv("conv1", 64, 3, 7)
    m.bn("bn1", 64)
    in_ch = 64
    for s, (n, w) in enumerate(zip(layers, (64, 128, 256, 512), strict=True), 1):
        out_ch = 4 * w if bottleneck else w
        for i in range(n):
            p = f"layer{s}.{i}"
            if bottleneck:
                m.conv(f"{p}.conv1", w, in_ch, 1)
                m.bn(f"{p}.bn1", w)
                m.conv(f"{p}.conv2", w, w, 3)
                m.bn(f"{p}.bn2", w)
                m.conv(f"{p}.conv3", out_ch, w, 1)
                m.bn(f"{p}.bn3", out_ch)
            else:
                m.conv(f"{p}.conv1", w, in_ch, 3)
                m.bn(f"{p}.bn1", w)
                m.conv(f"{p}.conv2", w, w, 3)
                m.bn(f"{p}.bn2", w)
            if i == 0 and (s > 1 or in_ch != out_ch):
                m.conv(f"{p}.downsample.0", out_ch, in_ch, 1)
                m.bn(f"{p}.downsample.1", out_ch)
            in_ch = out_ch
    m.fc("fc", num_classes, in_ch)
    return m.sd


def _bn(x: Tensor, sd: dict[str, Tensor], p: str) -> Tensor:
    return F.batch_norm(x, sd[f"{p}.running_mean"], sd[f"{p}.running_var"], sd[f"{p}.weight"], sd[f"{p}.bias"],
                        False, 0.0, 1e-5)


@torch.no_grad()
def torchvision_forward(sd: dict[str, Tensor], x: Tensor, layers: tuple[int, ...]) -> Tensor:
    """ImageNet ResNet as torchvision builds it: the bottleneck's stride on its 3x3 conv ("v1.5")."""
    bottleneck = "layer1.0.conv3.weight" in sd
    x = F.max_pool2d(F.relu(_bn(F.conv2d(x, sd["conv1.weight"], stride=2, padding=3), sd, "bn1")), 3, 2, 1)
    for s, n in enumerate(layers, 1):
        for i in range(n):
            p, stride = f"layer{s}.{i}", 2 if s > 1 and i == 0 else 1
            if bottleneck:
                out = F.relu(_bn(F.conv2d(x, sd[f"{p}.conv1.weight"]), sd, f"{p}.bn1"))
                out = F.relu(_bn(F.conv2d(out, sd[f"{p}.conv2.weight"], stride=stride, padding=1), sd, f"{p}.bn2"))
                out = _bn(F.conv2d(out, sd[f"{p}.conv3.weight"]), sd, f"{p}.bn3")
            else:
                out = F.relu(_bn(F.conv2d(x, sd[f"{p}.conv1.weight"], stride=stride, padding=1), sd, f"{p}.bn1"))
                out = _bn(F.conv2d(out, sd[f"{p}.conv2.weight"], padding=1), sd, f"{p}.bn2")
            if f"{p}.downsample.0.weight" in sd:
                x = _bn(F.conv2d(x, sd[f"{p}.downsample.0.weight"], stride=stride), sd, f"{p}.downsample.1")
            x = F.relu(out + x)
    return F.linear(F.adaptive_avg_pool2d(x, 1).flatten(1), sd["fc.weight"], sd["fc.bias"])


def cifar_reference_checkpoint(n: int, option: str = "A", counters: bool = True) -> dict:
    """The CIFAR reimplementation's saved file: DataParallel keys ("module."), ``linear``, option-B ``shortcut.0/1``."""
    m = _Maker(2)
    m.conv("conv1", 16, 3, 3)
    m.bn("bn1", 16, counters)
    in_ch = 16
    for s, w in enumerate((16, 32, 64), 1):
        for i in range(n):
            p = f"layer{s}.{i}"
            m.conv(f"{p}.conv1", w, in_ch, 3)
            m.bn(f"{p}.bn1", w, counters)
            m.conv(f"{p}.conv2", w, w, 3)
            m.bn(f"{p}.bn2", w, counters)
            if option == "B" and i == 0 and s > 1:
                m.conv(f"{p}.shortcut.0", w, in_ch, 1)
                m.bn(f"{p}.shortcut.1", w, counters)
            in_ch = w
    m.fc("linear", 10, 64)
    return {"epoch": 200, "state_dict": {f"module.{k}": v for k, v in m.sd.items()}, "best_prec1": torch.tensor(91.25)}


@torch.no_grad()
def cifar_reference_forward(ckpt: dict, x: Tensor, n: int) -> Tensor:
    """Its network: option A subsamples by 2 and zero-pads w/4 channels on each side; avg-pool; ``linear``."""
    sd = {k.removeprefix("module."): v for k, v in ckpt["state_dict"].items()}
    x = F.relu(_bn(F.conv2d(x, sd["conv1.weight"], padding=1), sd, "bn1"))
    in_ch = 16
    for s, w in enumerate((16, 32, 64), 1):
        for i in range(n):
            p, stride = f"layer{s}.{i}", 2 if s > 1 and i == 0 else 1
            out = F.relu(_bn(F.conv2d(x, sd[f"{p}.conv1.weight"], stride=stride, padding=1), sd, f"{p}.bn1"))
            out = _bn(F.conv2d(out, sd[f"{p}.conv2.weight"], padding=1), sd, f"{p}.bn2")
            if f"{p}.shortcut.0.weight" in sd:
                x = _bn(F.conv2d(x, sd[f"{p}.shortcut.0.weight"], stride=stride), sd, f"{p}.shortcut.1")
            elif stride != 1 or in_ch != w:
                x = F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, w // 4, w // 4))
            x = F.relu(out + x)
            in_ch = w
    x = F.avg_pool2d(x, x.shape[3]).flatten(1)
    return F.linear(x, sd["linear.weight"], sd["linear.bias"])


# --- torchvision ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("bottleneck", "layers", "name"), [(False, (2, 2, 2, 2), "resnet18"),
                                                              (True, (3, 4, 6, 3), "resnet50")])
def test_torchvision_checkpoint_converts_to_identical_outputs(tmp_path: Path, bottleneck: bool,
                                                              layers: tuple[int, ...], name: str) -> None:
    sd = torchvision_state_dict(bottleneck, layers)
    torch.save(sd, tmp_path / "tv.pth")  # torchvision's released files are bare state dicts
    out = tmp_path / "converted.safetensors"
    assert main(["convert", "--from", "torchvision", str(tmp_path / "tv.pth"), str(out)]) == 0
    loaded = load(out)
    assert loaded.name == name and loaded.model_kwargs == {"num_classes": 7, "shortcut": "B",
                                                           "stride_in_1x1": False}
    assert loaded.view.crop == 224 and loaded.view.resize == 256 and loaded.classes is None
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ours = loaded.model(x)
    assert torch.equal(ours, torchvision_forward(sd, x, layers))  # the same ops in the same order: bit for bit
    if bottleneck:  # the paper's stride placement (on the 1x1) is a different network with the same weights
        paper = load_state_dict(create_model(name, num_classes=7), sd).eval()
        with torch.no_grad():
            assert not torch.allclose(paper(x), ours, atol=1e-3)


def test_torchvision_conversion_refuses_other_architectures(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sd = torchvision_state_dict(False, (2, 2, 2, 2))
    sd["layer1.0.conv1.weight"] = torch.randn(128, 64, 3, 3)  # a wider block than Table 1's
    torch.save(sd, tmp_path / "wide.pth")
    assert main(["convert", "--from", "torchvision", str(tmp_path / "wide.pth"), str(tmp_path / "o.safetensors")]) == 1
    assert "layer1.0.conv1.weight" in capsys.readouterr().err
    odd = {k: v for k, v in torchvision_state_dict(False, (2, 2, 2, 2)).items() if not k.startswith("layer4.1.")}
    torch.save(odd, tmp_path / "odd.pth")
    assert main(["convert", "--from", "torchvision", str(tmp_path / "odd.pth"), str(tmp_path / "o.safetensors")]) == 1
    assert "[2, 2, 2, 1]" in capsys.readouterr().err
    torch.save({"foo": torch.zeros(1)}, tmp_path / "foo.pth")
    assert main(["convert", "--from", "cifar-reference", str(tmp_path / "foo.pth"),
                 str(tmp_path / "o.safetensors")]) == 1
    assert not (tmp_path / "o.safetensors").exists()


# --- the CIFAR reference ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("option", "counters"), [("A", True), ("A", False), ("B", True)])
def test_cifar_reference_checkpoint_converts_to_identical_outputs(tmp_path: Path, option: str,
                                                                  counters: bool) -> None:
    ckpt = cifar_reference_checkpoint(3, option, counters)  # ResNet-20
    torch.save(ckpt, tmp_path / "model.th")
    out = tmp_path / "resnet20.safetensors"
    assert main(["convert", "--from", "cifar-reference", str(tmp_path / "model.th"), str(out)]) == 0
    loaded = load(out)
    assert loaded.name == "resnet20" and loaded.model_kwargs["shortcut"] == option
    assert loaded.classes == CIFAR10_CLASSES and loaded.view.crop == 32 and loaded.view.pad == 4
    assert loaded.meta["extra"] == {"epoch": 200, "best_prec1": pytest.approx(91.25)}
    x = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ours = loaded.model(x)
    # equal up to float summation order (its avg_pool2d vs our adaptive pooling)
    torch.testing.assert_close(ours, cifar_reference_forward(ckpt, x, 3), rtol=1e-5, atol=1e-6)
    if option == "A":  # channels padded at the end only would be another network: the test can tell them apart
        end = create_model("resnet20", option_a_pad="end").eval()
        end.load_state_dict(loaded.model.state_dict())
        with torch.no_grad():
            assert not torch.allclose(end(x), ours, atol=1e-3)


def test_predict_a_converted_cifar_reference_model_uses_its_normalisation(tmp_path: Path,
                                                                         capsys: pytest.CaptureFixture[str]) -> None:
    ckpt = cifar_reference_checkpoint(3)
    torch.save(ckpt, tmp_path / "model.th")
    out = str(tmp_path / "r20.safetensors")
    assert main(["convert", "--from", "cifar-reference", str(tmp_path / "model.th"), out]) == 0
    pixels = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "img.png")
    capsys.readouterr()
    assert main(["predict", "--checkpoint", out, str(tmp_path / "img.png"), "--json"]) == 0
    (pred,) = json.loads(capsys.readouterr().out)
    # the reference's input: ToTensor (0..1) then Normalize(ImageNet mean, std)
    x = torch.from_numpy(pixels).permute(2, 0, 1)[None].float() / 255
    x = (x - torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)) / torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)
    probs = F.softmax(cifar_reference_forward(ckpt, x, 3), 1)[0]
    top = probs.topk(5)
    assert [t["class"] for t in pred["top"]] == [CIFAR10_CLASSES[i] for i in top.indices.tolist()]
    assert [t["probability"] for t in pred["top"]] == pytest.approx(top.values.tolist(), abs=1e-5)


# --- predict and export from a training checkpoint ----------------------------------------------------------------
@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("run") / "run"
    fit(tiny_config(max_iters=4), run, data=tiny_bundle(), progress=False)
    return run / "checkpoint-0000004.pt"


def test_predict_top_classes_with_probabilities_named_from_the_checkpoint(trained: Path, tmp_path: Path,
                                                                          capsys: pytest.CaptureFixture[str]) -> None:
    arrays = synthetic_arrays()
    paths = []
    for i in range(3):
        paths.append(tmp_path / f"img{i}.png")
        Image.fromarray(arrays.test_x[i].permute(1, 2, 0).numpy()).save(paths[-1])
    capsys.readouterr()
    assert main(["predict", "--checkpoint", str(trained), *map(str, paths)]) == 0
    text = capsys.readouterr().out.splitlines()
    assert text[0] == str(paths[0]) and text[1].lstrip().startswith("1. ") and text[1].endswith("%")
    assert main(["predict", "--checkpoint", str(trained), *map(str, paths), "--json"]) == 0  # fp32, the default
    preds = json.loads(capsys.readouterr().out)
    assert main(["predict", "--checkpoint", str(trained), *map(str, paths), "--json", "--precision", "bf16"]) == 0
    fast = json.loads(capsys.readouterr().out)
    for p, q in zip(preds, fast, strict=True):
        assert q["top"][0]["class"] == p["top"][0]["class"]
        assert q["top"][0]["probability"] == pytest.approx(p["top"][0]["probability"], abs=0.02)
    loaded = load(trained)
    with torch.no_grad():
        probs = F.softmax(loaded.model(arrays.test_x[:3].float() - loaded.mean), 1)
    for i, p in enumerate(preds):
        assert len(p["top"]) == 4 and {t["class"] for t in p["top"]} == {"a", "b", "c", "d"}  # 4 classes < top-5
        values = [t["probability"] for t in p["top"]]
        assert values == sorted(values, reverse=True) and sum(values) == pytest.approx(1.0, abs=1e-5)
        assert p["top"][0]["class"] == "abcd"[int(probs[i].argmax())]
        assert values[0] == pytest.approx(float(probs[i].max()), abs=1e-5)
    assert main(["predict", "--checkpoint", str(trained), str(tmp_path / "missing.png")]) == 1
    assert "missing.png does not exist" in capsys.readouterr().err


def test_export_reads_model_and_options_from_a_training_checkpoint(trained: Path, tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "m.pt2"
    assert main(["export", "--checkpoint", str(trained), "--format", "pt2", "--out", str(out)]) == 0
    assert "max |exported - eager|" in capsys.readouterr().out
    loaded = load(trained)
    x = torch.randn(5, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(torch.export.load(str(out)).module()(x), loaded.model(x))
    assert main(["export", "resnet20", "--checkpoint", str(trained), "--format", "pt2", "--out", str(out)]) == 1
    assert "holds a resnet8" in capsys.readouterr().err
    assert main(["export", "--format", "pt2", "--out", str(out)]) == 1
