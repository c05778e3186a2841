"""Dataset files: our .npz and the original's pickle format, both ways, and clear errors."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
import torch

from multipose.data.io import SampleSet, load_sample_files, load_samples, save_samples
from multipose.data.sampling import sundermeyer_random
from multipose.infra.errors import DataError, WriteError


def _samples(n=5, size=16, seed=0) -> SampleSet:
    g = torch.Generator().manual_seed(seed)
    images = (torch.rand(n, 3, size, size, generator=g) * 255).round() / 255  # 8-bit levels
    K = torch.tensor([[30.0, 0, 7.5], [0, 30.0, 7.5], [0, 0, 1]]).repeat(n, 1, 1)
    return SampleSet(
        images=images, R=sundermeyer_random(n, g), t=torch.tensor([[0.0, 0.0, 700.0]]).repeat(n, 1), K=K,
        mask=torch.rand(n, size, size, generator=g) > 0.5, meta={"seed": seed, "mesh": "m.ply", "config": "[x]"},
    )


def test_npz_round_trip_keeps_every_field(tmp_path):
    s = _samples()
    path = save_samples(tmp_path / "d.npz", s)
    with np.load(path, allow_pickle=False) as z:  # plain arrays, no pickles
        assert z["images"].dtype == np.uint8 and z["images"].shape == (5, 16, 16, 3)
        assert z["masks"].dtype == bool and z["Ks"].shape == (5, 3, 3)
        assert json.loads(str(z["meta"]))["mesh"] == "m.ply"
    back = load_samples(path)
    assert torch.allclose(back.images, s.images, atol=1e-6)
    for name in ("R", "t", "K", "mask"):
        assert torch.equal(getattr(back, name), getattr(s, name)), name
    assert back.meta["seed"] == 0 and back.meta["format"] == "multipose-samples-v1"


def test_original_pickle_round_trip(tmp_path):
    s = _samples()
    path = save_samples(tmp_path / "d.p", s, fmt="pickle")
    with open(path, "rb") as f:
        raw = pickle.load(f)
    assert set(raw) == {"Rs", "images"} and len(raw["Rs"]) == 5
    assert raw["images"][0].shape == (16, 16, 3) and raw["images"][0].dtype == np.uint8
    assert np.allclose(raw["Rs"][2], s.R[2].numpy())  # OpenCV rotations, as the original stored
    back = load_samples(path)
    assert torch.allclose(back.images, s.images, atol=1e-6) and torch.allclose(back.R, s.R)
    assert back.t is None and back.K is None and back.mask is None


def test_original_pickles_with_float_images_python2_encoding_and_torch_rotations(tmp_path):
    R = sundermeyer_random(2, torch.Generator().manual_seed(1))
    for scale in (255.0, 1.0):
        images = [np.full((8, 8, 3), 0.5 * scale, dtype=np.float64) for _ in range(2)]
        with open(tmp_path / "v.p", "wb") as f:
            pickle.dump({"Rs": [R[0], R[1].numpy()], "images": images}, f, protocol=2)
        back = load_sample_files([tmp_path / "v.p"], image_size=4)
        assert back.images.shape == (2, 3, 4, 4) and torch.allclose(back.images, torch.full_like(back.images, 0.5))


def test_several_files_concatenate(tmp_path):
    a = save_samples(tmp_path / "a.npz", _samples(3, seed=1))
    b = save_samples(tmp_path / "b.npz", _samples(2, seed=2))
    both = load_sample_files([a, b])
    assert len(both) == 5 and both.K is not None
    mixed = load_sample_files([a, save_samples(tmp_path / "c.p", _samples(2), fmt="pickle")])
    assert len(mixed) == 5 and mixed.K is None  # the pickle has no intrinsics
    batches = list(both.batches(2))
    assert [len(x.R) for x in batches] == [2, 2, 1]
    assert all(x.t is not None and x.K is not None and x.mask is not None and x.index is None for x in batches)


@pytest.mark.parametrize("name, content, match", [
    ("a.npz", b"PK\x03\x04 not really a zip", "cannot read the .npz"),
    ("a.p", b"\x80\x02 truncated", "cannot read the pickle"),
    ("a.p", pickle.dumps([1, 2, 3]), "expected the original's pickle format"),
    ("a.p", pickle.dumps({"Rs": [np.eye(3)]}), 'has no "images"'),
    ("a.p", pickle.dumps({"Rs": [np.eye(3) * 2], "images": [np.zeros((4, 4, 3), np.uint8)]}), "not a rotation"),
    ("a.p", pickle.dumps({"Rs": [np.eye(3)], "images": [np.zeros((4, 5, 3), np.uint8)]}), "square RGB images"),
    ("a.txt", b"", "unknown dataset file type"),
])
def test_bad_dataset_files_are_one_line_errors(tmp_path, name, content, match):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(DataError, match=match) as info:
        load_samples(path)
    assert "\n" not in str(info.value) and str(path) in str(info.value)


def test_missing_file_and_npz_without_images(tmp_path):
    with pytest.raises(DataError, match="not found"):
        load_samples(tmp_path / "nope.npz")
    np.savez(tmp_path / "x.npz", Rs=np.eye(3)[None])
    with pytest.raises(DataError, match=r"missing arrays \['images'\]"):
        load_samples(tmp_path / "x.npz")


def test_a_write_that_fails_half_way_leaves_no_file(tmp_path, monkeypatch):
    def fail_half_way(f, **arrays):
        f.write(b"PK\x03\x04 half an archive")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(np, "savez", fail_half_way)
    with pytest.raises(WriteError, match=r"d.npz: cannot write \(No space left on device\)"):
        save_samples(tmp_path / "d.npz", _samples())
    assert list(tmp_path.iterdir()) == []  # neither the file nor a temporary one
