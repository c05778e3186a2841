"""Training rotations: the base methods, rotation files, -reuse pools and hard-sample mining."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

import multipose.data.sampling as sampling_mod
from multipose.config import ViewSampling, load_config_text, view_sampling
from multipose.core.geometry import geodesic_angle_deg
from multipose.data.sampling import (
    METHODS,
    PoseSampler,
    base_rotations,
    derive_seed,
    sphere_rotations,
    sundermeyer_random,
    viewsphere_grid,
)
from multipose.experiment.factories import pose_sampler_from_config
from multipose.infra.errors import ConfigError, DataError


def _is_rotation(R: torch.Tensor) -> bool:
    eye = torch.eye(3).expand_as(R)
    return torch.allclose(R @ R.transpose(1, 2), eye, atol=1e-5) and torch.allclose(
        torch.linalg.det(R), torch.ones(R.shape[0]), atol=1e-5)


def test_sundermeyer_random_is_uniform_on_so3_and_seeded():
    R = sundermeyer_random(4000, torch.Generator().manual_seed(0))
    assert R.shape == (4000, 3, 3) and R.dtype == torch.float32 and _is_rotation(R)
    # uniform on SO(3): every column is uniform on the sphere (mean ~0) and the angle to the identity
    # has density (1 - cos a) / pi, mean pi/2 + 2/pi = 126.5 degrees
    assert R.mean(0).abs().max() < 0.05
    angle = geodesic_angle_deg(R, torch.eye(3).expand_as(R))
    assert abs(angle.mean().item() - 126.5) < 2.0
    assert torch.equal(R, sundermeyer_random(4000, torch.Generator().manual_seed(0)))
    assert not torch.equal(R, sundermeyer_random(4000, torch.Generator().manual_seed(1)))


def test_sphere_sampling_covers_the_sphere_with_inplane_within_90_degrees():
    R = sphere_rotations(3000, torch.Generator().manual_seed(1))
    assert _is_rotation(R)
    view_dir = R[:, 2, :]  # camera z axis in model coordinates: -p, uniform on the sphere
    assert view_dir.mean(0).abs().max() < 0.05
    assert ((view_dir[:, 2] > 0.9).float().mean() - 0.05).abs() < 0.02  # cap area fraction (1 - 0.9) / 2
    # before the roll the model's +z axis projects up in the image for a camera above the equator and
    # down for one below it (the original flipped its up vector there); a roll in [-90, 90] keeps it
    # within 90 degrees of that direction
    up_img = R[:, :2, 2]
    ok = up_img.norm(dim=1) > 0.2
    above = view_dir[:, 2] < 0  # the camera at p = -view_dir, above the equator
    sign = torch.where(above, 1.0, -1.0)  # +1: compare with image up (-y), -1: with image down (+y)
    angle = torch.rad2deg(torch.atan2(sign * up_img[:, 0], -sign * up_img[:, 1]))[ok]
    assert angle.abs().max() <= 90.0 + 1e-3 and angle.abs().max() > 80.0


def test_sphere_simple_flips_the_up_vector_below_the_equator_like_the_original():
    R = METHODS["sphere-simple"](500, torch.Generator().manual_seed(3))
    above = R[:, 2, 2] < 0  # the camera's z axis points down: the camera is above the equator
    assert 100 < above.sum() < 400
    # image y points down: the model's +z has a negative image y above the equator, positive below
    assert (R[above, 1, 2] < 0).all() and (R[~above, 1, 2] > 0).all()
    assert R[:, 0, 2].abs().max() < 1e-5  # no in-plane turn: the model's z axis stays vertical in the image


@pytest.mark.parametrize("method", sorted(METHODS))
def test_every_original_method_draws_seeded_rotations(method):
    R = base_rotations(ViewSampling(method), 64, torch.Generator().manual_seed(0))
    assert R.shape == (64, 3, 3) and R.dtype == torch.float32 and _is_rotation(R)
    assert torch.equal(R, base_rotations(ViewSampling(method), 64, torch.Generator().manual_seed(0)))
    assert not torch.equal(R, base_rotations(ViewSampling(method), 64, torch.Generator().manual_seed(1)))


def test_viewpoint_distributions_of_the_original_methods():
    g = torch.Generator().manual_seed(4)
    polar = {name: METHODS[name](4000, g)[:, 2, 2].abs() for name in ("sphere", "sphere-wolfram", "tless", "fixed")}
    # uniform viewpoints: P(|z| > 0.9) = 0.1; tless (polar angle uniform): 4 acos(0.9) / (2 pi) = 0.287
    assert abs((polar["sphere"] > 0.9).float().mean() - 0.1) < 0.02
    assert abs((polar["sphere-wolfram"] > 0.9).float().mean() - 0.1) < 0.02
    assert abs((polar["tless"] > 0.9).float().mean() - 0.287) < 0.03
    assert polar["fixed"].max() < 1e-4  # cameras on the equator
    for name in ("sundermeyer-random", "quat", "mixed"):  # uniform on SO(3): mean angle to I 126.5 degrees
        R = METHODS[name](4000, g)
        assert abs(geodesic_angle_deg(R, torch.eye(3).expand_as(R)).mean().item() - 126.5) < 2.5, name


def test_viewsphere_aug_is_the_grid_turned_by_one_rotation(monkeypatch):
    """With the random turn replaced by the identity, viewsphere-aug draws distinct grid rotations and
    viewsphere-aug-no-conv the grid rotations read as PyTorch3D camera rotations."""
    monkeypatch.setattr(sampling_mod, "random_rotations", lambda n, generator: torch.eye(3)[None].expand(n, 3, 3))
    grid36, grid18 = viewsphere_grid(600, 36), viewsphere_grid(600, 18)
    assert grid36.shape == (642 * 36, 3, 3) and grid18.shape == (642 * 18, 3, 3)
    R = METHODS["viewsphere-aug"](50, torch.Generator().manual_seed(0))
    distance = torch.cdist(R.reshape(50, 9), grid36.reshape(-1, 9), compute_mode="donot_use_mm_for_euclid_dist")
    assert distance.min(dim=1).values.max() < 1e-5
    assert len(set(distance.argmin(dim=1).tolist())) == 50
    R = METHODS["viewsphere-aug-no-conv"](50, torch.Generator().manual_seed(0))
    as_pytorch3d = (R * torch.tensor([-1.0, -1.0, 1.0])[:, None]).transpose(1, 2)  # undo diag(-1,-1,1) @ R^T
    assert torch.cdist(as_pytorch3d.reshape(50, 9), grid18.reshape(-1, 9),
                       compute_mode="donot_use_mm_for_euclid_dist").min(dim=1).values.max() < 1e-5


def test_inplane_turn_is_scipys_z_rotation():
    from scipy.spatial.transform import Rotation

    angles = torch.tensor([-90.0, -10.0, 45.0, 90.0])
    expected = Rotation.from_euler("z", angles.numpy()[:, None], degrees=True).as_matrix()
    torch.testing.assert_close(sampling_mod.rotation_about_axis([0.0, 0.0, 1.0], angles),
                               torch.from_numpy(expected).float(), atol=1e-6, rtol=0)


def test_the_originals_viewsphere_needs_a_file_it_did_not_distribute():
    with pytest.raises(ConfigError, match=r"VIEW_SAMPLING = 'viewsphere'.*data/view-sphere.p"):
        load_config_text("[Training]\nVIEW_SAMPLING: viewsphere\n")
    assert view_sampling(load_config_text("[Training]\nVIEW_SAMPLING: tless-simple-hard\n")) == ViewSampling(
        "tless-simple", hard=True)


def test_rotation_files_npy_and_original_pickle(tmp_path):
    """A .npy holds OpenCV rotations; the original's pickle sampling used its rotations as PyTorch3D
    camera rotations, R_p3d = R^T diag(-1, -1, 1), which are converted back."""
    R = sundermeyer_random(7, torch.Generator().manual_seed(2)).numpy()
    np.save(tmp_path / "r.npy", R)
    with open(tmp_path / "r.p", "wb") as f:
        pickle.dump({"Rs": list(R.astype(np.float64).transpose(0, 2, 1) @ np.diag([-1.0, -1.0, 1.0]))}, f, protocol=2)
    for name in ("r.npy", "r.p"):
        sampler = PoseSampler(ViewSampling(str(tmp_path / name)), torch.Generator().manual_seed(0))
        draw = sampler.sample(50)
        assert torch.allclose(draw.R, torch.from_numpy(R)[draw.index], atol=1e-6)
        assert set(draw.index.tolist()) == set(range(7))  # uniform with replacement
    picked = base_rotations(ViewSampling(str(tmp_path / "r.npy")), 3, torch.Generator().manual_seed(0))
    assert picked.shape == (3, 3, 3)
    everything = base_rotations(ViewSampling(str(tmp_path / "r.npy")), 100, torch.Generator())
    assert torch.allclose(everything, torch.from_numpy(R))


@pytest.mark.parametrize("content, match", [
    (np.zeros((3, 3, 3)), "entry 0 .* is not a rotation matrix"),
    (np.eye(3)[None].repeat(2, 0) * np.array([1, 1, -1.0]), "not a rotation matrix"),
    (np.zeros((4, 3)), r"shape \[N, 3, 3\]"),
])
def test_bad_rotation_files_are_clear_errors(tmp_path, content, match):
    path = tmp_path / "bad.npy"
    np.save(path, content)
    with pytest.raises(DataError, match=match):
        PoseSampler(ViewSampling(str(path)), torch.Generator())
    with pytest.raises(DataError, match="not found"):
        PoseSampler(ViewSampling(str(tmp_path / "missing.p")), torch.Generator())
    (tmp_path / "junk.p").write_bytes(b"not a pickle")
    with pytest.raises(DataError, match="cannot read the pickle"):
        PoseSampler(ViewSampling(str(tmp_path / "junk.p")), torch.Generator())


def test_unknown_method_is_a_config_error():
    with pytest.raises(ConfigError, match="VIEW_SAMPLING = 'random'"):
        load_config_text("[Training]\nVIEW_SAMPLING: random\n")


def test_reuse_draws_from_one_fixed_pool():
    spec = ViewSampling("sundermeyer-random", reuse=True)
    sampler = PoseSampler(spec, torch.Generator().manual_seed(3), reuse_pool_size=10)
    draws = torch.cat([sampler.sample(8).R for _ in range(5)])
    assert torch.unique(draws.reshape(-1, 9), dim=0).shape[0] <= 10
    fresh = PoseSampler(ViewSampling("sundermeyer-random"), torch.Generator().manual_seed(3))
    assert torch.unique(torch.cat([fresh.sample(8).R for _ in range(5)]).reshape(-1, 9), dim=0).shape[0] == 40
    assert (fresh.sample(2).index == -1).all()


def test_hard_mining_reuses_the_worst_fraction_of_the_last_batch():
    pool = sundermeyer_random(100, torch.Generator().manual_seed(4))
    sampler = PoseSampler(ViewSampling("sundermeyer-random", hard=True), torch.Generator().manual_seed(5),
                          pool=pool, hard_mining_ratio=0.25, hard_sample_ratio=1.0)
    batch = sampler.sample(8)
    loss = torch.arange(8, dtype=torch.float32)  # samples 6 and 7 are the worst 25%
    sampler.update(batch.R, loss, batch.index)
    assert sampler.num_hard == 2
    nxt = sampler.sample(8)
    # with HARD_SAMPLE_RATIO 1 both hard samples come back (once each), in some order
    assert sorted(nxt.index[:2].tolist()) == sorted(batch.index[6:].tolist())
    assert torch.equal(nxt.R[:2], pool[nxt.index[:2]])
    assert sampler.num_hard == 0
    # without -hard, update does nothing
    plain = PoseSampler(ViewSampling("sundermeyer-random"), torch.Generator(), pool=pool)
    plain.update(batch.R, loss, batch.index)
    assert plain.num_hard == 0


def test_hard_mining_defaults_are_the_originals_and_replace_the_pool():
    """The original keeps int(0.3 B) of each batch, replacing the previous ones, and draws each sample
    from them with probability 0.2."""
    sampler = PoseSampler(ViewSampling("sundermeyer-random", hard=True), torch.Generator().manual_seed(1))
    assert (sampler.hard_mining_ratio, sampler.hard_sample_ratio, sampler.hard_pool) == (0.3, 0.2, "replace")
    cfg = load_config_text("[Training]\nVIEW_SAMPLING: sundermeyer-random-hard\n")
    assert (cfg.Training.HARD_MINING_RATIO, cfg.Training.HARD_SAMPLE_RATIO, cfg.Training.HARD_POOL) == (
        0.3,
        0.2,
        "replace",
    )
    first, second = sundermeyer_random(10, torch.Generator().manual_seed(2)), sundermeyer_random(3, torch.Generator())
    sampler.update(first, torch.arange(10.0), None)
    assert sampler.num_hard == 3  # int(0.3 * 10), the three worst
    assert torch.equal(sampler.state_dict()["hard_R"], first[[9, 8, 7]])
    sampler.update(second, torch.arange(3.0), None)
    assert sampler.num_hard == 0  # int(0.3 * 3) = 0: the pool is replaced by nothing
    sampler.update(first, torch.arange(10.0), None)
    sampler.start_epoch()
    assert sampler.num_hard == 0
    growing = PoseSampler(ViewSampling("sundermeyer-random", hard=True), torch.Generator(), hard_pool="accumulate")
    growing.update(first, torch.arange(10.0), None)
    growing.update(first, torch.arange(10.0), None)
    growing.start_epoch()
    assert growing.num_hard == 6
    with pytest.raises(ValueError, match="hard_pool must be one of"):
        PoseSampler(ViewSampling("sundermeyer-random", hard=True), torch.Generator(), hard_pool="keep")


def test_hard_sample_ratio_controls_how_many_come_back():
    spec = ViewSampling("sphere", hard=True)
    sampler = PoseSampler(spec, torch.Generator().manual_seed(6), hard_mining_ratio=0.5, hard_sample_ratio=0.3)
    R = sundermeyer_random(2000, torch.Generator().manual_seed(7))
    sampler.update(R, torch.rand(2000), None)
    assert sampler.num_hard == 1000
    sampler.sample(1000)
    assert 230 < 1000 - sampler.num_hard < 370  # about 30% of the draws were hard ones


def test_sampler_state_round_trip_replays_the_stream():
    spec = ViewSampling("sundermeyer-random", hard=True)
    a = PoseSampler(spec, torch.Generator().manual_seed(8))
    first = a.sample(4)
    a.update(first.R, torch.rand(4), first.index)
    state = a.state_dict()
    x = a.sample(6).R
    b = PoseSampler(spec, torch.Generator().manual_seed(99))
    b.load_state_dict(state)
    assert torch.equal(b.sample(6).R, x)


def test_sampler_from_config_and_seed_derivation():
    cfg = load_config_text("[Training]\nVIEW_SAMPLING: sphere-hard\nHARD_MINING_RATIO: 0.1\nHARD_SAMPLE_RATIO: 0.7\n")
    sampler = pose_sampler_from_config(cfg, torch.Generator())
    assert sampler.spec == view_sampling(cfg) and sampler.spec.hard
    assert (sampler.hard_mining_ratio, sampler.hard_sample_ratio) == (0.1, 0.7)
    assert derive_seed(10, "a") == derive_seed(10, "a") != derive_seed(10, "b") != derive_seed(11, "a")
