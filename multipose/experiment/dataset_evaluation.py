"""A whole BOP dataset in one evaluation: one ``train.py`` run per object (``[Evaluation] CHECKPOINTS``), every
object of ``OBJ_ID`` (``all``, or a list) evaluated on one BOP split, and one results file per method with every
object's rows, as a BOP submission takes it (``evaluate.py``).

Each object is evaluated with its own run's ``config.cfg`` (its model, encoder, K, crops) and the evaluation
settings of the config given to ``evaluate.py`` (its whole ``[Evaluation]`` section, ``OBJ_ID`` set to the object),
into ``<out>/obj<id>/``; ``<out>`` gets the merged results files and ``metrics.json`` with every object's figures,
their mean and, under ``PROTOCOL: bop19``, the dataset's average recalls (:func:`~multipose.evaluation.report.
combine_bop19`).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import torch

from multipose.config import Config, load_config, num_objects, resolve_device
from multipose.config.schema import SCHEMA
from multipose.evaluation.report import combine_bop19, merge_results_files, write_json
from multipose.experiment.encoders import with_encoder_crop_size
from multipose.experiment.evaluation import EvaluationResult, evaluate_objects
from multipose.experiment.pose_checkpoints import checked_models
from multipose.experiment.run_folder import RunFolder
from multipose.experiment.testsets import check_evaluation_inputs
from multipose.infra.errors import ConfigError

logger = logging.getLogger(__name__)

__all__ = ["check_dataset_inputs", "evaluate_dataset", "object_runs"]

#: The ``[Evaluation]`` keys an object's run does not take from the evaluation's config.
_OWN_KEYS = ("OBJ_ID", "CHECKPOINTS")


def object_runs(cfg: Config) -> list[tuple[int, Config, Path]]:
    """Per object of ``OBJ_ID`` (``all``: every one of ``CHECKPOINTS``): its BOP id, its run's config with this
    config's ``[Evaluation]`` settings, and its checkpoint. Raises :class:`ConfigError` for an id without a
    run, a run folder without ``config.cfg``, or a run of several objects."""
    ev = cfg.Evaluation
    runs = dict(ev.CHECKPOINTS or ())
    ids = sorted(runs) if ev.OBJ_ID == "all" else list(ev.OBJ_ID) if isinstance(ev.OBJ_ID, tuple) else [ev.OBJ_ID]
    where = f"{cfg.origin('Evaluation', 'CHECKPOINTS')}: [Evaluation] CHECKPOINTS"
    found = []
    for obj_id in ids:
        if obj_id not in runs:
            raise ConfigError(f"{where} has no run of object {obj_id} (OBJ_ID); it has {sorted(runs)}")
        source = Path(runs[obj_id])
        run, checkpoint = (source.resolve().parent.parent, source) if source.is_file() else (
            source, RunFolder(source).models / "model-best.pt")
        if not (run / "config.cfg").is_file():
            raise ConfigError(f"{where}: object {obj_id}: {source} is not a train.py run folder (no config.cfg), nor "
                              "a checkpoint in one (<run>/models/...)")
        one = load_config(run / "config.cfg", [f"Training.OUTPUT_PATH={run}"])
        for key in (k.name for k in SCHEMA if k.section == "Evaluation" and k.name not in _OWN_KEYS):
            one = one.with_value("Evaluation", key, ev[key], cfg.origin("Evaluation", key))
        one = one.with_value("Evaluation", "OBJ_ID", obj_id, cfg.origin("Evaluation", "CHECKPOINTS"))
        if num_objects(one) != 1:
            raise ConfigError(f"{where}: object {obj_id}: {run} trained a head of {num_objects(one)} objects; give it "
                              "as the config (its OBJ_ID the list of their ids), not in CHECKPOINTS")
        found.append((obj_id, one, checkpoint))
    return found


def check_dataset_inputs(cfg: Config) -> None:
    """Cheap checks of a whole-dataset evaluation before any work: a BOP split, every object's run and its
    evaluation inputs (:func:`~multipose.experiment.testsets.check_evaluation_inputs`)."""
    ev = cfg.Evaluation
    if not ev.TEST_DATA_PATH or not Path(ev.TEST_DATA_PATH).is_dir():
        raise ConfigError(f"{cfg.origin('Evaluation', 'CHECKPOINTS')}: [Evaluation] CHECKPOINTS evaluates one run "
                          "per object on a BOP split: set [Evaluation] TEST_DATA_PATH to one (e.g. "
                          "tless/test_primesense)")
    for _, one, checkpoint in object_runs(cfg):
        if not checkpoint.is_file():
            raise ConfigError(f"{cfg.origin('Evaluation', 'CHECKPOINTS')}: [Evaluation] CHECKPOINTS: {checkpoint}: no "
                              "such checkpoint (has the run trained?)")
        check_evaluation_inputs(one)


def evaluate_dataset(
    cfg: Config, out_dir: str | os.PathLike[str] | None = None, *, device: torch.device | str | None = None,
    num_samples: int | None = None, codebook: bool | None = None, progress: bool = True, trust: bool = False,
    vis: int = 0,
) -> EvaluationResult:
    """Evaluate every object's run of ``[Evaluation] CHECKPOINTS`` on the BOP split (module docstring); results in
    ``out_dir`` (default ``<OUTPUT_PATH>/evaluation``). ``num_samples``, ``codebook``, ``trust`` and ``vis`` as for
    :func:`~multipose.experiment.evaluation.evaluate_checkpoint`, for each object."""
    check_dataset_inputs(cfg)
    out = Path(out_dir) if out_dir is not None else RunFolder.of(cfg).evaluation
    results, ids, sources = [], [], {}
    for obj_id, one, checkpoint in object_runs(cfg):
        one = with_encoder_crop_size(one)
        head, state, encoder = checked_models(one, checkpoint, trust)
        run_device = resolve_device(one) if device is None else torch.device(device)
        use_codebook = one.Evaluation.CODEBOOK_BASELINE if codebook is None else codebook
        logger.info("object %d: %s (epoch %s)", obj_id, checkpoint, state.get("epoch"))
        results.append(evaluate_objects(one, encoder, head, out / f"obj{obj_id}", run_device, num_samples=num_samples,
                                        codebook=use_codebook, extra={"checkpoint": os.fspath(checkpoint)},
                                        progress=progress, vis=vis))
        ids.append(obj_id)
        sources[str(obj_id)] = os.fspath(checkpoint)
    return _dataset_result(results, ids, sources, out)


def _dataset_result(results: list[EvaluationResult], ids: list[int], sources: dict[str, str],
                    out: Path) -> EvaluationResult:
    """The objects' evaluations together: recall per object and its mean, BOP19's per object, mean and dataset,
    merged results files; ``out/metrics.json``."""
    recall = {m: float(sum(r.recall[m] for r in results) / len(results)) for m in results[0].recall}
    metrics: dict[str, Any] = {
        "recall": recall, "objects": {f"obj{n}": r.recall for n, r in enumerate(results)}, "object_ids": ids,
        "checkpoints": sources, "settings": results[0].metrics["settings"],
        "num_samples": sum(r.metrics["num_samples"] for r in results),
    }
    if "bop19" in results[0].metrics:
        metrics["bop19"] = combine_bop19([r.metrics["bop19"] for r in results])
    metrics["files"] = merge_results_files([(r.out_dir, r.metrics.get("files", {})) for r in results], out)
    write_json(out / "metrics.json", metrics)
    errors = {m: torch.cat([r.errors[m] for r in results]) for m in results[0].errors}
    return EvaluationResult(out_dir=out, metrics=metrics, errors=errors)
