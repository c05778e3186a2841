"""``python -m multipose.app.check_data CFG``: what a config's assets look like, found / missing / malformed,
without writing anything."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from support.data import (
    REPO_ROOT,
    REVOLUTION,
    small_config,
    tiny_mesh,
    write_bop19_dataset,
    write_bop_dataset,
    write_mesh,
)

from multipose.app.check_data import main
from multipose.core.mesh import Mesh
from multipose.data.backgrounds import chosen_background_files
from multipose.data.io import SampleSet, save_samples
from multipose.experiment.findings import Finding, format_report
from multipose.experiment.preflight import check_data
from multipose.models import Encoder, EncoderConfig, save_encoder


def _by_key(findings: list[Finding]) -> dict[str, list[Finding]]:
    out: dict[str, list[Finding]] = {}
    for f in findings:
        out.setdefault(f.what, []).append(f)
    return out


def _statuses(findings: list[Finding], key: str) -> list[str]:
    return [f.status for f in _by_key(findings).get(key, [])]


def _files(folder: Path) -> set[Path]:
    return {p for p in folder.rglob("*")}


@pytest.fixture(scope="module")
def mesh_file(tmp_path_factory) -> Path:
    return write_mesh(tiny_mesh(300), tmp_path_factory.mktemp("mesh") / "part.ply")


def test_the_template_needs_nothing_and_nothing_is_written(tmp_path, capsys, monkeypatch):
    """The embedded default: models found, everything else procedural or made on demand; exit 0;
    the check creates neither the run folder nor the cache."""
    monkeypatch.chdir(REPO_ROOT)
    before = _files(tmp_path)
    code = main(["experiment_template.cfg", "--set", f"Training.OUTPUT_PATH={tmp_path / 'run'}",
                 "--set", f"Dataset.CACHE_DIR={tmp_path / 'cache'}"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "0 warnings, 0 missing, 0 malformed: everything the config needs is there" in out
    lines = {line.split()[1] + " " + line.split()[2]: line.split()[0] for line in out.splitlines()
             if line.startswith("  ") and line.split()[1].startswith("[")}
    # what docs/data.md promises for a fresh checkout (notes about assets under data/ aside)
    assert sorted(lines.values()).count("ok") == 6 and sorted(lines.values()).count("note") == 5, lines
    assert lines["[Dataset] MODEL_PATH_DATA"] == "ok" and lines["[Dataset] BACKGROUND_IMAGES"] == "ok"
    assert lines["[Dataset] ENCODER_WEIGHTS"] == "ok"  # the committed encoder of the part
    assert lines["[Evaluation] MODELS_INFO"] == "ok" and "2 symmetry rotations" in out
    assert lines["[Dataset] CACHE_DIR"] == "note" and lines["[Training] OUTPUT_PATH"] == "note"
    assert "3,744 faces" in out and "decimated on first use" in out
    assert _files(tmp_path) == before


def test_missing_assets_are_named_with_the_key_and_exit_1(tmp_path, mesh_file, capsys):
    absent = tmp_path / "absent"
    cfg_file = tmp_path / "my.cfg"
    cfg_file.write_text(
        "[Dataset]\n"
        f"MODEL_PATH_DATA: {absent / 'obj_10.ply'}\n"
        f"MODEL_PATH_LOSS: {absent / 'obj_10.obj'}\n"
        f"BACKGROUND_IMAGES: {absent / 'VOC2012'}\n"
        f"ENCODER_WEIGHTS: {absent / 'encoder.npy'}\n"
        f"VALID_DATA_PATH: {absent / 'valid.npz'}\n"
        f"CACHE_DIR: {tmp_path / 'cache'}\n"
        "[Training]\n"
        f"OUTPUT_PATH: {tmp_path / 'run'}\n"
        f"VIEW_SAMPLING: {absent / 'rotations.npy'}-hard\n"
        "[Evaluation]\n"
        f"TEST_DATA_PATH: {absent / 'test_primesense'}\n"
        f"MODELS_INFO: {absent / 'models_info.json'}\n"
    )
    code = main([str(cfg_file)])
    out = capsys.readouterr().out
    assert code == 1
    for key, name in [("[Dataset] MODEL_PATH_DATA", "obj_10.ply"), ("[Dataset] MODEL_PATH_LOSS", "obj_10.obj"),
                      ("[Dataset] BACKGROUND_IMAGES", "VOC2012"), ("[Dataset] ENCODER_WEIGHTS", "encoder.npy"),
                      ("[Dataset] VALID_DATA_PATH", "valid.npz"), ("[Training] VIEW_SAMPLING", "rotations.npy"),
                      ("[Evaluation] TEST_DATA_PATH", "test_primesense"),
                      ("[Evaluation] MODELS_INFO", "models_info.json")]:
        line = next(ln for ln in out.splitlines() if key in ln)
        assert line.split()[0] == "missing" and name in line, line
    assert "8 missing" in out and "FAILED" in out
    assert not (tmp_path / "run").exists() and not (tmp_path / "cache").exists()


def test_a_bad_config_is_exit_2_with_one_error_line(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(REPO_ROOT)
    code = main(["experiment_template.cfg", "--set", "Dataset.NOOF_BG_IMGS=many"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error:") and "NOOF_BG_IMGS" in err and len(err.splitlines()) == 1


def _image_folder(folder: Path, good: int, broken: int) -> Path:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(good):
        Image.fromarray(rng.integers(0, 255, (40, 50, 3), dtype=np.uint8)).save(folder / f"good{i}.jpg")
    for i in range(broken):
        (folder / f"broken{i}.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    return folder


def test_background_folders_good_partly_broken_and_all_broken(tmp_path, mesh_file):
    voc = _image_folder(tmp_path / "VOC2012" / "JPEGImages", good=3, broken=1)
    cfg = small_config(tmp_path, mesh_file, f"Dataset.BACKGROUND_IMAGES={voc.parent}", "Dataset.NOOF_BG_IMGS=3")
    found = _by_key(check_data(cfg, progress=False))["[Dataset] BACKGROUND_IMAGES"]
    assert [f.status for f in found] == ["ok", "warning"]
    read = sum(not p.name.startswith("broken") for p in chosen_background_files(voc, 3))
    assert "3 readable images (all decoded)" in found[0].message and f"a run reads {read} of them" in found[0].message
    assert "1 file cannot be read" in found[1].message and "broken0.jpg" in found[1].message

    # the run reads only NOOF_BG_IMGS files of a fixed shuffle: if those are broken, it stops
    few = tmp_path / "few"
    _image_folder(few, good=2, broken=0)
    chosen = chosen_background_files(few, 1)[0]
    chosen.write_bytes(b"\xff\xd8 broken")
    cfg = small_config(tmp_path, mesh_file, f"Dataset.BACKGROUND_IMAGES={few}", "Dataset.NOOF_BG_IMGS=1")
    found = _by_key(check_data(cfg, progress=False))["[Dataset] BACKGROUND_IMAGES"]
    assert [f.status for f in found] == ["malformed"] and chosen.name in found[0].message

    broken = _image_folder(tmp_path / "broken", good=0, broken=2)
    cfg = small_config(tmp_path, mesh_file, f"Dataset.BACKGROUND_IMAGES={broken}")
    for quick in (False, True):  # a header that is not an image fails even the quick check
        found = _by_key(check_data(cfg, quick=quick, progress=False))["[Dataset] BACKGROUND_IMAGES"]
        assert [f.status for f in found] == ["malformed"] and "none of the 2 image files" in found[0].message

    a_file = tmp_path / "bg.jpg"
    a_file.write_bytes(b"x")
    cfg = small_config(tmp_path, mesh_file, f"Dataset.BACKGROUND_IMAGES={a_file}")
    found = _by_key(check_data(cfg, progress=False))["[Dataset] BACKGROUND_IMAGES"]
    assert [f.status for f in found] == ["malformed"] and "is a file, not a folder" in found[0].message

    empty = tmp_path / "empty"
    empty.mkdir()
    cfg = small_config(tmp_path, mesh_file, f"Dataset.BACKGROUND_IMAGES={empty}")
    found = _by_key(check_data(cfg, progress=False))["[Dataset] BACKGROUND_IMAGES"]
    assert [f.status for f in found] == ["malformed"] and "holds no .jpg" in found[0].message


def test_meshes_garbage_metres_and_an_off_centre_origin(tmp_path, mesh_file):
    garbage = tmp_path / "garbage.ply"
    garbage.write_bytes(b"ply\nthis is not a mesh\n")
    cfg = small_config(tmp_path, garbage)
    assert _statuses(check_data(cfg, progress=False), "[Dataset] MODEL_PATH_DATA") == ["malformed"]

    part = tiny_mesh(300)
    metres = write_mesh(Mesh.from_arrays(part.vertices.numpy() / 1000, part.faces.numpy()), tmp_path / "m.ply")
    found = _by_key(check_data(small_config(tmp_path, metres), progress=False))["[Dataset] MODEL_PATH_DATA"]
    assert [f.status for f in found] == ["ok", "warning"] and "metres" in found[1].message

    shifted = write_mesh(Mesh.from_arrays(part.vertices.numpy() + np.array([0, 0, 60.0], np.float32),
                                          part.faces.numpy()), tmp_path / "shifted.ply")
    found = _by_key(check_data(small_config(tmp_path, shifted), progress=False))["[Dataset] MODEL_PATH_DATA"]
    assert [f.status for f in found] == ["ok", "warning"] and "origin is 60.0 mm" in found[1].message
    normalized = small_config(tmp_path, shifted, "Rendering.NORMALIZE_VERTICES=true")
    assert _statuses(check_data(normalized, progress=False), "[Dataset] MODEL_PATH_DATA") == ["ok"]

    found = _by_key(check_data(small_config(tmp_path, mesh_file), progress=False))
    assert [f.status for f in found["[Dataset] MODEL_PATH_DATA"]] == ["ok"]
    assert found["[Dataset] MODEL_PATH_LOSS"][0].message.startswith("the same file as MODEL_PATH_DATA")


def test_sample_files_rotation_files_and_encoders(tmp_path, mesh_file):
    n = 3
    samples = SampleSet(images=torch.rand(n, 3, 32, 32), R=torch.eye(3).expand(n, 3, 3).clone())
    good = save_samples(tmp_path / "valid.npz", samples)
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"PK not a zip")
    rotations = tmp_path / "rotations.npy"
    np.save(rotations, np.eye(3, dtype=np.float32)[None].repeat(5, 0))
    wrong = tmp_path / "wrong.npy"
    np.save(wrong, np.ones((5, 2, 2), np.float32))
    encoder = save_encoder(Encoder(EncoderConfig(image_size=32, channels=(8, 8), latent_size=8)), tmp_path / "e.pt")
    other = save_encoder(Encoder(EncoderConfig(image_size=64, channels=(8, 8), latent_size=8)), tmp_path / "e64.pt")
    broken = tmp_path / "broken.pt"
    broken.write_bytes(b"not a torch file")

    cfg = small_config(tmp_path, mesh_file, f"Dataset.VALID_DATA_PATH=[\"{good}\", \"{bad}\"]",
                       f"Training.VIEW_SAMPLING={rotations}", f"Dataset.ENCODER_WEIGHTS={encoder}")
    found = _by_key(check_data(cfg, progress=False))
    assert [f.status for f in found["[Dataset] VALID_DATA_PATH"]] == ["ok", "malformed"]
    assert "3 samples of 32 px" in found["[Dataset] VALID_DATA_PATH"][0].message
    assert str(bad) in found["[Dataset] VALID_DATA_PATH"][1].message
    assert (
        found["[Training] VIEW_SAMPLING"][0].status == "ok"
        and "5 rotations" in found["[Training] VIEW_SAMPLING"][0].message
    )
    assert (
        found["[Dataset] ENCODER_WEIGHTS"][0].status == "ok"
        and "image 32" in found["[Dataset] ENCODER_WEIGHTS"][0].message
    )

    for weights, expected in ((other, "set [Dataset] CROP_SIZE: 64"), (broken, "broken.pt")):
        cfg = small_config(tmp_path, mesh_file, f"Training.VIEW_SAMPLING={wrong}", f"Dataset.ENCODER_WEIGHTS={weights}")
        found = _by_key(check_data(cfg, progress=False))
        assert found["[Training] VIEW_SAMPLING"][0].status == "malformed"
        assert found["[Dataset] ENCODER_WEIGHTS"][0].status == "malformed"
        assert expected in found["[Dataset] ENCODER_WEIGHTS"][0].message


@pytest.fixture(scope="module")
def bop_dataset(tmp_path_factory) -> dict:
    return write_bop_dataset(tmp_path_factory.mktemp("bop"))


def test_a_bop_split_and_its_models_info(tmp_path, bop_dataset):
    split = bop_dataset["split"]
    cfg = small_config(tmp_path, REVOLUTION, f"Evaluation.TEST_DATA_PATH={split}", "Evaluation.OBJ_ID=1")
    found = _by_key(check_data(cfg, progress=False))
    test = found["[Evaluation] TEST_DATA_PATH"]
    assert [f.status for f in test] == ["ok"], test
    assert "2 instances of object 1 in 1 scene" in test[0].message and "decoded" in test[0].message
    info = found["[Evaluation] MODELS_INFO"]
    assert info[0].status == "ok" and "diameter 88.1 mm" in info[0].message and "symmetry rotations" in info[0].message

    no_id = small_config(tmp_path, REVOLUTION, f"Evaluation.TEST_DATA_PATH={split}")
    assert _statuses(check_data(no_id, progress=False), "[Evaluation] OBJ_ID") == ["malformed"]
    other = small_config(tmp_path, REVOLUTION, f"Evaluation.TEST_DATA_PATH={split}", "Evaluation.OBJ_ID=7")
    found = _by_key(check_data(other, progress=False))
    assert found["[Evaluation] TEST_DATA_PATH"][0].status == "malformed"
    assert "no instance of object 7" in found["[Evaluation] TEST_DATA_PATH"][0].message
    assert found["[Evaluation] MODELS_INFO"][0].status == "warning"


def test_bop19_targets_model_and_detections_are_checked_before_a_run(tmp_path):
    """PROTOCOL bop19: the targets file read (what evaluation uses), the model and diameter MSSD/MSPD use, and
    the detections file parsed, each a finding; a malformed detections file or targets file fails preflight."""
    import json

    from multipose.experiment.preflight import preflight
    from multipose.infra.errors import PreflightError

    split = write_bop19_dataset(tmp_path / "bop")["split"]
    detections = tmp_path / "det.json"
    detections.write_text(json.dumps([{"scene_id": 1, "image_id": 0, "category_id": 1, "bbox": [40, 40, 30, 30],
                                       "score": 0.9, "time": 0.1},
                                      {"scene_id": 9, "image_id": 0, "category_id": 1, "bbox": [1, 1, 5, 5],
                                       "score": 0.9, "time": 0.1}]))
    settings = (f"Evaluation.TEST_DATA_PATH={split}", "Evaluation.OBJ_ID=1", "Evaluation.PROTOCOL=bop19")
    cfg = small_config(tmp_path, REVOLUTION, *settings, f"Evaluation.DETECTIONS={detections}",
                       "Evaluation.NUM_SAMPLES=3")
    found = _by_key(check_data(cfg, progress=False))
    test = found["[Evaluation] TEST_DATA_PATH"]
    assert test[0].status == "ok" and "8 BOP19 targets of object 1 in 6 images" in test[0].message, test
    assert "evaluation uses" in test[0].message and "(NUM_SAMPLES)" in test[0].message
    model = found["[Evaluation] MODEL_PATH_EVAL"]
    assert model[0].status == "ok" and "diameter 88.10 mm" in model[0].message, model
    det = found["[Evaluation] DETECTIONS"]
    assert det[0].status == "ok" and "1 detection of object 1 in 1 target image" in det[0].message, det
    preflight(cfg)  # all good: passes

    detections.write_text(json.dumps([{"scene_id": 1, "image_id": 0, "bbox": [1, 1, 5, 5]}]))  # no category_id
    with pytest.raises(PreflightError, match=r"\[Evaluation\] DETECTIONS: .*expected a BOP detections list"):
        preflight(cfg)
    (split.parent / "test_targets_bop19.json").write_text("{not json")
    with pytest.raises(PreflightError, match=r"TEST_DATA_PATH"):
        preflight(small_config(tmp_path, REVOLUTION, *settings))


def test_a_broken_bop_image_is_found_unless_quick(tmp_path, bop_dataset):
    import shutil

    root = tmp_path / "copy"
    shutil.copytree(bop_dataset["split"].parent, root)
    split = root / "test_primesense"
    (split / "000001" / "rgb" / "000003.png").write_bytes(b"\x89PNG broken")
    (split / "000001" / "depth" / "000000.png").unlink()
    cfg = small_config(tmp_path, REVOLUTION, f"Evaluation.TEST_DATA_PATH={split}", "Evaluation.OBJ_ID=1")
    test = _by_key(check_data(cfg, progress=False))["[Evaluation] TEST_DATA_PATH"]
    assert [f.status for f in test] == ["ok", "malformed", "warning"]
    assert "1 image cannot be read" in test[1].message and "000003.png" in test[1].message
    assert "1 of the 2 instances used have no depth/ PNG" in test[2].message and "their" in test[2].message
    quick = _by_key(check_data(cfg, quick=True, progress=False))["[Evaluation] TEST_DATA_PATH"]
    assert [f.status for f in quick] == ["ok", "warning"]


def test_run_folder_with_another_config_or_another_encoder_and_a_cache(tmp_path, mesh_file):
    from multipose.experiment.run_folder import write_resolved_config
    from multipose.models.weights import encoder_digest

    weights = save_encoder(Encoder(EncoderConfig(image_size=32, channels=(8, 8), latent_size=8)), tmp_path / "e.pt")
    cfg = small_config(tmp_path, mesh_file, f"Dataset.ENCODER_WEIGHTS={weights}")
    run = Path(cfg.Training.OUTPUT_PATH)
    write_resolved_config(small_config(tmp_path, mesh_file, f"Dataset.ENCODER_WEIGHTS={weights}",
                                       "Training.LEARNING_RATE=0.5"), run)
    (tmp_path / "cache" / "meshes").mkdir(parents=True)
    (tmp_path / "cache" / "meshes" / "a.npz").write_bytes(b"x" * 1000)
    (tmp_path / "cache" / "views").mkdir(parents=True)
    for name in ("part-32px-12-abc.npz", "part-32px-12-abc-targets.npz"):
        (tmp_path / "cache" / "views" / name).write_bytes(b"x")
    found = _by_key(check_data(cfg, progress=False))
    out = found["[Training] OUTPUT_PATH"][0]
    assert out.status == "warning" and "LEARNING_RATE" in out.message and "--force" in out.message
    cache = found["[Dataset] CACHE_DIR"][0]
    assert cache.status == "ok" and "1 loss mesh, 1 view cache (1 with pretraining targets)" in cache.message

    write_resolved_config(cfg, run)
    assert [f.message for f in check_data(cfg, progress=False) if f.what == "[Training] OUTPUT_PATH"] == [
        f"{run}: holds no pose checkpoint"]
    (run / "models").mkdir()
    torch.save({"model": {}, "head_args": {}, "encoder_sha256": "f" * 64}, run / "models" / "model-epoch10.pt")
    out = _by_key(check_data(cfg, progress=False))["[Training] OUTPUT_PATH"][0]
    assert out.status == "warning" and "other encoder weights (sha256 ffffffffffff)" in out.message
    from multipose.experiment.encoders import load_encoder

    torch.save({"model": {}, "head_args": {}, "encoder_sha256": encoder_digest(load_encoder(cfg))},
               run / "models" / "model-epoch11.pt")
    out = _by_key(check_data(cfg, progress=False))["[Training] OUTPUT_PATH"][0]
    assert out.status == "ok" and "newest checkpoint model-epoch11.pt" in out.message

    (tmp_path / "not-a-folder").write_text("x")
    blocked = small_config(tmp_path, mesh_file, f"Dataset.CACHE_DIR={tmp_path / 'not-a-folder'}")
    assert _statuses(check_data(blocked, progress=False), "[Dataset] CACHE_DIR") == ["malformed"]


def test_assets_in_the_usual_places_that_the_config_does_not_use(tmp_path, mesh_file):
    data = tmp_path / "data"
    _image_folder(data / "VOC2012" / "JPEGImages", good=1, broken=0)
    (data / "encoder" / "obj1-18").mkdir(parents=True)
    np.save(data / "encoder" / "obj1-18" / "encoder.npy", np.zeros(1))
    cfg = small_config(tmp_path, mesh_file)
    notes = {f.what: f for f in check_data(cfg, progress=False, data_root=data) if f.what.startswith(str(data))}
    assert set(notes) == {f"{data}/ (backgrounds)", f"{data}/ (encoder weights)"}
    assert "BACKGROUND_IMAGES" in notes[f"{data}/ (backgrounds)"].message
    used = small_config(tmp_path, mesh_file, f"Dataset.BACKGROUND_IMAGES={data / 'VOC2012'}")
    notes = [f.what for f in check_data(used, progress=False, data_root=data) if f.what.startswith(str(data))]
    assert notes == [f"{data}/ (encoder weights)"]


def test_the_report_summarises_and_a_finding_needs_a_known_status():
    text = format_report([Finding("ok", "[A] B", "fine"), Finding("missing", "[A] C", "gone")], "x.cfg")
    assert "1 ok, 0 notes, 0 warnings, 1 missing, 0 malformed: FAILED" in text
    with pytest.raises(ValueError):
        Finding("fine", "[A] B", "x")
