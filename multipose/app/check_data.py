"""Check the models and data files a config uses, before a run needs them.

    python -m multipose.app.check_data experiment_template.cfg
    python -m multipose.app.check_data my_experiment.cfg --set Dataset.BACKGROUND_IMAGES=./data/VOC2012 --quick

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
import sys
from collections.abc import Sequence

from multipose.app import cli
from multipose.config import Config
from multipose.experiment.findings import FAILING, format_report
from multipose.experiment.preflight import check_data

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m multipose.app.check_data CFG [--set ...] [--quick]``: exit 1 if anything is missing or
    malformed, 2 for a bad config file."""
    parser = cli.make_parser(__doc__.split("\n\n")[0])
    parser.prog = "python -m multipose.app.check_data"
    parser.add_argument("--quick", action="store_true",
                        help="read only the headers of background images and skip decoding BOP test images")

    def run(args: argparse.Namespace, cfg: Config) -> int:
        findings = check_data(cfg, quick=args.quick, progress=sys.stderr.isatty())
        sys.stdout.write(format_report(findings, args.config))
        return 1 if any(f.status in FAILING for f in findings) else 0

    return cli.run(run, parser, argv, several_objects=True)


if __name__ == "__main__":
    sys.exit(main())
