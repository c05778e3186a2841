"""Plot the distribution of errors across a test set, as the original's plot_error_dist.py: each
method's errors sorted, and the sorted per-instance difference to the first method.

    python plot_error_dist.py output/template/evaluation                      # head, codebook, random, ...
    python plot_error_dist.py output/template/evaluation --methods codebook head --metric re_sym
    python plot_error_dist.py runA/evaluation runB/evaluation --methods head --out compare.png

Reads the per-sample.csv of one or more evaluation folders (evaluate.py); with several folders each
method is labelled with its folder, and the folders must hold the same test instances. --metric: vsd
(VSD error, default), re (rotation error, degrees) or re_sym (symmetry-aware, where the evaluation
knew the symmetries). Writes --out (default error-distribution-<metric>.png in the first folder) and
prints each method's median and mean, and with a --threshold (VSD: 0.3 unless given) its recall (the
fraction of errors below it) and the paired test against the first method: how many instances only
the first / only this method got right, and McNemar's exact two-sided p-value.
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
    import torch

    from multipose.evaluation.metrics import mcnemar_exact
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
    ids = [tuple(tuple(table[c]) for c in ("index", "scene_id", "im_id") if c in table) for _, table in tables]
    if len({len(e) for e in errors.values()}) != 1 or any(i != ids[0] for i in ids):
        raise UserInputError("the folders hold different test instances; compare evaluations of one test set")
    out = Path(args.out) if args.out else Path(args.folders[0]) / f"error-distribution-{args.metric}.png"
    plot_error_distribution(out, errors, {"vsd": "VSD error", "re": "rotation error (degrees)",
                                          "re_sym": "symmetry-aware rotation error (degrees)"}[args.metric])
    threshold = args.threshold if args.threshold is not None else (0.3 if args.metric == "vsd" else None)
    first_label, first = next(iter(errors.items()))
    for label, e in errors.items():
        line = f"{label}: median {np.median(e):.4g}, mean {np.mean(e):.4g} over {len(e)} instances"
        if threshold is not None:
            line += f"; recall {np.mean(e < threshold):.3f} (error < {threshold:g})"
            if label != first_label:
                test = mcnemar_exact(torch.as_tensor(first < threshold), torch.as_tensor(e < threshold))
                line += (f"; only {first_label} / only this right {test['only_a']} / {test['only_b']}, McNemar p "
                         f"{test['p']:.2g}")
        print(line)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folders", metavar="EVAL_DIR", nargs="+", type=Path,
                        help="evaluation folder(s) written by evaluate.py (holding per-sample.csv)")
    parser.add_argument("--methods", nargs="+", metavar="M", help="methods to draw, the first is the reference")
    parser.add_argument("--metric", choices=("vsd", "re", "re_sym"), default="vsd", help="error to draw (vsd)")
    parser.add_argument("--out", metavar="FILE", help="PNG to write")
    parser.add_argument("--threshold", type=float, metavar="E",
                        help="recall and paired test at error < E (default: 0.3 for vsd, none otherwise)")
    sys.exit(run_without_config(main, parser))
