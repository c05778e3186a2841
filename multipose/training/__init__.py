"""Training loops, config-free (assembled from a config by :mod:`multipose.experiment.pose_training` and
:mod:`multipose.experiment.encoder_training`).

- :mod:`multipose.training.loop` -- the loop skeleton both use: resume, steps, checkpoints, stop reasons;
- :mod:`multipose.training.pose` -- the pose head's epochs with the multi-pose loss (``train.py``), with
  :mod:`~multipose.training.validation` and a population head's targets (:mod:`~multipose.training.population`);
- :mod:`multipose.training.encoder` -- AAE encoder pretraining (``train_encoder.py``):
  :func:`~multipose.training.encoder.fit_encoder`;
- :mod:`multipose.training.common` -- seeding and RNG state, metrics CSV, curves.

Import the submodules directly; this package imports nothing, so importing one loop does not pay for
the other.
"""
