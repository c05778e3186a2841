"""The test set of an evaluation (:class:`TestSet`); loading one from a config's ``[Evaluation] TEST_DATA_PATH``
is :func:`multipose.experiment.testsets.load_test_set`'s. What the three kinds hold:

- empty: ``NUM_SAMPLES`` synthetic samples made like the validation set (training renderer, held-out
  backgrounds, augmentation), seed :data:`TEST_SEED`. The translation is known there (``[0, 0, RADIUS]``)
  and only the rotation is estimated. VSD needs a test (scene) depth; a synthetic sample has no occluder,
  so the **rendered ground-truth depth is the test depth**, and the estimated and ground-truth depths are
  rendered with the sample's crop intrinsics and ``t``;
- a dataset file (our ``.npz`` or the original's pickle): the same; a pickle stores no ``t`` or ``K``, so
  ``t = [0, 0, RADIUS]`` and ``K`` is the crop of the centred training window for the ground-truth rotation
  (any fixed camera serves, since VSD compares two renders with the same one). A pickle of a BOP split's
  crops (``scene_ids``, ``img_ids``, ``obj_ids``, ``ts``: the original's ``bop2pickle.py`` or
  ``generate_dataset.py --from-bop``) brings those ids and the scene translations (:attr:`TestSet.t_scene`),
  and its ``Rs_predicted`` (:attr:`TestSet.R_stored`);
- a BOP split folder (T-LESS ``test_primesense``, :mod:`multipose.evaluation.bop_folders`): every instance of
  ``OBJ_ID`` cropped with its ground-truth box; the translation is estimated from the box the AAE way and
  the rotation corrected for the object's offset from the optical axis; VSD uses the scene's depth image in
  a window of :data:`BOP_VSD_PAD` times the box around the object, rendered at twice the crop size
  (:data:`BOP_VSD_SCALE`).

The object's symmetries come from a BOP ``models_info.json`` (``MODELS_INFO`` or found beside the BOP
folder) when its entry matches the data mesh.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch

from multipose.infra.records import TensorRecord

logger = logging.getLogger(__name__)

__all__ = ["BOP_VSD_PAD", "BOP_VSD_SCALE", "TEST_SEED", "TestSet"]

#: Seed of generated synthetic test sets (validation sets use 0: the two never share samples).
TEST_SEED = 1
#: BOP: side of the VSD window relative to the larger side of the ground-truth box.
BOP_VSD_PAD = 2.0
#: BOP: pixels of the VSD window relative to the encoder's crop size.
BOP_VSD_SCALE = 2


@dataclass(frozen=True, eq=False)
class TestSet(TensorRecord):
    """What an evaluation runs on (CPU tensors, ``N`` instances).

    Attributes:
        images: ``(N, 3, S, S)`` float32 RGB in [0, 1], the encoder's input.
        R: ``(N, 3, 3)`` ground-truth rotations; t: ``(N, 3)`` ground-truth translations (mm).
        K_vsd: ``(N, 3, 3)`` intrinsics of the VSD renders (``vsd_size`` pixels square).
        vsd_size: side of the VSD depth maps.
        depth_test: ``(N, V, V)`` test depth (mm, 0 unknown) in the VSD window, or None: the rendered
            ground-truth depth is the test depth (synthetic data, no occlusion).
        depth_known: ``(N,)`` bool, the instances whose ``depth_test`` was measured (the others use their
            rendered ground truth), or None: all of them.
        in_image: ``(N, V, V)`` bool, the pixels of the VSD window inside the camera image (renders are
            cut there, as BOP's full-image VSD sees them), or None: the whole window.
        boxes: ``(N, 4)`` ground-truth boxes ``[u_min, v_min, u_max, v_max]`` in the camera image and
            K: ``(N, 3, 3)`` its intrinsics, to estimate the translation from (BOP); None: ``t`` is known.
        scene_id, im_id: ``(N,)`` int64 (BOP ids; 0 and the sample index otherwise).
        obj_id: the object's id in result files (``OBJ_ID``, else 1).
        symmetries: ``(S, 3, 3)`` the object's symmetry rotations (identity included), or None.
        name: ``<dataset>-<split>`` for BOP result file names; description: one line for reports.
        t_scene: ``(N, 3)`` the instances' translations in their scenes, or None: the results files then
            hold these and the rotations corrected for them (crops from a pickle of a BOP split).
        R_stored: ``(N, 3, 3)`` rotations stored with the test set (a pickle's ``Rs_predicted``),
            evaluated as the method ``stored``, or None.
        image_width: ``(N,)`` pixels of the camera image (BOP; MSPD's thresholds scale with it), or None.
        inst_count: ``(N,)`` BOP19: instances of the object to find in the instance's image, or None.
        num_targets: BOP19: all the target instances (those the test set could not crop count as not found).
    """

    __test__ = False  # not a pytest test class despite its name

    images: torch.Tensor
    R: torch.Tensor
    t: torch.Tensor
    K_vsd: torch.Tensor
    vsd_size: int
    depth_test: torch.Tensor | None = None
    depth_known: torch.Tensor | None = None
    in_image: torch.Tensor | None = None
    boxes: torch.Tensor | None = None
    K: torch.Tensor | None = None
    scene_id: torch.Tensor | None = None
    im_id: torch.Tensor | None = None
    obj_id: int = 1
    symmetries: torch.Tensor | None = None
    name: str = "synthetic-test"
    description: str = ""
    t_scene: torch.Tensor | None = None
    R_stored: torch.Tensor | None = None
    image_width: torch.Tensor | None = None
    inst_count: torch.Tensor | None = None
    num_targets: int | None = None

    SHARED = frozenset({"symmetries"})  # the object's, not one per instance

    def __post_init__(self) -> None:
        n = self.images.shape[0]
        if self.images.ndim != 4 or self.images.shape[1] != 3:
            raise ValueError(f"images must be (N, 3, S, S), got {tuple(self.images.shape)}")
        window = (n, self.vsd_size, self.vsd_size)
        self.check_shapes({"R": (n, 3, 3), "t": (n, 3), "K_vsd": (n, 3, 3), "depth_test": window, "depth_known": (n,),
                           "in_image": window, "image_width": (n,), "inst_count": (n,), "boxes": (n, 4),
                           "K": (n, 3, 3), "scene_id": (n,), "im_id": (n,), "t_scene": (n, 3), "R_stored": (n, 3, 3)})
        if (self.boxes is None) != (self.K is None):
            raise ValueError("boxes and K go together (translation from boxes needs the camera)")
        if self.scene_id is None:
            object.__setattr__(self, "scene_id", torch.zeros(n, dtype=torch.int64))
        if self.im_id is None:
            object.__setattr__(self, "im_id", torch.arange(n, dtype=torch.int64))

    def vsd_depths(
        self, rows: torch.Tensor, depth_est: torch.Tensor, depth_gt: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The depths VSD compares in the windows of the instances ``rows (n,)``: renders ``depth_est (n, ...,
        V, V)`` and ``depth_gt (n, V, V)`` cut at the image border (BOP sees the image only), and the test depth
        ``(n, V, V)``: the measured one where known, else the ground-truth render (on ``depth_gt``'s device)."""
        device = depth_gt.device
        if self.in_image is not None:
            inside = self.in_image[rows].to(device)
            depth_gt = depth_gt * inside
            depth_est = depth_est * inside.reshape(len(rows), *[1] * (depth_est.dim() - 3), *inside.shape[1:])
        depth_test = depth_gt
        if self.depth_test is not None:
            depth_test = self.depth_test[rows].to(device)
            if self.depth_known is not None:
                depth_test = torch.where(self.depth_known[rows].to(device)[:, None, None], depth_test, depth_gt)
        return depth_est, depth_gt, depth_test
