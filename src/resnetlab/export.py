"""Export to ONNX and to ``torch.export`` programs (``.pt2``), with a dynamic batch and a parity check."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import torch
from torch import Tensor, nn

from . import io
from .errors import ResNetLabError

Format = Literal["onnx", "pt2"]


def _batch_dim() -> dict[int, torch.export.Dim]:
    return {0: torch.export.Dim("batch", min=1, max=4096)}


def export_program(model: nn.Module, input_size: int, in_chans: int = 3) -> torch.export.ExportedProgram:
    """``torch.export`` of the model in eval mode with a dynamic batch dimension."""
    model = model.eval()
    example = torch.randn(2, in_chans, input_size, input_size)
    return torch.export.export(model, (example,), dynamic_shapes=(_batch_dim(),))


def export_model(model: nn.Module, fmt: Format, out: str | Path, input_size: int, in_chans: int = 3) -> Path:
    """Write ``model`` to ``out`` as ONNX (input "images" [N,C,H,W], output "logits") or a ``.pt2`` program.

    The file appears only when complete (temp file, then rename); a failed export leaves an older file untouched.
    """
    out = Path(out)
    if fmt == "onnx":  # before any work: torch's ONNX exporter needs these packages
        import importlib.util

        missing = [m for m in ("onnx", "onnxscript") if importlib.util.find_spec(m) is None]
        if missing:
            raise ResNetLabError(f"ONNX export needs {' and '.join(missing)}: pip install 'resnetlab[export]' (or "
                                 "export a torch.export program with --format pt2)")
    with io.atomic_path(out) as tmp:
        if fmt == "pt2":
            torch.export.save(export_program(model, input_size, in_chans), str(tmp))
        elif fmt == "onnx":
            model = model.eval()
            example = torch.randn(2, in_chans, input_size, input_size)
            torch.onnx.export(model, (example,), str(tmp), input_names=["images"], output_names=["logits"],
                              dynamic_shapes=(_batch_dim(),), dynamo=True, external_data=False,
                              verbose=False)
        else:
            raise ResNetLabError(f"unknown export format {fmt!r}; choose onnx or pt2")
    return out


def run_exported(path: str | Path, x: Tensor) -> Tensor:
    """Run an exported file (ONNX through onnxruntime, ``.pt2`` through ``torch.export.load``) on ``x``."""
    path = Path(path)
    if path.suffix == ".onnx":
        try:
            import onnxruntime as ort
        except ImportError:
            raise ResNetLabError("checking ONNX files needs onnxruntime: pip install 'resnetlab[export]'") from None
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return torch.from_numpy(session.run(None, {"images": x.numpy()})[0])
    program = torch.export.load(str(path))
    with torch.no_grad():
        return program.module()(x)


def check_parity(model: nn.Module, path: str | Path, input_size: int, batch: int = 3, in_chans: int = 3,
                 atol: float = 1e-4) -> float:
    """Max abs difference between eager and exported outputs at a batch size other than the exported one (2)."""
    x = torch.randn(batch, in_chans, input_size, input_size)
    with torch.no_grad():
        ref = model.eval()(x)
    diff = (run_exported(path, x) - ref).abs().max().item()
    scale = max(1.0, ref.abs().max().item())
    if not diff <= atol * scale:
        raise ResNetLabError(f"exported {path} differs from the eager model by {diff:.3g} "
                             f"(tolerance {atol * scale:.3g})")
    return diff
