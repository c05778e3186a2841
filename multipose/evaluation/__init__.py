"""Evaluation kernels: BOP pose-error metrics, BOP folders, scoring and reports. Nothing here reads an experiment
config: :mod:`multipose.experiment.evaluation` (``evaluate.py``) and :mod:`multipose.experiment.testsets`
assemble an evaluation from one.

- :mod:`~multipose.evaluation.metrics` -- ``vsd``, ``re``, ``re_sym``, ``te``, ``recall`` (pure functions);
- :mod:`~multipose.evaluation.bop_folders` -- BOP split folders (T-LESS ``test_primesense``): instances, targets,
  ``models_info.json``;
- :mod:`~multipose.evaluation.bop_images` -- their images and the AAE's crops (cut as
  :mod:`multipose.inference` cuts any image's, posed by its :mod:`~multipose.inference.box_pose`);
- :mod:`~multipose.evaluation.testsets` -- :class:`~multipose.evaluation.testsets.TestSet`, the instances an
  evaluation scores;
- :mod:`~multipose.evaluation.scoring` -- scoring batches: every method's poses, renders and errors;
- :mod:`~multipose.evaluation.bop19` -- the BOP19 protocol: BOP's results rows, MSSD/MSPD/VSD matching, ARs;
- :mod:`~multipose.evaluation.detections` -- poses from a BOP detections file's boxes;
- :mod:`~multipose.evaluation.report` -- metrics.json, CSV files (BOP results format) and figures.

The metrics are re-exported here (``from multipose.evaluation import vsd``); importing them loads no renderer.
"""

from multipose.evaluation.metrics import re, re_sym, recall, recall_curve, symmetry_transformations, te, vsd

__all__ = ["re", "re_sym", "recall", "recall_curve", "symmetry_transformations", "te", "vsd"]
