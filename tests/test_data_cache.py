"""The view cache: rendered once per (mesh content, settings), reused, rebuilt when corrupt."""

from __future__ import annotations

import logging

import pytest
import torch
from support.data import small_config, tiny_mesh, write_mesh

from multipose.data import cache as cache_module
from multipose.data.cache import build_view_cache
from multipose.data.views import ViewRenderer, ViewSettings
from multipose.experiment.factories import view_cache_from_config


@pytest.fixture(scope="module")
def mesh():
    return tiny_mesh(200)


@pytest.fixture
def counted(monkeypatch):
    """Counts the views rendered through ViewRenderer.render."""
    calls = {"views": 0}
    original = ViewRenderer.render_drawn  # what render_views renders with (render draws, then calls it)

    def render(self, R, offsets, light):
        calls["views"] += R.shape[0]
        return original(self, R, offsets, light)

    monkeypatch.setattr(ViewRenderer, "render_drawn", render)
    return calls


def _build(mesh_path, cache_dir, **kw):
    settings = kw.pop("settings", ViewSettings(size=24))
    return build_view_cache(mesh_path, settings, kw.pop("num", 6), cache_dir, progress=False, **kw)


def test_rendered_once_then_loaded_identically(tmp_path, mesh, counted, caplog):
    path = write_mesh(mesh, tmp_path / "part.ply")
    first = _build(path, tmp_path / "c")
    assert counted["views"] == 6 and len(first) == 6
    assert first.path.parent == tmp_path / "c" / "views" and first.path.name.startswith("part-24px-6-")
    assert [p.name for p in first.path.parent.iterdir()] == [first.path.name]  # no temporary files left
    with caplog.at_level(logging.INFO, logger="multipose.data.cache"):
        second = _build(path, tmp_path / "c")
    assert counted["views"] == 6  # nothing rendered again
    assert any("cache hit" in m for m in caplog.messages)
    for name in ("rgb", "mask", "depth", "R", "t", "K"):
        assert torch.equal(getattr(first.views, name), getattr(second.views, name)), name


def test_stored_depth_is_within_a_tenth_of_a_millimetre(tmp_path, mesh, monkeypatch):
    seen = {}
    original = ViewRenderer.render_drawn

    def render(self, R, offsets, light):
        out = original(self, R, offsets, light)
        seen.setdefault("depth", []).append(out.depth)
        return out

    monkeypatch.setattr(ViewRenderer, "render_drawn", render)
    cache = _build(write_mesh(mesh, tmp_path / "p.ply"), tmp_path / "c")
    rendered = torch.cat(seen["depth"])
    assert (cache.views.depth - rendered).abs().max() < 0.1
    assert torch.equal(cache.views.depth > 0, cache.views.mask)


def test_key_follows_mesh_content_and_settings(tmp_path, mesh, counted):
    path = write_mesh(mesh, tmp_path / "part.ply")
    base = _build(path, tmp_path / "c")
    copy = write_mesh(mesh, tmp_path / "renamed.ply")  # same content, other name: same key
    assert _build(copy, tmp_path / "c").key == base.key
    keys = {
        "size": _build(path, tmp_path / "c", settings=ViewSettings(size=20)).key,
        "offset": _build(path, tmp_path / "c", settings=ViewSettings(size=24, max_rel_offset=0.1)).key,
        "distance": _build(path, tmp_path / "c", settings=ViewSettings(size=24, distance=650.0)).key,
        "num": _build(path, tmp_path / "c", num=5).key,
        "seed": _build(path, tmp_path / "c", seed=1).key,
        "sampling": _build(path, tmp_path / "c", sampling="sphere").key,
        "normalize": _build(path, tmp_path / "c", normalize=True).key,
    }
    assert base.key not in keys.values() and len(set(keys.values())) == len(keys)
    write_mesh(tiny_mesh(150), path)  # edited file: new key
    assert _build(path, tmp_path / "c").key != base.key


def test_corrupt_cache_is_logged_and_rebuilt(tmp_path, mesh, counted, caplog):
    path = write_mesh(mesh, tmp_path / "part.ply")
    first = _build(path, tmp_path / "c")
    first.path.write_bytes(first.path.read_bytes()[:1000])  # truncated
    with caplog.at_level(logging.WARNING, logger="multipose.data.cache"):
        again = _build(path, tmp_path / "c")
    assert counted["views"] == 12
    assert any("is unusable" in m and "rendering it again" in m for m in caplog.messages)
    assert torch.equal(again.views.rgb, first.views.rgb)  # same seed, same views
    assert _build(path, tmp_path / "c").path == first.path and counted["views"] == 12


def test_cache_from_config_and_device(tmp_path, mesh, device):
    cfg = small_config(tmp_path, write_mesh(mesh, tmp_path / "part.ply"), "Dataset.NOOF_TRAINING_IMGS=4")
    cache = view_cache_from_config(cfg, device, progress=False)
    assert len(cache) == 4 and cache.views.rgb.device.type == device.type
    assert cache.views.rgb.shape == (4, 3, 32, 32)
    assert torch.allclose(cache.views.t.cpu(), torch.tensor([[0.0, 0.0, 700.0]]).expand(4, 3))
    taken = cache.take(torch.tensor([3, 0]))
    assert torch.equal(taken.R, cache.R[[3, 0]])
    with pytest.raises(ValueError, match="no cache"):
        view_cache_from_config(small_config(tmp_path, tmp_path / "part.ply", "Dataset.NOOF_TRAINING_IMGS=0"))
    assert cache_module.CACHE_VERSION >= 1
