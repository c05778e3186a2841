"""Evaluation: BOP pose-error metrics, test sets, the codebook baseline and the evaluation run (``evaluate.py``).

- :mod:`~multipose.evaluation.metrics` -- ``vsd``, ``re``, ``re_sym``, ``te``, ``recall`` (pure functions);
- :mod:`~multipose.evaluation.bop` -- BOP split folders (T-LESS ``test_primesense``), AAE crops and
  the AAE's translation from a box;
- :mod:`~multipose.evaluation.testsets` -- the test set of a config (synthetic, a file or a BOP folder);
- :mod:`~multipose.evaluation.codebook` -- the AAE codebook of an encoder, built and cached;
- :mod:`~multipose.evaluation.scoring` -- scoring batches: every method's poses, renders and errors;
- :mod:`~multipose.evaluation.bop19` -- the BOP19 protocol: BOP's results rows, MSSD/MSPD/VSD matching, ARs;
- :mod:`~multipose.evaluation.detections` -- poses from a BOP detections file's boxes;
- :mod:`~multipose.evaluation.run` -- an evaluation from a checkpoint: the head against random and
  codebook baselines, timings and sizes;
- :mod:`~multipose.evaluation.report` -- metrics.json, CSV files (BOP results format) and figures.

Typical use::

    result = evaluate_checkpoint(cfg)            # <OUTPUT_PATH>/models/model-best.pt -> <OUTPUT_PATH>/evaluation
    result.recall                                # {"head": ..., "best-of-K": ..., "random": ...}

The names below are imported on first use, so ``from multipose.evaluation import metrics`` does not load
training, rendering or matplotlib.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from multipose.evaluation.codebook import codebook_from_config
    from multipose.evaluation.metrics import re, re_sym, recall, recall_curve, symmetry_transformations, te, vsd
    from multipose.evaluation.run import (
        EvaluationResult,
        default_checkpoint,
        evaluate_checkpoint,
        evaluate_models,
        load_pose_checkpoint,
    )
    from multipose.evaluation.testsets import TestSet, check_evaluation_inputs, load_test_set

#: Where each public name lives.
_EXPORTS = {
    "EvaluationResult": "run",
    "TestSet": "testsets",
    "check_evaluation_inputs": "testsets",
    "codebook_from_config": "codebook",
    "default_checkpoint": "run",
    "evaluate_checkpoint": "run",
    "evaluate_models": "run",
    "load_pose_checkpoint": "run",
    "load_test_set": "testsets",
    "re": "metrics",
    "re_sym": "metrics",
    "recall": "metrics",
    "recall_curve": "metrics",
    "symmetry_transformations": "metrics",
    "te": "metrics",
    "vsd": "metrics",
}

__all__ = [
    "EvaluationResult",
    "TestSet",
    "check_evaluation_inputs",
    "codebook_from_config",
    "default_checkpoint",
    "evaluate_checkpoint",
    "evaluate_models",
    "load_pose_checkpoint",
    "load_test_set",
    "re",
    "re_sym",
    "recall",
    "recall_curve",
    "symmetry_transformations",
    "te",
    "vsd",
]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
