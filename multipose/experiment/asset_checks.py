"""Checks of the assets a config's training uses (:mod:`multipose.experiment.preflight`): models, backgrounds,
encoder, validation files, caches, view sampling and the run folder, each opened with the loader the run uses."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from multipose.config import Config, check_crop_size, crop_size, view_sampling
from multipose.core.mesh import load_mesh, loss_mesh_cache_file
from multipose.data import bop_files
from multipose.data.backgrounds import READ_ERRORS, chosen_background_files, find_background_files, read_background_crop
from multipose.data.io import load_samples
from multipose.data.sampling import load_view_sampling_file
from multipose.experiment.encoders import load_encoder
from multipose.experiment.findings import SHOWN_FILES, Finding, counted, folder_bytes, guarded, setting, shown_names
from multipose.experiment.run_folder import (
    RunFolder,
    describe_changes,
    encoder_weights_path,
    pose_checkpoints,
    stored_config_changes,
)
from multipose.infra.errors import CheckpointRefused, RunFolderError
from multipose.infra.progress import progress_bar
from multipose.models.encoder import Encoder
from multipose.models.weights import encoder_digest, encoder_mismatch

#: A model whose bounding radius is below this (mm) was probably exported in metres.
MIN_PLAUSIBLE_RADIUS_MM = 5.0
#: Origin further than this fraction of the bounding radius from the bounding-box centre: warn.
MAX_ORIGIN_OFFSET = 0.25


def _loss_copy(cfg: Config, path: Path, num_faces: int) -> str:
    """What the loss renders of the model file ``path`` (``num_faces`` faces)."""
    faces = cfg.Rendering.LOSS_MESH_FACES
    if faces <= 0 or faces >= num_faces:
        return "the loss renders it whole"
    cached = loss_mesh_cache_file(path, faces, cfg.Dataset.CACHE_DIR, cfg.Rendering.NORMALIZE_VERTICES).is_file()
    return f"its loss copy ({faces:,} faces) is " + (
        "cached" if cached else "decimated on first use and cached in CACHE_DIR/meshes")


def check_mesh(cfg: Config, name: str) -> list[Finding]:
    what = setting("Dataset", name)
    d = cfg.Dataset
    if name == "MODEL_PATH_LOSS" and d.MODEL_PATH_LOSS == d.MODEL_PATH_DATA:  # also when left empty
        data = Path(d.MODEL_PATH_DATA)
        text = "the same file as MODEL_PATH_DATA"
        if not data.is_file():
            return [Finding("note", what, text)]
        return guarded(
            what, lambda: [Finding("ok", what, f"{text}; {_loss_copy(cfg, data, load_mesh(data).num_faces)}")]
        )
    path = Path(d[name])
    if not path.exists():
        return [Finding("missing", what, f"{path}: no such file; put the CAD model there (PLY/OBJ in mm, see "
                                         f"data/README.md, 'CAD models') or set {what}")]

    def check() -> list[Finding]:
        normalize = cfg.Rendering.NORMALIZE_VERTICES
        mesh = load_mesh(path, normalize=normalize)
        vertices = mesh.vertices.double()
        radius = mesh.radius
        extent = (vertices.max(0).values - vertices.min(0).values).tolist()
        text = (f"{path}: {counted(mesh.num_vertices, 'vertex', 'vertices')}, {counted(mesh.num_faces, 'face')}, "
                f"bounding radius {radius:.1f} mm, extent {' x '.join(f'{e:.1f}' for e in extent)} mm")
        if name == "MODEL_PATH_LOSS":
            text += f"; {_loss_copy(cfg, path, mesh.num_faces)}"
        findings = [Finding("ok", what, text)]
        if radius < MIN_PLAUSIBLE_RADIUS_MM:
            findings.append(Finding("warning", what, f"{path}: bounding radius {radius:.3g} mm: the model looks like "
                                                     "it is in metres; multipose expects millimetres (scale it by "
                                                     "1000, or set [Rendering] NORMALIZE_VERTICES: true)"))
        centre = (vertices.max(0).values + vertices.min(0).values) / 2
        offset = float(torch.linalg.vector_norm(centre))
        if not normalize and offset > MAX_ORIGIN_OFFSET * radius:
            findings.append(Finding("warning", what, f"{path}: the origin is {offset:.1f} mm from the bounding-box "
                                                     "centre; the object rotates about its origin (BOP models are "
                                                     "centred; [Rendering] NORMALIZE_VERTICES: true centres it)"))
        return findings

    return guarded(what, check)


def check_backgrounds(cfg: Config, quick: bool, progress: bool) -> list[Finding]:
    what = setting("Dataset", "BACKGROUND_IMAGES")
    folder = cfg.Dataset.BACKGROUND_IMAGES
    if folder == "procedural":
        return [Finding("ok", what, "procedural: random backgrounds made on the fly, no files needed")]
    if not Path(folder).exists():
        return [Finding("missing", what, f"{folder}: no such folder; put the VOC2012 images there (data/README.md, "
                                         "'Backgrounds') or set BACKGROUND_IMAGES: procedural")]

    def check() -> list[Finding]:
        files = find_background_files(folder)
        bad: list[Path] = []
        u = np.full(3, 0.5)
        for path in progress_bar(files, desc="reading backgrounds", unit="img", disable=not progress, leave=False):
            try:
                if quick:
                    with Image.open(path) as im:
                        im.size  # noqa: B018 - the header only
                else:
                    read_background_crop(path, 16, u)
            except READ_ERRORS:
                bad.append(path)
        where = files[0].parent
        limit = cfg.Dataset.NOOF_BG_IMGS
        used = chosen_background_files(folder, limit)  # what training reads (validation: the other end)
        used_bad = set(used) & set(bad)
        how = "headers only, --quick" if quick else "all decoded"
        if len(used_bad) == len(used):
            return [
                Finding(
                    "malformed",
                    what,
                    f"{where}: none of the {counted(len(used), 'image file')} a run reads "
                    f"(NOOF_BG_IMGS {limit:,}) can be read (e.g. {shown_names(sorted(used_bad))}); "
                    "replace them with JPEG/PNG files",
                )
            ]
        findings = [Finding("ok", what, f"{where}: {counted(len(files) - len(bad), 'readable image')} ({how}); a run "
                                        f"reads {len(used) - len(used_bad):,} of them (NOOF_BG_IMGS {limit:,})")]
        if bad:
            findings.append(Finding("warning", what, f"{where}: {counted(len(bad), 'file')} cannot be read and will "
                                                     f"be skipped: {shown_names(bad)}"))
        return findings

    return guarded(what, check)


def check_sample_files(paths: Sequence[str], what: str, size: int, purpose: str) -> list[Finding]:
    findings = []
    for path in map(Path, paths):
        if not path.is_file():
            findings.append(Finding("missing", what, f"{path}: no such file; make one with python generate_dataset.py "
                                                     f"CFG --num N --out {path} or fix {what}"))
            continue

        def check(path: Path = path) -> list[Finding]:
            samples = load_samples(path)
            resized = f" (resized to {size} px when read)" if samples.image_size != size else ""
            return [Finding("ok", what, f"{path}: {counted(len(samples), 'sample')} of {samples.image_size} px"
                                        f"{resized} for {purpose}")]

        findings += guarded(what, check)
    return findings


def check_validation(cfg: Config) -> list[Finding]:
    what = setting("Dataset", "VALID_DATA_PATH")
    if not cfg.Dataset.VALID_DATA_PATH:
        target = RunFolder.of(cfg).validation
        state = "present" if target.is_file() else "made by the first run"
        return [Finding("note", what, f"empty: {cfg.Dataset.NOOF_VALID_IMGS:,} validation samples are generated "
                                      f"into {target} ({state})")]
    return check_sample_files(cfg.Dataset.VALID_DATA_PATH, what, crop_size(cfg), "validation")


def check_encoder(cfg: Config) -> tuple[list[Finding], Encoder | None]:
    """The findings on ``ENCODER_WEIGHTS`` and the encoder when it loads (the run-folder check reuses it)."""
    what = setting("Dataset", "ENCODER_WEIGHTS")
    path = encoder_weights_path(cfg)
    auto = cfg.Dataset.ENCODER_WEIGHTS == "auto"
    if not path.exists():
        if auto:
            return [Finding("note", what, f"auto: {path} does not exist yet; train.py pretrains it first (or run "
                                          "python train_encoder.py CFG)")], None
        return [
            Finding(
                "missing",
                what,
                f"{path}: no such file; put the AAE encoder .npy or a multipose encoder .pt "
                "there (data/README.md, 'Encoder weights') or set ENCODER_WEIGHTS: auto",
            )
        ], None
    encoder = None

    def check() -> list[Finding]:
        nonlocal encoder
        encoder = load_encoder(cfg)
        check_crop_size(cfg, encoder.config.image_size, f"the encoder {path}")  # ConfigError -> malformed
        return [Finding("ok", what, f"{path}: {encoder.config.describe()}")]

    return guarded(what, check), encoder


def check_cache(cfg: Config) -> list[Finding]:
    what = setting("Dataset", "CACHE_DIR")
    folder = Path(cfg.Dataset.CACHE_DIR)
    if folder.exists() and not folder.is_dir():
        return [Finding("malformed", what, f"{folder}: a file, not a folder; remove it or set CACHE_DIR elsewhere")]
    if not folder.exists():
        return _writable_parent(folder, what, "created on first use")
    if not os.access(folder, os.W_OK | os.X_OK):
        return [Finding("malformed", what, f"{folder}: not writable; fix its permissions or set CACHE_DIR elsewhere")]
    views = list((folder / "views").glob("*.npz"))
    targets = [p for p in views if p.stem.endswith("-targets")]
    parts = [
        counted(len(list((folder / "meshes").glob("*.npz"))), "loss mesh", "loss meshes"),
        counted(len(views) - len(targets), "view cache") + f" ({len(targets):,} with pretraining targets)",
        counted(len(list((folder / "codebooks").glob("*.pt"))), "codebook"),
    ]
    mb = folder_bytes(folder) / 1e6
    return [Finding("ok", what, f"{folder}: {', '.join(parts)}, {mb:,.1f} MB (safe to delete)")]


def _writable_parent(folder: Path, what: str, state: str) -> list[Finding]:
    parent = next((p for p in folder.absolute().parents if p.exists()), None)
    if parent is None or not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        return [Finding("malformed", what, f"{folder}: cannot be created ({parent} is not a writable folder)")]
    return [Finding("note", what, f"{folder}: {state}")]


def check_view_sampling(cfg: Config) -> list[Finding]:
    what = setting("Training", "VIEW_SAMPLING")
    spec = view_sampling(cfg)
    base = spec.base
    if not spec.is_file:
        return [Finding("ok", what, f"{cfg.Training.VIEW_SAMPLING}: drawn at random, no file needed")]
    if not Path(base).is_file():
        return [Finding("missing", what, f"{base}: no such rotation file (.npy [N, 3, 3] or a pickle with 'Rs')")]
    return guarded(
        what, lambda: [Finding("ok", what, f"{base}: {counted(len(load_view_sampling_file(base)), 'rotation')}")]
    )


def check_run_folder(cfg: Config, encoder: Encoder | None) -> list[Finding]:
    """``OUTPUT_PATH`` as train.py would find it; ``encoder``: the loaded ``ENCODER_WEIGHTS``, if any."""

    what = setting("Training", "OUTPUT_PATH")
    folder = Path(cfg.Training.OUTPUT_PATH)
    if folder.exists() and not folder.is_dir():
        return [Finding("malformed", what, f"{folder}: a file, not a folder; set OUTPUT_PATH elsewhere")]
    if not folder.exists():
        return _writable_parent(folder, what, "new run folder, created by the first run")
    if not os.access(folder, os.W_OK | os.X_OK):
        return [Finding("malformed", what, f"{folder}: not writable; fix its permissions or set OUTPUT_PATH elsewhere")]
    try:  # the rules train.py applies to a folder it resumes
        changes = stored_config_changes(cfg)
    except RunFolderError as exc:
        return [Finding("warning", what, f"{exc}; train.py refuses this folder without --force")]
    if changes:
        return [Finding("warning", what, f"{folder} holds a run with another config ({describe_changes(changes, 3)}); "
                                         "train.py refuses it without --force: set another OUTPUT_PATH")]
    try:
        latest = pose_checkpoints(cfg).load_latest()
    except CheckpointRefused as exc:
        return [Finding("warning", what, f"{exc} (train.py refuses to resume it without it)")]
    if latest is None:
        return [Finding("ok", what, f"{folder}: holds no pose checkpoint")]
    state, path = latest
    text = f"{folder}: holds a run, newest checkpoint {path.name}"
    if encoder is not None:  # a missing or broken encoder is reported under ENCODER_WEIGHTS
        mismatch = encoder_mismatch(state, encoder_digest(encoder), path, encoder_weights_path(cfg))
        if mismatch:
            return [Finding("warning", what, f"{mismatch}; train.py refuses to resume without --force")]
    return [Finding("ok", what, text)]


def _used_paths(cfg: Config) -> set[Path]:
    d, ev = cfg.Dataset, cfg.Evaluation
    named = [
        *(d.MODEL_PATH_DATA if isinstance(d.MODEL_PATH_DATA, tuple) else [d.MODEL_PATH_DATA]),
        *(d.MODEL_PATH_LOSS if isinstance(d.MODEL_PATH_LOSS, tuple) else [d.MODEL_PATH_LOSS]),
        *(d.VALID_DATA_PATH or []),
        os.fspath(encoder_weights_path(cfg)),
        d.BACKGROUND_IMAGES,
        ev.TEST_DATA_PATH,
        ev.MODELS_INFO,
    ]
    return {Path(p).absolute() for p in named if p}


def unused_assets(cfg: Config, root: Path) -> list[Finding]:
    """Assets in the layout of ``data/README.md`` under ``root`` that the config names nowhere."""
    used = _used_paths(cfg)

    def is_used(path: Path) -> bool:
        path = path.absolute()
        return any(path == u or path in u.parents or u in path.parents for u in used)

    findings = []
    groups: Iterable[tuple[str, list[Path], str]] = (
        ("CAD models", sorted(p for p in root.glob("cad-files/*-files/*") if p.suffix.lower() in (".ply", ".obj")),
         "MODEL_PATH_DATA / MODEL_PATH_LOSS"),
        ("encoder weights", sorted(root.glob("encoder/**/*.npy")), "ENCODER_WEIGHTS"),
        ("validation sets", sorted(root.glob("validationsets/*")), "VALID_DATA_PATH"),
        ("backgrounds", [p for p in (root / "VOC2012",) if p.is_dir()], "BACKGROUND_IMAGES"),
        ("BOP splits", sorted(p for p in root.glob("*/*") if p.is_dir() and bop_files.is_bop_split(p)),
         "TEST_DATA_PATH"),
    )
    for name, paths, key in groups:
        unused = [p for p in paths if not is_used(p)]
        if unused:
            shown = ", ".join(os.fspath(p) for p in unused[:SHOWN_FILES])
            more = f" and {len(unused) - SHOWN_FILES} more" if len(unused) > SHOWN_FILES else ""
            findings.append(
                Finding("note", f"{root}/ ({name})", f"{shown}{more}: found, not used by this config ({key})")
            )
    return findings
