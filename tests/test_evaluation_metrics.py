"""BOP pose-error metrics: VSD on rendered depth (ground truth, symmetries, wrong poses), its edge
cases, rotation errors with symmetries, recall."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torch.testing import assert_close

from multipose.core.geometry import random_rotations, rotation_about_axis
from multipose.core.mesh import load_mesh
from multipose.data.views import ViewRenderer, ViewSettings
from multipose.evaluation.metrics import (
    depth_to_distance,
    re,
    re_sym,
    recall,
    recall_curve,
    symmetry_transformations,
    te,
    vsd,
)

REPO_ROOT = Path(__file__).resolve().parents[1]
REVOLUTION = REPO_ROOT / "data" / "cad-files" / "tless_like_revolution.ply"


@pytest.fixture(scope="module")
def revolution_views():
    """A renderer of the body of revolution (symmetric about the model z axis) and 4 crop cameras."""
    renderer = ViewRenderer(load_mesh(REVOLUTION), ViewSettings(size=40, max_rel_offset=0.0))
    R = random_rotations(4, generator=torch.Generator().manual_seed(3))
    t, _, K = renderer.windows(R, torch.zeros(4, 2))
    return renderer.renderer, R, t, K


def _far_camera(n: int, size: int) -> torch.Tensor:
    """Intrinsics with a huge focal length: distance == depth to 1e-9, so hand-made maps are exact."""
    K = torch.tensor([[1e6, 0.0, (size - 1) / 2], [0.0, 1e6, (size - 1) / 2], [0.0, 0.0, 1.0]])
    return K.expand(n, 3, 3).clone()


def test_vsd_on_rendered_depth_gt_symmetric_and_wrong_poses(revolution_views, device):
    renderer, R, t, K = (x.to(device) for x in revolution_views)  # (nn.Module.to moves the shared renderer)
    depth = lambda rot: renderer(rot, t, K, 40).depth  # noqa: E731
    gt = depth(R)
    assert (gt > 0).flatten(1).sum(1).min() > 100  # the object fills the crop
    assert_close(vsd(gt, gt, gt, K), torch.zeros(4, 1, device=device))
    # the body of revolution looks the same after any turn about its model z axis: R @ Rz(a)
    on_grid = vsd(depth(R @ rotation_about_axis([0, 0, 1], 45.0).to(device)), gt, gt, K)  # 45 deg = 6 of 48 sections
    assert on_grid.max() < 1e-3, on_grid
    off_grid = vsd(depth(R @ rotation_about_axis([0, 0, 1], 100.0).to(device)), gt, gt, K)
    assert off_grid.max() < 0.02, off_grid  # only facet edges differ
    tipped = vsd(depth(R @ rotation_about_axis([1, 0, 0], 90.0).to(device)), gt, gt, K)
    assert tipped.min() > 0.3, tipped
    # several taus at once, one column each; a looser tau forgives more
    both = vsd(depth(R @ rotation_about_axis([1, 0, 0], 90.0).to(device)), gt, gt, K, taus=[20.0, 1000.0])
    assert both.shape == (4, 2) and bool((both[:, 1] <= both[:, 0]).all())
    assert_close(both[:, :1], tipped)


def test_vsd_hand_made_values_step_and_tlinear():
    K = _far_camera(1, 2)
    gt = torch.full((1, 2, 2), 500.0)
    est = torch.tensor([[[500.0, 510.0], [530.0, 0.0]]])  # 0, 10, 30 mm off, one pixel missing
    # visible: gt everywhere (test = gt); est where rendered (inside the gt's visible mask) -> union 4, inter 3
    assert_close(vsd(est, gt, gt, K, delta=15.0, taus=20.0), torch.tensor([[(1.0 + 1.0) / 4]]))
    assert_close(vsd(est, gt, gt, K, delta=15.0, taus=20.0, cost_type="tlinear"),
                 torch.tensor([[(0.0 + 0.5 + 1.0 + 1.0) / 4]]))
    # normalised by a 100 mm diameter: tau 0.2 = 20 mm
    assert_close(vsd(est, gt, gt, K, taus=0.2, normalized_by_diameter=True, diameter=100.0),
                 torch.tensor([[0.5]]))


def test_vsd_empty_masks_and_occlusion_follow_bop():
    K = _far_camera(1, 3)
    zero = torch.zeros(1, 3, 3)
    obj = torch.zeros(1, 3, 3)
    obj[0, 1, 1] = 600.0
    # nothing visible in either pose: bop_toolkit defines the error as 1
    assert_close(vsd(zero, zero, zero, K), torch.ones(1, 1))
    # the estimate renders nothing while the ground truth is visible: every union pixel costs 1
    assert_close(vsd(zero, obj, obj, K), torch.ones(1, 1))
    # the ground truth is hidden behind an occluder 100 mm in front (test depth 500 < 600 - delta):
    # its visible mask is empty, and so is the estimate's -> error 1
    occluder = torch.full((1, 3, 3), 500.0)
    assert_close(vsd(obj, obj, occluder, K), torch.ones(1, 1))
    # missing test depth (0) counts as visible in BOP'19 mode, as not visible in BOP'18
    assert_close(vsd(obj, obj, zero, K), torch.zeros(1, 1))
    assert_close(vsd(obj, obj, zero, K, visib_mode="bop18"), torch.ones(1, 1))


def test_vsd_rejects_bad_arguments():
    d = torch.zeros(1, 2, 2)
    K = _far_camera(1, 2)
    with pytest.raises(ValueError, match="cost_type"):
        vsd(d, d, d, K, cost_type="linear")
    with pytest.raises(ValueError, match="visib_mode"):
        vsd(d, d, d, K, visib_mode="bop20")
    with pytest.raises(ValueError, match="taus"):
        vsd(d, d, d, K, taus=[])
    with pytest.raises(ValueError, match="diameter"):
        vsd(d, d, d, K, normalized_by_diameter=True)
    with pytest.raises(ValueError, match="one shape"):
        vsd(d, torch.zeros(1, 3, 3), d, K)


def test_depth_to_distance_matches_the_3d_point_norm():
    K = torch.tensor([[[100.0, 0.0, 1.5], [0.0, 80.0, 0.5], [0.0, 0.0, 1.0]]])
    depth = torch.tensor([[[0.0, 200.0, 300.0, 400.0], [500.0, 600.0, 700.0, 800.0]]], dtype=torch.float64)
    dist = depth_to_distance(depth, K)
    v, u = 1, 3
    X, Y = (u - 1.5) / 100.0 * 800.0, (v - 0.5) / 80.0 * 800.0
    assert dist[0, v, u].item() == pytest.approx(math.sqrt(X * X + Y * Y + 800.0**2))
    assert dist[0, 0, 0].item() == 0.0


def test_rotation_and_translation_errors():
    R = random_rotations(5, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    turn = rotation_about_axis([0.0, 0.0, 1.0], torch.tensor([0.0, 10.0, 90.0, 180.0, 30.0])).double()
    expected = torch.tensor([0.0, 10.0, 90.0, 180.0, 30.0], dtype=torch.float64)
    assert_close(re(R @ turn, R), expected, atol=1e-3, rtol=0)
    # a 2-fold symmetry about z (BOP: a 4x4 row-major matrix): 180 deg becomes 0, 90 stays 90
    info = {"symmetries_discrete": [[-1, 0, 0, 0, 0, -1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1]]}
    syms, _ = symmetry_transformations(info)
    assert syms.shape == (2, 3, 3)
    assert_close(re_sym(R @ turn, R, syms), expected.remainder(180.0), atol=1e-3, rtol=0)
    assert_close(re_sym(R @ turn, R, None), re(R @ turn, R))
    assert_close(te(torch.tensor([[3.0, 4.0, 700.0]]), torch.tensor([[0.0, 0.0, 700.0]])), torch.tensor([5.0]))


def test_continuous_symmetries_are_sampled_as_bop_toolkit():
    info = {"symmetries_continuous": [{"axis": [0, 0, 1], "offset": [0, 0, 5]}],
            "symmetries_discrete": [[1, 0, 0, 0, 0, -1, 0, 0, 0, 0, -1, 0, 0, 0, 0, 1]]}
    R, t = symmetry_transformations(info, max_sym_disc_step=0.01)
    steps = math.ceil(math.pi / 0.01)
    assert R.shape == (2 * steps, 3, 3) and t.shape == (2 * steps, 3)
    assert_close(R @ R.transpose(1, 2), torch.eye(3, dtype=R.dtype).expand_as(R))
    # the first continuous step turns by 2 pi / steps about z; an offset on the axis moves nothing
    assert re(R[1], R[0]).item() == pytest.approx(360.0 / steps, abs=1e-6)
    assert_close(t[:steps], torch.zeros(steps, 3, dtype=t.dtype))
    # any turn about z is within half a step of a sample: re_sym of a revolution-symmetric error ~ 0
    Rz = rotation_about_axis([0, 0, 1], 123.4)
    assert re_sym(Rz, torch.eye(3), R.float()).item() < 360.0 / steps
    assert symmetry_transformations({})[0].shape == (1, 3, 3)
    with pytest.raises(ValueError, match="16 finite numbers"):
        symmetry_transformations({"symmetries_discrete": [[1, 0, 0]]})


def test_recall_counts_errors_strictly_below_the_threshold():
    errors = torch.tensor([0.0, 0.1, 0.3, 0.5, 1.0])
    assert recall(errors, 0.3) == pytest.approx(0.4)
    curve = recall_curve(errors, torch.tensor([0.0, 0.3, 0.31, 2.0]))
    assert curve.tolist() == pytest.approx([0.0, 0.4, 0.6, 1.0])
    with pytest.raises(ValueError, match="empty"):
        recall(torch.zeros(0), 0.3)


@pytest.mark.slow
def test_the_metrics_import_alone_loads_no_training_rendering_or_plotting():
    """``from multipose.evaluation import metrics`` stays light: the package re-exports lazily."""
    import subprocess
    import sys

    code = ("import sys; from multipose.evaluation import metrics, vsd; "
            "print(sorted(m for m in sys.modules if m.startswith(('matplotlib', 'multipose.training', "
            "'multipose.core.render', 'pytorch3d.renderer', 'multipose.experiment.evaluation'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[1])
    assert out.stdout.strip() == "[]", out.stdout


def test_mcnemar_exact_counts_the_discordant_instances_and_tests_them_at_one_half():
    from multipose.evaluation.metrics import mcnemar_exact

    a = torch.tensor([True] * 10 + [False] * 5 + [True] * 3)
    b = torch.tensor([False] * 10 + [False] * 5 + [True] * 3)
    assert mcnemar_exact(a, b) == {"only_a": 10, "only_b": 0, "p": pytest.approx(2 * 0.5**10)}
    balanced = mcnemar_exact(torch.tensor([True, False, True, False]), torch.tensor([False, True, False, True]))
    assert balanced["only_a"] == balanced["only_b"] == 2 and balanced["p"] == pytest.approx(1.0)
    assert mcnemar_exact(a, a)["p"] == 1.0
    with pytest.raises(ValueError, match="different instances"):
        mcnemar_exact(a, b[:-1])
