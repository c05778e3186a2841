"""Evaluation: BOP pose-error metrics, a BOP test-set reader and the evaluation run (``evaluate.py``).

- :mod:`~multipose.evaluation.metrics` -- ``vsd``, ``re``, ``re_sym``, ``te``, ``recall`` (pure functions);
- :mod:`~multipose.evaluation.bop` -- BOP split folders (T-LESS ``test_primesense``), AAE crops and
  the AAE's translation from a box;
- :mod:`~multipose.evaluation.run` -- test sets, the head against random and codebook baselines,
  timings and sizes;
- :mod:`~multipose.evaluation.report` -- metrics.json, CSV files (BOP results format) and figures.

Typical use::

    result = evaluate_checkpoint(cfg)            # <OUTPUT_PATH>/models/model-best.pt -> <OUTPUT_PATH>/evaluation
    result.recall                                # {"head": ..., "best-of-K": ..., "random": ...}
"""

from multipose.evaluation.metrics import re, re_sym, recall, recall_curve, symmetry_transformations, te, vsd
from multipose.evaluation.run import (
    EvaluationResult,
    TestSet,
    check_evaluation_inputs,
    codebook_from_config,
    default_checkpoint,
    evaluate_checkpoint,
    evaluate_models,
    load_pose_checkpoint,
    load_test_set,
)

__all__ = [
    "EvaluationResult",
    "TestSet",
    "check_evaluation_inputs",
    "codebook_from_config",
    "default_checkpoint",
    "evaluate_checkpoint",
    "evaluate_models",
    "load_pose_checkpoint",
    "re",
    "re_sym",
    "recall",
    "recall_curve",
    "symmetry_transformations",
    "te",
    "load_test_set",
    "vsd",
]
