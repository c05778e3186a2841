"""The data check of a config (``python -m multipose.app.check_data``) and the pre-flight check every entry
script runs before any work: every file or folder the config names, opened with the loader the run uses;
nothing is written."""

from __future__ import annotations

import os
from pathlib import Path

from multipose.config import Config
from multipose.experiment.asset_checks import (
    check_backgrounds,
    check_cache,
    check_encoder,
    check_mesh,
    check_run_folder,
    check_validation,
    check_view_sampling,
    unused_assets,
)
from multipose.experiment.dataset_evaluation import object_runs
from multipose.experiment.findings import FAILING, Finding
from multipose.experiment.objects import object_configs
from multipose.experiment.pbr import check_pbr
from multipose.experiment.test_data_checks import check_eval_model, check_models_info, check_test_data
from multipose.infra.errors import PreflightError


def check_data(
    cfg: Config, quick: bool = False, progress: bool = True, data_root: str | os.PathLike = "data"
) -> list[Finding]:
    """Every asset ``cfg`` uses, checked with the loaders the run uses; nothing is written.

    ``quick``: read only image headers (backgrounds) and skip decoding BOP test images.
    ``data_root``: where to look for assets the config does not use (``data/README.md``'s layout).
    """
    objects = object_configs(cfg)  # each object's assets checked on its own view of the config
    first = objects[0]
    tested = [one for _, one, _ in object_runs(cfg)] if cfg.Evaluation.CHECKPOINTS else objects  # their runs
    encoder_findings, encoder = check_encoder(first)
    findings = [
        *(f for one in objects for f in check_mesh(one, "MODEL_PATH_DATA")),
        *(f for one in objects for f in check_mesh(one, "MODEL_PATH_LOSS")),
        *check_backgrounds(first, quick, progress),
        *encoder_findings,
        *(f for one in objects for f in check_validation(one)),
        *check_cache(first),
        *check_pbr(cfg, quick),
        *check_view_sampling(first),
        *check_run_folder(cfg, encoder),
        *(f for one in tested for f in check_test_data(one, quick, progress)),
        *(f for one in tested for f in check_eval_model(one)),
        *(f for one in tested for f in check_models_info(one)),
    ]
    findings = list(dict.fromkeys(findings))  # the objects' identical lines (e.g. the same generated test set) once
    root = Path(data_root)
    if data_root and root.is_dir():
        findings += unused_assets(cfg, root)
    return findings


def preflight(cfg: Config) -> None:
    """The quick form of :func:`check_data`, run by every entry script before any work: raises
    :class:`PreflightError` naming the first missing or malformed asset (and how many there are).
    Notes and warnings pass (the scripts decide about those, e.g. ``--force``)."""
    problems = [f for f in check_data(cfg, quick=True, progress=False, data_root="") if f.status in FAILING]
    if problems:
        more = f" (and {len(problems) - 1} more problem{'s' if len(problems) > 2 else ''})" if len(problems) > 1 else ""
        source = cfg.source if cfg.source is not None else "CFG"
        raise PreflightError(f"{problems[0].what}: {problems[0].message}{more}; "
                             f"python -m multipose.app.check_data {source} lists everything the config uses")
