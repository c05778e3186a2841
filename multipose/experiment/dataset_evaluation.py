"""A whole BOP dataset in one evaluation: one ``train.py`` run per object (``[Evaluation] CHECKPOINTS``), every
object of ``OBJ_ID`` (``all``, or a list) evaluated on one BOP split, and one results file per method with every
object's rows, as a BOP submission takes it (``evaluate.py``).

Each object is evaluated with its own run's ``config.cfg`` (its model, encoder, K, crops) and the evaluation
settings of the config given to ``evaluate.py`` (its whole ``[Evaluation]`` section, ``OBJ_ID`` set to the object),
into ``<out>/obj<id>/``; ``<out>`` gets the merged results files and ``metrics.json`` with every object's figures,
their mean and, under ``PROTOCOL: bop19``, the dataset's average recalls
(:func:`~multipose.experiment.evaluation.combine_objects`).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import torch

from multipose.config import Config, check_crop_size, load_config, num_objects, resolve_device
from multipose.config.schema import SCHEMA
from multipose.experiment.encoders import with_encoder_crop_size
from multipose.experiment.evaluation import EvaluationResult, combine_objects, detector_image_seconds, evaluate_objects
from multipose.experiment.pose_checkpoints import checked_models
from multipose.experiment.run_folder import RunFolder, encoder_weights_path
from multipose.experiment.testsets import check_evaluation_inputs
from multipose.infra.errors import ConfigError
from multipose.models.head import finetuned_encoder

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


def check_dataset_inputs(cfg: Config) -> list[tuple[int, Config, Path]]:
    """Cheap checks of a whole-dataset evaluation before any work: a BOP split, no single ``MODEL_PATH_EVAL``, and
    every object's run and its evaluation inputs (:func:`~multipose.experiment.testsets.check_evaluation_inputs`);
    returns :func:`object_runs`."""
    ev = cfg.Evaluation
    where = f"{cfg.origin('Evaluation', 'CHECKPOINTS')}: [Evaluation] CHECKPOINTS"
    if not ev.TEST_DATA_PATH or not Path(ev.TEST_DATA_PATH).is_dir():
        raise ConfigError(f"{where} evaluates one run per object on a BOP split: set [Evaluation] TEST_DATA_PATH to "
                          "one (e.g. tless/test_primesense)")
    if ev.MODEL_PATH_EVAL:
        raise ConfigError(f"{cfg.origin('Evaluation', 'MODEL_PATH_EVAL')}: [Evaluation] MODEL_PATH_EVAL names one "
                          "model, but CHECKPOINTS evaluates several objects: leave it empty (each object's "
                          "models_eval/obj_<id>.ply beside the BOP folder, else its run's MODEL_PATH_DATA)")
    runs = object_runs(cfg)
    for _, one, checkpoint in runs:
        if not checkpoint.is_file():
            raise ConfigError(f"{where}: {checkpoint}: no such checkpoint (has the run trained?)")
        check_evaluation_inputs(one)
    return runs


def evaluate_dataset(
    cfg: Config, out_dir: str | os.PathLike[str] | None = None, *, device: torch.device | str | None = None,
    num_samples: int | None = None, codebook: bool | None = None, progress: bool = True, trust: bool = False,
    vis: int = 0,
) -> EvaluationResult:
    """Evaluate every object's run of ``[Evaluation] CHECKPOINTS`` on the BOP split (module docstring) on
    ``device`` (default the given config's); results in ``out_dir`` (default ``<OUTPUT_PATH>/evaluation``).
    ``num_samples``, ``codebook``, ``trust`` and ``vis`` as for
    :func:`~multipose.experiment.evaluation.evaluate_checkpoint`, for each object. Every object's checkpoint is
    loaded and checked against its run before the first is evaluated."""
    runs = [(obj_id, with_encoder_crop_size(one), checkpoint) for obj_id, one, checkpoint in check_dataset_inputs(cfg)]
    models = [checked_models(one, checkpoint, trust) for _, one, checkpoint in runs]
    for (_, one, _), (_, _, encoder) in zip(runs, models, strict=True):
        check_crop_size(one, encoder.config.image_size, f"the encoder {encoder_weights_path(one)}")
    out = Path(out_dir) if out_dir is not None else RunFolder.of(cfg).evaluation
    run_device = resolve_device(cfg) if device is None else torch.device(device)
    results = []
    for (obj_id, one, checkpoint), (head, state, encoder) in zip(runs, models, strict=True):
        use_codebook = one.Evaluation.CODEBOOK_BASELINE if codebook is None else codebook
        cb_encoder = finetuned_encoder(encoder, head) if one.Evaluation.CODEBOOK_ENCODER == "finetuned" else encoder
        logger.info("object %d: %s (epoch %s)", obj_id, checkpoint, state.get("epoch"))
        extra = {"checkpoint": os.fspath(checkpoint), "epoch": state.get("epoch"),
                 **({"codebook_encoder": one.Evaluation.CODEBOOK_ENCODER} if use_codebook else {})}
        results.append(evaluate_objects(one, encoder, head, out / f"obj{obj_id}", run_device, num_samples=num_samples,
                                        codebook=use_codebook, codebook_encoder=cb_encoder, extra=extra,
                                        progress=progress, vis=vis))
    names = [f"obj{obj_id}" for obj_id, _, _ in runs]
    return combine_objects(results, names, [obj_id for obj_id, _, _ in runs], out, detector_image_seconds(cfg),
                           {"checkpoints": {n: os.fspath(c) for n, (_, _, c) in zip(names, runs, strict=True)}})


