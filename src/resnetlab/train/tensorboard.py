"""A TensorBoard sink for a run's metric rows (``--set tensorboard=true``; ``pip install resnetlab[tensorboard]``).

Events go to ``RUN_DIR/tensorboard/``: training loss and error, learning rate and img/s every ``log_interval``,
validation and test error and loss at every evaluation, each at its iteration. On resume the writer opens with
TensorBoard's ``purge_step`` at the checkpoint's next iteration, so events a killed process wrote after the
checkpoint are superseded and TensorBoard shows one value per step. ``metrics.jsonl`` stays the record.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import ResNetLabError

# row key -> TensorBoard tag
TAGS = {
    "train_loss": "train/loss", "train_error": "train/error", "lr": "train/lr", "img_per_s": "train/img_per_s",
    "val_error": "val/error", "val_loss": "val/loss", "test_error": "test/error", "test_loss": "test/loss",
}


class TensorBoardSink:
    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.writer: Any = None

    def start(self, iteration: int) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # torch's writer needs the tensorboard package
            raise ResNetLabError("tensorboard=true needs the tensorboard package: pip install 'resnetlab[tensorboard]' "
                                 "(or drop --set tensorboard=true; metrics.jsonl is written either way)") from None
        # purge_step: events at or after it, left by a process that died after the checkpoint, are superseded
        self.writer = SummaryWriter(str(self.log_dir), purge_step=iteration + 1 if iteration else None)

    def append(self, row: dict[str, Any]) -> None:
        for key, tag in TAGS.items():
            if row.get(key) is not None:
                self.writer.add_scalar(tag, float(row[key]), global_step=int(row["iter"]))

    def flush(self) -> None:
        self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
