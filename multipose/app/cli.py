"""Shared plumbing of the thin entry scripts (``train.py``, ``plot_loss_landscape.py``, ...).

Every script follows the same pattern::

    def main(args: argparse.Namespace, cfg: Config) -> int | None:
        ...                                   # the work; returns an exit code or None (= 0)

    if __name__ == "__main__":
        parser = make_parser(__doc__)         # positional CFG, repeatable --set SECTION.KEY=VALUE
        sys.exit(run(main, parser))

:func:`run` configures logging once, loads and validates the config *before* ``main`` runs (so a bad
file never creates an output folder), and turns a :class:`~multipose.infra.errors.UserInputError` into one
``error: <message>`` line on stderr and its exit code (2 for config errors), without a traceback.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence

from tqdm import tqdm

from multipose.config import Config, load_config, num_objects
from multipose.infra.errors import ConfigError, UserInputError

__all__ = ["make_parser", "run", "run_without_config", "setup_logging"]

#: Exit code after Ctrl-C (128 + SIGINT), as shells report it.
EXIT_INTERRUPTED = 130

_LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class _TqdmHandler(logging.Handler):
    """Log to stderr through ``tqdm.write`` so that log lines do not break progress bars."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            tqdm.write(self.format(record), file=sys.stderr)
        except Exception:  # noqa: BLE001 - logging must never raise
            self.handleError(record)


def setup_logging(level: int = logging.INFO) -> None:
    """Send INFO and above to stderr in a short format; calling it again changes nothing."""
    root = logging.getLogger()
    if any(isinstance(h, _TqdmHandler) for h in root.handlers):
        return
    handler = _TqdmHandler()
    handler.setFormatter(logging.Formatter(_LOG_FORMAT, datefmt="%H:%M:%S"))
    root.addHandler(handler)
    root.setLevel(level)


def make_parser(description: str | None) -> argparse.ArgumentParser:
    """An argument parser with the positional config file ``CFG`` and repeatable ``--set``."""
    parser = argparse.ArgumentParser(
        description=description,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Check a config file without running anything: python -m multipose.config CFG",
    )
    parser.add_argument(
        "config", metavar="CFG", help="experiment config file (INI), e.g. experiment_template.cfg"
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="override a config value, parsed with the key's type (repeatable), "
        "e.g. --set Training.NUM_ITER=5",
    )
    return parser


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _rank_tag() -> str:
    """``"[rank N] "`` in a process of a torchrun job of several processes (whose errors share one stderr),
    else nothing."""
    world, rank = os.environ.get("WORLD_SIZE", "1"), os.environ.get("RANK")
    return f"[rank {rank}] " if rank is not None and world.isdigit() and int(world) > 1 else ""


def run(
    main: Callable[[argparse.Namespace, Config], int | None],
    parser: argparse.ArgumentParser,
    argv: Sequence[str] | None = None,
    preflight: bool = False,
    encoder_crop_size: bool = True,
    several_objects: bool = False,
) -> int:
    """Parse ``argv``, set up logging, load the config, call ``main(args, cfg)``; return the exit code.

    ``preflight``: first check every asset the config names (:func:`multipose.experiment.preflight.preflight`,
    seconds): a missing or malformed one stops the script before any work, with exit code 2.
    ``encoder_crop_size``: fill an empty ``[Dataset] CROP_SIZE`` from the encoder file, once
    (:func:`multipose.experiment.encoders.with_encoder_crop_size`; it imports torch).
    ``several_objects``: the script takes configs of several objects (``MODEL_PATH_DATA`` a list of N > 1);
    others refuse them with one error line.
    ``UserInputError`` (config errors included) -> one ``error: ...`` line on stderr and
    ``exc.exit_code``; Ctrl-C -> 130. Other exceptions are bugs and propagate with their traceback.
    """
    def configured(args: argparse.Namespace) -> int | None:
        cfg = load_config(args.config, args.overrides)
        if not several_objects:
            _one_object(cfg)
        if encoder_crop_size:
            from multipose.experiment.encoders import with_encoder_crop_size  # lazy: torch (--help stays fast)

            cfg = with_encoder_crop_size(cfg)
        if preflight:
            from multipose.experiment.preflight import preflight as check  # lazy: it imports torch and the loaders

            check(cfg)
        return main(args, cfg)

    return run_without_config(configured, parser, argv)


def _one_object(cfg: Config) -> None:
    """Raise :class:`ConfigError` for a config of several objects (their loss, the object classifier: the
    original's final version) in a script that takes one object."""
    n = num_objects(cfg)
    used = [found for found, present in (
        (("Dataset", "MODEL_PATH_DATA", f"names {n} objects"), n > 1),
        (("Training", "LOSS", "is vsd-union-multi-object"), cfg.Training.LOSS == "vsd-union-multi-object"),
        (("Training", "CLASSIFY_OBJECTS", "is true"), cfg.Training.CLASSIFY_OBJECTS),
    ) if present]
    if used:
        section, key, what = used[0]
        raise ConfigError(
            f"{cfg.origin(section, key)}: [{section}] {key} {what}: a head of several objects is trained by "
            "train.py and its config checked by python -m multipose.config and python -m multipose.app.check_data; "
            "this script takes one object (give one model path, LOSS: vsd-union, CLASSIFY_OBJECTS: false)"
        )


def run_without_config(
    main: Callable[[argparse.Namespace], int | None],
    parser: argparse.ArgumentParser,
    argv: Sequence[str] | None = None,
) -> int:
    """:func:`run` for scripts that take no config file (e.g. ``show_loss_landscape.py OUTPUT_DIR``)."""
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, or a usage error argparse has already reported
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    setup_logging()
    try:
        result = main(args)
    except UserInputError as exc:
        print(f"{_rank_tag()}error: {_one_line(str(exc))}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    return 0 if result is None else int(result)
