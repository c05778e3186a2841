"""Checks of a config's test data (:mod:`multipose.experiment.preflight`): BOP split folders and their
images, targets, detections, ``models_info.json`` and the BOP19 evaluation model."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path

import numpy as np

from multipose.config import Config, crop_size
from multipose.data import bop_files
from multipose.evaluation import bop_folders, bop_images
from multipose.evaluation.detections import read_detections
from multipose.evaluation.metrics import symmetry_transformations
from multipose.experiment.asset_checks import check_sample_files
from multipose.experiment.findings import SHOWN_FILES, Finding, counted, guarded, setting
from multipose.experiment.testsets import eval_model_path, object_model, targets_path
from multipose.inference.images import read_rgb
from multipose.infra.errors import UserInputError
from multipose.infra.progress import progress_bar


def check_bop(cfg: Config, folder: Path, quick: bool, progress: bool) -> list[Finding]:
    what = setting("Evaluation", "TEST_DATA_PATH")
    ev = cfg.Evaluation
    if not bop_files.is_bop_split(folder):
        return [Finding("malformed", what, f"{folder}: a folder without BOP scene folders (NNNNNN/scene_gt.json); "
                                           "point TEST_DATA_PATH at a split such as tless/test_primesense")]
    if ev.OBJ_ID is None:
        return [Finding("malformed", setting("Evaluation", "OBJ_ID"),
                        f"empty: set the id of the object to evaluate in {folder} (e.g. OBJ_ID: 10)")]

    def check() -> list[Finding]:
        if ev.PROTOCOL == "bop19":
            split = bop_folders.read_bop19_targets(folder, ev.OBJ_ID, targets_path(cfg))
            used, targets = split.bop19_images(ev.NUM_SAMPLES)
            images = len({(i.scene_id, i.im_id) for i in used})
            text = (f"{folder}: {counted(split.num_targets or 0, 'BOP19 target')} of object {ev.OBJ_ID} in "
                    f"{counted(len(split.targets_per_image or {}), 'image')}; evaluation uses {targets:,} in "
                    f"{counted(images, 'image')} (NUM_SAMPLES)")
        else:
            split = bop_folders.read_bop_split(folder, ev.OBJ_ID, ev.MIN_VISIB_FRACT)
            scenes = len({i.scene_id for i in split.instances})
            used = [split.instances[i] for i in bop_folders.subsample(len(split.instances), ev.NUM_SAMPLES)]
            text = (f"{folder}: {counted(len(split.instances), 'instance')} of object {ev.OBJ_ID} in "
                    f"{counted(scenes, 'scene')}; evaluation uses {len(used):,} (NUM_SAMPLES)")
        no_depth = sum(i.depth_path is None for i in used)
        findings = []
        if not quick:
            bad = _unreadable_images(used, progress)
            text += ", their images decoded"
            if bad:
                findings.append(Finding("malformed", what, f"{folder}: {counted(len(bad), 'image')} cannot be read: "
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
            findings.append(Finding("warning", what, f"{folder}: {counted(split.fully_occluded, 'instance')} of object "
                                                     f"{ev.OBJ_ID} fully occluded (visib_fract 0), not evaluated"))
        if split.targets_per_image is not None and ev.DETECTIONS:
            findings += check_detections(cfg, split.targets_per_image)
        return findings

    return guarded(what, check)


def _unreadable_images(instances: Sequence[bop_folders.BopInstance], progress: bool) -> list[Path]:
    """The colour and depth images of ``instances`` that cannot be decoded."""
    bad: list[Path] = []
    for inst in progress_bar(instances, desc="reading test images", unit="instance", disable=not progress,
                             leave=False):
        assert inst.image_path is not None  # the readers keep only instances whose image exists
        reads: list[tuple[Path, Callable[[Path], np.ndarray]]] = [(inst.image_path, read_rgb)]
        if inst.depth_path is not None:
            reads.append((inst.depth_path, partial(bop_images.read_depth, scale=inst.depth_scale)))
        for path, read in reads:
            if path in bad:
                continue
            try:
                read(path)
            except UserInputError:
                bad.append(path)
    return bad


def check_detections(cfg: Config, targets: dict[tuple[int, int], int]) -> list[Finding]:
    """``[Evaluation] DETECTIONS`` (``PROTOCOL: bop19``): the file parsed, its detections of the object in
    the target images (``targets``: the split's BOP19 targets per image) counted."""
    ev = cfg.Evaluation
    key = setting("Evaluation", "DETECTIONS")

    def check() -> list[Finding]:
        found = [d for d in read_detections(Path(ev.DETECTIONS), ev.OBJ_ID) if d["key"] in targets]
        if not found:
            return [Finding("malformed", key, f"{ev.DETECTIONS}: no detection of object {ev.OBJ_ID} in the "
                                              f"{len(targets):,} target images")]
        return [Finding("ok", key, f"{ev.DETECTIONS}: {counted(len(found), 'detection')} of object {ev.OBJ_ID} in "
                                   f"{counted(len({d['key'] for d in found}), 'target image')}")]

    return guarded(key, check)


def check_eval_model(cfg: Config) -> list[Finding]:
    """``PROTOCOL: bop19``: the model and ``models_info.json`` entry MSSD and MSPD use."""
    ev = cfg.Evaluation
    if ev.PROTOCOL != "bop19" or not ev.TEST_DATA_PATH or not Path(ev.TEST_DATA_PATH).is_dir() or ev.OBJ_ID is None:
        return []
    what = setting("Evaluation", "MODEL_PATH_EVAL")

    def check() -> list[Finding]:
        found = object_model(cfg)
        return [Finding("ok", what, f"{eval_model_path(cfg)}: MSSD and MSPD on {found.points.shape[0]:,} "
                                    f"points, diameter {found.diameter:.2f} mm, "
                                    f"{counted(found.sym_R.shape[0], 'symmetry', 'symmetries')}")]

    return guarded(what, check)


def check_test_data(cfg: Config, quick: bool, progress: bool) -> list[Finding]:
    what = setting("Evaluation", "TEST_DATA_PATH")
    path = cfg.Evaluation.TEST_DATA_PATH
    if not path:
        return [Finding("note", what, f"empty: {cfg.Evaluation.NUM_SAMPLES:,} synthetic test samples are generated")]
    path = Path(path)
    if path.is_dir():
        return check_bop(cfg, path, quick, progress)
    if not path.exists():
        return [Finding("missing", what, f"{path}: no such file or folder; a BOP split folder (data/README.md, "
                                         "'T-LESS test images') or a dataset file (.npz, .p)")]
    return check_sample_files([os.fspath(path)], what, crop_size(cfg), "testing")


def check_models_info(cfg: Config) -> list[Finding]:
    ev = cfg.Evaluation
    what = setting("Evaluation", "MODELS_INFO")
    test = Path(ev.TEST_DATA_PATH) if ev.TEST_DATA_PATH else None
    path: Path | None
    if ev.MODELS_INFO:
        path = Path(ev.MODELS_INFO)
        if not path.is_file():
            return [Finding("missing", what, f"{path}: no such file (a BOP models_info.json)")]
    else:
        path = bop_folders.find_models_info(test) if test is not None and test.is_dir() else None
        if path is None:
            return [Finding("note", what, "none: symmetry-aware rotation errors (re_sym) are not computed; VSD "
                                          "needs no symmetries")]

    def check() -> list[Finding]:
        info = bop_folders.read_models_info(path)
        if ev.OBJ_ID is None:
            return [Finding("warning", what, f"{path}: {counted(len(info), 'object')}, but [Evaluation] OBJ_ID is "
                                             "empty, so none is used")]
        if ev.OBJ_ID not in info:
            return [Finding("warning", what, f"{path}: no object {ev.OBJ_ID} (has {sorted(info)[:10]}); no symmetries")]
        try:
            R, _ = symmetry_transformations(info[ev.OBJ_ID])
        except ValueError as exc:
            return [Finding("malformed", what, f"{path}: object {ev.OBJ_ID}: {exc}")]
        diameter = info[ev.OBJ_ID].get("diameter")
        shown = f"diameter {float(diameter):.1f} mm, " if isinstance(diameter, (int, float)) else ""
        return [Finding("ok", what, f"{path}: object {ev.OBJ_ID}: {shown}{counted(R.shape[0], 'symmetry rotation')}")]

    return guarded(what, check)
