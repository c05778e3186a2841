"""The experiment configuration: one table (:data:`SCHEMA`, :mod:`multipose.config.schema`) owns every key's
type, default and meaning.

Files are INI, read with :mod:`configparser` like the original research code, so existing
``experiment_template.cfg`` files run unchanged::

    [Training]
    NUM_ITER: 201
    LEARNING_RATE: 1e-3

Reading rules:

- section and key names match case-insensitively; keys are stored upper-case, as the originals write them;
- ``KEY: value`` or ``KEY = value``; a value may continue on indented lines (joined, then JSON-parsed
  where the key takes a list); full-line ``#`` / ``;`` comments; a key set twice is an error;
- an empty value means "unset" only for keys marked optional; every other key must hold a valid value;
- a key missing from the file takes its default (every key has one, so old files stay valid);
- an unknown section or key is an error that suggests the closest known name: a typo never silently
  falls back to a default. Keys the original used that multipose does not need are accepted with a warning;
- nothing is ``eval``-ed; lists are ``json.loads``-ed.

Every error is a :class:`multipose.infra.errors.ConfigError` with a one-line message::

    exp.cfg: [Training] NUM_ITER = 'ten': expected an int >= 1
    exp.cfg: [Training] NUM_ITR: unknown key; did you mean NUM_ITER?

Overrides (``SECTION.KEY=VALUE``, e.g. ``--set Training.NUM_ITER=5`` on the command line) replace file
values before parsing, so each is parsed with its key's type and its errors name the ``--set`` argument.

Usage::

    cfg = load_config("experiment.cfg", overrides=["Training.NUM_ITER=5"])
    cfg.Training.NUM_ITER        # 5, also cfg["Training"]["NUM_ITER"]
    cfg.Rendering.T              # None (auto) or (x, y, z) in mm
    num_hypotheses(cfg)          # K
    loss_parameters(cfg)         # LossParameters(depth_max, pose_max, gamma)

Check a file from the shell (prints the resolved configuration, every key, or one ``error:`` line)::

    python -m multipose.config experiment.cfg --set Training.NUM_ITER=5

The package: :mod:`~multipose.config.types` and :mod:`~multipose.config.compound_types` (INI value types),
:mod:`~multipose.config.schema` (every key:
the part to edit when adding one), :mod:`~multipose.config.core` (the :class:`Config` object),
:mod:`~multipose.config.ini` and :mod:`~multipose.config.loading` (reading files and overrides),
:mod:`~multipose.config.derived` (values computed from a config alone; nothing here reads a model file or
writes a run folder: :mod:`multipose.experiment.run_folder` and :mod:`multipose.models.weights` own those) and
``__main__`` (``python -m multipose.config``).
"""

from multipose.config.core import Config, Section
from multipose.config.derived import (
    DEFAULT_RADIUS_MM,
    check_crop_size,
    check_objects,
    crop_size,
    encoder_arch,
    loss_parameters,
    num_hypotheses,
    num_objects,
    render_distance,
    resolve_device,
    validation_metric,
    view_sampling,
)
from multipose.config.loading import default_config, load_config, load_config_text
from multipose.config.schema import (
    DEPRECATED,
    SCHEMA,
    SECTIONS,
    WEIGHT_INIT_NAMES,
    Key,
    schema_markdown,
)
from multipose.core.settings import (
    DEFAULT_DEPTH_MAX,
    ENCODER_INPUT_SIZES,
    HARD_POOLS,
    VIEW_SAMPLING_METHODS,
    LossParameters,
    ViewSampling,
)

__all__ = [
    "DEFAULT_DEPTH_MAX",
    "DEFAULT_RADIUS_MM",
    "DEPRECATED",
    "ENCODER_INPUT_SIZES",
    "HARD_POOLS",
    "SCHEMA",
    "SECTIONS",
    "VIEW_SAMPLING_METHODS",
    "WEIGHT_INIT_NAMES",
    "Config",
    "Key",
    "LossParameters",
    "Section",
    "ViewSampling",
    "check_crop_size",
    "check_objects",
    "crop_size",
    "default_config",
    "encoder_arch",
    "load_config",
    "load_config_text",
    "loss_parameters",
    "num_hypotheses",
    "num_objects",
    "render_distance",
    "resolve_device",
    "schema_markdown",
    "validation_metric",
    "view_sampling",
]
