"""Benchmark data-parallel training: views per second of building the view cache and samples per second of
the pose head's training at 1, 2, ... processes under torchrun (one GPU each on a GPU node, CPU processes
otherwise).

    python benchmarks/scaling.py experiment_template.cfg --procs 1 2 --samples 512
    python benchmarks/scaling.py my_tless.cfg --procs 1 2 4 8 --samples 4096 --set Training.DEVICE=cuda   # GPU node

Each run builds its own view cache (``[Dataset] NOOF_TRAINING_IMGS`` views, in the run's folder: the
views/s of the log line "view cache: rendered ...") and trains ``--epochs`` epochs of ``--samples`` samples
into a fresh folder under ``--out`` (samples/s: the ``head_training`` phase of ``timings.json``). On a
2-core CPU two processes share the same cores, so expect little gain there.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", type=Path)
    parser.add_argument("--procs", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--samples", type=int, default=512, help="[Training] NUM_SAMPLES per epoch")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--out", type=Path, default=None, help="folder of the runs (default: a temporary one)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE")
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="multipose-scaling-"))
    rows = []
    for procs in args.procs:
        run = out / f"procs{procs}"
        shutil.rmtree(run, ignore_errors=True)
        overrides = [f"Training.OUTPUT_PATH={run}", f"Dataset.CACHE_DIR={run / 'cache'}",
                     f"Training.NUM_ITER={args.epochs}",
                     f"Training.NUM_SAMPLES={args.samples}", "Training.SAVE_IMAGES=false",
                     "Evaluation.AFTER_TRAINING=false", *args.overrides]
        launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={procs}"]
        command = [*launch, str(REPO / "train.py"), str(args.config), *sum((["--set", o] for o in overrides), [])]
        env = {**os.environ, "OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 1) // procs))}
        done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, env=env)
        if done.returncode != 0:
            print(done.stderr[-3000:], file=sys.stderr)
            return done.returncode
        seconds = json.loads((run / "timings.json").read_text())["phases"]["head_training"]
        cache = re.search(r"view cache: rendered (\d+) views .* in ([0-9.]+) s \(([0-9.]+) views/s", done.stderr)
        rows.append({"processes": procs, "cache_views": int(cache[1]) if cache else None,
                     "cache_s": float(cache[2]) if cache else None,
                     "cache_views_per_s": float(cache[3]) if cache else None, "head_training_s": round(seconds, 2),
                     "samples_per_s": round(args.samples * args.epochs / seconds, 1)})
        print(json.dumps(rows[-1]), flush=True)
    print(json.dumps({"config": str(args.config), "cpu": platform.processor(), "cpus": os.cpu_count(),
                      "samples": args.samples, "epochs": args.epochs, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
