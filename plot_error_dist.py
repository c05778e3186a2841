"""Plot the distribution of errors across a test set, as the original's plot_error_dist.py: each
method's errors sorted, and the sorted per-instance difference to the first method.

    python plot_error_dist.py output/template/evaluation                      # head, codebook, random, ...
    python plot_error_dist.py output/template/evaluation --methods codebook head --metric re_sym
    python plot_error_dist.py runA/evaluation runB/evaluation --methods head --out compare.png

Reads the per-sample.csv of one or more evaluation folders (evaluate.py); with several folders each
method is labelled with its folder, and the folders must hold the same test instances. --metric: vsd
(VSD error, default), re (rotation error, degrees) or re_sym (symmetry-aware, where the evaluation
knew the symmetries). Writes --out (default error-distribution-<metric>.png in the first folder) and
prints each method's median and mean.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from multipose.app.cli import run_without_config
from multipose.infra.errors import UserInputError


def _methods(table: dict, metric: str) -> list[str]:
    """The methods with a ``<metric>_<method>`` column (per-hypothesis columns and, for ``re``, the
    ``re_sym_`` ones left out)."""
    prefix = f"{metric}_"
    return sorted(c[len(prefix):] for c in table if c.startswith(prefix) and "hypothesis" not in c
                  and not (metric == "re" and c.startswith("re_sym_")))


def main(args: argparse.Namespace) -> int:
    import numpy as np

    from multipose.evaluation.report import plot_error_distribution, read_per_sample

    tables = [(folder, read_per_sample(folder)) for folder in args.folders]
    errors = {}
    for folder, table in tables:
        available = _methods(table, args.metric)
        methods = args.methods or [m for m in ("head", "best-of-K", "codebook", "stored", "random") if m in available]
        for method in methods:
            column = f"{args.metric}_{method}"
            if column not in table:
                raise UserInputError(f"{folder}: no {column} in per-sample.csv; it has the methods {available}")
            errors[method if len(tables) == 1 else f"{method} ({folder})"] = table[column]
    if len({len(e) for e in errors.values()}) != 1:
        raise UserInputError("the folders hold test sets of different sizes; compare evaluations of one test set")
    out = Path(args.out) if args.out else Path(args.folders[0]) / f"error-distribution-{args.metric}.png"
    plot_error_distribution(out, errors, {"vsd": "VSD error", "re": "rotation error (degrees)",
                                          "re_sym": "symmetry-aware rotation error (degrees)"}[args.metric])
    for label, e in errors.items():
        print(f"{label}: median {np.median(e):.4g}, mean {np.mean(e):.4g} over {len(e)} instances")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folders", metavar="EVAL_DIR", nargs="+", type=Path,
                        help="evaluation folder(s) written by evaluate.py (holding per-sample.csv)")
    parser.add_argument("--methods", nargs="+", metavar="M", help="methods to draw, the first is the reference")
    parser.add_argument("--metric", choices=("vsd", "re", "re_sym"), default="vsd", help="error to draw (vsd)")
    parser.add_argument("--out", metavar="FILE", help="PNG to write")
    sys.exit(run_without_config(main, parser))
