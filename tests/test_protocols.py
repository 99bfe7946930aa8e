"""Test protocols (Sec. 3.4): crop geometry to the pixel, 10-crop and multi-scale scores, every model, the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from model_utils import calibrate_bn
from resnetlab.cli import main
from resnetlab.data import normalize
from resnetlab.data.views import ViewSpec, center_crop, crop_offsets, make_views, resize_shorter, ten_crop
from resnetlab.models import create_model
from resnetlab.train import evaluate, fit
from resnetlab.train.protocols import evaluate_tensors, score_views
from train_utils import synthetic_arrays, tiny_bundle, tiny_config, write_image_folder


def _grid(h: int, w: int) -> torch.Tensor:
    """[3, h, w] whose pixel (i, j) holds i * w + j in every channel (channel c adds 100 * c)."""
    base = torch.arange(h * w).view(h, w)
    return torch.stack([base + 100 * c for c in range(3)])


# --- geometry -----------------------------------------------------------------------------------------------------
def test_five_crop_offsets_and_ten_crop_pixels_exactly() -> None:
    img = _grid(6, 8)
    assert crop_offsets(6, 8, 4) == [(0, 0), (0, 4), (2, 0), (2, 4), (1, 2)]
    crops = ten_crop(img, 4)
    assert crops.shape == (10, 3, 4, 4)
    # top-left pixel of each of the five crops, then the flipped ones (whose top-left is the crop's top-right)
    assert [int(c[0, 0, 0]) for c in crops[:5]] == [0, 4, 16, 20, 10]
    assert [int(c[0, 0, 0]) for c in crops[5:]] == [3, 7, 19, 23, 13]
    assert crops[4, 0].tolist() == [[10, 11, 12, 13], [18, 19, 20, 21], [26, 27, 28, 29], [34, 35, 36, 37]]
    assert torch.equal(crops[9], crops[4].flip(-1)) and torch.equal(crops[2, 2], img[2, 2:6, 0:4])
    assert torch.equal(center_crop(img, 4), crops[4])


def test_cifar_views_crop_the_4_padded_40x40_image_and_scale_like_imagenet() -> None:
    spec = ViewSpec.fixed(32, pad=4)
    img = torch.randint(0, 256, (3, 32, 32), dtype=torch.uint8)
    (center,) = make_views(img, "center", spec)
    assert torch.equal(center, img)  # the paper's CIFAR test: the single original image
    views = make_views(img, "10crop", spec)
    assert len(views) == 10 and all(v.shape == (3, 32, 32) for v in views)
    assert torch.equal(views[0][:, 4:, 4:], img[:, :28, :28]) and views[0][:, :4].eq(0).all()  # top-left of 40x40
    assert torch.equal(views[3][:, :28, :28], img[:, 4:, 4:]) and views[3][:, 28:].eq(0).all()  # bottom-right
    assert torch.equal(views[4], img) and torch.equal(views[9], img.flip(-1))
    assert spec.scale_sides == (32, 37, 55, 69, 91)  # 224, 256, 384, 480, 640 at 32/224
    assert [tuple(v.shape[-2:]) for v in make_views(img, "multiscale", spec)] == [(s, s) for s in spec.scale_sides]


def test_imagenet_views_resize_the_shorter_side_to_256_and_scale_to_640() -> None:
    spec = ViewSpec.imagenet(224)
    assert (spec.resize, spec.scale_sides) == (256, (224, 256, 384, 480, 640))
    img = _grid(300, 400).clamp(max=255).to(torch.uint8)
    base = resize_shorter(img, 256)
    assert base.shape == (3, 256, 341)
    (center,) = make_views(img, "center", spec)
    assert torch.equal(center, base[:, 16:240, 58:282])  # offsets ((256-224)//2, (341-224)//2)
    tens = make_views(img, "10crop", spec)
    assert torch.equal(tens[1], base[:, :224, 341 - 224:]) and torch.equal(tens[7], base[:, 32:, :224].flip(-1))
    shapes = [tuple(v.shape[-2:]) for v in make_views(img, "multiscale", spec)]
    assert shapes == [(224, 299), (256, 341), (384, 512), (480, 640), (640, 853)]
    tall = make_views(img.transpose(1, 2), "multiscale", spec)  # portrait: the width is the shorter side
    assert tuple(tall[0].shape[-2:]) == (299, 224)


# --- scores ---------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def net() -> torch.nn.Module:
    torch.manual_seed(0)
    model = create_model("resnet8", num_classes=4)
    return calibrate_bn(model, torch.randn(16, 3, 32, 32) * 60)


def test_10crop_score_is_the_mean_of_the_ten_single_crop_scores(net: torch.nn.Module) -> None:
    mean = torch.rand(3, 32, 32) * 255
    images = torch.randint(0, 256, (3, 3, 32, 32), dtype=torch.uint8)
    views = [make_views(im, "10crop", ViewSpec.fixed(32, 4)) for im in images]
    probs = score_views(net, views, mean, None, chunk=7)  # chunks that cut across images
    for i, vs in enumerate(views):
        singles = [F.softmax(net(normalize(v[None], mean)), 1)[0] for v in vs]
        torch.testing.assert_close(probs[i].float(), torch.stack(singles).mean(0), rtol=1e-5, atol=1e-6)
    assert not torch.allclose(probs[0].float(), F.softmax(net(normalize(images[:1], mean)), 1)[0])


def test_multiscale_averages_whole_image_scores_with_the_mean_image_resized(net: torch.nn.Module) -> None:
    mean = torch.rand(3, 32, 32) * 255
    img = torch.randint(0, 256, (3, 32, 32), dtype=torch.uint8)
    views = make_views(img, "multiscale", ViewSpec.fixed(32, 4))
    probs = score_views(net, [views], mean, None)
    singles = []
    for v in views:
        m = F.interpolate(mean[None], size=v.shape[-2:], mode="bilinear", align_corners=False)[0]
        singles.append(F.softmax(net(v[None].float() - m), 1)[0])
    torch.testing.assert_close(probs[0].float(), torch.stack(singles).mean(0), rtol=1e-5, atol=1e-6)


def test_center_protocol_equals_the_engines_single_view_evaluation(net: torch.nn.Module) -> None:
    b = tiny_bundle(size=32)
    a = evaluate(net, b.test_x, b.test_y, b.mean, b.std, batch_size=10, channels_last=False)
    c = evaluate_tensors(net, b.test_x, b.test_y, b.mean, b.std, "center", ViewSpec.fixed(32, 4), batch_size=7,
                         channels_last=False)
    assert (c.count, c.top1_error, c.top5_error) == (a.count, a.top1_error, a.top5_error)
    assert c.loss == pytest.approx(a.loss, rel=1e-5)
    ten = evaluate_tensors(net, b.test_x, b.test_y, b.mean, b.std, "10crop", ViewSpec.fixed(32, 4), batch_size=7,
                           num_classes=4)
    assert ten.count == 32 and ten.confusion is not None and int(ten.confusion.sum()) == 32


# --- the command ----------------------------------------------------------------------------------------------------
def test_eval_cli_protocols_on_a_cifar_style_checkpoint(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    arrays = synthetic_arrays()
    data = write_image_folder(tmp_path / "data", arrays)
    fit(tiny_config(max_iters=4), tmp_path / "run", data=tiny_bundle(), progress=False)
    ckpt = tmp_path / "run" / "checkpoint-0000004.pt"
    results = {}
    for protocol in ("center", "10crop", "multiscale"):
        assert main(["eval", "--checkpoint", str(ckpt), "--data", str(data), "--cache-dir", str(tmp_path / "c"),
                     "--protocol", protocol, "--out", str(tmp_path / protocol), "--no-progress"]) == 0
        report = json.loads((tmp_path / protocol / "confusion.json").read_text())
        assert report["protocol"] == protocol and report["images"] == 32
        results[protocol] = report
    assert f"({protocol} test)" in capsys.readouterr().out
    from resnetlab.weights import load

    loaded = load(ckpt)
    assert loaded.view == ViewSpec.fixed(16, 4)
    direct = evaluate_tensors(loaded.model, arrays.test_x, arrays.test_y, loaded.mean, loaded.std, "10crop",
                              loaded.view, channels_last=False)
    assert results["10crop"]["top1_error"] == pytest.approx(direct.top1_error)
    assert results["10crop"]["loss"] == pytest.approx(direct.loss, rel=1e-4)
    with pytest.raises(SystemExit):
        main(["eval", "--checkpoint", str(ckpt), "--protocol", "5crop"])
