"""What long training runs share: a JSONL log (optionally mirrored to TensorBoard) and optimiser state as tensors.

Example::

    with RunLog(out_dir / "log.jsonl", tensorboard_dir=out_dir / "tensorboard") as log:
        log.write({"tick": 3, "loss": 0.7}, step=120)       # one JSON line; scalars to TensorBoard
    tensors = optimizer_tensors(opt)                        # {'0.exp_avg': ..., '0.step': ...}
    load_optimizer_tensors(opt, tensors)                    # after building the same optimiser again
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from torch import Tensor


class RunLog:
    """Append-only JSONL log; with ``tensorboard_dir``, numeric fields also go to TensorBoard."""

    def __init__(self, path: str | os.PathLike, tensorboard_dir: str | os.PathLike | None = None,
                 enabled: bool = True):
        self.path = Path(path)
        self.enabled = enabled
        self.board = tensorboard_writer(tensorboard_dir) if tensorboard_dir is not None and enabled else None

    def write(self, record: dict[str, Any], step: int, prefix: str = "") -> None:
        """Append ``record`` as one JSON line; its int/float fields become TensorBoard scalars at ``step``."""
        if not self.enabled:
            return
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")
        if self.board is not None:
            for key, value in record.items():
                if isinstance(value, int | float) and not isinstance(value, bool):
                    self.board.add_scalar(f"{prefix}{key}", value, step)
            self.board.flush()

    def close(self) -> None:
        if self.board is not None:
            self.board.close()
            self.board = None

    def __enter__(self) -> RunLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def tensorboard_writer(directory: str | os.PathLike):
    """A ``SummaryWriter`` on ``directory``; a clear error when the optional tensorboard package is missing."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise ValueError("TensorBoard logging needs the tensorboard package: pip install tensorboard "
                         "(or nerfsculpt[tensorboard])") from None
    return SummaryWriter(str(directory))


def optimizer_tensors(optimizer: torch.optim.Optimizer) -> dict[str, Tensor]:
    """Per-parameter state of an optimiser (Adam: step, exp_avg, exp_avg_sq) as ``'<index>.<key>'`` tensors.

    Parameters are indexed in the order of ``optimizer.param_groups`` (every group, in turn); the
    hyper-parameters are not included (they come from the run's configuration).
    """
    out = {}
    for i, p in enumerate(p for group in optimizer.param_groups for p in group["params"]):
        for key, value in optimizer.state.get(p, {}).items():
            out[f"{i}.{key}"] = torch.as_tensor(value).detach().cpu().contiguous()
    return out


def load_optimizer_tensors(optimizer: torch.optim.Optimizer, tensors: dict[str, Tensor]) -> None:
    """Restore what :func:`optimizer_tensors` returned into an optimiser built over the same parameters."""
    params = [p for group in optimizer.param_groups for p in group["params"]]
    indices = {int(name.split(".", 1)[0]) for name in tensors}
    if indices and max(indices) >= len(params):
        raise ValueError(f"optimiser state for {max(indices) + 1} parameters, the optimiser has {len(params)}")
    for i, p in enumerate(params):
        keys = [name.split(".", 1)[1] for name in tensors if name.split(".", 1)[0] == str(i)]
        if keys:
            # Adam keeps 'step' on the CPU (unless capturable) and the moments beside the parameter
            optimizer.state[p] = {key: tensors[f"{i}.{key}"].to(p.device if key != "step" else "cpu")
                                  for key in keys}
