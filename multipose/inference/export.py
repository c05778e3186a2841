"""Encoder + pose head as one self-contained model file, for a robot's runtime: TorchScript (PyTorch's C++ API,
``torch::jit::load``) or ONNX (onnxruntime in C++, C#, Java, Python, ...).

The exported graph: ``crops (B, S, S, 3)`` uint8 RGB (the encoder's crops, HWC as images are stored; cut around a
box as :func:`multipose.inference.images.crop_boxes` cuts them) -> ``confidence (B, K)`` float32 (a softmax over
the K hypotheses) and ``R (B, K, 3, 3)`` float32 rotations in the crop's view (model to OpenCV camera; the AAE's
box-to-pose step, :mod:`multipose.inference.box_pose`, turns them into the image's pose with a translation). The
conversion to float, the scaling to [0, 1] and the encoder's own input normalisation are inside the graph. A head
of N objects gives ``confidence (B, N, K)``, ``R (B, N, K, 3, 3)`` and, with a classifier, ``object_logits (B, N)``.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import nn

from multipose.infra.atomic import atomic_open
from multipose.models import Encoder, PoseHead
from multipose.models.head import head_input

logger = logging.getLogger(__name__)

__all__ = ["FORMATS", "ExportedPoseModel", "export_model"]

#: The formats :func:`export_model` writes.
FORMATS = ("torchscript", "onnx")
#: The ONNX opset of the export.
OPSET = 18


class ExportedPoseModel(nn.Module):
    """``crops (B, S, S, 3) uint8 -> confidence, R[, object_logits]`` (module docstring), eval mode."""

    def __init__(self, encoder: Encoder, head: PoseHead) -> None:
        super().__init__()
        self.encoder = encoder.eval()
        self.head = head.eval()

    @property
    def output_names(self) -> list[str]:
        return ["confidence", "R"] + (["object_logits"] if self.head.config.classify else [])

    def forward(self, crops: torch.Tensor) -> tuple[torch.Tensor, ...]:
        images = crops.permute(0, 3, 1, 2).to(torch.float32) / 255.0
        out = self.head(head_input(self.encoder, self.head, images))
        if out.object_logits is not None:
            return out.confidence, out.R, out.object_logits
        return out.confidence, out.R


@contextmanager
def _quiet_exporter() -> Iterator[None]:
    """torch.onnx's exporter without its notes on operators of other libraries (torchvision's) and PyTorch's own
    deprecations: a user sees the export's result, not the exporter's internals."""
    loggers = [logging.getLogger(name) for name in ("torch.onnx", "torch.export", "torch._dynamo", "onnxscript",
                                                   "onnx_ir")]
    levels = [lg.level for lg in loggers]
    try:
        for lg in loggers:
            lg.setLevel(logging.ERROR)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            warnings.simplefilter("ignore", UserWarning)
            yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def export_model(encoder: Encoder, head: PoseHead, fmt: str, path: str | os.PathLike[str], batch: int = 2) -> Path:
    """Write encoder + ``head`` as :class:`ExportedPoseModel` to ``path`` in ``fmt`` (:data:`FORMATS`), any batch
    size (traced on ``batch`` blank crops); the file appears whole or not at all. Returns ``path``."""
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, got {fmt!r}")
    model = ExportedPoseModel(encoder.cpu(), head.cpu()).eval()
    size = encoder.config.image_size
    example = torch.zeros(batch, size, size, 3, dtype=torch.uint8)
    path = Path(path)
    with torch.no_grad(), atomic_open(path) as f:
        if fmt == "torchscript":
            with warnings.catch_warnings():  # the tracer's notes on shape checks that hold for every batch size,
                warnings.simplefilter("ignore", torch.jit.TracerWarning)  # and PyTorch's deprecation of TorchScript
                warnings.simplefilter("ignore", DeprecationWarning)
                torch.jit.save(torch.jit.trace(model, example, check_trace=False), f)
        else:
            with _quiet_exporter():
                program = torch.onnx.export(model, (example,), dynamo=True, input_names=["crops"],
                                            output_names=model.output_names, opset_version=OPSET,
                                            dynamic_shapes={"crops": {0: torch.export.Dim("batch", min=1)}},
                                            verbose=False)
            assert program is not None  # the dynamo exporter returns its program
            f.write(program.model_proto.SerializeToString())
    logger.info("exported %s (%d px crops, K = %d) to %s", fmt, size, head.config.num_hypotheses, path)
    return path
