"""Poses of objects in images from their 2D boxes; nothing here reads an experiment config
(:mod:`multipose.experiment.estimators` builds an estimator from a run).

- :mod:`~multipose.inference.images` -- reading an image, cutting the encoder's crops at boxes;
- :mod:`~multipose.inference.box_pose` -- the AAE's box-to-pose step (translation, off-axis rotation correction);
- :mod:`~multipose.inference.estimator` -- :class:`~multipose.inference.estimator.PoseEstimator`: crops, encoder +
  head, poses, as typed :class:`~multipose.inference.estimator.Poses`;
- :mod:`~multipose.inference.inputs` -- ``predict.py``'s camera and boxes files, checked;
- :mod:`~multipose.inference.overlay` -- poses drawn on their image;
- :mod:`~multipose.inference.export` -- encoder + head as one TorchScript or ONNX file.

The evaluation of BOP splits (:mod:`multipose.evaluation`) cuts and poses its crops with the same functions.
"""
