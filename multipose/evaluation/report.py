"""Files an evaluation writes: BOP results CSV, per-sample CSV, ``metrics.json`` and figures.

All files are written atomically (:mod:`multipose.infra.atomic`), figures headless (Agg) through
:mod:`multipose.infra.visualize`.

- BOP results (``<method>_<dataset>-<split>.csv``, the format of the BOP challenge): header
  ``scene_id,im_id,obj_id,score,R,t,time``; ``R`` is 9 numbers row-major and ``t`` 3 numbers in mm,
  space-separated; ``time`` is the method's seconds per image (the same for every row of an image).
- ``per-sample.csv``: one row per test instance with each method's errors (read back by
  :func:`read_per_sample`; :func:`plot_error_distribution` draws them, ``plot_error_dist.py``).
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import torch
from matplotlib.figure import Figure

from multipose.evaluation.metrics import recall_curve
from multipose.infra.atomic import atomic_write_text
from multipose.infra.errors import DataError
from multipose.infra.visualize import image_grid, save_figure

if TYPE_CHECKING:
    from multipose.evaluation.bop19 import Submission
    from multipose.evaluation.scoring import Scores
    from multipose.evaluation.testsets import TestSet

__all__ = [
    "BOP_HEADER",
    "combine_bop19",
    "merge_bop_results",
    "merge_results_files",
    "plot_error_distribution",
    "plot_examples",
    "plot_recall_curves",
    "plot_rotation_errors",
    "read_per_sample",
    "write_bop_results",
    "write_evaluation",
    "write_json",
    "write_table",
]

#: Columns of a BOP results file.
BOP_HEADER = ("scene_id", "im_id", "obj_id", "score", "R", "t", "time")


def _numbers(values: Sequence[float] | torch.Tensor) -> str:
    return " ".join(f"{float(v):.6f}" for v in values)


def write_bop_results(
    path: str | os.PathLike[str],
    scene_id: torch.Tensor,
    im_id: torch.Tensor,
    obj_id: int,
    score: torch.Tensor,
    R: torch.Tensor,
    t: torch.Tensor,
    seconds: torch.Tensor,
) -> Path:
    """Write estimates as a BOP results CSV: ``scene_id, im_id (N,)``, ``score (N, M)``,
    ``R (N, M, 3, 3)``, ``t (N, M, 3)`` (mm), ``seconds (N,)``; one row per estimate (``M`` per
    instance, e.g. the K hypotheses with their confidences as scores)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(BOP_HEADER)
    N, M = score.shape
    R = R.detach().cpu().double().reshape(N, M, 9)
    t = t.detach().cpu().double().reshape(N, M, 3)
    for n in range(N):
        for m in range(M):
            writer.writerow([int(scene_id[n]), int(im_id[n]), int(obj_id), f"{float(score[n, m]):.6f}",
                             _numbers(R[n, m]), _numbers(t[n, m]), f"{float(seconds[n]):.6f}"])
    return atomic_write_text(path, buf.getvalue())


def merge_bop_results(paths: Sequence[str | os.PathLike[str]], out: str | os.PathLike[str],
                      shared: Mapping[tuple[int, int], float] | None = None) -> Path:
    """One BOP results file of every row of ``paths`` (each object's file of one split, as
    :func:`write_bop_results` writes them), ordered by scene and image (each file's order within an image);
    ``time`` of an image is the sum of the files' times for it (each object's crops of the image), -1 when one
    of them is unknown, so that every row of an image has the same time, as BOP's checks require. ``shared``:
    seconds per ``(scene_id, im_id)`` that every file's time of the image includes (a detector's), counted once."""
    rows: list[dict[str, str]] = []
    for path in paths:
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            if tuple(reader.fieldnames or ()) != BOP_HEADER:
                raise DataError(f"{path}: not a BOP results file (header {reader.fieldnames}, expected {BOP_HEADER})")
            rows += list(reader)
    per_file: dict[tuple[str, str, str], float] = {}  # (scene, image, file's object): its time
    for row in rows:
        per_file[row["scene_id"], row["im_id"], row["obj_id"]] = float(row["time"])
    image_time: dict[tuple[str, str], float] = {}
    for (scene, im, _), seconds in per_file.items():
        before = image_time.get((scene, im))
        once = (shared or {}).get((int(scene), int(im)), 0.0) if before is not None else 0.0
        before = before or 0.0
        image_time[scene, im] = -1.0 if before < 0 or seconds < 0 else before + seconds - once
    rows.sort(key=lambda r: (int(r["scene_id"]), int(r["im_id"])))
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(BOP_HEADER)
    for r in rows:
        writer.writerow([*(r[c] for c in BOP_HEADER[:-1]), f"{image_time[r['scene_id'], r['im_id']]:.6f}"])
    return atomic_write_text(out, buf.getvalue())


def merge_results_files(evaluations: Sequence[tuple[Path, Mapping[str, str]]], out: Path,
                        shared: Mapping[tuple[int, int], float] | None = None) -> dict[str, str]:
    """The BOP results files of several objects' evaluations of one split (each ``(folder, files)``, ``files`` as
    ``metrics.json`` lists them) merged into one per method in ``out`` (:func:`merge_bop_results`, the objects'
    file name: one file per split, as BOP takes it; ``shared``: a detector's seconds per image, counted once);
    the names written, keyed as in ``files``."""
    merged = {}
    for key, name in evaluations[0][1].items():
        if key.startswith("bop_"):
            merge_bop_results([folder / files[key] for folder, files in evaluations], out / name, shared)
            merged[key] = name
    return {"metrics": "metrics.json", **merged}


def combine_bop19(per_object: Sequence[Mapping[str, Any]], names: Sequence[str]) -> dict[str, Any]:
    """BOP19's average recalls of several objects on one split (each object's ``metrics.json`` ``bop19``): every
    object's (keyed by ``names``), their mean per method, and the dataset's as bop_toolkit computes it (recalls over
    all objects' targets together, i.e. the objects' ARs weighted by their targets)."""
    objects = {name: {m: r for m, r in b.items() if isinstance(r, dict)}
               for name, b in zip(names, per_object, strict=True)}
    methods = list(next(iter(objects.values())))
    names = ("AR", "AR_VSD", "AR_MSSD", "AR_MSPD")
    mean = {m: {a: sum(o[m][a] for o in objects.values()) / len(objects) for a in names} for m in methods}
    pooled: dict[str, dict[str, float]] = {}
    for m in methods:
        targets = sum(o[m]["num_targets"] for o in objects.values())
        pooled[m] = {a: sum(o[m][a] * o[m]["num_targets"] for o in objects.values()) / targets for a in names}
        pooled[m]["num_targets"] = targets
    return {"objects": objects, "mean": mean, "dataset": pooled}


def write_table(path: str | os.PathLike[str], columns: Mapping[str, Sequence[Any] | torch.Tensor]) -> Path:
    """A CSV with one column per entry of ``columns`` (all of one length N); floats with 6 decimals."""
    names = list(columns)
    values = [c.tolist() if isinstance(c, torch.Tensor) else list(c) for c in columns.values()]
    lengths = {len(v) for v in values}
    if len(lengths) > 1:
        raise ValueError(f"columns of different lengths: {dict(zip(names, map(len, values), strict=False))}")
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(names)
    for row in zip(*values, strict=True):
        writer.writerow([f"{v:.6f}" if isinstance(v, float) else v for v in row])
    return atomic_write_text(path, buf.getvalue())


def write_json(path: str | os.PathLike[str], data: Mapping[str, Any]) -> Path:
    """``data`` as indented JSON (NaN and infinities written as null, so any JSON reader accepts it)."""

    def clean(x: Any) -> Any:
        if isinstance(x, float) and not np.isfinite(x):
            return None
        if isinstance(x, Mapping):
            return {str(k): clean(v) for k, v in x.items()}
        if isinstance(x, (list, tuple)):
            return [clean(v) for v in x]
        return x

    return atomic_write_text(path, json.dumps(clean(dict(data)), indent=2) + "\n")


def plot_recall_curves(
    path: str | os.PathLike[str], errors: Mapping[str, torch.Tensor], threshold: float, title: str
) -> Path:
    """Recall against the VSD threshold (0 to 1), one line per method (``errors[name]`` is ``(N,)``),
    with the evaluation threshold marked."""
    thresholds = torch.linspace(0.0, 1.0, 101, dtype=torch.float64)
    fig = Figure(figsize=(5.5, 4.0))
    ax = fig.subplots()
    for name, e in errors.items():
        curve = recall_curve(e.cpu(), thresholds)
        at = float((e.cpu() < threshold).double().mean())
        ax.plot(thresholds.numpy(), curve.numpy(), label=f"{name} ({at:.3f})")
    ax.axvline(threshold, color="grey", linestyle=":", linewidth=1)
    ax.set_xlabel("VSD threshold")
    ax.set_ylabel("recall (fraction with VSD error < threshold)")
    ax.set_xlim(0.0, 1.0)
    ax.set_ylim(0.0, 1.02)
    ax.grid(alpha=0.3)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8, title=f"recall at {threshold:g}", title_fontsize=8)
    return save_figure(fig, path)


def plot_rotation_errors(
    path: str | os.PathLike[str], errors: Mapping[str, torch.Tensor], xlabel: str, title: str
) -> Path:
    """Histograms of rotation errors (degrees, 0 to 180 in 5-degree bins), one per method."""
    bins = np.arange(0.0, 185.0, 5.0)
    fig = Figure(figsize=(5.5, 4.0))
    ax = fig.subplots()
    for name, e in errors.items():
        values = e.detach().cpu().double().numpy()
        # cast: matplotlib's stub says Sequence[float] for bins, but it takes any 1-D array.
        ax.hist(values, bins=cast(Sequence[float], bins), histtype="step", linewidth=1.5,
                label=f"{name} (median {np.median(values):.1f})")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("test samples")
    ax.set_xlim(0.0, 180.0)
    ax.grid(alpha=0.3)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    return save_figure(fig, path)


def plot_examples(
    path: str | os.PathLike[str],
    images: torch.Tensor,
    depths: Mapping[str, torch.Tensor],
    row_titles: Sequence[str],
    column_notes: Mapping[str, Sequence[str]] | None = None,
) -> Path:
    """A grid: ``input | depths[name] ...`` per row; ``images (n, 3, S, S)`` in [0, 1], each
    ``depths[name]`` ``(n, H, W)`` (mm, 0 background). ``column_notes[name][i]`` is drawn in the
    corner of that cell (e.g. the hypothesis' confidence and VSD error)."""
    rows = []
    for i in range(images.shape[0]):
        rows.append([images[i].permute(1, 2, 0).cpu().numpy(), *[d[i].cpu().numpy() for d in depths.values()]])
    fig = image_grid(rows, ["input", *depths], row_titles=row_titles, cmaps=[None, *["viridis"] * len(depths)])
    if column_notes:
        axes = fig.axes
        n_cols = 1 + len(depths)
        for c, name in enumerate(depths, start=1):
            for r, note in enumerate(column_notes.get(name, [])):
                axes[r * n_cols + c].text(
                    0.03, 0.03, note, transform=axes[r * n_cols + c].transAxes, fontsize=6, color="white",
                    bbox={"facecolor": "black", "alpha": 0.6, "pad": 1, "linewidth": 0},
                )
    return save_figure(fig, path)


def read_per_sample(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """The columns of a ``per-sample.csv`` (a file, or an evaluation folder holding one) as float
    arrays ``(N,)``; :class:`DataError` for a missing or malformed file."""
    path = Path(path)
    if path.is_dir():
        path = path / "per-sample.csv"
    try:
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
    except FileNotFoundError:
        raise DataError(f"{path}: not found; give an evaluation folder written by evaluate.py") from None
    if not rows:
        raise DataError(f"{path}: no rows; expected the per-sample.csv of an evaluation")
    try:
        return {name: np.array([float(r[name]) for r in rows]) for name in rows[0]}
    except (TypeError, ValueError) as exc:
        raise DataError(f"{path}: not a per-sample.csv of evaluate.py ({exc})") from None


def plot_error_distribution(
    path: str | os.PathLike[str], errors: Mapping[str, np.ndarray], metric: str, title: str = ""
) -> Path:
    """The distribution of one error across a test set, as the original's ``plot_error_dist.py``:
    left, each method's errors sorted (x: fraction of the instances); right, for each method after
    the first, the sorted per-instance difference ``error(method) - error(first)`` (above 0 where the
    first method is better), on the same instances. ``errors[label]``: ``(N,)``, all the same N."""
    sizes = {len(e) for e in errors.values()}
    if len(sizes) != 1:
        raise ValueError(f"every method needs one error per instance of the same test set, got sizes {sorted(sizes)}")
    fig = Figure(figsize=(10.0, 4.0))
    left, right = fig.subplots(1, 2)
    for label, e in errors.items():
        x = np.linspace(0.0, 1.0, len(e))
        left.plot(x, np.sort(e), label=f"{label} (median {np.median(e):.3g})")
    labels = list(errors)
    for label in labels[1:]:
        diff = np.sort(errors[label] - errors[labels[0]])
        right.plot(np.linspace(0.0, 1.0, len(diff)), diff,
                   label=f"{label} - {labels[0]} ({(diff > 0).mean():.0%} > 0, {(diff < 0).mean():.0%} < 0)")
    right.axhline(0.0, color="grey", alpha=0.5)
    left.set_xlabel("fraction of test instances (sorted)")
    left.set_ylabel(metric)
    right.set_xlabel("fraction of test instances (sorted)")
    right.set_ylabel(f"difference in {metric}")
    for ax in (left, right):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    return save_figure(fig, path)


def write_evaluation(
    out_dir: str | os.PathLike[str], scores: Scores, submissions: Mapping[str, Submission], test_set: TestSet,
    metrics: dict[str, Any], figures: bool,
) -> dict[str, str]:
    """Write an evaluation's files to ``out_dir``: ``per-sample.csv``, a BOP results file per method
    (``multipose_<name>.csv``, ``aaecodebook_<name>.csv``, ``stored_<name>.csv``: the ``submissions``, BOP's
    rows; ``time`` the seconds of the whole image, -1 for stored rotations), with ``figures`` ``recall.png``,
    ``rotation-error.png`` and
    ``examples.png``, and last ``metrics.json`` (``metrics`` with the file names added under ``files``,
    which are returned)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    files = {"metrics": "metrics.json", "per_sample": "per-sample.csv"}
    assert test_set.scene_id is not None and test_set.im_id is not None  # TestSet.__post_init__ fills them
    write_table(out_dir / files["per_sample"], _per_sample_columns(scores, test_set))
    for method, prefix in (("head", "multipose"), ("codebook", "aaecodebook"), ("stored", "stored")):
        if method in submissions:
            sub = submissions[method]
            files[f"bop_{method}"] = f"{prefix}_{test_set.name}.csv"
            write_bop_results(out_dir / files[f"bop_{method}"], sub.scene_id, sub.im_id, test_set.obj_id,
                              sub.score[:, None], sub.R[:, None], sub.t[:, None], sub.time)
    if figures:
        files.update(_plot_evaluation(out_dir, scores, test_set, metrics["settings"]))
    metrics["files"] = files
    write_json(out_dir / files["metrics"], metrics)
    return files


def _per_sample_columns(scores: Scores, test_set: TestSet) -> dict[str, Any]:
    """The columns of ``per-sample.csv``: ids, the top confidence, each method's errors (symmetry-aware
    rotation errors where the symmetries are known, translation errors where the translation is estimated)
    and each hypothesis' VSD error."""
    columns: dict[str, Any] = {
        "index": list(range(len(scores))), "scene_id": test_set.scene_id, "im_id": test_set.im_id,
        "top_confidence": scores.top_confidence.tolist(),
    }
    for m, e in scores.errors.items():
        columns[f"vsd_{m}"] = e.vsd.tolist()
        columns[f"re_{m}"] = e.re.tolist()
        if test_set.symmetries is not None:
            columns[f"re_sym_{m}"] = e.re_sym.tolist()
        if test_set.boxes is not None:
            columns[f"te_{m}"] = e.te.tolist()
    for k in range(scores.hypothesis_vsd.shape[1]):
        columns[f"vsd_hypothesis{k + 1}"] = scores.hypothesis_vsd[:, k].tolist()
    return columns


def _plot_evaluation(out_dir: Path, scores: Scores, test_set: TestSet, settings: Mapping[str, Any]) -> dict[str, str]:
    """``recall.png``, ``rotation-error.png`` and (with example rows) ``examples.png``; their file names."""
    title = f"{test_set.description}; tau {settings['vsd_tau']:g} mm, delta {settings['vsd_delta']:g} mm"
    files = {"recall_plot": "recall.png", "rotation_plot": "rotation-error.png"}
    plot_recall_curves(out_dir / files["recall_plot"], scores.error("vsd"), settings["vsd_threshold"], title)
    if test_set.symmetries is not None:
        rot, label = scores.error("re_sym"), "symmetry-aware rotation error (degrees)"
    else:
        rot, label = scores.error("re"), "rotation error (degrees; symmetries unknown)"
    plot_rotation_errors(out_dir / files["rotation_plot"], rot, label, title)
    order = scores.example_index.tolist()
    if order:
        files["examples"] = "examples.png"
        vsd = scores.error("vsd")
        notes = {"top hypothesis": [f"conf {scores.top_confidence[i]:.2f} VSD {vsd['head'][i]:.2f}" for i in order]}
        if "codebook" in vsd:
            notes["codebook"] = [f"VSD {vsd['codebook'][i]:.2f}" for i in order]
        assert test_set.scene_id is not None and test_set.im_id is not None  # TestSet.__post_init__ fills them
        titles = [f"#{i} ({int(test_set.scene_id[i])}/{int(test_set.im_id[i])})" if test_set.boxes is not None
                  else f"#{i}" for i in order]
        plot_examples(out_dir / files["examples"], test_set.images[order], scores.example_depths, titles, notes)
    return files
