"""The BOP19 protocol on one object (``[Evaluation] PROTOCOL: bop19``), as bop_toolkit's ``eval_bop19_pose.py``.

- **What is submitted** (:func:`submission`, also the rows of every BOP results file): one estimate per
  detected instance (its most confident hypothesis), then per image at most ``inst_count`` estimates of
  the object (the targets' count, else the instances evaluated in that image), highest score first, so
  that two hypotheses of one instance never crowd out another instance.
- **Errors** of every submitted estimate against every ground-truth target of the object in its image:
  VSD (delta ``VSD_DELTA``, taus :data:`VSD_TAUS` times the object's diameter, BOP's visibility; rendered
  in the target's window, cut at the image border), MSSD (mm) and MSPD (pixels, scaled to a 640 px wide
  image) over the model points of BOP's evaluation model with the object's symmetries.
- **Matching** per image, greedily in decreasing score: an estimate matches the unmatched target with the
  lowest error below the threshold. Recall = matches / targets (:attr:`TestSet.num_targets
  <multipose.evaluation.testsets.TestSet.num_targets>`, those not cropped count as not found).
- **Average recalls**: AR_VSD over :data:`VSD_TAUS` x :data:`VSD_THRESHOLDS`, AR_MSSD over
  :data:`MSSD_THRESHOLDS` (times the diameter), AR_MSPD over :data:`MSPD_THRESHOLDS`; AR is their mean.

What differs from ``eval_bop19_pose.py``: detections are the ground-truth boxes unless ``[Evaluation]
DETECTIONS`` gives a detector's (:mod:`multipose.evaluation.detections`), VSD is rendered in a window of
twice the box (resolution ``2 x CROP_SIZE``) rather than over the full image, and a target that could not
be cropped is not a candidate in the matching (it is counted as not found).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch

from multipose.core.render import MeshRenderer
from multipose.evaluation import metrics as pose_error
from multipose.evaluation.scoring import Estimates
from multipose.evaluation.testsets import TestSet
from multipose.infra.distributed import Dist
from multipose.infra.progress import progress_bar

logger = logging.getLogger(__name__)

__all__ = [
    "MSPD_THRESHOLDS",
    "MSSD_THRESHOLDS",
    "VSD_TAUS",
    "VSD_THRESHOLDS",
    "ObjectModel",
    "Submission",
    "average_recalls",
    "select",
    "submission",
]

#: VSD misalignment tolerances, fractions of the object's diameter.
VSD_TAUS = tuple(round(0.05 * i, 2) for i in range(1, 11))
#: VSD error thresholds of a correct estimate.
VSD_THRESHOLDS = tuple(round(0.05 * i, 2) for i in range(1, 11))
#: MSSD thresholds, fractions of the object's diameter.
MSSD_THRESHOLDS = tuple(round(0.05 * i, 2) for i in range(1, 11))
#: MSPD thresholds, pixels of a 640 px wide image.
MSPD_THRESHOLDS = tuple(5.0 * i for i in range(1, 11))
#: Float64 numbers of the largest pairs x symmetries x points x 3 array MSSD/MSPD build at once (256 MB).
_POINT_BUDGET = 32_000_000


@dataclass(frozen=True)
class Submission:
    """The ``E`` estimates a BOP results file holds for one method, ordered by scene, image and score.

    ``instance (E,)`` the crop each came from, ``score (E,)``, ``R (E, 3, 3)``, ``t (E, 3)`` (mm),
    ``scene_id, im_id (E,)``, ``time (E,)`` seconds of the row's whole image (-1: unknown).
    """

    instance: torch.Tensor
    score: torch.Tensor
    R: torch.Tensor
    t: torch.Tensor
    scene_id: torch.Tensor
    im_id: torch.Tensor
    time: torch.Tensor


@dataclass(frozen=True)
class ObjectModel:
    """What MSSD, MSPD and normalised VSD need of the object: evaluation ``points (P, 3)`` (mm), symmetries
    ``sym_R (S, 3, 3), sym_t (S, 3)`` (the identity alone when unknown) and ``diameter`` (mm)."""

    points: torch.Tensor
    sym_R: torch.Tensor
    sym_t: torch.Tensor
    diameter: float


def submission(test_set: TestSet, estimates: Estimates, seconds_per_instance: float = -1.0) -> Submission:
    """BOP's rows of ``estimates`` (``score (N, k)``, ``R (N, k, 3, 3)``, ``t (N, k, 3)`` per test instance):
    :func:`select` with the test set's images and targets."""
    scene_id, im_id = _ids(test_set)
    return select(scene_id, im_id, test_set.inst_count, estimates, seconds_per_instance)


def select(
    scene_id: torch.Tensor, im_id: torch.Tensor, inst_count: torch.Tensor | None, estimates: Estimates,
    seconds_per_instance: float = -1.0, image_seconds: dict[tuple[int, int], float] | None = None,
) -> Submission:
    """BOP's rows of the estimates of ``N`` crops (``scene_id, im_id (N,)`` their images, ``inst_count (N,)``
    the targets of the object there or None): each crop's highest-scored estimate, then per image the
    ``inst_count`` highest (all without targets). ``time`` of a row: the seconds of its whole image,
    ``seconds_per_instance`` times its crops plus ``image_seconds`` of the image (a detector's), or -1 when
    ``seconds_per_instance`` is negative (unknown)."""
    N = len(scene_id)
    best = estimates.score.argmax(dim=1)
    score = estimates.score[torch.arange(N), best].float()
    groups: dict[tuple[int, int], list[int]] = {}  # images in the crops' order
    for i, key in enumerate(zip(scene_id.tolist(), im_id.tolist(), strict=True)):
        groups.setdefault(key, []).append(i)
    limits = inst_count.tolist() if inst_count is not None else None
    chosen: list[int] = []
    times: list[float] = []
    for key, crops in groups.items():
        members = sorted(crops, key=lambda i: -float(score[i]))
        limit = limits[members[0]] if limits is not None else len(members)
        chosen += members[:limit]
        seconds = seconds_per_instance * len(members) + (image_seconds or {}).get(key, 0.0)
        times += [seconds if seconds_per_instance >= 0 else -1.0] * len(members[:limit])
    index = torch.tensor(chosen, dtype=torch.int64)
    return Submission(instance=index, score=score[index], R=estimates.R[index, best[index]],
                      t=estimates.t[index, best[index]], scene_id=scene_id[index], im_id=im_id[index],
                      time=torch.tensor(times, dtype=torch.float64))


def _ids(test_set: TestSet) -> tuple[torch.Tensor, torch.Tensor]:
    """``scene_id, im_id (N,)`` of the test set's instances (always set by :class:`TestSet`)."""
    assert test_set.scene_id is not None and test_set.im_id is not None
    return test_set.scene_id, test_set.im_id


def _images(test_set: TestSet, sub: Submission) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per image: the submitted rows (in decreasing score) and the test-set instances (the targets)."""
    targets: dict[tuple[int, int], list[int]] = {}
    for i, key in enumerate(zip(*(ids.tolist() for ids in _ids(test_set)), strict=True)):
        targets.setdefault(key, []).append(i)
    rows: dict[tuple[int, int], list[int]] = {key: [] for key in targets}
    for e, key in enumerate(zip(sub.scene_id.tolist(), sub.im_id.tolist(), strict=True)):
        rows[key].append(e)
    out = []
    for key, gts in targets.items():
        est = sorted(rows[key], key=lambda e: -float(sub.score[e]))
        out.append((torch.tensor(est, dtype=torch.int64), torch.tensor(gts, dtype=torch.int64)))
    return out


@torch.no_grad()
def _pair_errors(
    test_set: TestSet, sub: Submission, est: torch.Tensor, gts: torch.Tensor, renderer: MeshRenderer,
    model: ObjectModel, vsd_delta: float,
) -> dict[str, torch.Tensor]:
    """Errors of the submitted rows ``est (E,)`` against the targets ``gts (G,)`` of one image: ``vsd (E, G,
    T)`` at :data:`VSD_TAUS`, ``mssd (E, G)`` as a fraction of the diameter, ``mspd (E, G)`` in pixels of a
    640 px wide image."""
    E, G = len(est), len(gts)
    e_idx, g_idx = est.repeat_interleave(G), gts.repeat(E)
    R_est, t_est = sub.R[e_idx].float(), sub.t[e_idx].float()
    R_gt, t_gt = test_set.R[g_idx].float(), test_set.t[g_idx].float()
    size, device = test_set.vsd_size, renderer.verts.device
    K_vsd = test_set.K_vsd[g_idx]
    depth_est = renderer(R_est.to(device), t_est.to(device), K_vsd.to(device), size).depth.cpu()
    depth_gt = renderer(R_gt.to(device), t_gt.to(device), K_vsd.to(device), size).depth.cpu()
    depth_est, depth_gt, depth_test = test_set.vsd_depths(g_idx, depth_est, depth_gt)
    vsd = pose_error.vsd(depth_est, depth_gt, depth_test, K_vsd, vsd_delta, VSD_TAUS, normalized_by_diameter=True,
                         diameter=model.diameter)
    mssd, mspd = [], []
    assert test_set.K is not None  # a BOP test set has its cameras
    chunk = max(1, _POINT_BUDGET // (3 * model.sym_R.shape[0] * model.points.shape[0]))
    for part in torch.arange(E * G).split(chunk):
        args = (R_est[part].double(), t_est[part].double(), R_gt[part].double(), t_gt[part].double())
        mssd.append(pose_error.mssd(*args, model.points.double(), model.sym_R, model.sym_t))
        K = test_set.K[g_idx[part]].double()
        mspd.append(pose_error.mspd(*args, K, model.points.double(), model.sym_R, model.sym_t))
    width = test_set.image_width[g_idx].double() if test_set.image_width is not None else torch.full((E * G,), 640.0)
    return {
        "vsd": vsd.reshape(E, G, len(VSD_TAUS)),
        "mssd": (torch.cat(mssd) / model.diameter).reshape(E, G),
        "mspd": (torch.cat(mspd) * 640.0 / width).reshape(E, G),
    }


def _matches(errors: torch.Tensor, threshold: float) -> int:
    """Greedy matching of one image (rows in decreasing score, ``errors (E, G)``): the matches."""
    matched: set[int] = set()
    for row in errors.tolist():
        best, best_error = -1, threshold
        for g, e in enumerate(row):
            if g not in matched and e < best_error:
                best, best_error = g, e
        if best >= 0:
            matched.add(best)
    return len(matched)


def average_recalls(
    test_set: TestSet, sub: Submission, renderer: MeshRenderer, model: ObjectModel, vsd_delta: float,
    progress: bool = False, dist: Dist | None = None,
) -> dict[str, float]:
    """``AR_VSD``, ``AR_MSSD``, ``AR_MSPD``, ``AR`` of a submission on the test set's targets (the module
    docstring), and the ``num_targets`` and ``num_estimates`` they count; ``progress``: a progress bar over
    the images; ``dist``: each rank matches its share of the images, every rank gets the recalls."""
    dist = dist or Dist()
    num_targets = test_set.num_targets if test_set.num_targets is not None else len(test_set)
    vsd_hits = torch.zeros(len(VSD_TAUS), len(VSD_THRESHOLDS), dtype=torch.float64)
    mssd_hits = torch.zeros(len(MSSD_THRESHOLDS), dtype=torch.float64)
    mspd_hits = torch.zeros(len(MSPD_THRESHOLDS), dtype=torch.float64)
    images = list(_images(test_set, sub))
    for est, gts in progress_bar(images[dist.shard(len(images))], desc="BOP19 errors", unit="image",
                                 disable=not progress, leave=False):
        if len(est) == 0:
            continue
        errors = _pair_errors(test_set, sub, est, gts, renderer, model, vsd_delta)
        for a in range(len(VSD_TAUS)):
            for b, th in enumerate(VSD_THRESHOLDS):
                vsd_hits[a, b] += _matches(errors["vsd"][..., a], th)
        for b, th in enumerate(MSSD_THRESHOLDS):
            mssd_hits[b] += _matches(errors["mssd"], th)
        for b, th in enumerate(MSPD_THRESHOLDS):
            mspd_hits[b] += _matches(errors["mspd"], th)
    vsd_hits, mssd_hits, mspd_hits = (dist.sum(h) for h in (vsd_hits, mssd_hits, mspd_hits))
    recalls = {
        "AR_VSD": float(vsd_hits.mean()) / num_targets,
        "AR_MSSD": float(mssd_hits.mean()) / num_targets,
        "AR_MSPD": float(mspd_hits.mean()) / num_targets,
    }
    return {**recalls, "AR": sum(recalls.values()) / 3.0, "num_targets": num_targets, "num_estimates": len(sub.score)}
