"""Atomic writes and the checkpoint store: keep the newest, fall back past a corrupt file."""

from __future__ import annotations

import os

import pytest
import torch

from multipose.infra.atomic import atomic_open, atomic_write_text
from multipose.infra.checkpoint import CheckpointStore


def test_atomic_open_leaves_the_old_file_when_the_write_fails(tmp_path):
    target = tmp_path / "a" / "file.txt"
    atomic_write_text(target, "old")
    with pytest.raises(RuntimeError):
        with atomic_open(target) as f:
            f.write(b"half")
            raise RuntimeError("crash")
    assert target.read_text() == "old"
    assert sorted(p.name for p in target.parent.iterdir()) == ["file.txt"]
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask  # like open(), not mkstemp's 0600


def test_store_keeps_the_newest_and_the_best(tmp_path):
    store = CheckpointStore(tmp_path / "models", keep=2)
    for epoch in range(1, 5):
        store.save({"epoch": epoch, "w": torch.full((2,), float(epoch))}, epoch, is_best=epoch == 2)
    assert store.epochs() == [3, 4]
    state, path = store.load_latest()
    assert state["epoch"] == 4 and path.name == "model-epoch4.pt"
    assert torch.load(store.best_path)["epoch"] == 2


def test_store_falls_back_past_a_truncated_checkpoint(tmp_path, caplog):
    store = CheckpointStore(tmp_path, keep=3)
    for epoch in (1, 2):
        store.save({"epoch": epoch}, epoch)
    data = store.path(2).read_bytes()
    store.path(2).write_bytes(data[: len(data) // 2])
    state, path = store.load_latest()
    assert state["epoch"] == 1 and path == store.path(1)
    assert "model-epoch2.pt is unreadable" in caplog.text
    assert CheckpointStore(tmp_path / "empty").load_latest() is None
