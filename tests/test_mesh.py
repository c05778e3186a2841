"""Tests for multipose.core.mesh (loading, validation, normalisation, decimation, loss-mesh cache) and
multipose.tools.procedural (the committed default CAD models and their symmetries)."""

from __future__ import annotations

import logging
import math
import re

import numpy as np
import pytest
import torch
import trimesh
from scipy.spatial import cKDTree

import multipose.core.mesh as mesh_mod
from multipose.core.mesh import NORMALIZED_EXTENT_MM, Mesh, load_loss_mesh, load_mesh, normalize_vertices, simplify_mesh
from multipose.evaluation.bop_folders import read_models_info
from multipose.evaluation.metrics import symmetry_transformations
from multipose.infra.content_key import file_sha256
from multipose.infra.errors import MeshError, UserInputError
from multipose.tools.procedural import (
    FILE_NAMES,
    OBJ_IDS,
    SYMMETRIES,
    export_ply_bytes,
    make_part,
    write_default_models,
)
from multipose.tools.procedural import (
    main as procedural_main,
)

# --------------------------------------------------------------------------------------------------
# helpers

BOX_EXTENTS = (2.0, 4.0, 6.0)
BOX_CENTRE = (1.0, 0.0, 0.0)
# farthest corner of the box from the origin: (2, 2, 3)
BOX_RADIUS = math.sqrt(2.0**2 + 2.0**2 + 3.0**2)


def _box() -> trimesh.Trimesh:
    return trimesh.creation.box(
        extents=BOX_EXTENTS, transform=trimesh.transformations.translation_matrix(BOX_CENTRE)
    )


def _rot_z(degrees: float) -> np.ndarray:
    return trimesh.transformations.rotation_matrix(math.radians(degrees), (0, 0, 1))


def _ascii_ply(vertices: list[str], faces: list[str]) -> str:
    header = [
        "ply",
        "format ascii 1.0",
        f"element vertex {len(vertices)}",
        "property float x",
        "property float y",
        "property float z",
    ]
    if faces:
        header += [f"element face {len(faces)}", "property list uchar int vertex_indices"]
    return "\n".join(header + ["end_header"] + vertices + faces) + "\n"


def _surface_distance(mesh: trimesh.Trimesh, points: np.ndarray, k: int = 32) -> np.ndarray:
    """Distance from each point to the surface of ``mesh``: (N, 3) -> (N,).

    Exact point-triangle distances against the ``k`` triangles with the nearest centroids (without
    rtree); missing the true closest triangle can only overestimate the distance.
    """
    triangles = np.asarray(mesh.triangles)
    _, idx = cKDTree(triangles.mean(axis=1)).query(points, k=k)
    candidates = triangles[idx.reshape(-1)]
    closest = trimesh.triangles.closest_point(candidates, np.repeat(points, k, axis=0))
    dist = np.linalg.norm(closest - np.repeat(points, k, axis=0), axis=1)
    return dist.reshape(len(points), k).min(axis=1)


@pytest.fixture(scope="module")
def cad_dir(request):
    return request.config.rootpath / "data" / "cad-files"


@pytest.fixture(scope="module", params=SYMMETRIES)
def part_file(request, cad_dir):
    return cad_dir / FILE_NAMES[request.param]


# --------------------------------------------------------------------------------------------------
# loading


@pytest.mark.parametrize("ext", ["ply", "obj"])
def test_load_ply_and_obj(tmp_path, ext):
    path = tmp_path / f"box.{ext}"
    _box().export(path)
    mesh = load_mesh(path)
    assert mesh.vertices.dtype == torch.float32 and mesh.vertices.shape == (8, 3)
    assert mesh.faces.dtype == torch.int64 and mesh.faces.shape == (12, 3)
    assert mesh.num_vertices == 8 and mesh.num_faces == 12
    assert mesh.name == f"box.{ext}"
    assert mesh.radius == pytest.approx(BOX_RADIUS, rel=1e-6)
    # the loaded surface is the box: same corner set, faces index valid vertices, closed
    expected = np.asarray(_box().vertices)
    assert cKDTree(expected).query(mesh.vertices.numpy())[0].max() < 1e-5
    tm = mesh.to_trimesh()
    assert tm.is_watertight
    assert tm.volume == pytest.approx(np.prod(BOX_EXTENTS), rel=1e-5)


def test_obj_duplicate_vertices_are_merged(tmp_path):
    # a quad written as two triangles with their own copies of the shared vertices, plus a stray one
    path = tmp_path / "split.obj"
    path.write_text(
        "v 0 0 0\nv 1 0 0\nv 1 1 0\nv 0 0 0\nv 1 1 0\nv 0 1 0\nv 50 50 50\nf 1 2 3\nf 4 5 6\n"
    )
    mesh = load_mesh(path)
    assert mesh.num_vertices == 4 and mesh.num_faces == 2
    assert mesh.radius == pytest.approx(math.sqrt(2), rel=1e-6)  # the unreferenced vertex is gone


def test_mesh_to_device_and_validation(device):
    mesh = Mesh.from_trimesh(_box(), name="box")
    moved = mesh.to(device)
    assert moved.vertices.device.type == device.type and moved.faces.device.type == device.type
    assert torch.equal(moved.vertices.cpu(), mesh.vertices) and moved.name == "box"
    with pytest.raises(ValueError, match="float32"):
        Mesh(mesh.vertices.double(), mesh.faces)
    with pytest.raises(ValueError, match=r"\(F, 3\)"):
        Mesh(mesh.vertices, mesh.faces[:, :2])


BAD_FILES = {
    # name: (file content or None for "do not create", message pattern)
    "missing.ply": (None, "does not exist"),
    "empty.ply": (b"", "is empty"),
    "empty.obj": (b"", "is empty"),
    "garbage.ply": (bytes(range(256)) * 8, "cannot be parsed as PLY"),
    "garbage.obj": (bytes(range(256)) * 8, "binary data"),
    "points.ply": (_ascii_ply(["0 0 0", "1 0 0", "0 1 0"], []).encode(), "no triangle faces"),
    "lines.obj": (b"v 0 0 0\nv 1 0 0\nl 1 2\n", "no triangle faces"),
    "nan.ply": (_ascii_ply(["0 0 0", "nan 0 0", "0 1 0"], ["3 0 1 2"]).encode(), "non-finite"),
    "inf.obj": (b"v 0 0 0\nv inf 0 0\nv 0 1 0\nf 1 2 3\n", "non-finite"),
    "range.ply": (_ascii_ply(["0 0 0", "1 0 0", "0 1 0"], ["3 0 1 7"]).encode(), "out of range"),
    "range.obj": (b"v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 9\n", "missing vertices"),
    "model.stl": (b"solid x\nendsolid x\n", "unsupported extension"),
    "model": (b"ply\n", "unsupported extension"),
}


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_bad_files_raise_mesh_error(tmp_path, name):
    content, pattern = BAD_FILES[name]
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(MeshError, match=re.escape(str(path)) + ".*" + pattern) as info:
        load_mesh(path)
    message = str(info.value)
    assert "\n" not in message
    assert isinstance(info.value, UserInputError)


def test_truncated_binary_ply_raises_mesh_error(tmp_path, cad_dir):
    data = (cad_dir / FILE_NAMES["2fold"]).read_bytes()
    path = tmp_path / "truncated.ply"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(MeshError, match=re.escape(str(path))):
        load_mesh(path)


def test_directory_is_not_a_mesh(tmp_path):
    folder = tmp_path / "folder.ply"
    folder.mkdir()
    with pytest.raises(MeshError, match="is not a file"):
        load_mesh(folder)


def test_normalize(tmp_path):
    path = tmp_path / "box.ply"
    _box().export(path)
    mesh = load_mesh(path, normalize=True)
    v = mesh.vertices.double()
    assert torch.allclose(v.mean(dim=0), torch.zeros(3, dtype=torch.float64), atol=1e-5)
    assert v.abs().max().item() == pytest.approx(NORMALIZED_EXTENT_MM, rel=1e-6)
    # the shape is only scaled: the box's extents keep their ratios
    extents = (v.amax(dim=0) - v.amin(dim=0)).numpy()
    np.testing.assert_allclose(
        extents / extents[0], np.array(BOX_EXTENTS) / BOX_EXTENTS[0], rtol=1e-6
    )
    # not normalised by default
    assert load_mesh(path).radius == pytest.approx(BOX_RADIUS, rel=1e-6)


def test_normalize_centres_on_the_vertex_mean_like_the_original():
    # mean (2.5, 5, 10) differs from the box centre (5, 10, 20); the largest |coordinate - mean| is 30 (z)
    v = torch.tensor([[0.0, 0, 0], [10, 0, 0], [0, 20, 0], [0, 0, 40]])
    expected = (v - torch.tensor([2.5, 5.0, 10.0])) * (100.0 / 30.0)
    torch.testing.assert_close(normalize_vertices(v), expected)


def test_file_sha256(tmp_path):
    path = tmp_path / "x.bin"
    path.write_bytes(b"abc")
    assert file_sha256(path) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


# --------------------------------------------------------------------------------------------------
# decimation


@pytest.mark.parametrize("target", [500, 800, 1000])
def test_decimation_hits_target_on_procedural_parts(part_file, target):
    full = load_mesh(part_file)
    small = simplify_mesh(full, target)
    assert 0.9 * target <= small.num_faces <= target
    assert torch.isfinite(small.vertices).all()
    assert small.faces.min() >= 0 and small.faces.max() < small.num_vertices
    # still the same object: closed, radius and volume close to the original's
    tm = small.to_trimesh()
    if "revolution" in part_file.name:  # (the 2-fold part's lugs overlap the body: may open)
        assert tm.is_watertight
    assert small.radius == pytest.approx(full.radius, rel=0.02)
    assert abs(tm.volume) == pytest.approx(full.to_trimesh().volume, rel=0.03)


def test_decimation_hits_target_on_tless_obj10(tless_obj10):
    full = load_mesh(tless_obj10)
    small = simplify_mesh(full, 800)
    assert 720 <= small.num_faces <= 800
    assert torch.isfinite(small.vertices).all()
    assert small.radius == pytest.approx(full.radius, rel=0.02)


def test_simplify_returns_mesh_unchanged_when_not_needed(part_file):
    mesh = load_mesh(part_file)
    assert simplify_mesh(mesh, 0) is mesh
    assert simplify_mesh(mesh, -5) is mesh
    assert simplify_mesh(mesh, mesh.num_faces) is mesh
    assert simplify_mesh(mesh, 10**6) is mesh


def test_simplify_keeps_device(device, part_file):
    mesh = load_mesh(part_file).to(device)
    small = simplify_mesh(mesh, 600)
    assert small.vertices.device.type == device.type and small.num_faces <= 600


def test_stalled_decimation_warns(caplog):
    # trimesh's cylinder is made of long thin triangles: decimation stalls (STACK.md)
    cylinder = trimesh.creation.cylinder(radius=10, height=20, sections=128)
    cylinder = Mesh.from_trimesh(cylinder, name="cyl")
    with caplog.at_level(logging.WARNING, logger="multipose.core.mesh"):
        result = simplify_mesh(cylinder, 100)
    assert result.num_faces > 110
    assert any("stalled" in r.getMessage() and "cyl" in r.getMessage() for r in caplog.records)


def test_successful_decimation_does_not_warn(caplog, part_file):
    with caplog.at_level(logging.WARNING, logger="multipose.core.mesh"):
        simplify_mesh(load_mesh(part_file), 800)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


# --------------------------------------------------------------------------------------------------
# loss-mesh cache


@pytest.fixture
def model_copy(tmp_path, cad_dir):
    path = tmp_path / "model.ply"
    path.write_bytes((cad_dir / FILE_NAMES["2fold"]).read_bytes())
    return path


def _count_simplify(monkeypatch) -> list[int]:
    calls: list[int] = []
    real = mesh_mod.simplify_mesh

    def counting(mesh, target):
        calls.append(target)
        return real(mesh, target)

    monkeypatch.setattr(mesh_mod, "simplify_mesh", counting)
    return calls


def test_loss_mesh_is_cached(tmp_path, model_copy, monkeypatch, caplog):
    cache = tmp_path / "cache"
    calls = _count_simplify(monkeypatch)
    with caplog.at_level(logging.INFO, logger="multipose.core.mesh"):
        first = load_loss_mesh(model_copy, 700, cache)
    assert calls == [700]
    assert 630 <= first.num_faces <= 700
    assert len(list((cache / "meshes").glob("*.npz"))) == 1
    messages = [r.getMessage() for r in caplog.records]
    assert any("cache miss" in m and "3744 -> " in m for m in messages)

    def boom(mesh, target):
        raise AssertionError("simplify_mesh called although the cache should hit")

    monkeypatch.setattr(mesh_mod, "simplify_mesh", boom)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="multipose.core.mesh"):
        second = load_loss_mesh(model_copy, 700, cache)
    assert torch.equal(second.vertices, first.vertices) and torch.equal(second.faces, first.faces)
    assert any("cache hit" in r.getMessage() for r in caplog.records)

    # a renamed copy of the same content hits the cache too
    renamed = model_copy.with_name("renamed.ply")
    model_copy.rename(renamed)
    assert torch.equal(load_loss_mesh(renamed, 700, cache).faces, first.faces)


def test_loss_mesh_cache_key_includes_target_and_normalize(tmp_path, model_copy, monkeypatch):
    cache = tmp_path / "cache"
    calls = _count_simplify(monkeypatch)
    a = load_loss_mesh(model_copy, 700, cache)
    b = load_loss_mesh(model_copy, 900, cache)
    c = load_loss_mesh(model_copy, 700, cache, normalize=True)
    assert calls == [700, 900, 700]
    assert a.num_faces <= 700 < b.num_faces <= 900
    assert c.vertices.abs().max().item() == pytest.approx(NORMALIZED_EXTENT_MM, rel=0.02)
    assert a.radius < 50
    assert len(list((cache / "meshes").glob("*.npz"))) == 3


def test_loss_mesh_cache_invalidated_by_content_change(tmp_path, model_copy, monkeypatch):
    cache = tmp_path / "cache"
    calls = _count_simplify(monkeypatch)
    first = load_loss_mesh(model_copy, 700, cache)
    # same name, different content: scale the model by 2
    scaled = make_part("2fold")
    scaled.apply_scale(2.0)
    model_copy.write_bytes(export_ply_bytes(scaled))
    second = load_loss_mesh(model_copy, 700, cache)
    assert calls == [700, 700]
    assert second.radius == pytest.approx(2 * first.radius, rel=0.02)


@pytest.mark.parametrize("corruption", [b"", b"not a zip file", b"PK\x03\x04 truncated"])
def test_corrupt_loss_mesh_cache_is_rebuilt(tmp_path, model_copy, monkeypatch, caplog, corruption):
    cache = tmp_path / "cache"
    first = load_loss_mesh(model_copy, 700, cache)
    (cache_file,) = (cache / "meshes").glob("*.npz")
    cache_file.write_bytes(corruption)
    calls = _count_simplify(monkeypatch)
    with caplog.at_level(logging.WARNING, logger="multipose.core.mesh"):
        rebuilt = load_loss_mesh(model_copy, 700, cache)
    assert calls == [700]
    assert any("rebuilding" in r.getMessage() for r in caplog.records)
    assert torch.equal(rebuilt.faces, first.faces) and torch.equal(rebuilt.vertices, first.vertices)
    # and the rebuilt file is a valid cache entry again
    monkeypatch.setattr(mesh_mod, "simplify_mesh", None)
    assert torch.equal(load_loss_mesh(model_copy, 700, cache).faces, first.faces)


def test_cache_with_wrong_arrays_is_rebuilt(tmp_path, model_copy, monkeypatch):
    cache = tmp_path / "cache"
    load_loss_mesh(model_copy, 700, cache)
    (cache_file,) = (cache / "meshes").glob("*.npz")
    with cache_file.open("wb") as f:
        np.savez(f, vertices=np.zeros((3, 3), np.float32))  # a valid npz without the other keys
    calls = _count_simplify(monkeypatch)
    assert load_loss_mesh(model_copy, 700, cache).num_faces > 600
    assert calls == [700]


def test_loss_mesh_missing_file(tmp_path):
    missing = tmp_path / "nope.ply"
    with pytest.raises(MeshError, match=re.escape(str(missing)) + ".*does not exist"):
        load_loss_mesh(missing, 800, tmp_path / "cache")


# --------------------------------------------------------------------------------------------------
# procedural default models


@pytest.mark.parametrize("symmetry", SYMMETRIES)
def test_part_shape(symmetry):
    part = make_part(symmetry)
    assert part.is_watertight and part.is_winding_consistent and part.volume > 0
    assert 2000 <= len(part.faces) <= 4000
    bounds = np.asarray(part.bounds)
    np.testing.assert_allclose(bounds.sum(axis=0) / 2, 0.0, atol=1e-4)  # origin = bbox centre
    assert 50 <= part.extents[2] <= 90  # T-LESS-like height, along the symmetry axis z
    # well-shaped triangles (decimation stalls on long thin ones): short edges, and every triangle's
    # longest edge at most 10x its altitude (the fans at the axis reach 48 / (2 pi) = 7.6)
    edges = np.linalg.norm(np.diff(part.vertices[part.faces[:, [0, 1, 2, 0]]], axis=1), axis=2)
    assert edges.max() < 7.0
    longest = edges.max(axis=1)
    altitude = 2 * part.area_faces / longest
    assert (longest / altitude).max() < 10.0


def test_make_part_unknown_symmetry():
    with pytest.raises(ValueError, match="revolution, 2fold"):
        make_part("3fold")


def _max_vertex_mismatch(part: trimesh.Trimesh, degrees: float) -> float:
    vertices = np.asarray(part.vertices)
    rotated = trimesh.transform_points(vertices, _rot_z(degrees))
    return float(cKDTree(vertices).query(rotated)[0].max())


def test_2fold_part_has_exactly_2fold_symmetry():
    part = make_part("2fold")
    assert _max_vertex_mismatch(part, 180.0) < 1e-4
    for degrees in (90.0, 120.0, 60.0, 45.0):
        assert _max_vertex_mismatch(part, degrees) > 2.0, degrees
    # not a mirror-free accident: the lugs are on the x axis
    assert part.extents[0] > part.extents[1] + 5


def _rotated_surface_mismatch(part: trimesh.Trimesh, degrees: float) -> float:
    points, _ = trimesh.sample.sample_surface(part, 600, seed=0)
    rotated = trimesh.transform_points(points, _rot_z(degrees))
    return float(_surface_distance(part, rotated).max())


def test_revolution_part_is_symmetric_about_z():
    part = make_part("revolution")
    # the 48-section polygon deviates by at most r * (1 - cos(pi / 48)) = 0.064 mm at r = 30 mm
    assert _rotated_surface_mismatch(part, 37.0) < 0.1
    # the same measurement does see the lugs of the 2-fold part
    assert _rotated_surface_mismatch(make_part("2fold"), 37.0) > 2.0
    # and a tilt about x is not a symmetry
    points, _ = trimesh.sample.sample_surface(part, 600, seed=1)
    tilted = trimesh.transform_points(
        points, trimesh.transformations.rotation_matrix(math.radians(37), (1, 0, 0))
    )
    assert _surface_distance(part, tilted).max() > 2.0


def test_committed_models_match_generator(tmp_path, cad_dir):
    for symmetry in SYMMETRIES:
        committed = cad_dir / FILE_NAMES[symmetry]
        assert committed.is_file(), f"{committed} missing: run python -m multipose.tools.procedural"
        assert committed.read_bytes() == export_ply_bytes(make_part(symmetry)), (
            f"{committed} is stale: python -m multipose.tools.procedural --out data/cad-files"
        )
    written = write_default_models(tmp_path / "out")
    assert [p.name for p in written] == [FILE_NAMES[s] for s in SYMMETRIES] + ["models_info.json"]
    for path in written:
        assert path.read_bytes() == (cad_dir / path.name).read_bytes()


def test_models_info_symmetries_map_each_part_onto_itself(cad_dir):
    """The committed models_info.json, read by evaluation's BOP reader: each discrete symmetry maps the
    mesh's vertices onto vertices (and the 2-fold part has no other), the continuous one is about z,
    the diameter is the largest vertex distance."""
    info = read_models_info(cad_dir / "models_info.json")
    for symmetry in SYMMETRIES:
        part, entry = make_part(symmetry), info[OBJ_IDS[symmetry]]
        rotations, _ = symmetry_transformations(entry)
        vertices = np.asarray(part.vertices)
        assert entry["diameter"] == pytest.approx(
            max(np.linalg.norm(vertices - v, axis=1).max() for v in vertices), abs=1e-3
        )
        if symmetry == "2fold":
            assert rotations.shape[0] == 2  # identity and 180 degrees about z
            for R in rotations.double().numpy():
                assert cKDTree(vertices).query(vertices @ R.T)[0].max() < 1e-4
        else:
            assert entry["symmetries_continuous"][0]["axis"] == [0, 0, 1]
            assert rotations.shape[0] > 2


def test_committed_models_load(part_file):
    mesh = load_mesh(part_file)
    part = make_part("2fold" if "2fold" in part_file.name else "revolution")
    assert mesh.num_faces == len(part.faces) and mesh.num_vertices == len(part.vertices)
    assert torch.equal(mesh.vertices, torch.as_tensor(part.vertices, dtype=torch.float32))


def test_procedural_cli(tmp_path, capsys):
    assert procedural_main(["--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    for symmetry in SYMMETRIES:
        assert (tmp_path / FILE_NAMES[symmetry]).is_file()
        assert FILE_NAMES[symmetry] in out
