"""``python -m multipose.config CFG [--set SECTION.KEY=VALUE ...]``: validate a config file and print it
fully resolved (every key, defaults included), or one ``error:`` line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from multipose.app import cli
from multipose.config import Config


def main(argv: Sequence[str] | None = None) -> int:
    parser = cli.make_parser(
        "Validate a multipose config file and print it fully resolved (every key, defaults included)."
    )
    parser.prog = "python -m multipose.config"

    def show(args: argparse.Namespace, cfg: Config) -> None:
        sys.stdout.write(cfg.to_ini())

    return cli.run(show, parser, argv, encoder_crop_size=False, several_objects=True)


if __name__ == "__main__":
    sys.exit(main())
