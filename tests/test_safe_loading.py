"""No file runs code when loaded: checkpoints, encoder weights, dataset pickles and rotation files that
pickle a callable are refused, and the callable never runs."""

from __future__ import annotations

import pathlib
import pickle
import subprocess

import numpy as np
import pytest
import torch

from multipose.data.io import load_samples
from multipose.data.sampling import load_view_sampling_file
from multipose.infra.checkpoint import CheckpointStore, load_checkpoint
from multipose.infra.errors import CheckpointRefused, DataError
from multipose.models.aae_npy import read_aae_npy
from multipose.models.head_checkpoint import load_head_checkpoint
from multipose.models.weights import ModelFileError, load_encoder_pt


class Evil:
    """Unpickling this would create ``marker``."""

    def __init__(self, marker: pathlib.Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (self.marker,))


@pytest.fixture
def marker(tmp_path) -> pathlib.Path:
    return tmp_path / "pwned"


def test_a_checkpoint_that_pickles_a_callable_is_refused(tmp_path, marker):
    path = tmp_path / "models" / "model-epoch3.pt"
    path.parent.mkdir()
    torch.save({"model": {}, "head_args": {"num_hypotheses": 2}, "epoch": 3, "x": Evil(marker)}, path)
    with pytest.raises(CheckpointRefused, match=r"model-epoch3.pt: refused to load.*--trust-checkpoint"):
        load_checkpoint(path)
    with pytest.raises(CheckpointRefused):
        load_head_checkpoint(path, 2)
    with pytest.raises(CheckpointRefused):  # the run's own folder: refused, not skipped to an older state
        CheckpointStore(path.parent).load_latest()
    assert not marker.exists()


@pytest.mark.slow
def test_evaluate_py_refuses_it_with_one_line_and_trusts_it_on_request(tmp_path, marker, python, repo_root):
    path = tmp_path / "their.pt"
    torch.save({"model": {}, "head_args": {}, "epoch": 1, "x": Evil(marker)}, path)
    proc = subprocess.run([python, "evaluate.py", "experiment_template.cfg", "--checkpoint", str(path)],
                          cwd=repo_root, capture_output=True, text=True, timeout=120)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 1 and len(lines) == 1 and "refused to load" in lines[0], proc.stderr
    assert not marker.exists()
    benign = tmp_path / "numpy.pt"  # not code, but not weights-only either: loads only when trusted
    torch.save({"model": {}, "head_args": {"num_hypotheses": 2, "input_dim": 16}, "epoch": 1, "x": np.zeros(2)}, benign)
    with pytest.raises(CheckpointRefused):
        load_head_checkpoint(benign)
    with pytest.raises(ModelFileError, match="cannot be rebuilt"):  # loaded, then the empty state dict fails
        load_head_checkpoint(benign, trust=True)


def test_encoder_files_that_pickle_a_callable_are_refused(tmp_path, marker):
    pt = tmp_path / "encoder.pt"
    torch.save({"format": "multipose-encoder", "x": Evil(marker)}, pt)
    with pytest.raises(ModelFileError):
        load_encoder_pt(pt)
    npy = tmp_path / "encoder.npy"
    np.save(npy, np.array({"encoder/conv2d/kernel": Evil(marker)}, dtype=object), allow_pickle=True)
    with pytest.raises(ModelFileError, match="refused to unpickle"):
        read_aae_npy(npy)
    assert not marker.exists()


@pytest.mark.parametrize("load", [load_samples, lambda p: load_view_sampling_file(str(p))])
def test_dataset_and_rotation_pickles_that_pickle_a_callable_are_refused(tmp_path, marker, load):
    path = tmp_path / "valid.p"
    with open(path, "wb") as f:
        pickle.dump({"Rs": [np.eye(3)], "images": [np.zeros((8, 8, 3), np.uint8)], "x": Evil(marker)}, f, protocol=2)
    with pytest.raises(DataError, match="refused to unpickle: it pickles .*getattr; only NumPy arrays"):
        load(path)
    assert not marker.exists()
    with open(path, "wb") as f:  # the original's format itself still loads (NumPy arrays, lists, dicts)
        pickle.dump({"Rs": [np.eye(3)], "images": [np.zeros((8, 8, 3), np.uint8)]}, f, protocol=2)
    assert len(load(path)) == 1


def test_a_tensor_storage_smuggling_a_callable_is_refused(tmp_path, marker):
    """torch's own storage loader unpickles its bytes without restriction; ours reads them weights-only."""
    import io

    inner = io.BytesIO()
    torch.save(Evil(marker), inner)

    class Storage:
        def __reduce__(self):
            return (torch.storage._load_from_bytes, (inner.getvalue(),))

    path = tmp_path / "valid.p"
    with open(path, "wb") as f:
        pickle.dump({"Rs": [Storage()], "images": [np.zeros((8, 8, 3), np.uint8)]}, f, protocol=2)
    with pytest.raises(DataError, match="cannot read the pickle"):
        load_samples(path)
    assert not marker.exists()
