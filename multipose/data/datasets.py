"""Training batches and validation sets of synthetic images.

Training (:class:`TrainingData`): each epoch yields ``[Training] NUM_SAMPLES`` samples in batches of
``BATCH_SIZE``, as :class:`~multipose.data.io.Batch` es (tensors on the device)::

    image  (B, 3, S, S) float32 RGB in [0, 1]   object on a background, augmented
    R      (B, 3, 3)    float32                 ground-truth rotation, OpenCV model-to-camera
    t      (B, 3)       float32                 translation (mm), [0, 0, RADIUS]
    K      (B, 3, 3)    float32                 the crop's intrinsics (of the clean render)
    mask   (B, S, S)    bool                    object silhouette before augmentation
    index  (B,)         int64                   position in the sampling pool (the view cache), -1 if fresh
    target (B, 3, S, S) float32 RGB in [0, 1]   with ``with_target`` (else None): the AAE's reconstruction
                                                target, the clean image of the same rotation (object
                                                on black, centred window, headlight, not augmented)

Views come from the view cache (:mod:`multipose.data.cache`) when ``[Dataset] NOOF_TRAINING_IMGS``
> 0 (drawn from it by the :class:`~multipose.data.sampling.PoseSampler`), else they are rendered
per batch. Then each is composited on a background and augmented, all batched on the device.
With ``-hard`` sampling, report the per-sample losses with :meth:`TrainingData.update`.

Validation (:func:`multipose.experiment.datasets.validation_data_from_config`): the files of
``[Dataset] VALID_DATA_PATH`` (original pickles or our ``.npz``), or, when it is empty, ``NOOF_VALID_IMGS``
samples generated once with a fixed seed (own poses, held-out backgrounds, own augmentation draws) and cached as
``<OUTPUT_PATH>/validation.npz``.

Random streams: every stream has its own generator, seeded from the config seed and a purpose
name (:func:`multipose.data.sampling.derive_seed`), so e.g. training and validation never share
draws and a batch is the same on CPU and GPU.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from dataclasses import fields, replace
from typing import Any

import torch

from multipose.core.settings import ViewSampling
from multipose.data.augment import Augmenter
from multipose.data.backgrounds import BackgroundSource
from multipose.data.cache import ViewCache, render_views
from multipose.data.io import Batch, SampleSet
from multipose.data.occlusion import OcclusionSettings, square_occlusions
from multipose.data.sampling import PoseSampler, make_generator
from multipose.data.views import ViewRenderer, Views
from multipose.infra.distributed import Dist

logger = logging.getLogger(__name__)

__all__ = [
    "VALIDATION_SEED",
    "TrainingData",
    "composite",
    "synthesize_samples",
]

#: Seed of generated validation sets (fixed: every run of a config validates on the same images).
VALIDATION_SEED = 0
#: Samples rendered and augmented per step by :func:`synthesize_samples`.
_GENERATE_CHUNK = 32


def composite(views: Views, backgrounds: torch.Tensor) -> torch.Tensor:
    """The rendered object over backgrounds: ``(B, 3, S, S)`` float in [0, 1]."""
    rgb = views.rgb.float() / 255.0
    return torch.where(views.mask[:, None], rgb, backgrounds.to(rgb))


class TrainingData:
    """Synthetic training batches; iterate once per epoch (see the module docstring).

    Args:
        sampler: draws the rotations (from ``cache.R`` when there is a cache).
        backgrounds: background source.
        augmenter: or None for no augmentation (``AUGMENT_IMGS: false``).
        batch_size, num_samples: per epoch ``num_samples`` samples, the last batch may be smaller.
        generator: CPU generator for backgrounds, augmentation and (without cache) crop offsets/lights.
        device: where batches are made.
        cache: the view cache, or None to render views per batch with ``renderer``.
        renderer: the view renderer (needed without cache).
        with_target: also return each sample's reconstruction target as ``target`` (encoder
            pretraining): the AAE's clean image of the same rotation, centred and headlit
            (:meth:`~multipose.data.views.ViewRenderer.render_centred`; from ``cache.targets``).
        occlusion: square occluders cut out of the object (:mod:`multipose.data.occlusion`), or None.
        dist: in a distributed run, views rendered per batch (no cache) are shared out: each rank renders its
            share of the batch's rows (offsets and lights drawn for the whole batch, the one random stream of
            every world size) and every rank gets them all.
    """

    def __init__(
        self,
        *,
        sampler: PoseSampler,
        backgrounds: BackgroundSource,
        augmenter: Augmenter | None,
        batch_size: int,
        num_samples: int,
        generator: torch.Generator,
        device: torch.device | str = "cpu",
        cache: ViewCache | None = None,
        renderer: ViewRenderer | None = None,
        with_target: bool = False,
        occlusion: OcclusionSettings | None = None,
        dist: Dist | None = None,
    ) -> None:
        if cache is None and renderer is None:
            raise ValueError("TrainingData needs a view cache or a view renderer")
        if cache is not None and (sampler.pool is None or sampler.pool.shape[0] != len(cache)):
            raise ValueError("with a view cache the sampler must draw from the cache's rotations (pool=cache.R)")
        if with_target and cache is not None and cache.targets is None:
            raise ValueError("with_target needs a view cache built with targets=True")
        if batch_size < 1 or num_samples < 1:
            raise ValueError(f"batch_size and num_samples must be >= 1, got {batch_size}, {num_samples}")
        self.sampler = sampler
        self.backgrounds = backgrounds
        self.augmenter = augmenter
        self.batch_size = int(batch_size)
        self.num_samples = int(num_samples)
        self.generator = generator
        self.device = torch.device(device)
        self.cache = cache.to(self.device) if cache is not None else None
        self.renderer = renderer
        self.with_target = bool(with_target)
        self.occlusion = occlusion
        self.dist = dist or Dist()

    def __len__(self) -> int:
        """Batches per epoch."""
        return math.ceil(self.num_samples / self.batch_size)

    def start_epoch(self) -> None:
        """Begin an epoch of the pose sampler (a mix that draws batches itself calls it)."""
        self.sampler.start_epoch()

    def __iter__(self) -> Iterator[Batch]:
        """One epoch of batches."""
        self.start_epoch()
        for start in range(0, self.num_samples, self.batch_size):
            yield self.batch(min(self.batch_size, self.num_samples - start))

    def batch(self, n: int | None = None) -> Batch:
        """One batch of ``n`` (default ``batch_size``) samples, with ``index`` (and ``target`` with
        ``with_target``)."""
        n = self.batch_size if n is None else int(n)
        draw = self.sampler.sample(n)
        views = self.cache.take(draw.index) if self.cache is not None else self._render(draw.R)
        backgrounds = self.backgrounds.sample(n, self.generator, self.device)
        shown = views
        if self.occlusion is not None and self.occlusion.prob > 0:
            shown = replace(views, mask=views.mask & ~square_occlusions(views.mask, self.occlusion, self.generator))
        image = composite(shown, backgrounds)
        if self.augmenter is not None:
            image = self.augmenter(image, self.generator)
        target = None
        if self.with_target:
            if self.cache is not None:
                assert self.cache.targets is not None  # __init__: with_target needs a cache with targets
                target = self.cache.targets[draw.index.to(self.device)]
            else:
                assert self.renderer is not None
                rows = self.dist.shard(n)
                target = self.dist.gather_rows(self.renderer.render_centred(views.R[rows]).to(self.device), n)
            target = target.float() / 255.0
        return Batch(image=image, R=views.R, t=views.t, K=views.K, mask=views.mask, index=draw.index.to(self.device),
                     target=target)

    def _render(self, R: torch.Tensor) -> Views:
        """Fresh views of ``R (n, 3, 3)`` on the device, offsets and lights drawn for all ``n`` (see ``dist``)."""
        assert self.renderer is not None  # __init__: a view cache or a renderer
        n = R.shape[0]
        offsets, light = self.renderer.draw(n, self.generator)
        rows = self.dist.shard(n)
        mine = self.renderer.render_drawn(R[rows], offsets[rows], light[rows]).to(self.device)
        return Views(**{f.name: self.dist.gather_rows(getattr(mine, f.name), n) for f in fields(Views)})

    def update(self, batch: Batch, per_sample_loss: torch.Tensor) -> None:
        """Report a batch's per-sample losses ``(B,)`` for hard-sample mining (``-hard``)."""
        self.sampler.update(batch.R, per_sample_loss, batch.index)

    def state_dict(self) -> dict[str, Any]:
        """Random state (generators, waiting hard samples), for resuming exactly."""
        return {"generator": self.generator.get_state(), "sampler": self.sampler.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"])
        self.sampler.load_state_dict(state["sampler"])


@torch.no_grad()
def synthesize_samples(
    renderer: ViewRenderer,
    sampling: ViewSampling,
    backgrounds: BackgroundSource,
    augmenter: Augmenter | None,
    num: int,
    seed: int,
    progress: bool = True,
    dist: Dist | None = None,
    meta: dict[str, Any] | None = None,
) -> SampleSet:
    """``num`` fresh synthetic samples on the renderer's device: poses drawn by ``sampling``, rendered crops on
    ``backgrounds``, augmented by ``augmenter`` (None: not augmented); every draw from ``seed``. ``dist``: every
    rank renders its share of the crops and gets them all, then composes the same samples.

    Images are rounded to 8-bit levels (what a file stores); ``meta`` is stored with them. Returns CPU tensors.
    """
    if num < 1:
        raise ValueError(f"num must be >= 1, got {num}")
    device = renderer.device
    sampler = PoseSampler(sampling, make_generator(seed, "samples-poses"))
    generator = make_generator(seed, "samples-images")
    R = sampler.sample(num).R
    views = render_views(renderer, R, generator, batch_size=_GENERATE_CHUNK, progress=progress,
                         desc="rendering samples", dist=dist, everywhere=True)
    assert views is not None  # everywhere: all the views on every rank
    views = views.to(device)
    images = []
    for start in range(0, num, _GENERATE_CHUNK):
        part = views.take(torch.arange(start, min(num, start + _GENERATE_CHUNK)))
        image = composite(part, backgrounds.sample(len(part), generator, device))
        if augmenter is not None:
            image = augmenter(image, generator)
        images.append((image * 255.0).round().div(255.0).cpu())
    views = views.to("cpu")
    return SampleSet(images=torch.cat(images), R=views.R, t=views.t, K=views.K, mask=views.mask, meta=dict(meta or {}))
