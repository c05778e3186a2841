"""The multi-pose loss: formula, edge cases, symmetry without labels, gradients."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from multipose.config import LossParameters, default_config, load_config, loss_parameters
from multipose.core.geometry import (
    euler_views,
    matrix_to_rotation_6d,
    random_rotations,
    rotation_6d_to_matrix,
    rotation_about_axis,
)
from multipose.core.losses import depth_term, diversity_term, multi_pose_loss
from multipose.core.mesh import load_mesh, simplify_mesh
from multipose.core.render import LossView, MeshRenderer
from multipose.experiment.factories import loss_from_config

REPO_ROOT = Path(__file__).resolve().parents[1]
PARAMS = LossParameters(depth_max=30.0, pose_max=40.0, gamma=0.25)


def _view(name: str, faces: int = 600, size: int = 48) -> LossView:
    mesh = simplify_mesh(load_mesh(REPO_ROOT / "data" / "cad-files" / name), faces)
    return LossView(MeshRenderer(mesh), t=(0.0, 0.0, 140.0), fov_deg=60.0, image_size=size)


@pytest.fixture(scope="module")
def twofold() -> LossView:
    return _view("tless_like_2fold.ply")


@pytest.fixture(scope="module")
def revolution() -> LossView:
    return _view("tless_like_revolution.ply", faces=3360)  # full mesh: exact rotational symmetry


def test_depth_term_by_hand():
    gt = torch.tensor([[0.0, 100.0], [100.0, 0.0]])
    pred = torch.tensor([[0.0, 110.0], [0.0, 0.0]])
    # union = 2 pixels: errors min(10, 30)/30 and min(100, 30)/30
    assert depth_term(gt, pred, 30.0).item() == pytest.approx((10 / 30 + 1.0) / 2)
    empty = torch.zeros(2, 2)
    value = depth_term(empty, empty.clone().requires_grad_(True), 30.0)
    assert value.item() == 0.0 and torch.isfinite(value)


def test_depth_term_union_and_image_normalisations_by_hand():
    # a 1x3 image: the object in pixel 0 (both renders), pixel 1 (prediction only), pixel 2 background in both
    gt = torch.tensor([[100.0, 0.0, 0.0]])
    pred = torch.tensor([[110.0, 50.0, 0.0]])
    errors = 10 / 30 + 1.0  # min(10, 30)/30 and min(50, 30)/30; pixel 2 contributes 0 either way
    assert depth_term(gt, pred, 30.0, "union").item() == pytest.approx(errors / 2)  # 2 pixels in the union
    assert depth_term(gt, pred, 30.0, "image").item() == pytest.approx(errors / 3)  # all 3 pixels
    empty = torch.zeros(1, 3)
    assert depth_term(empty, empty, 30.0, "image").item() == 0.0
    with pytest.raises(ValueError, match="unknown depth normalization"):
        depth_term(gt, pred, 30.0, "pixels")


def test_image_normalisation_scales_the_depth_term_by_the_unions_share(twofold):
    torch.manual_seed(4)
    R_gt, R_hyp = random_rotations(3), random_rotations(6).reshape(3, 2, 3, 3)
    conf = torch.full((3, 2), 0.5)
    union = multi_pose_loss(twofold, R_gt, R_hyp, conf, PARAMS)
    image = multi_pose_loss(twofold, R_gt, R_hyp, conf, LossParameters(30.0, 40.0, 0.25, "image"))
    gt = twofold(R_gt).depth[:, None]
    share = ((gt > 0) | (union.rendered[:, :, 0] > 0)).float().mean(dim=(-1, -2))  # (B, K)
    torch.testing.assert_close(image.depth, union.depth * share)
    torch.testing.assert_close(image.diversity, union.diversity)  # the diversity term is unchanged


def test_depth_normalization_comes_from_the_config():
    assert loss_from_config(default_config(), torch.device("cpu")).params.depth_normalization == "union"
    cfg = load_config(REPO_ROOT / "experiment_template.cfg", ["Loss_parameters.DEPTH_NORMALIZATION=image"])
    assert loss_from_config(cfg, torch.device("cpu")).params.depth_normalization == "image"


def test_diversity_term_is_1_for_identical_and_0_beyond_pose_max():
    R = rotation_about_axis([0.3, -0.2, 0.9], torch.tensor([0.0, 0.0, 20.0, 40.0, 75.0]))
    same = torch.stack([R[0], R[1]])[None]
    assert diversity_term(same, 40.0).item() == pytest.approx(1.0)
    assert diversity_term(torch.stack([R[0], R[2]])[None], 40.0).item() == pytest.approx(0.5, abs=1e-4)
    assert diversity_term(torch.stack([R[0], R[3]])[None], 40.0).item() == pytest.approx(0.0, abs=1e-4)
    assert diversity_term(torch.stack([R[0], R[4]])[None], 40.0).item() == 0.0
    # mean over the 3 pairs of 3 hypotheses: (1 + 0 + 0) / 3
    assert diversity_term(torch.stack([R[0], R[1], R[4]])[None], 40.0).item() == pytest.approx(1 / 3, abs=1e-4)
    assert diversity_term(R[None, :1], 40.0).item() == 0.0


def test_loss_is_zero_for_the_ground_truth_with_one_hypothesis(twofold):
    R = random_rotations(3, generator=torch.Generator().manual_seed(0))
    terms = multi_pose_loss(twofold, R, R[:, None], torch.ones(3, 1), PARAMS)
    assert torch.equal(terms.per_sample, torch.zeros(3))
    assert terms.loss.item() == 0.0


def test_loss_combines_confidence_gamma_and_diversity_as_defined(twofold):
    gen = torch.Generator().manual_seed(1)
    R_gt = random_rotations(2, generator=gen)
    R_hyp = random_rotations(6, generator=gen).reshape(2, 3, 3, 3)
    conf = torch.softmax(torch.randn(2, 3, generator=gen), dim=1)
    terms = multi_pose_loss(twofold, R_gt, R_hyp, conf, PARAMS)
    gt = twofold(R_gt).depth
    l = torch.stack([depth_term(gt, twofold(R_hyp[:, k]).depth, 30.0) for k in range(3)], dim=1)
    torch.testing.assert_close(terms.depth, l)
    expected = ((conf * l + 0.25 * l) / 2).sum(1) + diversity_term(R_hyp, 40.0)
    torch.testing.assert_close(terms.per_sample, expected)
    torch.testing.assert_close(terms.loss, expected.mean())
    assert (terms.depth > 0.05).all()  # random poses really differ


@pytest.mark.outcome
def test_symmetric_poses_get_zero_loss_without_labels(twofold, revolution):
    R = random_rotations(4, generator=torch.Generator().manual_seed(2))
    ones = torch.ones(4, 1)
    half_turn = rotation_about_axis([0, 0, 1], 180.0)
    quarter_turn = rotation_about_axis([0, 0, 1], 90.0)
    # the model's symmetry is about its own z axis: R_sym = R @ Rz
    sym = multi_pose_loss(twofold, R, (R @ half_turn)[:, None], ones, PARAMS).depth
    off = multi_pose_loss(twofold, R, (R @ quarter_turn)[:, None], ones, PARAMS).depth
    assert sym.max() < 0.005 and off.min() > 0.02
    any_angle = rotation_about_axis([0, 0, 1], 37.0)
    rev = multi_pose_loss(revolution, R, (R @ any_angle)[:, None], ones, PARAMS).depth
    tilted = multi_pose_loss(revolution, R, (R @ rotation_about_axis([1, 0, 0], 37.0))[:, None], ones, PARAMS).depth
    assert rev.max() < 0.005 and tilted.min() > 0.02


def test_viewpoints_average_the_depth_term(twofold):
    gen = torch.Generator().manual_seed(3)
    R_gt, R_hyp = random_rotations(2, generator=gen), random_rotations(2, generator=gen)[:, None]
    views = euler_views([[0, 0, 0], [90, 0, 0]])
    both = multi_pose_loss(twofold, R_gt, R_hyp, torch.ones(2, 1), PARAMS, viewpoints=views).depth
    single = [
        multi_pose_loss(twofold, v @ R_gt, (v @ R_hyp[:, 0])[:, None], torch.ones(2, 1), PARAMS).depth for v in views
    ]
    torch.testing.assert_close(both, (single[0] + single[1]) / 2)
    assert not torch.allclose(single[0], single[1])


@pytest.mark.outcome
def test_gradients_reach_hypotheses_and_confidences_and_descend(twofold, record_property):
    """A few Adam steps on the 6D parameters of one hypothesis, from 25 degrees off, cut the loss."""
    R_gt = random_rotations(2, generator=torch.Generator().manual_seed(4))
    start = rotation_about_axis([1.0, 1.0, 0.0], 25.0) @ R_gt
    six = matrix_to_rotation_6d(start).clone().requires_grad_(True)
    logits = torch.zeros(2, 1, requires_grad=True)
    terms = multi_pose_loss(twofold, R_gt, rotation_6d_to_matrix(six)[:, None], torch.softmax(logits, 1), PARAMS)
    terms.loss.backward()
    assert torch.isfinite(six.grad).all() and six.grad.abs().sum() > 0
    first = terms.loss.item()
    optimizer = torch.optim.Adam([six], lr=0.02)
    for _ in range(30):
        optimizer.zero_grad()
        loss = multi_pose_loss(twofold, R_gt, rotation_6d_to_matrix(six)[:, None], torch.ones(2, 1), PARAMS).loss
        loss.backward()
        optimizer.step()
    record_property("last/first loss (< 0.5)", round(loss.item() / first, 3))
    assert loss.item() < 0.5 * first


def test_loss_from_config_uses_its_parameters_and_viewpoints(tmp_path):
    cfg = load_config(
        REPO_ROOT / "experiment_template.cfg",
        [f"Dataset.CACHE_DIR={tmp_path}", "Rendering.IMAGE_SIZE=32", "Rendering.LOSS_VIEWPOINTS=[[0,0,0],[0,90,0]]",
         "Training.DEVICE=cpu"],
    )
    loss = loss_from_config(cfg, torch.device("cpu"))
    assert loss.params == LossParameters(depth_max=30.0, pose_max=40.0, gamma=0.01)  # the template's GAMMA
    unset = load_config(REPO_ROOT / "experiment_template.cfg", ["Loss_parameters.GAMMA="])
    assert loss_parameters(unset).gamma == 0.25  # empty GAMMA: 1/K, K = 4
    assert loss.viewpoints.shape == (2, 3, 3) and loss.view.image_size == 32
    R = random_rotations(2, generator=torch.Generator().manual_seed(5))
    depth_gt = loss.render_gt(R)
    assert depth_gt.shape == (2, 2, 32, 32)
    a = loss(R, R[:, None].expand(2, 4, 3, 3), torch.full((2, 4), 0.25))
    b = loss(R, R[:, None].expand(2, 4, 3, 3), torch.full((2, 4), 0.25), depth_gt=depth_gt)
    assert a.depth.abs().max() == 0 and torch.allclose(a.diversity, torch.ones(2))  # identical hypotheses
    torch.testing.assert_close(a.per_sample, b.per_sample)
    assert default_config().Training.LOSS == "vsd-union"


def test_bad_shapes_are_rejected(twofold):
    R = torch.eye(3)[None]
    with pytest.raises(ValueError, match="expected R_gt"):
        multi_pose_loss(twofold, R, R, torch.ones(1, 1), PARAMS)


def test_anchor_targets_put_their_mass_on_anchors_that_render_like_the_ground_truth(twofold):
    """No symmetry labels: for the 2-fold part, a ground truth at an anchor gives that anchor and the
    anchor half a turn about the part's axis (same depth) the top two targets, nearly equal."""
    from multipose.core.losses import AnchorTargets

    half_turn = rotation_about_axis([0, 0, 1], 180.0)
    base = random_rotations(6, generator=torch.Generator().manual_seed(3))
    anchors = torch.cat([base, base[:2] @ half_turn])  # anchors 6 and 7 are 0 and 1 turned by the symmetry
    targets = AnchorTargets(twofold, anchors, PARAMS, temperature=0.02, candidates=4)
    index, prob, nearest = targets(base[:2])
    assert index.shape == prob.shape == (2, 4) and nearest.shape == (2,)
    torch.testing.assert_close(prob.sum(dim=1), torch.ones(2))
    assert nearest.max() < 0.005
    order = prob.argsort(dim=1, descending=True)
    top_two = [sorted(index[b, order[b, :2]].tolist()) for b in range(2)]
    assert top_two == [[0, 6], [1, 7]]
    assert (prob.gather(1, order[:, :2]).sum(dim=1) > 0.95).all()
    assert (prob.gather(1, order[:, :1]) < 0.6).all()  # the two symmetric anchors share it
    with pytest.raises(ValueError, match="candidates"):
        AnchorTargets(twofold, anchors, PARAMS, temperature=0.02, candidates=9)


def test_population_loss_is_the_soft_target_cross_entropy():
    from multipose.core.losses import population_loss

    logits = torch.randn(3, 10)
    index = torch.tensor([[1, 4], [0, 9], [2, 3]])
    prob = torch.tensor([[0.5, 0.5], [1.0, 0.0], [0.2, 0.8]])
    dense = torch.zeros(3, 10).scatter_(1, index, prob)
    expected = torch.nn.functional.cross_entropy(logits, dense, reduction="none")
    torch.testing.assert_close(population_loss(logits, index, prob), expected)


def test_the_loss_of_several_objects_is_each_objects_own_loss_on_its_samples():
    """One view of three objects renders a mixed batch in one call: every sample's loss terms equal those of
    the single-object view of its object (at that object's translation), to rendering precision."""
    from multipose.core.losses import MultiPoseLoss
    from multipose.core.render import LossView, MeshRenderer

    meshes = [load_mesh(REPO_ROOT / "data/cad-files" / name) for name in
              ("tless_like_2fold.ply", "tless_like_revolution.ply", "tless_like_2fold.ply")]
    meshes[2] = type(meshes[2])(meshes[2].vertices * torch.tensor([1.0, 0.6, 1.3]), meshes[2].faces, "stretched")
    ts = ((0.0, 0.0, 600.0), (0.0, 0.0, 500.0), (10.0, -5.0, 650.0))
    joined = MultiPoseLoss(LossView(MeshRenderer(meshes), ts, 15.0, 32), PARAMS)
    singles = [MultiPoseLoss(LossView(MeshRenderer(m), t, 15.0, 32), PARAMS) for m, t in zip(meshes, ts, strict=True)]
    g = torch.Generator().manual_seed(4)
    R_gt, R_hyp = random_rotations(6, generator=g), random_rotations(12, generator=g).reshape(6, 2, 3, 3)
    conf = torch.softmax(torch.randn(6, 2, generator=g), dim=1)
    objects = torch.tensor([0, 1, 2, 2, 1, 0])
    mixed = joined(R_gt, R_hyp, conf, objects=objects)
    for b, n in enumerate(objects.tolist()):
        alone = singles[n](R_gt[b:b + 1], R_hyp[b:b + 1], conf[b:b + 1])
        torch.testing.assert_close(mixed.per_sample[b:b + 1], alone.per_sample, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(mixed.rendered[b:b + 1], alone.rendered, atol=1e-3, rtol=1e-4)
    with pytest.raises(ValueError, match="needs objects"):
        joined(R_gt, R_hyp, conf)


def test_the_classification_term_on_logits_and_the_originals_on_softmax_outputs():
    from multipose.core.losses import classification_loss

    logits = torch.tensor([[8.0, -8.0, -8.0, -8.0, -8.0]])
    right = torch.tensor([0])
    assert float(classification_loss(logits, right)) < 1e-5  # a sure, right classifier costs nothing
    floor = math.log(1 + 4 / math.e)  # the original's double softmax cannot go below this for 5 objects
    assert float(classification_loss(logits, right, "original")) == pytest.approx(floor, abs=1e-4)
