"""Check the models and data files a config uses, before a run needs them.

    python -m multipose.check_data experiment_template.cfg
    python -m multipose.check_data my_experiment.cfg --set Dataset.BACKGROUND_IMAGES=./data/VOC2012 --quick

Every file or folder the config names is opened with the loader the run itself uses (so a problem is
reported with the same message the run would stop with), and one line per asset is printed::

    ok        [Dataset] MODEL_PATH_DATA     data/cad-files/tless_like_2fold.ply: 1,874 vertices, 3,744 faces, ...
    missing   [Dataset] ENCODER_WEIGHTS     data/encoder/obj1-18/encoder.npy: no such file; ...
    malformed [Dataset] VALID_DATA_PATH     data/validationsets/broken.npz: not a readable .npz file ...

Statuses: ``ok`` (found and usable), ``note`` (not set, or made on demand), ``warning`` (usable, but
look at it: some unreadable background images, a model that looks like metres), ``missing`` and
``malformed`` (the run would stop). The exit code is 1 when anything is missing or malformed, else 0;
a bad config file itself is exit code 2, as for every script. Assets found in the usual places under
``data/`` (``data/README.md``) that the config does not use are listed at the end. Nothing is written.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from multipose import cli
from multipose.checkpoint import CheckpointRefused
from multipose.config import Config, check_crop_size, crop_size, view_sampling
from multipose.data.backgrounds import (
    READ_ERRORS,
    chosen_background_files,
    find_background_files,
    read_background_crop,
)
from multipose.data.io import load_samples
from multipose.data.sampling import load_view_sampling_file
from multipose.errors import ConfigError, UserInputError
from multipose.evaluation import bop
from multipose.evaluation.metrics import symmetry_transformations
from multipose.mesh import load_mesh, loss_mesh_cache_file
from multipose.models import Encoder
from multipose.models.weights import encoder_digest, encoder_mismatch, load_encoder
from multipose.progress import progress_bar
from multipose.runs import (
    RunFolder,
    RunFolderError,
    describe_changes,
    encoder_weights_path,
    pose_checkpoints,
    stored_config_changes,
)

__all__ = ["STATUSES", "Finding", "check_data", "format_report", "main"]

logger = logging.getLogger(__name__)

#: Every status, in report order of severity; the last two make the check fail.
STATUSES = ("ok", "note", "warning", "missing", "malformed")
FAILING = ("missing", "malformed")

#: A model whose bounding radius is below this (mm) was probably exported in metres.
MIN_PLAUSIBLE_RADIUS_MM = 5.0
#: Origin further than this fraction of the bounding radius from the bounding-box centre: warn.
MAX_ORIGIN_OFFSET = 0.25
#: How many unreadable files a finding names.
SHOWN_FILES = 3


@dataclass(frozen=True)
class Finding:
    """One line of the report: ``status`` (one of :data:`STATUSES`), the config key (``"[Dataset]
    MODEL_PATH_DATA"``) or asset it is about, and what was found or what to do."""

    status: str
    what: str
    message: str

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {self.status!r}")


def _key(section: str, name: str) -> str:
    return f"[{section}] {name}"


def _guarded(what: str, check: Callable[[], list[Finding]]) -> list[Finding]:
    """Run one check; the loaders' :class:`UserInputError` becomes a ``malformed`` finding."""
    try:
        return check()
    except UserInputError as exc:
        return [Finding("malformed", what, " ".join(str(exc).split()))]


def _count(n: int, word: str, plural: str | None = None) -> str:
    return f"{n:,} " + (word if n == 1 else plural or word + "s")


def _names(paths: Sequence[Path]) -> str:
    shown = ", ".join(p.name for p in paths[:SHOWN_FILES])
    return shown + (f" and {len(paths) - SHOWN_FILES} more" if len(paths) > SHOWN_FILES else "")


def _folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


# --------------------------------------------------------------------------------------------------
# [Dataset]
# --------------------------------------------------------------------------------------------------


def _loss_copy(cfg: Config, path: Path, num_faces: int) -> str:
    """What the loss renders of the model file ``path`` (``num_faces`` faces)."""
    faces = cfg.Rendering.LOSS_MESH_FACES
    if faces <= 0 or faces >= num_faces:
        return "the loss renders it whole"
    cached = loss_mesh_cache_file(path, faces, cfg.Dataset.CACHE_DIR, cfg.Rendering.NORMALIZE_VERTICES).is_file()
    return f"its loss copy ({faces:,} faces) is " + (
        "cached" if cached else "decimated on first use and cached in CACHE_DIR/meshes")


def _check_mesh(cfg: Config, name: str) -> list[Finding]:
    what = _key("Dataset", name)
    d = cfg.Dataset
    if name == "MODEL_PATH_LOSS" and d.MODEL_PATH_LOSS == d.MODEL_PATH_DATA:  # also when left empty
        data = Path(d.MODEL_PATH_DATA)
        text = "the same file as MODEL_PATH_DATA"
        if not data.is_file():
            return [Finding("note", what, text)]
        return _guarded(
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
        text = (f"{path}: {_count(mesh.num_vertices, 'vertex', 'vertices')}, {_count(mesh.num_faces, 'face')}, "
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

    return _guarded(what, check)


def _check_backgrounds(cfg: Config, quick: bool, progress: bool) -> list[Finding]:
    what = _key("Dataset", "BACKGROUND_IMAGES")
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
                    f"{where}: none of the {_count(len(used), 'image file')} a run reads "
                    f"(NOOF_BG_IMGS {limit:,}) can be read (e.g. {_names(sorted(used_bad))}); "
                    "replace them with JPEG/PNG files",
                )
            ]
        findings = [Finding("ok", what, f"{where}: {_count(len(files) - len(bad), 'readable image')} ({how}); a run "
                                        f"reads {len(used) - len(used_bad):,} of them (NOOF_BG_IMGS {limit:,})")]
        if bad:
            findings.append(Finding("warning", what, f"{where}: {_count(len(bad), 'file')} cannot be read and will "
                                                     f"be skipped: {_names(bad)}"))
        return findings

    return _guarded(what, check)


def _check_sample_files(paths: Sequence[str], what: str, size: int, purpose: str) -> list[Finding]:
    findings = []
    for path in map(Path, paths):
        if not path.is_file():
            findings.append(Finding("missing", what, f"{path}: no such file; make one with python generate_dataset.py "
                                                     f"CFG --num N --out {path} or fix {what}"))
            continue

        def check(path: Path = path) -> list[Finding]:
            samples = load_samples(path)
            resized = f" (resized to {size} px when read)" if samples.image_size != size else ""
            return [Finding("ok", what, f"{path}: {_count(len(samples), 'sample')} of {samples.image_size} px"
                                        f"{resized} for {purpose}")]

        findings += _guarded(what, check)
    return findings


def _check_validation(cfg: Config) -> list[Finding]:
    what = _key("Dataset", "VALID_DATA_PATH")
    if not cfg.Dataset.VALID_DATA_PATH:
        target = RunFolder.of(cfg).validation
        state = "present" if target.is_file() else "made by the first run"
        return [Finding("note", what, f"empty: {cfg.Dataset.NOOF_VALID_IMGS:,} validation samples are generated "
                                      f"into {target} ({state})")]
    return _check_sample_files(cfg.Dataset.VALID_DATA_PATH, what, crop_size(cfg), "validation")


def _check_encoder(cfg: Config) -> tuple[list[Finding], Encoder | None]:
    """The findings on ``ENCODER_WEIGHTS`` and the encoder when it loads (the run-folder check reuses it)."""
    what = _key("Dataset", "ENCODER_WEIGHTS")
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

    return _guarded(what, check), encoder


def _check_cache(cfg: Config) -> list[Finding]:
    what = _key("Dataset", "CACHE_DIR")
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
        _count(len(list((folder / "meshes").glob("*.npz"))), "loss mesh", "loss meshes"),
        _count(len(views) - len(targets), "view cache") + f" ({len(targets):,} with pretraining targets)",
        _count(len(list((folder / "codebooks").glob("*.pt"))), "codebook"),
    ]
    mb = _folder_bytes(folder) / 1e6
    return [Finding("ok", what, f"{folder}: {', '.join(parts)}, {mb:,.1f} MB (safe to delete)")]


def _writable_parent(folder: Path, what: str, state: str) -> list[Finding]:
    parent = next((p for p in folder.absolute().parents if p.exists()), None)
    if parent is None or not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        return [Finding("malformed", what, f"{folder}: cannot be created ({parent} is not a writable folder)")]
    return [Finding("note", what, f"{folder}: {state}")]


# --------------------------------------------------------------------------------------------------
# [Training]
# --------------------------------------------------------------------------------------------------


def _check_view_sampling(cfg: Config) -> list[Finding]:
    what = _key("Training", "VIEW_SAMPLING")
    spec = view_sampling(cfg)
    base = spec.base
    if not spec.is_file:
        return [Finding("ok", what, f"{cfg.Training.VIEW_SAMPLING}: drawn at random, no file needed")]
    if not Path(base).is_file():
        return [Finding("missing", what, f"{base}: no such rotation file (.npy [N, 3, 3] or a pickle with 'Rs')")]
    return _guarded(
        what, lambda: [Finding("ok", what, f"{base}: {_count(len(load_view_sampling_file(base)), 'rotation')}")]
    )


def _check_run_folder(cfg: Config, encoder: Encoder | None) -> list[Finding]:
    """``OUTPUT_PATH`` as train.py would find it; ``encoder``: the loaded ``ENCODER_WEIGHTS``, if any."""

    what = _key("Training", "OUTPUT_PATH")
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


# --------------------------------------------------------------------------------------------------
# [Evaluation]
# --------------------------------------------------------------------------------------------------


def _check_bop(cfg: Config, folder: Path, quick: bool, progress: bool) -> list[Finding]:
    what = _key("Evaluation", "TEST_DATA_PATH")
    ev = cfg.Evaluation
    if not bop.is_bop_split(folder):
        return [Finding("malformed", what, f"{folder}: a folder without BOP scene folders (NNNNNN/scene_gt.json); "
                                           "point TEST_DATA_PATH at a split such as tless/test_primesense")]
    if ev.OBJ_ID is None:
        return [Finding("malformed", _key("Evaluation", "OBJ_ID"),
                        f"empty: set the id of the object to evaluate in {folder} (e.g. OBJ_ID: 10)")]

    def check() -> list[Finding]:
        if ev.PROTOCOL == "bop19":
            split = bop.read_bop19_targets(folder, ev.OBJ_ID)
            used, targets = split.bop19_images(ev.NUM_SAMPLES)
            images = len({(i.scene_id, i.im_id) for i in used})
            text = (f"{folder}: {_count(split.num_targets or 0, 'BOP19 target')} of object {ev.OBJ_ID} in "
                    f"{_count(len(split.targets_per_image or {}), 'image')}; evaluation uses {targets:,} in "
                    f"{_count(images, 'image')} (NUM_SAMPLES)")
        else:
            split = bop.read_bop_split(folder, ev.OBJ_ID, ev.MIN_VISIB_FRACT)
            scenes = len({i.scene_id for i in split.instances})
            used = [split.instances[i] for i in bop.subsample(len(split.instances), ev.NUM_SAMPLES)]
            text = (f"{folder}: {_count(len(split.instances), 'instance')} of object {ev.OBJ_ID} in "
                    f"{_count(scenes, 'scene')}; evaluation uses {len(used):,} (NUM_SAMPLES)")
        no_depth = sum(i.depth_path is None for i in used)
        findings = []
        if not quick:
            bad = _unreadable_images(used, progress)
            text += ", their images decoded"
            if bad:
                findings.append(Finding("malformed", what, f"{folder}: {_count(len(bad), 'image')} cannot be read: "
                                                           f"{', '.join(map(str, bad[:SHOWN_FILES]))}"))
        findings.insert(0, Finding("ok", what, text))
        if no_depth:
            findings.append(
                Finding(
                    "warning",
                    what,
                    f"{folder}: {no_depth:,} of the {len(used):,} instances used have no "
                    "depth/ PNG, so VSD uses their ground-truth render as the test depth",
                )
            )
        if split.fully_occluded:
            findings.append(Finding("warning", what, f"{folder}: {_count(split.fully_occluded, 'instance')} of object "
                                                     f"{ev.OBJ_ID} fully occluded (visib_fract 0), not evaluated"))
        if split.targets_per_image is not None and ev.DETECTIONS:
            findings += _check_detections(cfg, split.targets_per_image)
        return findings

    return _guarded(what, check)


def _unreadable_images(instances: Sequence[bop.BopInstance], progress: bool) -> list[Path]:
    """The colour and depth images of ``instances`` that cannot be decoded."""
    bad: list[Path] = []
    for inst in progress_bar(instances, desc="reading test images", unit="instance", disable=not progress,
                             leave=False):
        assert inst.image_path is not None  # the readers keep only instances whose image exists
        reads: list[tuple[Path, Callable[[Path], np.ndarray]]] = [(inst.image_path, bop.read_rgb)]
        if inst.depth_path is not None:
            reads.append((inst.depth_path, partial(bop.read_depth, scale=inst.depth_scale)))
        for path, read in reads:
            if path in bad:
                continue
            try:
                read(path)
            except UserInputError:
                bad.append(path)
    return bad


def _check_detections(cfg: Config, targets: dict[tuple[int, int], int]) -> list[Finding]:
    """``[Evaluation] DETECTIONS`` (``PROTOCOL: bop19``): the file parsed, its detections of the object in
    the target images (``targets``: the split's BOP19 targets per image) counted."""
    from multipose.evaluation import detections

    ev = cfg.Evaluation
    key = _key("Evaluation", "DETECTIONS")

    def check() -> list[Finding]:
        found = [d for d in detections.read_detections(Path(ev.DETECTIONS), ev.OBJ_ID) if d["key"] in targets]
        if not found:
            return [Finding("malformed", key, f"{ev.DETECTIONS}: no detection of object {ev.OBJ_ID} in the "
                                              f"{len(targets):,} target images")]
        return [Finding("ok", key, f"{ev.DETECTIONS}: {_count(len(found), 'detection')} of object {ev.OBJ_ID} in "
                                   f"{_count(len({d['key'] for d in found}), 'target image')}")]

    return _guarded(key, check)


def _check_eval_model(cfg: Config) -> list[Finding]:
    """``PROTOCOL: bop19``: the model and ``models_info.json`` entry MSSD and MSPD use."""
    ev = cfg.Evaluation
    if ev.PROTOCOL != "bop19" or not ev.TEST_DATA_PATH or not Path(ev.TEST_DATA_PATH).is_dir() or ev.OBJ_ID is None:
        return []
    from multipose.evaluation import bop19

    what = _key("Evaluation", "MODEL_PATH_EVAL")

    def check() -> list[Finding]:
        found = bop19.object_model(cfg)
        return [Finding("ok", what, f"{bop19.eval_model_path(cfg)}: MSSD and MSPD on {found.points.shape[0]:,} "
                                    f"points, diameter {found.diameter:.2f} mm, "
                                    f"{_count(found.sym_R.shape[0], 'symmetry', 'symmetries')}")]

    return _guarded(what, check)


def _check_test_data(cfg: Config, quick: bool, progress: bool) -> list[Finding]:
    what = _key("Evaluation", "TEST_DATA_PATH")
    path = cfg.Evaluation.TEST_DATA_PATH
    if not path:
        return [Finding("note", what, f"empty: {cfg.Evaluation.NUM_SAMPLES:,} synthetic test samples are generated")]
    path = Path(path)
    if path.is_dir():
        return _check_bop(cfg, path, quick, progress)
    if not path.exists():
        return [Finding("missing", what, f"{path}: no such file or folder; a BOP split folder (data/README.md, "
                                         "'T-LESS test images') or a dataset file (.npz, .p)")]
    return _check_sample_files([os.fspath(path)], what, crop_size(cfg), "testing")


def _check_models_info(cfg: Config) -> list[Finding]:
    ev = cfg.Evaluation
    what = _key("Evaluation", "MODELS_INFO")
    test = Path(ev.TEST_DATA_PATH) if ev.TEST_DATA_PATH else None
    path: Path | None
    if ev.MODELS_INFO:
        path = Path(ev.MODELS_INFO)
        if not path.is_file():
            return [Finding("missing", what, f"{path}: no such file (a BOP models_info.json)")]
    else:
        path = bop.find_models_info(test) if test is not None and test.is_dir() else None
        if path is None:
            return [Finding("note", what, "none: symmetry-aware rotation errors (re_sym) are not computed; VSD "
                                          "needs no symmetries")]

    def check() -> list[Finding]:
        info = bop.read_models_info(path)
        if ev.OBJ_ID is None:
            return [Finding("warning", what, f"{path}: {_count(len(info), 'object')}, but [Evaluation] OBJ_ID is "
                                             "empty, so none is used")]
        if ev.OBJ_ID not in info:
            return [Finding("warning", what, f"{path}: no object {ev.OBJ_ID} (has {sorted(info)[:10]}); no symmetries")]
        try:
            R, _ = symmetry_transformations(info[ev.OBJ_ID])
        except ValueError as exc:
            return [Finding("malformed", what, f"{path}: object {ev.OBJ_ID}: {exc}")]
        diameter = info[ev.OBJ_ID].get("diameter")
        shown = f"diameter {float(diameter):.1f} mm, " if isinstance(diameter, (int, float)) else ""
        return [Finding("ok", what, f"{path}: object {ev.OBJ_ID}: {shown}{_count(R.shape[0], 'symmetry rotation')}")]

    return _guarded(what, check)


# --------------------------------------------------------------------------------------------------
# Assets in the usual places that the config does not use
# --------------------------------------------------------------------------------------------------


def _used_paths(cfg: Config) -> set[Path]:
    d, ev = cfg.Dataset, cfg.Evaluation
    named = [
        d.MODEL_PATH_DATA,
        d.MODEL_PATH_LOSS,
        *(d.VALID_DATA_PATH or []),
        os.fspath(encoder_weights_path(cfg)),
        d.BACKGROUND_IMAGES,
        ev.TEST_DATA_PATH,
        ev.MODELS_INFO,
    ]
    return {Path(p).absolute() for p in named if p}


def _unused_assets(cfg: Config, root: Path) -> list[Finding]:
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
        ("BOP splits", sorted(p for p in root.glob("*/*") if p.is_dir() and bop.is_bop_split(p)), "TEST_DATA_PATH"),
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


# --------------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------------


def check_data(
    cfg: Config, quick: bool = False, progress: bool = True, data_root: str | os.PathLike = "data"
) -> list[Finding]:
    """Every asset ``cfg`` uses, checked with the loaders the run uses; nothing is written.

    ``quick``: read only image headers (backgrounds) and skip decoding BOP test images.
    ``data_root``: where to look for assets the config does not use (``data/README.md``'s layout).
    """
    encoder_findings, encoder = _check_encoder(cfg)
    findings = [
        *_check_mesh(cfg, "MODEL_PATH_DATA"),
        *_check_mesh(cfg, "MODEL_PATH_LOSS"),
        *_check_backgrounds(cfg, quick, progress),
        *encoder_findings,
        *_check_validation(cfg),
        *_check_cache(cfg),
        *_check_view_sampling(cfg),
        *_check_run_folder(cfg, encoder),
        *_check_test_data(cfg, quick, progress),
        *_check_eval_model(cfg),
        *_check_models_info(cfg),
    ]
    root = Path(data_root)
    if data_root and root.is_dir():
        findings += _unused_assets(cfg, root)
    return findings


class PreflightError(ConfigError):
    """An asset the config names is missing or malformed (exit code 2, before any work)."""


def preflight(cfg: Config) -> None:
    """The quick form of :func:`check_data`, run by every entry script before any work: raises
    :class:`PreflightError` naming the first missing or malformed asset (and how many there are).
    Notes and warnings pass (the scripts decide about those, e.g. ``--force``)."""
    problems = [f for f in check_data(cfg, quick=True, progress=False, data_root="") if f.status in FAILING]
    if problems:
        more = f" (and {len(problems) - 1} more problem{'s' if len(problems) > 2 else ''})" if len(problems) > 1 else ""
        source = cfg.source if cfg.source is not None else "CFG"
        raise PreflightError(f"{problems[0].what}: {problems[0].message}{more}; "
                             f"python -m multipose.check_data {source} lists everything the config uses")


def format_report(findings: Sequence[Finding], source: str) -> str:
    """The report: one line per finding and a summary line."""
    width = max((len(f.what) for f in findings), default=0)
    lines = [f"Data check of {source} (relative paths from {Path.cwd()})", ""]
    lines += [f"  {f.status:<9} {f.what:<{width}}  {f.message}" for f in findings]
    counts = {s: sum(f.status == s for f in findings) for s in STATUSES}
    summary = ", ".join(f"{n} {s}" + ("s" if s in ("note", "warning") and n != 1 else "") for s, n in counts.items())
    verdict = ("FAILED: fix what is missing or malformed (see data/README.md)"
               if any(counts[s] for s in FAILING) else "everything the config needs is there")
    lines += ["", f"{summary}: {verdict}"]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m multipose.check_data CFG [--set ...] [--quick]``: exit 1 if anything is missing or
    malformed, 2 for a bad config file."""
    parser = cli.make_parser(__doc__.split("\n\n")[0])
    parser.prog = "python -m multipose.check_data"
    parser.add_argument("--quick", action="store_true",
                        help="read only the headers of background images and skip decoding BOP test images")

    def run(args: argparse.Namespace, cfg: Config) -> int:
        findings = check_data(cfg, quick=args.quick, progress=sys.stderr.isatty())
        sys.stdout.write(format_report(findings, args.config))
        return 1 if any(f.status in FAILING for f in findings) else 0

    return cli.run(run, parser, argv)


if __name__ == "__main__":
    sys.exit(main())
