"""Training loops (layer 5: they use data, models, losses and the helpers in :mod:`.common`).

- :mod:`multipose.training.encoder` -- AAE encoder pretraining (``train_encoder.py``):
  :func:`~multipose.training.encoder.pretrain_encoder`, :func:`~multipose.training.encoder.ensure_encoder`;
- :mod:`multipose.training.pose` -- the pose head with the multi-pose loss (``train.py``);
- :mod:`multipose.training.common` -- run-folder guard, seeding and RNG state, metrics CSV, curves.

Import the submodules directly; this package imports nothing, so importing one loop does not pay for
the other.
"""
