"""Pose-head checkpoint files: ``train.py``'s and the original repository's.

- ours (``models/model-epoch{N}.pt``, ``model-best.pt``): a dict with ``model`` (the head's state
  dict), ``head_args`` (:class:`~multipose.models.head.PoseHeadConfig`, from which the head is
  rebuilt), optimizer, scheduler, RNG and data states, the config and the encoder's sha256;
- the original's ``train.py`` (``models/model-epoch{N}.pt``): a dict with ``model`` (the state dict
  of its ``Model``, parameter names ``l01 ... l3``), ``optimizer``, ``lr_reducer`` and ``epoch``, and
  no architecture arguments. Its head is our :class:`~multipose.models.head.PoseHead` with the
  original's 6D decoding (``convention="original"``): K is read from the config (``[Rendering]
  VIEWS``) and checked against the output layer, the code size from the first layer.

An original checkpoint of a ``FINETUNE_ENCODER`` run holds the fine-tuned dense layer as ``encoder.weight``
``(128, flat features)`` and ``encoder.bias``: it becomes the head's ``encoder`` layer
(``encoder_features``). One of several objects (its final version, ``MODEL_PATH_LOSS`` a list of N) has an
output layer of ``N * K * 7`` (object-major: N * K confidence logits, then each object's K 6D blocks); with
``CLASSIFY_OBJECTS`` the classifier ``c1, bnc1, c2, bnc2, c3`` (``c3``: N outputs) tells N.
Files are read with ``torch.load(weights_only=True)``: a checkpoint that would need Python objects
rebuilt is refused unless trusted (``--trust-checkpoint``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from multipose.infra.checkpoint import load_checkpoint
from multipose.infra.errors import CheckpointRefused
from multipose.models.head import PoseHead, PoseHeadConfig
from multipose.models.weights import ModelFileError

__all__ = ["is_original_checkpoint", "load_head_checkpoint", "original_head_config"]


def is_original_checkpoint(state: Any) -> bool:
    """Whether ``state`` (a loaded checkpoint) was written by the original's ``train.py``."""
    return (
        isinstance(state, dict)
        and "head_args" not in state
        and isinstance(state.get("model"), dict)
        and "l3.weight" in state["model"]
        and "epoch" in state
    )


def original_head_config(state: dict, num_hypotheses: int | None, path: str | os.PathLike = "",
                         num_objects: int | None = None) -> PoseHeadConfig:
    """The :class:`PoseHeadConfig` of an original checkpoint ``state`` (see the module docstring).

    ``num_hypotheses``, ``num_objects``: K and N of the config the checkpoint is used with (None: K inferred
    from the output layer, ``N * K * 7`` outputs; N from the classifier, else 1). Raises :class:`ModelFileError`
    for a variant this head cannot represent or a K or N that does not match."""
    model = state["model"]
    classifier = {"c1", "bnc1", "c2", "bnc2", "c3"}
    extra = sorted({k.split(".")[0] for k in model} - {"l01", "l02", "l03", "l04", "l1", "l2", "l3", "bn01", "bn02",
                                                        "bn03", "bn04", "bn1", "bn2", "encoder"} - classifier)
    if extra:
        raise ModelFileError(f"{path}: an original checkpoint with the unknown layers {extra}: not the original's "
                             "pose head")
    classify = "c3.weight" in model
    if classify:
        stored = int(model["c3.weight"].shape[0])
        if num_objects is not None and stored != num_objects:
            raise ModelFileError(f"{path}: its classifier tells {stored} objects, but the config names {num_objects} "
                                 "([Dataset] MODEL_PATH_LOSS)")
        num_objects = stored
    num_objects = num_objects or 1
    outputs, width = model["l3.weight"].shape
    if width != 64 or "l01.weight" not in model:
        raise ModelFileError(f"{path}: not the original's pose head (l3 takes {width} inputs, expected 64)")
    if num_hypotheses is None:
        if outputs % (7 * num_objects):
            raise ModelFileError(f"{path}: the original head gives {outputs} outputs, not N * K * (1 + 6) for "
                                 f"N = {num_objects}")
        num_hypotheses = outputs // (7 * num_objects)
    if outputs != num_objects * num_hypotheses * 7:
        several = num_objects > 1
        raise ModelFileError(
            f"{path}: the original head gives {outputs} outputs = {'N * ' if several else ''}K * (1 + 6) for "
            f"{f'N = {num_objects} objects and ' if several else ''}K = {outputs / (7 * num_objects):g}, but the "
            f"config asks for K = {num_hypotheses} ([Rendering] VIEWS); set VIEWS to the checkpoint's K"
        )
    hidden, code = model["l01.weight"].shape
    features = 0
    if "encoder.weight" in model:
        if model["encoder.weight"].ndim != 2 or model["encoder.weight"].shape[0] != code:
            raise ModelFileError(f"{path}: its encoder layer {tuple(model['encoder.weight'].shape)} does not make the "
                                 f"{code}-d code its l01 takes")
        features = int(model["encoder.weight"].shape[1])
    return PoseHeadConfig(num_hypotheses=num_hypotheses, representation="6d-pose", input_dim=int(code),
                          width=int(hidden), convention="original", encoder_features=features,
                          num_objects=num_objects, classify=classify)


def load_head_checkpoint(
    path: str | os.PathLike, num_hypotheses: int | None = None, trust: bool = False, num_objects: int | None = None
) -> tuple[PoseHead, dict[str, Any]]:
    """The pose head of a checkpoint (ours or the original's; eval mode, CPU) and the checkpoint dict.

    ``num_hypotheses``, ``num_objects``: the config's K and N, checked against an original checkpoint (ours
    store theirs).
    The file is read with ``weights_only=True`` unless ``trust`` (:func:`multipose.infra.checkpoint.load_checkpoint`).
    Raises :class:`ModelFileError` for a missing, unreadable or foreign file, and
    :class:`~multipose.infra.checkpoint.CheckpointRefused` for one that needs an unsafe load."""
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"{path}: checkpoint not found; train first (python train.py CFG) or pass --checkpoint")
    try:
        state = load_checkpoint(path, "cpu", trust)
    except CheckpointRefused:
        raise
    except Exception as exc:  # noqa: BLE001 - whatever a damaged file raises, the user gets one line
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelFileError(f"{path}: not a readable checkpoint ({reason[:160]})") from None
    if is_original_checkpoint(state):
        config = original_head_config(state, num_hypotheses, path, num_objects)
    elif isinstance(state, dict) and isinstance(state.get("model"), dict) and isinstance(state.get("head_args"), dict):
        config = None
    else:
        raise ModelFileError(
            f"{path}: not a pose-head checkpoint (expected train.py's keys 'model' and 'head_args', or the "
            "original's 'model', 'optimizer' and 'epoch')"
        )
    try:
        head = PoseHead(config or PoseHeadConfig(**state["head_args"]))
        head.load_state_dict(state["model"])
    except (TypeError, ValueError, RuntimeError) as exc:
        raise ModelFileError(f"{path}: the pose head cannot be rebuilt ({str(exc).splitlines()[0][:160]})") from None
    return head.eval(), state
