"""Scoring an evaluation one batch at a time: inference, the poses every method estimates, their
depth renders and errors, collected in typed :class:`Scores` by a :class:`ScoreAccumulator`.

Methods compared (every one gets the same VSD, rotation errors and, for BOP, translation error):

- ``head``: the most confident hypothesis (what the model would output);
- ``best-of-K``: the hypothesis with the lowest VSD error (an oracle: how good the set of hypotheses is);
- ``random``: a rotation uniform on SO(3) (seeded), the floor;
- ``codebook``: the AAE's nearest neighbour in a :class:`~multipose.models.Codebook`, when given;
- ``stored``: rotations stored with the test set (a pickle's ``Rs_predicted``), when it has them.

For a test set with boxes (BOP) the translation is estimated from the box the AAE way
(:func:`~multipose.inference.box_pose.estimate_translation`) and the rotation corrected for it; otherwise the
ground-truth translation is used. Rotation errors are plain (:func:`~multipose.evaluation.metrics.re`) and
symmetry-aware (:func:`~multipose.evaluation.metrics.re_sym`, equal to plain when the symmetries are unknown).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch

from multipose.core.geometry import random_rotations
from multipose.core.mesh import Mesh
from multipose.core.render import MeshRenderer
from multipose.data.sampling import make_generator
from multipose.data.views import ViewSettings
from multipose.evaluation import metrics as pose_error  # pose_error.re: the name re stays the standard library's
from multipose.evaluation.testsets import TestSet
from multipose.inference import box_pose
from multipose.infra.timing import timed
from multipose.models import Codebook, CodebookMatch, Encoder, HeadOutput, PoseHead
from multipose.models.head import codebook_code, head_input

__all__ = ["BatchScorer", "Estimates", "MethodErrors", "ScoreAccumulator", "Scores"]

#: Most depth maps rendered in one call (memory of the rasterizer's fragments).
_RENDER_CHUNK = 64


@dataclass(frozen=True)
class MethodErrors:
    """One method's errors on ``n`` instances, each ``(n,)``: VSD, rotation error and symmetry-aware
    rotation error (degrees), translation error (mm)."""

    vsd: torch.Tensor
    re: torch.Tensor
    re_sym: torch.Tensor
    te: torch.Tensor


@dataclass(frozen=True)
class Estimates:
    """The poses a results file holds for one method: ``k`` per instance, ``score (n, k)``,
    ``R (n, k, 3, 3)``, ``t (n, k, 3)`` (mm, in the scene for crops of scene instances)."""

    score: torch.Tensor
    R: torch.Tensor
    t: torch.Tensor


@dataclass(frozen=True)
class Scores:
    """What an evaluation measured on ``n`` instances (CPU tensors).

    Attributes:
        errors: per method (``head``, ``best-of-K``, ``random``[, ``codebook``][, ``stored``]).
        top_confidence: ``(n,)`` the confidence of the head's top hypothesis.
        hypothesis_vsd: ``(n, K)`` the VSD error of every hypothesis.
        estimates: the results files' poses: ``head`` (K hypotheses scored by confidence), ``codebook``
            (scored by cosine similarity) and ``stored`` (score -1), as present.
        example_index: ``(e,)`` test-set indices of the example rows; example_depths: ``(e, V, V)`` depth
            maps per column (``GT depth``, ``top hypothesis``[, ``codebook``]).
        seconds: summed inference time of ``encoder``, ``head`` and ``codebook`` (lookup).
    """

    errors: dict[str, MethodErrors]
    top_confidence: torch.Tensor
    hypothesis_vsd: torch.Tensor
    estimates: dict[str, Estimates]
    example_index: torch.Tensor
    example_depths: dict[str, torch.Tensor]
    seconds: dict[str, float]

    def __len__(self) -> int:
        return int(self.top_confidence.shape[0])

    def error(self, name: str) -> dict[str, torch.Tensor]:
        """One error (``vsd``, ``re``, ``re_sym``, ``te``) of every method: ``{method: (n,)}``."""
        return {m: getattr(e, name) for m, e in self.errors.items()}


def _cat(parts: Sequence[Any]) -> Any:
    """Concatenate batches field by field: tensors along dim 0, dicts and dataclasses recursively, numbers summed."""
    first = parts[0]
    if isinstance(first, torch.Tensor):
        return torch.cat(list(parts))
    if isinstance(first, dict):
        return {k: _cat([p[k] for p in parts]) for k in first}
    if dataclasses.is_dataclass(first) and not isinstance(first, type):  # an instance
        return type(first)(**{f.name: _cat([getattr(p, f.name) for p in parts]) for f in dataclasses.fields(first)})
    return sum(parts)


class ScoreAccumulator:
    """The scores of an evaluation's batches: :meth:`add` one batch's, :meth:`summary` for all."""

    def __init__(self) -> None:
        self._parts: list[Scores] = []

    def add(self, scores: Scores) -> None:
        self._parts.append(scores)

    def __bool__(self) -> bool:
        """Whether any batch was added."""
        return bool(self._parts)

    def summary(self) -> Scores:
        if not self._parts:
            raise ValueError("no batch was scored")
        return _cat(self._parts)


def _render_depth(renderer: MeshRenderer, R: torch.Tensor, t: torch.Tensor, K: torch.Tensor, size: int) -> torch.Tensor:
    """Depth maps ``(n, size, size)`` of poses ``R (n, 3, 3), t (n, 3)`` with ``K (n, 3, 3)``, in chunks."""
    parts = [
        renderer(R[i : i + _RENDER_CHUNK], t[i : i + _RENDER_CHUNK], K[i : i + _RENDER_CHUNK], size).depth
        for i in range(0, R.shape[0], _RENDER_CHUNK)
    ]
    return torch.cat(parts)


class BatchScorer:
    """Scores batches of one test set: ``scorer(idx)`` -> :class:`Scores` of the instances ``idx (B,)``.

    Holds what every batch shares: the models on ``device``, the VSD renderer of ``vsd_mesh`` (the data mesh,
    or a decimated copy), the crop settings ``view`` and the data mesh's vertices (translations from boxes), the
    VSD's ``delta`` and ``tau`` (mm), the random rotations seeded by ``seed`` and the test set's symmetries.
    ``examples``: test-set indices whose depth maps are kept for the examples figure.
    """

    def __init__(
        self,
        encoder: Encoder,
        head: PoseHead,
        test_set: TestSet,
        data_mesh: Mesh,
        vsd_mesh: Mesh,
        view: ViewSettings,
        vsd_delta: float,
        vsd_tau: float,
        seed: int,
        device: torch.device | str = "cpu",
        codebook: Codebook | None = None,
        examples: Collection[int] = (),
        codebook_encoder: Encoder | None = None,
    ) -> None:
        self.device = torch.device(device)
        self.encoder = encoder.to(self.device).eval()
        # the encoder the codebook was built with (the same convolutions; its dense layer makes the lookup's code)
        self.codebook_encoder = (codebook_encoder or encoder).to(self.device).eval()
        self.head = head.to(self.device).eval()
        self.codebook = codebook.to(self.device) if codebook is not None else None
        self.test_set = test_set
        self.num_hypotheses = head.config.num_hypotheses
        self.vsd_mesh = vsd_mesh
        self.renderer = MeshRenderer(self.vsd_mesh).to(self.device)
        self.vertices = data_mesh.vertices.to(self.device)
        self.settings = view
        self.symmetries = test_set.symmetries.to(self.device) if test_set.symmetries is not None else None
        self.random_R = random_rotations(
            len(test_set), generator=make_generator(seed, "evaluation-random")
        )
        self.vsd_delta, self.vsd_tau = vsd_delta, vsd_tau
        self.examples = set(examples)
        self.methods = ["head", "best-of-K", "random"] + (["codebook"] if codebook is not None else []) + (
            ["stored"] if test_set.R_stored is not None else [])

    def warm_up(self, batch_size: int) -> None:
        """Run the models once (first calls allocate and pick kernels), so timings measure steady state."""
        with torch.no_grad():
            x = head_input(self.encoder, self.head, self.test_set.images[:batch_size].to(self.device))
            self.head(x)
            if self.codebook is not None:
                self._lookup(x)

    @torch.no_grad()
    def __call__(self, idx: torch.Tensor) -> Scores:
        ts, K_hyp = self.test_set, self.num_hypotheses
        out, R_view, similarity, seconds = self._infer(idx)
        R_est, t_est = self._poses(idx, R_view)
        R_out, t_out = self._result_poses(idx, R_view, R_est, t_est)
        depth_gt, depth_est, vsd = self._vsd(idx, R_est, t_est)
        R_gt, t_gt = ts.R[idx].to(self.device)[:, None], ts.t[idx].to(self.device)[:, None]
        every = MethodErrors(vsd=vsd, re=pose_error.re(R_est, R_gt), te=pose_error.te(t_est, t_gt),
                             re_sym=pose_error.re_sym(R_est, R_gt, self.symmetries))  # each (B, M)
        top = out.confidence.argmax(dim=1)
        rows = torch.arange(len(idx), device=self.device)
        columns = {"head": top, "best-of-K": vsd[:, :K_hyp].argmin(dim=1), "random": torch.full_like(top, K_hyp)}
        estimates = {"head": Estimates(out.confidence, R_out[:, :K_hyp], t_out[:, :K_hyp])}
        depths = {"GT depth": depth_gt, "top hypothesis": depth_est[rows, top]}
        if self.codebook is not None:
            columns["codebook"] = torch.full_like(top, K_hyp + 1)
            cb = slice(K_hyp + 1, K_hyp + 2)
            assert similarity is not None  # _infer returns it with a codebook
            estimates["codebook"] = Estimates(similarity, R_out[:, cb], t_out[:, cb])
            depths["codebook"] = depth_est[:, K_hyp + 1]
        if ts.R_stored is not None:  # the original's eval-pickle.py exported these with score -1
            columns["stored"] = torch.full_like(top, R_view.shape[1] - 1)
            estimates["stored"] = Estimates(torch.full((len(idx), 1), -1.0), R_out[:, -1:], t_out[:, -1:])
        keep = torch.tensor([i in self.examples for i in idx.tolist()], dtype=torch.bool)
        return _cpu(Scores(
            errors={m: MethodErrors(**{f.name: getattr(every, f.name)[rows, col] for f in dataclasses.fields(every)})
                    for m, col in columns.items()},
            top_confidence=out.confidence[rows, top],
            hypothesis_vsd=vsd[:, :K_hyp],
            estimates=estimates,
            example_index=idx[keep],
            example_depths={name: d[keep.to(d.device)] for name, d in depths.items()},
            seconds=seconds,
        ))

    def _infer(self, idx: torch.Tensor) -> tuple[HeadOutput, torch.Tensor, torch.Tensor | None, dict[str, float]]:
        """The head's output, every method's rotation ``(B, M, 3, 3)`` (K hypotheses, random[, codebook][,
        stored]), the codebook's similarity ``(B, 1)`` and the inference seconds."""
        seconds = {"encoder": 0.0, "head": 0.0, "codebook": 0.0}
        x, seconds["encoder"] = timed(partial(head_input, self.encoder, self.head,
                                              self.test_set.images[idx].to(self.device)), self.device)
        out, seconds["head"] = timed(partial(self.head, x), self.device)
        views = [out.R, self.random_R[idx].to(self.device)[:, None]]  # (B, K, 3, 3), (B, 1, 3, 3)
        similarity = None
        if self.codebook is not None:
            match, seconds["codebook"] = timed(partial(self._lookup, x), self.device)
            views.append(match.rotations)
            similarity = match.similarity
        if self.test_set.R_stored is not None:
            views.append(self.test_set.R_stored[idx].to(self.device)[:, None])
        return out, torch.cat(views, dim=1), similarity, seconds

    def _lookup(self, x: torch.Tensor) -> CodebookMatch:
        """The codebook's best entry for the head's input ``x`` (:func:`~multipose.models.head.head_input`):
        the code itself, or for a fine-tuned head's flat feature maps the codebook encoder's code of them."""
        assert self.codebook is not None
        return self.codebook.lookup(codebook_code(x, self.head, self.codebook_encoder))

    def _poses(self, idx: torch.Tensor, R_view: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The estimated poses ``R (B, M, 3, 3), t (B, M, 3)`` of rotations in the crop's view: with boxes,
        the translation from the box and the rotation corrected for it; else the ground-truth translation."""
        ts = self.test_set
        B, M = R_view.shape[:2]
        if ts.boxes is None:
            return R_view, ts.t[idx].to(self.device)[:, None].expand(B, M, 3)
        assert ts.K is not None  # TestSet: boxes and K go together
        return box_pose.poses_from_boxes(R_view, ts.boxes[idx].to(self.device), ts.K[idx].to(self.device),
                                    self.settings.K_tensor(self.device), self.settings.distance, self.vertices)

    def _result_poses(
        self, idx: torch.Tensor, R_view: torch.Tensor, R_est: torch.Tensor, t_est: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """What the results files hold: the estimates, or for crops of scene instances their scene pose, as
        the AAE corrects it."""
        if self.test_set.t_scene is None:
            return R_est, t_est
        B, M = R_view.shape[:2]
        t_out = self.test_set.t_scene[idx].to(self.device)[:, None].expand(B, M, 3)
        R_out = box_pose.correct_rotation(R_view.flatten(0, 1), t_out.flatten(0, 1)).reshape(B, M, 3, 3)
        return R_out, t_out

    def _vsd(
        self, idx: torch.Tensor, R_est: torch.Tensor, t_est: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Ground-truth depth ``(B, V, V)``, estimated depths ``(B, M, V, V)`` and VSD errors ``(B, M)``."""
        ts = self.test_set
        B, M = R_est.shape[:2]
        size = ts.vsd_size
        K_vsd = ts.K_vsd[idx].to(self.device)
        depth_gt = _render_depth(self.renderer, ts.R[idx].to(self.device), ts.t[idx].to(self.device), K_vsd, size)
        depth_est = _render_depth(self.renderer, R_est.flatten(0, 1), t_est.flatten(0, 1),
                                  K_vsd.repeat_interleave(M, 0), size).reshape(B, M, size, size)
        depth_est, depth_gt, depth_test = ts.vsd_depths(idx, depth_est, depth_gt)
        errors = pose_error.vsd(depth_est, depth_gt[:, None].expand_as(depth_est),
                                depth_test[:, None].expand_as(depth_est), K_vsd[:, None].expand(B, M, 3, 3),
                                self.vsd_delta, self.vsd_tau)[..., 0]
        return depth_gt, depth_est, errors


def _cpu(value: Any) -> Any:
    """``value`` with every tensor (in dicts and dataclasses too) moved to the CPU."""
    if isinstance(value, torch.Tensor):
        return value.cpu()
    if isinstance(value, dict):
        return {k: _cpu(v) for k, v in value.items()}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):  # an instance
        return type(value)(**{f.name: _cpu(getattr(value, f.name)) for f in dataclasses.fields(value)})
    return value
