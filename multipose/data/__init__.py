"""Synthetic training data: AAE-style crops of the CAD model on backgrounds, augmented, batched.

Modules (they import only :mod:`multipose.core` and :mod:`multipose.infra`; a config's data is assembled by
:mod:`multipose.experiment.datasets`):

- :mod:`~multipose.data.sampling` -- training rotations (``VIEW_SAMPLING``), hard-sample mining;
- :mod:`~multipose.data.views` -- the view renderer: AAE crop windows, rendered directly into the crop;
- :mod:`~multipose.data.cache` -- the on-disk cache of clean rendered views;
- :mod:`~multipose.data.backgrounds` -- image-folder and procedural backgrounds;
- :mod:`~multipose.data.augment` -- the AAE's augmentation, batched with kornia;
- :mod:`~multipose.data.datasets` -- training batches, generated and file validation sets;
- :mod:`~multipose.data.io` -- dataset files (our ``.npz``, the original's pickles), rotation files.

Typical use (from a config: :mod:`multipose.experiment.datasets`)::

    train = training_data_from_config(cfg, device)      # renders the view cache on first use
    for batch in train:                                 # one epoch
        batch.image, batch.R                      # (B, 3, S, S) in [0, 1], (B, 3, 3)
    valid = validation_data_from_config(cfg, device)    # SampleSet
"""

from multipose.data.augment import Augmenter, AugmentSettings
from multipose.data.cache import ViewCache, build_view_cache
from multipose.data.datasets import TrainingData
from multipose.data.io import SampleSet, load_sample_files, load_samples, save_samples
from multipose.data.sampling import PoseSampler
from multipose.data.views import ViewRenderer, Views, ViewSettings

__all__ = [
    "AugmentSettings",
    "Augmenter",
    "PoseSampler",
    "SampleSet",
    "TrainingData",
    "ViewCache",
    "ViewRenderer",
    "ViewSettings",
    "Views",
    "build_view_cache",
    "load_sample_files",
    "load_samples",
    "save_samples",
]
