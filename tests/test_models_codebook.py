"""The AAE codebook baseline: rotation grid, nearest-code lookup, memory, save/load."""

from __future__ import annotations

import pytest
import torch

from multipose.core.geometry import geodesic_angle_deg, random_rotations, rotation_about_axis
from multipose.models import Codebook, ModelFileError, build_codebook, codebook_rotations


def random_codebook(m: int = 50, d: int = 16, seed: int = 0) -> Codebook:
    g = torch.Generator().manual_seed(seed)
    return Codebook(torch.randn(m, d, generator=g), random_rotations(m, generator=g))


def test_codebook_rotations_grid():
    R = codebook_rotations(num_views=100, num_inplane=6)
    assert R.shape == (162 * 6, 3, 3) and R.dtype == torch.float32  # the icosphere with >= 100 vertices
    torch.testing.assert_close(R @ R.transpose(1, 2), torch.eye(3).expand_as(R), atol=1e-5, rtol=0)
    torch.testing.assert_close(torch.linalg.det(R), torch.ones(len(R)), atol=1e-5, rtol=0)
    grid = R.view(162, 6, 3, 3)
    # entry (v, j) is view v rolled by 60 j degrees about the camera's optical axis
    for j in range(6):
        torch.testing.assert_close(grid[:, j], rotation_about_axis([0, 0, 1], 60.0 * j) @ grid[:, 0], atol=1e-5, rtol=0)
    # the views are distinct: the closest pair of distinct views is well apart
    views = grid[:, 0]
    angles = geodesic_angle_deg(views[:, None], views[None])
    assert angles[~torch.eye(162, dtype=torch.bool)].min() > 5.0


def test_aae_sized_grid():
    assert codebook_rotations(2562, 36).shape == (92_232, 3, 3)  # the AAE's 2,562 x 36
    assert codebook_rotations(2563, 1).shape[0] == 10_242 and codebook_rotations(1, 1).shape[0] == 12


def test_lookup_of_a_code_in_the_codebook_is_exact(device):
    codebook = random_codebook().to(device)
    index = torch.tensor([3, 17, 42], device=device)
    query = codebook.codes[index] * torch.tensor([[2.0], [0.5], [7.0]], device=device)  # scale does not matter
    match = codebook.lookup(query, k=1)
    assert torch.equal(match.index[:, 0], index)
    assert torch.equal(match.rotations[:, 0], codebook.rotations[index])
    torch.testing.assert_close(match.similarity[:, 0], torch.ones(3, device=device))
    assert torch.equal(codebook(query), codebook.rotations[index])


def test_top_k_is_sorted_and_equals_a_full_sort():
    codebook = random_codebook()
    query = torch.randn(4, 16)
    match = codebook.lookup(query, k=5)
    assert match.rotations.shape == (4, 5, 3, 3) and match.index.shape == match.similarity.shape == (4, 5)
    sim = torch.nn.functional.normalize(query, dim=1) @ codebook.codes.T
    order = sim.argsort(dim=1, descending=True)[:, :5]
    assert torch.equal(match.index, order)
    torch.testing.assert_close(match.similarity, sim.gather(1, order))
    assert torch.equal(match.rotations[:, 0], codebook(query))


def test_batched_lookup_equals_per_sample_lookup():
    codebook = random_codebook(m=200)
    query = torch.randn(9, 16)
    batched = codebook.lookup(query, k=3)
    for b in range(9):
        single = codebook.lookup(query[b : b + 1], k=3)
        assert torch.equal(single.index[0], batched.index[b])
        torch.testing.assert_close(single.similarity[0], batched.similarity[b])


def test_codes_are_stored_unit_length_and_nbytes():
    m, d = 37, 24
    codebook = random_codebook(m, d)
    torch.testing.assert_close(codebook.codes.norm(dim=1), torch.ones(m))
    assert codebook.nbytes == m * d * 4 + m * 9 * 4
    assert (codebook.num_entries, codebook.code_size) == (m, d)


def test_bad_arguments():
    with pytest.raises(ValueError, match=r"rotations must have shape \(5, 3, 3\)"):
        Codebook(torch.randn(5, 4), torch.eye(3).expand(4, 3, 3))
    codebook = random_codebook()
    with pytest.raises(ValueError, match=r"expected codes of shape \(B, 16\)"):
        codebook.lookup(torch.randn(2, 8))
    with pytest.raises(ValueError, match=r"k must be in \[1, 50\]"):
        codebook.lookup(torch.randn(2, 16), k=51)


def test_save_load_round_trip_and_errors(tmp_path):
    codebook = random_codebook()
    path = codebook.save(tmp_path / "cb" / "codebook.pt")
    loaded = Codebook.load(path)
    assert torch.equal(loaded.codes, codebook.codes) and torch.equal(loaded.rotations, codebook.rotations)
    other = tmp_path / "other.pt"
    torch.save({"codes": codebook.codes}, other)
    with pytest.raises(ModelFileError, match="not a multipose codebook file"):
        Codebook.load(other)
    with pytest.raises(ModelFileError, match="codebook file not found"):
        Codebook.load(tmp_path / "missing.pt")
    bad = tmp_path / "bad.pt"
    torch.save({"format": "multipose-codebook", "version": 1, "codes": torch.randn(3, 4),
                "rotations": torch.randn(2, 3, 3)}, bad)
    with pytest.raises(ModelFileError, match=r"bad.pt: rotations must have shape \(3, 3, 3\)"):
        Codebook.load(bad)
    torch.save({"format": "multipose-codebook", "version": 1, "codes": torch.randn(3, 4) * 3,
                "rotations": torch.randn(3, 3, 3)}, bad)
    with pytest.raises(ModelFileError, match="tensor 'codes' is not unit length"):
        Codebook.load(bad)


def test_build_codebook_from_an_encode_callable():
    """A stand-in encoder (a fixed linear map of the rotation) finds every grid rotation again."""
    rotations = codebook_rotations(num_views=30, num_inplane=3)  # 42 x 3 = 126
    projection = torch.randn(9, 12, generator=torch.Generator().manual_seed(0))
    calls = []

    def encode(R: torch.Tensor) -> torch.Tensor:
        calls.append(len(R))
        assert not torch.is_grad_enabled()
        return R.flatten(1) @ projection

    codebook = build_codebook(encode, rotations, batch_size=50)
    assert calls == [50, 50, 26] and len(rotations) == 126 and codebook.num_entries == len(rotations)
    with torch.no_grad():
        found = codebook(encode(rotations))
    assert torch.equal(found, rotations)
