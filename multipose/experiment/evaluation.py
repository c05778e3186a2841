"""Evaluating a trained pose head: VSD recall against a random and the AAE codebook baseline.

One evaluation (:func:`evaluate_checkpoint`, ``evaluate.py``, and the end of ``train.py``):

1. the test set of ``[Evaluation] TEST_DATA_PATH`` (:mod:`~multipose.experiment.testsets`: synthetic
   samples, a dataset file or a BOP split folder) and, with ``CODEBOOK_BASELINE`` / ``--baseline
   codebook``, the AAE codebook of the encoder (:mod:`~multipose.experiment.codebook`);
2. frozen encoder -> pose head: K hypotheses with confidences, scored batch by batch against the
   ``best-of-K``, ``random``, ``codebook`` and ``stored`` methods (:mod:`~multipose.evaluation.scoring`);
3. outputs in ``out_dir`` (default ``<OUTPUT_PATH>/evaluation``, :mod:`~multipose.evaluation.report`):
   ``metrics.json`` (recall at ``VSD_THRESHOLD`` per method, with a codebook McNemar's exact test of the
   head and of best-of-K against it on the same instances (``paired``), mean VSD, rotation-error statistics, ms per
   image of encoder+head and encoder+codebook, model and codebook bytes), ``per-sample.csv``, BOP results
   files by BOP's rules (``multipose_<dataset>-<split>.csv``: each instance's most confident hypothesis, at
   most ``inst_count`` per image, :func:`multipose.evaluation.bop19.select`; ``aaecodebook_...`` for the
   codebook), with ``PROTOCOL: bop19`` BOP's average recalls (:mod:`~multipose.evaluation.bop19`), and
   with ``SAVE_IMAGES`` ``recall.png`` (recall against the VSD threshold), ``rotation-error.png``
   (histogram) and ``examples.png`` (input | GT depth | top hypothesis with its confidence and error).

A pickle of a BOP split's crops puts their ids, the scene translation and the rotation corrected for it
(the AAE's correction) in the results files, as the original's ``eval-pickle.py`` wrote them (which left
the rotation uncorrected); VSD is still computed in the crop's camera.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from multipose.config import Config, check_crop_size, resolve_device
from multipose.config.derived import num_objects
from multipose.core.mesh import load_loss_mesh
from multipose.evaluation import bop19, bop_folders, detections
from multipose.evaluation.metrics import mcnemar_exact, recall
from multipose.evaluation.report import combine_bop19, merge_results_files, write_evaluation, write_json
from multipose.evaluation.scoring import BatchScorer, ScoreAccumulator, Scores
from multipose.evaluation.testsets import TestSet
from multipose.experiment.codebook import codebook_from_config
from multipose.experiment.encoders import with_encoder_crop_size
from multipose.experiment.estimators import posed_objects
from multipose.experiment.factories import load_data_mesh, view_settings
from multipose.experiment.objects import object_configs
from multipose.experiment.pose_checkpoints import checked_models, default_checkpoint
from multipose.experiment.prediction import bop_overlays
from multipose.experiment.run_folder import RunFolder, encoder_weights_path
from multipose.experiment.testsets import (
    check_evaluation_inputs,
    eval_model_path,
    load_detections,
    load_test_set,
    object_model,
)
from multipose.inference.estimator import PoseEstimator
from multipose.infra.board import Board
from multipose.infra.distributed import Dist
from multipose.infra.errors import UserInputError
from multipose.infra.progress import progress_bar
from multipose.models import Codebook, Encoder, PoseHead
from multipose.models.head import ObjectBlock, finetuned_encoder, head_input

logger = logging.getLogger(__name__)

__all__ = [
    "EvaluationResult",
    "batch_scorer",
    "combine_objects",
    "evaluate_checkpoint",
    "evaluate_models",
    "detector_image_seconds",
    "evaluate_objects",
    "module_bytes",
]

# --------------------------------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------------------------------


def module_bytes(module: nn.Module) -> int:
    """Bytes of a module's parameters and buffers."""
    return sum(t.numel() * t.element_size() for t in [*module.parameters(), *module.buffers()])


# --------------------------------------------------------------------------------------------------
# The evaluation
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EvaluationResult:
    """What an evaluation computed: ``metrics`` is what ``metrics.json`` holds; ``errors[method]`` the
    per-instance VSD errors ``(N,)``; ``out_dir`` where the files are."""

    out_dir: Path
    metrics: dict[str, Any]
    errors: dict[str, torch.Tensor]

    @property
    def recall(self) -> dict[str, float]:
        """VSD recall per method (``head``, ``best-of-K``, ``random``, ``codebook``)."""
        return dict(self.metrics["recall"])

    def summary(self) -> str:
        """One line, e.g. ``VSD recall (e < 0.3, tau 20 mm, 100 samples): head 0.52, best-of-K 0.81, ...``,
        with BOP19's average recalls after it when they were computed (a head of several objects: the means of its
        objects' recalls and the dataset's BOP19 recalls)."""
        s = self.metrics["settings"]
        parts = ", ".join(f"{k} {v:.3f}" for k, v in self.recall.items())
        line = (f"VSD recall (e < {s['vsd_threshold']:g}, tau {s['vsd_tau']:g} mm, delta {s['vsd_delta']:g} mm, "
                f"{self.metrics['num_samples']} samples): {parts}")
        for pair, test in (self.metrics.get("paired") or {}).items():
            line += f"; {pair}: {test['only_a']} vs {test['only_b']} right only, McNemar p {test['p']:.2g}"
        if "bop19" in self.metrics:
            b = self.metrics["bop19"].get("dataset", self.metrics["bop19"])  # several objects: all their targets
            ars = "; ".join(f"{m} AR {r['AR']:.3f} (VSD {r['AR_VSD']:.3f}, MSSD {r['AR_MSSD']:.3f}, MSPD "
                            f"{r['AR_MSPD']:.3f})" for m, r in b.items() if isinstance(r, dict))
            line += f"; BOP19 on {next(r for r in b.values() if isinstance(r, dict))['num_targets']} targets: {ars}"
        return line


def _stats(values: torch.Tensor) -> dict[str, float]:
    v = values.double()
    return {"mean": float(v.mean()), "median": float(v.median()), "p90": float(torch.quantile(v, 0.9))}


@torch.no_grad()
def evaluate_models(
    cfg: Config,
    encoder: Encoder,
    head: PoseHead,
    test_set: TestSet,
    out_dir: str | os.PathLike[str],
    device: torch.device | str = "cpu",
    *,
    codebook: Codebook | None = None,
    codebook_encoder: Encoder | None = None,
    extra: dict[str, Any] | None = None,
    progress: bool = True,
    dist: Dist | None = None,
) -> EvaluationResult:
    """Evaluate ``head`` on ``encoder`` (and ``codebook``, if given) on ``test_set``; write the files
    of the module docstring to ``out_dir`` and return the numbers. ``extra`` is merged into
    ``metrics.json`` (e.g. the checkpoint's path and epoch). ``dist``: each rank scores its share of the
    test set and matches its share of BOP19's images, every rank gets all the numbers, rank 0 alone writes
    the files."""
    dist = dist or Dist()
    ev = cfg.Evaluation
    N = len(test_set)
    if N == 0:
        raise ValueError("the test set is empty")
    if test_set.images.shape[-1] != encoder.config.image_size:
        raise UserInputError(
            f"test images are {test_set.images.shape[-1]} px but the encoder takes {encoder.config.image_size} px "
            "([Dataset] CROP_SIZE must match the encoder; leave it empty to follow the encoder)"
        )
    examples = bop_folders.subsample(N, ev.NUM_EXAMPLES).tolist() if ev.SAVE_IMAGES and ev.NUM_EXAMPLES else []
    scorer = batch_scorer(cfg, encoder, head, test_set, device, codebook, examples, codebook_encoder)
    scorer.warm_up(ev.BATCH_SIZE)
    accumulator = ScoreAccumulator()
    mine = torch.arange(N)[dist.shard(N)]
    with progress_bar(total=len(mine), desc="evaluating", unit="sample", disable=not progress, leave=False) as bar:
        for idx in mine.split(ev.BATCH_SIZE):
            accumulator.add(scorer(idx))
            bar.update(len(idx))
    scores = _gather(accumulator, dist)
    per_instance = {m: (scores.seconds["encoder"] + scores.seconds[m]) / N for m in ("head", "codebook")}
    submissions = {m: bop19.submission(test_set, e, per_instance.get(m, -1.0)) for m, e in scores.estimates.items()}
    metrics = {**_metrics(cfg, scores, test_set, scorer), **(extra or {})}
    if ev.DETECTIONS:  # the BOP19 results come from the detector's boxes; the rest stays on ground-truth boxes
        found = load_detections(cfg, test_set, progress)  # (every rank: the same estimates)
        submissions.update(detections.detection_submissions(found, scorer.encoder, scorer.head, scorer.codebook,
                                                            scorer.device, scorer.settings, scorer.vertices,
                                                            ev.BATCH_SIZE, scorer.codebook_encoder))
        metrics["settings"]["detections"] = (f"{ev.DETECTIONS}: {len(found)} detections for the BOP19 results; "
                                             "ground-truth boxes for the per-instance errors")
    if ev.PROTOCOL == "bop19":
        metrics["bop19"] = _bop19_metrics(cfg, test_set, submissions, scorer, progress, dist)
    if not dist.is_main:
        return EvaluationResult(out_dir=Path(out_dir), metrics=metrics, errors=scores.error("vsd"))
    write_evaluation(out_dir, scores, submissions, test_set, metrics, figures=ev.SAVE_IMAGES)
    result = EvaluationResult(out_dir=Path(out_dir), metrics=metrics, errors=scores.error("vsd"))
    logger.info("%s; %s", result.summary(), out_dir)
    return result


def batch_scorer(
    cfg: Config, encoder: Encoder, head: PoseHead, test_set: TestSet, device: torch.device | str = "cpu",
    codebook: Codebook | None = None, examples: Collection[int] = (), codebook_encoder: Encoder | None = None,
) -> BatchScorer:
    """The :class:`~multipose.evaluation.scoring.BatchScorer` of a config: VSD on the data mesh decimated to
    ``[Evaluation] VSD_MESH_FACES`` (if > 0), ``VSD_DELTA``, ``VSD_TAU``, random rotations from ``RANDOM_SEED``."""
    ev = cfg.Evaluation
    data_mesh = load_data_mesh(cfg)
    vsd_mesh = data_mesh
    if ev.VSD_MESH_FACES > 0:
        vsd_mesh = load_loss_mesh(cfg.Dataset.MODEL_PATH_DATA, target_faces=ev.VSD_MESH_FACES,
                                  cache_dir=cfg.Dataset.CACHE_DIR, normalize=cfg.Rendering.NORMALIZE_VERTICES)
    return BatchScorer(encoder, head, test_set, data_mesh, vsd_mesh, view_settings(cfg), ev.VSD_DELTA, ev.VSD_TAU,
                       cfg.Training.RANDOM_SEED, device, codebook, examples, codebook_encoder)


def _gather(accumulator: ScoreAccumulator, dist: Dist) -> Scores:
    """All the ranks' scores in test-set order (the ranks' shards are contiguous and in rank order)."""
    if not dist.enabled:
        return accumulator.summary()
    everything = ScoreAccumulator()
    for part in dist.all_gather_list([accumulator.summary()] if accumulator else []):
        everything.add(part)
    return everything.summary()


def _bop19_metrics(
    cfg: Config, test_set: TestSet, submissions: dict[str, bop19.Submission], scorer: BatchScorer, progress: bool,
    dist: Dist,
) -> dict[str, Any]:
    """BOP19's average recalls of every method with a results file (``stored`` aside), and what they used
    (each rank matches its share of the images)."""
    model = object_model(cfg)
    recalls = {m: bop19.average_recalls(test_set, sub, scorer.renderer, model, cfg.Evaluation.VSD_DELTA, progress,
                                        dist) for m, sub in submissions.items() if m != "stored"}
    return {**recalls, "eval_model": str(eval_model_path(cfg)), "diameter_mm": model.diameter,
            "vsd_taus": list(bop19.VSD_TAUS), "vsd_thresholds": list(bop19.VSD_THRESHOLDS),
            "mssd_thresholds": list(bop19.MSSD_THRESHOLDS), "mspd_thresholds_px": list(bop19.MSPD_THRESHOLDS)}


def _paired(vsd: dict[str, torch.Tensor], threshold: float) -> dict[str, dict[str, float | int]] | None:
    """McNemar's exact test (:func:`~multipose.evaluation.metrics.mcnemar_exact`) of the head and of best-of-K
    against the codebook on the same instances; None without a codebook."""
    if "codebook" not in vsd:
        return None
    right = {m: e < threshold for m, e in vsd.items()}
    return {f"{m} vs codebook": mcnemar_exact(right[m], right["codebook"]) for m in ("head", "best-of-K")}


def _metrics(cfg: Config, scores: Scores, test_set: TestSet, scorer: BatchScorer) -> dict[str, Any]:
    """What ``metrics.json`` holds (the module docstring) for an evaluation's scores."""
    ev = cfg.Evaluation
    N = len(scores)
    ms = {k: 1000.0 * v / N for k, v in scores.seconds.items()}
    timing = {"encoder": ms["encoder"], "head": ms["head"], "encoder+head": ms["encoder"] + ms["head"]}
    sizes = {"encoder": module_bytes(scorer.encoder), "head": module_bytes(scorer.head)}
    if scorer.codebook is not None:
        timing.update({"codebook_lookup": ms["codebook"], "encoder+codebook": ms["encoder"] + ms["codebook"]})
        sizes["codebook"] = int(scorer.codebook.nbytes)
    known_t = test_set.boxes is None
    return {
        "test_set": test_set.description,
        "num_samples": N,
        "num_hypotheses": scorer.num_hypotheses,
        "device": str(scorer.device),
        "recall": {m: recall(e, ev.VSD_THRESHOLD) for m, e in scores.error("vsd").items()},
        "paired": _paired(scores.error("vsd"), ev.VSD_THRESHOLD),
        "mean_vsd": {m: float(e.mean()) for m, e in scores.error("vsd").items()},
        "rotation_error_deg": {m: _stats(e) for m, e in scores.error("re").items()},
        "rotation_error_sym_deg": None if test_set.symmetries is None else {
            m: _stats(e) for m, e in scores.error("re_sym").items()},
        "translation_error_mm": None if known_t else {m: _stats(e) for m, e in scores.error("te").items()},
        "mean_top_confidence": float(scores.top_confidence.mean()),
        "ms_per_image": timing,
        "bytes": sizes,
        "codebook_entries": scorer.codebook.num_entries if scorer.codebook is not None else None,
        "settings": {
            "vsd_delta": ev.VSD_DELTA, "vsd_tau": ev.VSD_TAU, "vsd_threshold": ev.VSD_THRESHOLD, "vsd_cost": "step",
            "visibility": "bop19", "vsd_image_size": test_set.vsd_size,
            "vsd_mesh_faces": scorer.vsd_mesh.num_faces, "translation": "known" if known_t else "from the box (AAE)",
            "test_depth": "rendered ground truth (no occlusion)" if test_set.depth_test is None else "scene depth",
            "instances_without_depth": 0 if test_set.depth_known is None else int((~test_set.depth_known).sum()),
            "detections": "the test crops" if known_t else "ground-truth boxes (bbox_obj), not a detector's",
            "protocol": ev.PROTOCOL,
        },
    }


def detector_image_seconds(cfg: Config) -> dict[tuple[int, int], float] | None:
    """``[Evaluation] DETECTIONS``' seconds per image (every object's results rows include them), or None."""
    return detections.detector_seconds(Path(cfg.Evaluation.DETECTIONS)) if cfg.Evaluation.DETECTIONS else None


def combine_objects(results: list[EvaluationResult], names: list[str], object_ids: list[int], out: Path,
                    detector_seconds: dict[tuple[int, int], float] | None, extra: dict[str, Any] | None = None,
                    write: bool = True) -> EvaluationResult:
    """Several objects' evaluations as one (a head of several objects, or a dataset's heads): every object's recall
    (keyed by ``names``) and their mean per method, ``extra`` entries, on a BOP split every object's and the
    dataset's BOP19 recalls; with ``write`` (the main rank) one BOP results file per method with every object's
    rows (:func:`~multipose.evaluation.report.merge_results_files`, a detector's ``detector_seconds`` counted once
    per image) and ``out/metrics.json``."""
    recall = {m: float(sum(r.recall[m] for r in results) / len(results)) for m in results[0].recall}
    metrics: dict[str, Any] = {
        "recall": recall, "objects": {name: r.recall for name, r in zip(names, results, strict=True)},
        "object_ids": object_ids, **(extra or {}), "settings": results[0].metrics["settings"],
        "num_samples": sum(r.metrics["num_samples"] for r in results),
    }
    if "bop19" in results[0].metrics:
        metrics["bop19"] = combine_bop19([r.metrics["bop19"] for r in results], names)
    if write:
        metrics["files"] = merge_results_files([(r.out_dir, r.metrics.get("files", {})) for r in results], out,
                                               detector_seconds)
        write_json(out / "metrics.json", metrics)
    errors = {m: torch.cat([r.errors[m] for r in results]) for m in results[0].errors}
    return EvaluationResult(out_dir=out, metrics=metrics, errors=errors)


def _classifier(head: PoseHead, encoder: Encoder, sets: list[TestSet], batch_size: int,
                device: torch.device) -> dict[str, Any]:
    """A head of several objects' classifier on the objects' test sets: accuracy and confusion matrix (rows: the
    true object)."""
    confusion = torch.zeros(len(sets), len(sets), dtype=torch.int64)
    head = head.to(device).eval()
    with torch.no_grad():
        for n, test_set in enumerate(sets):
            for images in test_set.images.split(batch_size):
                logits = head(head_input(encoder.to(device), head, images.to(device))).object_logits
                assert logits is not None  # a head with a classifier
                confusion[n] += torch.bincount(logits.argmax(dim=1).cpu(), minlength=len(sets))
    return {"accuracy": float(confusion.diag().sum() / confusion.sum()), "confusion": confusion.tolist()}


def evaluate_objects(
    cfg: Config, encoder: Encoder, head: PoseHead, out: Path, device: torch.device, *, num_samples: int | None = None,
    codebook: bool = False, codebook_encoder: Encoder | None = None, extra: dict[str, Any] | None = None,
    progress: bool = True, dist: Dist | None = None, vis: int = 0,
) -> EvaluationResult:
    """:func:`evaluate_models` on the test set of each object of ``cfg`` (``[Evaluation] NUM_SAMPLES`` or
    ``num_samples``; with ``codebook`` its AAE codebook of ``codebook_encoder``, default ``encoder``). One object:
    that evaluation, in ``out``. A head of several: each object in ``out/obj<n>`` scored on its own block (chosen
    by ``[Evaluation] OBJECT_ID_SOURCE``), and in ``out`` the results of all (:func:`combine_objects`, with the
    classifier's accuracy and confusion matrix). ``vis``: the
    first ``vis`` images of a BOP split drawn with the head's hypotheses and the ground truth, in
    ``overlays/`` beside each object's results."""
    dist = dist or Dist()
    show = progress and dist.is_main
    codebook_encoder = codebook_encoder or encoder
    results, test_sets = [], []
    drawer = PoseEstimator(encoder, head, posed_objects(cfg), device) if vis and dist.is_main else None
    for n, one in enumerate(object_configs(cfg)):  # a head of several objects: each object on its own test set
        scored = head if num_objects(cfg) == 1 else ObjectBlock(head, n if one.Evaluation.OBJECT_ID_SOURCE == "gt"
                                                                  else None)
        test_set = load_test_set(one, device, num=num_samples, progress=show, dist=dist)
        test_sets.append(test_set)
        cb = codebook_from_config(one, codebook_encoder, device, progress=show, dist=dist) if codebook else None
        where = out if num_objects(cfg) == 1 else out / f"obj{n}"
        results.append(evaluate_models(one, encoder, scored, test_set, where, device, codebook=cb,
                                       codebook_encoder=codebook_encoder, extra=extra, progress=show, dist=dist))
        if drawer is not None:
            _overlays(one, drawer, test_set, where / "overlays", vis)
    if len(results) == 1:
        return results[0]
    extra_metrics: dict[str, Any] = {"object_id_source": cfg.Evaluation.OBJECT_ID_SOURCE}
    if head.config.classify:
        extra_metrics["classifier"] = _classifier(head, encoder, test_sets, cfg.Evaluation.BATCH_SIZE, device)
    return combine_objects(results, [f"obj{n}" for n in range(len(results))], [t.obj_id for t in test_sets], out,
                           detector_image_seconds(cfg), extra_metrics, write=dist.is_main)


def _overlays(cfg: Config, estimator: PoseEstimator, test_set: TestSet, out: Path, count: int) -> None:
    """``evaluate.py --vis``: the first ``count`` images of a BOP split drawn (:func:`bop_overlays`)."""
    if not cfg.Evaluation.TEST_DATA_PATH or not Path(cfg.Evaluation.TEST_DATA_PATH).is_dir():
        logger.warning("--vis draws the images of a BOP split; this test set (%s) has none: examples.png "
                       "([Evaluation] SAVE_IMAGES) shows its crops", test_set.description)
        return
    by_gt = cfg.Evaluation.OBJECT_ID_SOURCE == "gt" or len(estimator.objects) == 1  # else the classifier's block
    files = bop_overlays(estimator, test_set, Path(cfg.Evaluation.TEST_DATA_PATH), out, count,
                         cfg.Evaluation.OBJ_ID if by_gt else None)
    logger.info("%d overlay(s) in %s", len(files), out)


def evaluate_checkpoint(
    cfg: Config,
    checkpoint: str | os.PathLike[str] | None = None,
    *,
    device: torch.device | str | None = None,
    out_dir: str | os.PathLike[str] | None = None,
    num_samples: int | None = None,
    codebook: bool | None = None,
    progress: bool = True,
    trust: bool = False,
    dist: Dist | None = None,
    vis: int = 0,
) -> EvaluationResult:
    """Evaluate a ``train.py`` checkpoint (default ``<OUTPUT_PATH>/models/model-best.pt``) with the
    encoder of ``cfg`` on the test set of ``cfg``; results go to ``out_dir`` (default
    ``<OUTPUT_PATH>/evaluation``). ``num_samples`` and ``codebook`` override ``[Evaluation]
    NUM_SAMPLES`` and ``CODEBOOK_BASELINE``. Raises :class:`~multipose.infra.errors.UserInputError`
    subclasses for bad inputs (checkpoint, encoder, test data); ``trust`` allows an unsafe load of the
    checkpoint (``--trust-checkpoint``). An empty ``CROP_SIZE`` follows the encoder file
    (:func:`~multipose.experiment.encoders.with_encoder_crop_size`, as the entry scripts do). ``dist``: this rank of
    a distributed run (the ranks render the synthetic test set and the codebook together, each scores its
    share of the test set; rank 0 alone writes the results). ``vis``: overlays of the first ``vis`` images of a BOP
    split (``evaluate.py --vis N``)."""
    dist = dist or Dist()
    cfg = with_encoder_crop_size(cfg)
    check_evaluation_inputs(cfg)
    device = resolve_device(cfg) if device is None else torch.device(device)
    path = Path(checkpoint) if checkpoint is not None else default_checkpoint(cfg)
    head, state, encoder = checked_models(cfg, path, trust)
    check_crop_size(cfg, encoder.config.image_size, f"the encoder {encoder_weights_path(cfg)}")
    use_codebook = cfg.Evaluation.CODEBOOK_BASELINE if codebook is None else codebook
    cb_encoder = finetuned_encoder(encoder, head) if cfg.Evaluation.CODEBOOK_ENCODER == "finetuned" else encoder
    out = Path(out_dir) if out_dir is not None else RunFolder.of(cfg).evaluation
    extra = {"checkpoint": os.fspath(path), "epoch": state.get("epoch"),
             "encoder": os.fspath(cfg.Dataset.ENCODER_WEIGHTS), "head": head.config.output,
             **({"anchor_decoding": head.config.decoding} if head.config.output == "population" else {}),
             "finetuned_encoder_layer": head.encoder is not None,
             **({"codebook_encoder": cfg.Evaluation.CODEBOOK_ENCODER} if use_codebook else {})}
    result = evaluate_objects(cfg, encoder, head, out, device, num_samples=num_samples, codebook=use_codebook,
                              codebook_encoder=cb_encoder, extra=extra, progress=progress, dist=dist, vis=vis)
    if dist.is_main and RunFolder.of(cfg).root.is_dir():  # the run's TensorBoard: the recall at the checkpoint's epoch
        board = Board(RunFolder.of(cfg).board / "head")
        board.scalars(int(state.get("epoch") or 0), {f"evaluation/recall_{m}": v for m, v in result.recall.items()})
        board.close()
    return result

