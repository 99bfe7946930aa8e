"""Released weights: the registry's cards against the committed files, each card's test error reproduced on the real
data, the preprocessing that travels with them, the hub, fine-tuning with --init, and the download path against a
local HTTP server (good, truncated, wrong hash, no server)."""

from __future__ import annotations

import hashlib
import http.server
import json
import socket
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import resnetlab
from data_utils import REPO, data_of, real_data, tracked
from resnetlab.cli import main
from resnetlab.data import DataWarning, load_dataset
from resnetlab.data.known import known_data
from resnetlab.errors import ResNetLabError
from resnetlab.models import create_model, list_models
from resnetlab.models.complexity import complexity
from resnetlab.predict import predict_files
from resnetlab.train import TrainConfig, fit
from resnetlab.train.report import DEFAULT_EVAL_BATCH, evaluate_checkpoint
from resnetlab.train.trainer import Trainer
from resnetlab.weights import RELEASED as RELEASED_FILE
from resnetlab.weights import ImagePreprocess, IncompatibleWeightsError, hub, list_weights, load, weights_entry
from resnetlab.weights.files import WeightsFileError, load_weights, save_weights
from resnetlab.weights.registry import _WEIGHTS, UnknownWeightsError, WeightsEntry
from test_data_cifar import write_cifar100
from train_utils import tiny_bundle, tiny_config

RELEASED = list_weights()
CARD_KEYS = {"test_error", "test_images", "evaluation", "train_error", "dataset", "recipe", "schedule", "iterations",
             "params", "macs", "file_size", "preprocessing", "command", "run"}
BIG = 100e6  # multiply-adds above which reproducing a card is a slow test (ResNet-110 and deeper)
WEIGHTS20 = "resnet20.cifar10jpeg_medium"
DEFAULT20 = "resnet20.cifar10_paper"  # release.DEFAULT_PREFERENCE: the official data first, the paper-length run first


def _params(name: str) -> list:
    return [pytest.param(n, marks=pytest.mark.slow) if weights_entry(n).meta["macs"] > BIG else n for n in name]


# --- the registry and the committed files ---------------------------------------------------------------------------
def test_every_finished_committed_run_is_released_under_the_name_of_its_origin() -> None:
    """Every finished committed run is released and every release is one, named after its budget and the experiment
    that trained it (seed 0 of option A: Fig. 6's run; other seeds: Table 6's; other options: the shortcut
    comparison's)."""
    from resnetlab import release

    # runs/<budget>/<run>, as git tracks them: a run finished locally but not committed yet is not released yet
    runs = sorted(p.parent for p in tracked(REPO / "runs") if p.name == "model.safetensors")
    by_run = {weights_entry(n).meta["run"]: n for n in RELEASED}
    assert sorted(by_run) == sorted(p.relative_to(REPO).as_posix() for p in runs) and len(by_run) == len(RELEASED)
    for run in runs:
        config = json.loads((run / "config.json").read_text())
        trained_in = json.loads((run / "summary.json").read_text())["precision"]
        tag, command = release.run_origin(config["model"], config["model_kwargs"], config["seed"], run.parent.name,
                                          run.parent.parent.name, config["val_size"], trained_in)
        entry = weights_entry(by_run[run.relative_to(REPO).as_posix()])
        assert (entry.name, entry.meta["command"], entry.meta["seed"]) == (f"{config['model']}.{tag}", command,
                                                                           config["seed"])
    assert WEIGHTS20 in RELEASED and f"{WEIGHTS20}_seed1" in RELEASED


def test_origin_names_the_data_seeds_and_shortcut_options() -> None:
    from resnetlab.release import run_origin

    data = "--budget medium --data ../shared/data/cifar10-jpeg"
    assert run_origin("resnet56", {}, 0, data="cifar10-jpeg") == (
        "cifar10jpeg_medium", f"resnetlab reproduce degradation {data} --only resnet56")
    assert run_origin("resnet110", {}, 1, data="cifar10-jpeg") == (
        "cifar10jpeg_medium_seed1", f"resnetlab reproduce table6 {data} --only resnet110")
    assert run_origin("resnet20", {"shortcut": "B"}, 0, data="cifar10-jpeg") == (
        "cifar10jpeg_medium_shortcutB", f"resnetlab reproduce shortcuts {data} --model resnet20")
    assert run_origin("resnet20", {"shortcut": "C"}, 2, data="cifar10-jpeg")[0] == "cifar10jpeg_medium_shortcutC_seed2"
    # the JPEG paper-length run held out 5k images, which the paper budget no longer does: its command says so
    assert run_origin("resnet20", {}, 0, "paper", "cifar10-jpeg", 5000) == (
        "cifar10jpeg_paper", "resnetlab reproduce degradation --budget paper --data ../shared/data/cifar10-jpeg "
        "--only resnet20 --set val_size=5000")
    # the official pixels: the project's data, all 50k training images at the paper budget
    assert run_origin("resnet56", {}, 0, "paper", "cifar10", 0) == (
        "cifar10_paper", "resnetlab reproduce degradation --budget paper --data ../shared/data/cifar10 --only resnet56")
    assert run_origin("plain20", {}, 0, "medium", "cifar10", 5000)[0] == "cifar10_medium"
    # trained in fp32: the command pins it, so a CPU with bf16 units finds this run rather than its bf16 twin
    assert run_origin("resnet20", {}, 0, "paper", "cifar10", 0, "fp32") == (
        "cifar10_paper", "resnetlab reproduce degradation --budget paper --data ../shared/data/cifar10 --only resnet20 "
        "--set precision=fp32")
    assert run_origin("resnet20", {}, 0, "paper", "cifar10", 0, "bf16")[1].endswith("--only resnet20")


@pytest.mark.parametrize("name", RELEASED)
def test_card_matches_its_file(name: str) -> None:
    e = weights_entry(name)
    data = (REPO / e.file).read_bytes()
    assert hashlib.sha256(data).hexdigest() == e.sha256 and len(data) == e.size == e.meta["file_size"]
    assert set(e.meta) >= CARD_KEYS, CARD_KEYS - set(e.meta)
    assert e.name == f"{e.model}.{e.tag}" and e.model in list_models("cifar")
    cost = complexity(e.model, **e.model_kwargs)
    assert (e.meta["params"], e.meta["macs"]) == (cost.params, cost.macs)
    data = known_data(e.meta["dataset"]["digest"]).name  # the card names its data: its title, digest and command
    assert e.meta["evaluation"] == {"precision": "fp32", "batch_size": DEFAULT_EVAL_BATCH, "protocol": "center",
                                    "command": f"resnetlab eval --checkpoint {name} --data ../shared/data/{data}"}
    title = "CIFAR-10 JPEG copy" if data == "cifar10-jpeg" else "CIFAR-10 (official"
    assert e.meta["dataset"]["name"].startswith(title)
    assert e.tag.startswith(data.replace("-", "") + "_") and e.meta["run"].startswith(f"runs/{data}/")
    assert e.meta["test_images"] == 10_000 and e.url_name.endswith(f"-{e.sha256[:8]}.safetensors")
    summary = json.loads((REPO / e.meta["run"] / "summary.json").read_text())
    assert summary["weights_sha256"] == e.sha256 and summary["train_error"] == e.meta["train_error"]
    assert summary.get("final_train_error") == e.meta.get("final_train_error")  # made before the full pass: none


def test_the_manifest_puts_the_paper_schedule_first_then_the_medium_run_then_the_rest_as_released() -> None:
    from resnetlab.release import ordered_rows

    rows = [{"name": f"{m}.{t}", "model": m} for m, t in (
        ("plain20", "cifar10jpeg_medium"), ("resnet20", "cifar10jpeg_medium_seed1"), ("resnet20", "cifar10jpeg_medium"),
        ("resnet56", "cifar10jpeg_medium"), ("resnet20", "cifar10jpeg_medium_shortcutB"),
        ("resnet20", "cifar10jpeg_paper"), ("resnet20", "cifar10_medium"), ("resnet20", "cifar10_paper"))]
    assert [r["name"] for r in ordered_rows(rows)] == [  # the official pixels first, then the JPEG copy
        "resnet20.cifar10_paper", "resnet20.cifar10_medium", "resnet20.cifar10jpeg_paper",
        "resnet20.cifar10jpeg_medium", "resnet20.cifar10jpeg_medium_seed1",
        "resnet20.cifar10jpeg_medium_shortcutB", "resnet56.cifar10jpeg_medium", "plain20.cifar10jpeg_medium"]
    committed = json.loads(RELEASED_FILE.read_text())["weights"]
    assert ordered_rows(committed) == committed  # what release_runs writes: the first of a model is its DEFAULT
    for model in {r["model"] for r in committed}:
        assert weights_entry("DEFAULT", model).name == next(r["name"] for r in committed if r["model"] == model)


def test_names_resolve_and_unknown_names_say_what_exists(capsys: pytest.CaptureFixture[str]) -> None:
    assert weights_entry("DEFAULT", "resnet20").name == DEFAULT20
    assert weights_entry("DEFAULT", "resnet56").name == "resnet56.cifar10jpeg_medium"  # no paper-length run
    assert weights_entry("cifar10jpeg_medium", "resnet20").name == WEIGHTS20
    assert list_weights("resnet20") == [DEFAULT20, "resnet20.cifar10jpeg_paper", WEIGHTS20, f"{WEIGHTS20}_seed1",
                                        f"{WEIGHTS20}_shortcutB", f"{WEIGHTS20}_shortcutC"]  # the default first
    with pytest.raises(UnknownWeightsError, match=r"did you mean resnet20\.cifar10jpeg_medium"):
        weights_entry("resnet20.cifar10jpg_medium")
    with pytest.raises(UnknownWeightsError, match="are for resnet20, not plain20"):
        weights_entry(WEIGHTS20, "plain20")
    with pytest.raises(UnknownWeightsError, match="no released weights for resnet1202"):
        weights_entry("DEFAULT", "resnet1202")
    assert main(["eval", "--weights", "resnet20.cifar10jpeg_mediun", "--data", "x"]) == 1
    assert "neither a file nor released weights" in (err := capsys.readouterr().err)
    assert "did you mean resnet20.cifar10jpeg_medium" in err


def test_a_clone_loads_from_its_own_files_without_network(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(hub.BASE_URL_ENV, f"http://127.0.0.1:{_closed_port()}")
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    model = resnetlab.create_model("resnet20", weights=WEIGHTS20)
    assert hub.weights_path(weights_entry(WEIGHTS20)) == REPO / weights_entry(WEIGHTS20).file
    assert not any(tmp_path.iterdir())  # nothing downloaded, nothing cached
    again = resnetlab.create_model("resnet20", pretrained=True)
    paper = resnetlab.create_model("resnet20", weights=DEFAULT20)
    assert all(torch.equal(a, b) for a, b in zip(paper.state_dict().values(), again.state_dict().values(),
                                                 strict=True))
    assert not torch.equal(paper.conv1.weight, model.conv1.weight)
    with pytest.raises(ResNetLabError, match="cannot change when loading them"):
        resnetlab.create_model("resnet20", weights=WEIGHTS20, num_classes=100)
    assert resnetlab.create_model("resnet20", weights=WEIGHTS20, shortcut="A") is not None  # the default, unchanged
    assert resnetlab.create_model("resnet20", weights=WEIGHTS20, option_a_pad="end") is not None  # ResNet's default
    by_object = resnetlab.create_model("resnet20", weights=resnetlab.get_weights(WEIGHTS20))  # torchvision's idiom
    assert torch.equal(by_object.conv1.weight, model.conv1.weight)
    by_path = resnetlab.create_model("resnet20", weights=REPO / weights_entry(WEIGHTS20).file)
    assert torch.equal(by_path.fc.weight, model.fc.weight)


# --- CI acceptance: every card's test error, reproduced from its file on the real data --------------------------
@pytest.mark.parametrize("name", _params(RELEASED))
def test_card_test_error_is_reproduced(name: str, tmp_path: Path) -> None:
    report = evaluate_checkpoint(name, str(data_of(weights_entry(name).meta["dataset"]["digest"])), tmp_path,
                                 progress=False)  # on the data its card names
    assert report["images"] == 10_000
    assert abs(report["top1_error"] - weights_entry(name).meta["test_error"]) <= 0.01 + 1e-9  # one image


# --- preprocessing -----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def real_test() -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    arrays = load_dataset(str(real_data("cifar10-jpeg")), progress=False)  # the data WEIGHTS20 was trained on
    return arrays.test_x, arrays.test_y, arrays.classes


def test_transforms_on_uint8_and_unit_floats_give_the_card_error(real_test) -> None:
    x, y, _ = real_test
    w = resnetlab.get_weights(WEIGHTS20)
    model, t = resnetlab.create_model("resnet20", weights=WEIGHTS20), w.transforms()
    with torch.no_grad():
        pred_u8 = torch.cat([model(t(x[i:i + 1000])).argmax(1) for i in range(0, len(x), 1000)])
        first = x[:500]
        logits_u8, logits_f = model(t(first)), model(t(first.float() / 255))
    err = 100 * (pred_u8 != y).double().mean().item()
    # The eager model against the card's inference path (BN folded): at most one image in 10,000 may flip.
    assert abs(err - w.meta["test_error"]) <= 0.01 + 1e-9
    torch.testing.assert_close(logits_f, logits_u8, atol=1e-3, rtol=1e-4)


def test_transforms_take_pil_numpy_and_other_sizes_and_refuse_ambiguous_floats(real_test) -> None:
    x = real_test[0][:2]
    t = resnetlab.get_weights(WEIGHTS20).transforms()
    ref = t(x)
    assert ref.shape == (2, 3, 32, 32) and ref.dtype == torch.float32
    hwc = x.permute(0, 2, 3, 1).numpy()
    assert torch.equal(t(hwc), ref) and torch.equal(t(Image.fromarray(hwc[0])), ref[0])
    assert torch.equal(t(x[0]), ref[0])
    assert t(torch.zeros(3, 64, 48, dtype=torch.uint8)).shape == (3, 32, 32)  # resized and center-cropped
    # subtracting the mean of the training images is what the transform does
    torch.testing.assert_close(t(x), x.float() - t.mean)
    with pytest.raises(ResNetLabError, match=r"float images must be in \[0, 1\].*pass uint8"):
        t(x.float())  # 0..255 floats
    with pytest.raises(ResNetLabError, match=r"float images must be in \[0, 1\]"):
        t(ref)  # already normalised
    with pytest.raises(ResNetLabError, match="RGB images"):
        t(torch.zeros(1, 32, 32, dtype=torch.uint8))
    assert isinstance(t, ImagePreprocess) and "per-pixel mean" in repr(t)


def test_predict_with_a_weights_name_applies_its_preprocessing(real_test) -> None:
    """predict on raw JPEG files (100 per class) against the eval path, and against the card's error."""
    _, _, classes = real_test
    root = real_data("cifar10-jpeg") / "test"
    paths = [p for c in classes for p in sorted((root / c).glob("*.jpg"))[:100]]
    truth = torch.tensor([classes.index(p.parent.name) for p in paths])
    loaded = load(WEIGHTS20)
    top = [classes.index(p.top[0][0]) for p in predict_files(loaded, paths, topk=1, batch_size=250)]
    w = resnetlab.get_weights(WEIGHTS20)
    model, t = resnetlab.create_model("resnet20", weights=WEIGHTS20), w.transforms()
    images = torch.stack([torch.from_numpy(np.array(Image.open(p).convert("RGB"))).permute(2, 0, 1) for p in paths])
    with torch.no_grad():
        ref = model(t(images)).argmax(1)
    assert (torch.tensor(top) == ref).sum().item() >= len(paths) - 1  # BN folded vs eager: a near-tie may flip
    err = 100 * (torch.tensor(top) != truth).double().mean().item()
    p = w.meta["test_error"] / 100
    assert abs(err - w.meta["test_error"]) <= 100 * 4 * (p * (1 - p) / len(paths)) ** 0.5  # 4 sigma of a 1k slice


# --- torch.hub ------------------------------------------------------------------------------------------------------
def test_hub_loads_weights_by_name_and_pretrained(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    named = torch.hub.load(str(REPO), "resnet20", source="local", weights=WEIGHTS20)
    default = torch.hub.load(str(REPO), "resnet20", source="local", pretrained=True)
    fresh = torch.hub.load(str(REPO), "resnet20", source="local")
    for m, name in ((named, WEIGHTS20), (default, DEFAULT20)):
        ref = resnetlab.create_model("resnet20", weights=name).state_dict()
        assert all(torch.equal(ref[k], v) for k, v in m.state_dict().items())
    assert not torch.equal(fresh.state_dict()["conv1.weight"], ref["conv1.weight"])
    assert not named.training


# --- fine-tuning: --init -------------------------------------------------------------------------------------------
def test_init_on_cifar100_replaces_the_head_and_keeps_the_backbone(tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    write_cifar100(tmp_path / "cifar-100-python")
    run = tmp_path / "run"
    code = main(["train", "--model", "resnet20", "--init", WEIGHTS20, "--data", str(tmp_path / "cifar-100-python"),
                 "--out", str(run),
                 "--set", "max_iters=2", "--set", "batch_size=4", "--set", "val_size=2", "--set", "precision=fp32",
                 "--set", "eval_batch_size=8", "--set", "milestones=[1]", "--no-progress"])
    out = capsys.readouterr()
    assert code == 0, out.err
    assert "its 10-way head was replaced by a new 100-way head" in out.out + out.err
    assert json.loads((run / "config.json").read_text())["init"] == WEIGHTS20
    # before any step: the backbone is the released one exactly, the head new
    cfg = TrainConfig.from_dict(json.loads((run / "config.json").read_text()))
    from resnetlab.data import make_bundle

    bundle = make_bundle(load_dataset(str(tmp_path), progress=False), val_size=2, seed=0)
    trainer = Trainer(cfg, bundle)
    trainer.initialise_from(cfg.model.init)
    released = resnetlab.create_model("resnet20", weights=WEIGHTS20).state_dict()
    got = trainer.model.state_dict()
    assert got["fc.weight"].shape == (100, 64)
    assert all(torch.equal(got[k], v) for k, v in released.items() if not k.startswith("fc."))


def test_init_with_the_same_classes_keeps_the_head(tmp_path: Path) -> None:
    src = tmp_path / "w.safetensors"
    model = create_model("resnet8", num_classes=4)
    save_weights(src, model.state_dict(), torch.zeros(3, 1, 1), None, {"model": "resnet8", "input_size": 16,
                                                                       "classes": list("abcd")})
    trainer = Trainer(tiny_config(), tiny_bundle())
    fresh = {k: v.clone() for k, v in trainer.model.state_dict().items()}  # the run's own seeded initialisation
    assert "the head included" in trainer.initialise_from(str(src))
    stored = load_weights(src).state_dict  # the kernels as the file holds them (fp16)
    assert all(torch.equal(trainer.model.state_dict()[k], v) for k, v in stored.items())
    assert not torch.equal(fresh["conv1.weight"], trainer.model.state_dict()["conv1.weight"])


def test_init_refuses_another_backbone_even_when_the_tensors_fit(tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(IncompatibleWeightsError, match="holds a resnet20, not a resnet32: train --model resnet20"):
        Trainer(tiny_config(model="resnet32"), tiny_bundle()).initialise_from(WEIGHTS20)
    # plain-20 and ResNet-20 (option A) have the same tensors: the recorded model name decides
    with pytest.raises(IncompatibleWeightsError, match="holds a plain20, not a resnet20"):
        Trainer(tiny_config(model="resnet20"), tiny_bundle()).initialise_from("plain20.cifar10jpeg_medium")
    with pytest.raises(IncompatibleWeightsError, match=r"not a resnet20 \(shortcut=B\)"):
        Trainer(tiny_config(model="resnet20", model_kwargs={"shortcut": "B"}), tiny_bundle()).initialise_from(
            WEIGHTS20)
    write_cifar100(tmp_path / "cifar-100-python")
    assert main(["train", "--model", "plain20", "--init", "nope.safetensors", "--data", str(tmp_path), "--out",
                 str(tmp_path / "r"), "--set", "val_size=2", "--set", "batch_size=4", "--no-progress"]) == 1
    assert "--init nope.safetensors: no such file and no released weights" in capsys.readouterr().err
    assert not (tmp_path / "r" / "config.json").exists()  # refused before the run is started
    assert main(["train", "--model", "resnet56", "--init", "resnt56", "--data", str(tmp_path), "--out",
                 str(tmp_path / "r"), "--set", "val_size=2", "--set", "batch_size=4", "--no-progress"]) == 1
    assert "--init resnt56: no such file and no released weights of that name; did you mean resnet56" in \
        capsys.readouterr().err  # a mistyped name gets the resolver's suggestions


def test_a_resumed_fine_tuning_run_does_not_read_its_init_again(tmp_path: Path) -> None:
    src = tmp_path / "w.safetensors"
    save_weights(src, create_model("resnet8", num_classes=4).state_dict(), torch.zeros(3, 1, 1), None,
                 {"model": "resnet8", "input_size": 16, "classes": list("abcd")})
    cfg = tiny_config(init=str(src))
    run = tmp_path / "run"
    first = fit(cfg, run, data=tiny_bundle(), progress=False)
    for name in ("checkpoint-0000012.pt", "checkpoint-0000012.pt.sha256", "summary.json", "model.safetensors"):
        (run / name).unlink()  # as if killed after iteration 8
    src.unlink()  # gone: the resume must not need it
    again = fit(cfg, run, data=tiny_bundle(), progress=False, resume=True)
    assert again.iterations == 12 and again.summary["weights_sha256"] == first.summary["weights_sha256"]


# --- download: a local HTTP server --------------------------------------------------------------------------------
def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Handler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:  # quiet
        pass

    def do_GET(self) -> None:
        if self.path.endswith(".cut"):  # announces the whole file, sends half and hangs up
            body = (Path(self.directory) / self.path.lstrip("/").removesuffix(".cut")).read_bytes()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body[:len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        super().do_GET()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    root = tmp_path / "www"
    root.mkdir()
    handler = lambda *a, **k: _Handler(*a, directory=str(root), **k)  # noqa: E731
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/release", root
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def entry(tmp_path: Path) -> Iterator[WeightsEntry]:
    """A small released file that only the server has (registered for the test, then removed)."""
    src = tmp_path / "made" / "model.safetensors"
    src.parent.mkdir()
    torch.manual_seed(0)
    net = create_model("resnet8")
    digest = save_weights(src, net.state_dict(), torch.zeros(3, 32, 32), None,
                          {"model": "resnet8", "model_kwargs": {"num_classes": 10}, "input_size": 32, "pad": 4,
                           "classes": [str(i) for i in range(10)], "loader": "memory"})
    e = WeightsEntry("resnet8.test", "resnet8", {"num_classes": 10}, "no/such/file/in/the/clone.safetensors",
                     digest, src.stat().st_size, {"test_error": 90.0})
    _WEIGHTS[e.name] = e
    try:
        yield e
    finally:
        _WEIGHTS.pop(e.name, None)


def _publish(root: Path, e: WeightsEntry, data: bytes) -> None:
    (root / "release").mkdir(exist_ok=True)
    (root / "release" / e.url_name).write_bytes(data)


def _made(tmp_path: Path) -> bytes:
    return (tmp_path / "made" / "model.safetensors").read_bytes()


def test_download_good_file_then_cached_and_checked_on_every_load(server, entry, tmp_path: Path) -> None:
    url, root = server
    _publish(root, entry, _made(tmp_path))
    cache = tmp_path / "cache"
    wf = hub.load_entry(entry, url, progress=False, cache=cache)
    assert wf.sha256 == entry.sha256 and sorted(p.name for p in cache.iterdir()) == [entry.url_name]
    (root / "release" / entry.url_name).unlink()  # the server no longer has it: the cache serves
    assert hub.load_entry(entry, url, progress=False, cache=cache).sha256 == entry.sha256
    damaged = bytearray((cache / entry.url_name).read_bytes())
    damaged[-1] ^= 1
    (cache / entry.url_name).write_bytes(bytes(damaged))
    with pytest.raises(WeightsFileError, match=f"is damaged.*cached download: delete {cache / entry.url_name}"):
        hub.load_entry(entry, url, progress=False, cache=cache)


def test_create_model_downloads_from_the_env_url(server, entry, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    url, root = server
    _publish(root, entry, _made(tmp_path))
    monkeypatch.setenv(hub.BASE_URL_ENV, url)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    model = resnetlab.create_model("resnet8", weights="resnet8.test", progress=False)
    assert (tmp_path / "hub" / "checkpoints" / entry.url_name).is_file()
    torch.manual_seed(0)
    assert torch.equal(model.conv1.weight, create_model("resnet8").conv1.weight.half().float())


@pytest.mark.parametrize("case", ["truncated", "cut", "wrong_hash", "missing", "no_server"])
def test_download_failures_are_one_error_and_leave_nothing(server, entry, tmp_path: Path, case: str) -> None:
    url, root = server
    data = _made(tmp_path)
    if case == "truncated":
        _publish(root, entry, data[:-100])
        expect = "truncated or wrong"
    elif case == "cut":
        _publish(root, entry, data)  # the handler announces its full length, sends half of it and hangs up
        expect = "broke off|truncated"
    elif case == "wrong_hash":
        other = bytearray(data)
        other[-1] ^= 1
        _publish(root, entry, bytes(other))
        expect = "SHA-256 is .*expected"
    elif case == "missing":
        expect = "HTTP 404"
    else:
        url = f"http://127.0.0.1:{_closed_port()}/release"
        expect = "no connection"
    cache = tmp_path / "cache"
    target = cache / entry.url_name
    if case == "cut":
        with pytest.raises(WeightsFileError, match=expect):
            hub.download(f"{url}/{entry.url_name}.cut", target, entry.sha256, entry.size, progress=False)
    else:
        with pytest.raises(WeightsFileError, match=f"{expect}.*Nothing was written.*{hub.BASE_URL_ENV}"):
            hub.load_entry(entry, url, progress=False, cache=cache)
    assert not cache.exists() or not any(cache.iterdir())  # no partial file, no temp file


# --- releasing ---------------------------------------------------------------------------------------------------
def test_release_remakes_the_committed_card_exactly_and_publish_writes_the_upload(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from resnetlab import release

    real_data("cifar10-jpeg")
    monkeypatch.chdir(REPO)  # the cards name the data as the Makefile does, relative to the clone
    entry = weights_entry(WEIGHTS20)
    manifest = tmp_path / "released.json"
    made = release.release_runs([REPO / entry.meta["run"]], "../shared/data/cifar10-jpeg", manifest=manifest)
    assert made == [entry]  # the card, its measured error included, is what the registry holds
    assert [r["name"] for r in json.loads(manifest.read_text())["weights"]] == [WEIGHTS20]
    files = release.publish(tmp_path / "upload")
    assert sorted(p.name for p in files) == sorted(weights_entry(n).url_name for n in RELEASED)
    sums = dict(line.split("  ")[::-1] for line in (tmp_path / "upload" / "SHA256SUMS").read_text().splitlines())
    assert all(hashlib.sha256((tmp_path / "upload" / k).read_bytes()).hexdigest() == v for k, v in sums.items())
    assert release.cards_table().count("\n") == len(RELEASED) + 1
    assert [line.split("`")[1] for line in release.cards_commands().splitlines()] == RELEASED
    # a name that already stands for another run is refused, and the manifest is left as it was
    before = manifest.read_bytes()
    seed1 = REPO / weights_entry(f"{WEIGHTS20}_seed1").meta["run"]
    with pytest.raises(ResNetLabError, match=f"{WEIGHTS20} already names the weights of {entry.meta['run']}"):
        release.release_runs([seed1], "../shared/data/cifar10-jpeg", manifest=manifest, tag="cifar10jpeg_medium")
    assert manifest.read_bytes() == before


def test_cli_lists_cards_and_exports_by_weights_name(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["weights"]) == 0
    table = capsys.readouterr().out
    assert all(f"`{n}`" in table for n in RELEASED) and "| weights | data | test error (%)" in table
    out = tmp_path / "r20.pt2"
    assert main(["export", "--weights", WEIGHTS20, "--format", "pt2", "--out", str(out)]) == 0
    assert "max |exported - eager|" in capsys.readouterr().out
    program = torch.export.load(str(out)).module()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(program(x), resnetlab.create_model("resnet20", weights=WEIGHTS20)(x),
                                   atol=1e-4, rtol=1e-4)


def test_an_unwritable_cache_is_one_error(server, entry, tmp_path: Path) -> None:
    url, root = server
    _publish(root, entry, _made(tmp_path))
    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder")
    with pytest.raises(WeightsFileError, match=r"cannot write .*Nothing was written"):
        hub.load_entry(entry, url, progress=False, cache=blocked / "cache")


def test_scoring_weights_on_other_data_than_their_card_says_so_in_one_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from resnetlab.train.report import other_data_note

    official = real_data("cifar10")
    jpeg_card = weights_entry(WEIGHTS20)
    assert known_data(jpeg_card.meta["dataset"]["digest"]).name == "cifar10-jpeg"
    note = ("these weights were trained on CIFAR-10 JPEG copy (quality 75; not comparable with published numbers) and "
            "are scored on CIFAR-10 (official pixels): the error measures the transfer between the two, not the "
            "weights' own test error")
    with pytest.warns(DataWarning) as caught:
        assert main(["eval", "--checkpoint", WEIGHTS20, "--data", str(official), "--out", str(tmp_path / "e"),
                     "--no-progress"]) == 0
    assert [str(w.message) for w in caught] == [note]
    # the command line shows a warning as one line addressed to the user
    assert warnings.formatwarning(caught[0].message, DataWarning, "x.py", 1) == f"warning: {note}\n"
    out = capsys.readouterr().out
    assert "top-1 error" in out
    report = json.loads((tmp_path / "e" / "confusion.json").read_text())
    assert report["trained_on_digest"] == jpeg_card.meta["dataset"]["digest"] != report["data_digest"]
    assert other_data_note(report["data_digest"], report["data_digest"]) is None  # its own data: nothing to say
    assert other_data_note(None, report["data_digest"]) is None  # a converted file names no data
