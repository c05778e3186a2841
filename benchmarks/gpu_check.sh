#!/usr/bin/env bash
# The GPU check, one script for a machine with a CUDA device (run from anywhere; writes into $OUT, default
# ./gpu-check): the tests that run on CUDA, the template's main job and one epoch of the T-LESS recipe, each
# with its wall time and the run's timings.json. The CAD model of the T-LESS epoch: MODEL_PLY / MODEL_OBJ
# (default: the BOP release's obj_000010 under data/tless/models_cad, else the embedded procedural part).
#   bash benchmarks/gpu_check.sh            # after the README's install command (.venv)
#   PYTHON=python OUT=/tmp/gpu bash benchmarks/gpu_check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-.venv/bin/python}
out=${OUT:-gpu-check}
rm -rf "$out/template" "$out/tless"  # fresh runs: a run folder left by an earlier check would resume
mkdir -p "$out"
ply=${MODEL_PLY:-data/tless/models_cad/obj_000010.ply}
obj=${MODEL_OBJ:-$ply}
if [ ! -f "$ply" ]; then
    ply=data/cad-files/tless_like_2fold.ply
    obj=$ply
fi

"$python" - > "$out/device.txt" <<'PY'
import torch
if not torch.cuda.is_available():
    raise SystemExit("error: torch sees no CUDA device; this check needs one")
print(torch.__version__, torch.version.cuda, torch.cuda.get_device_name(0))
PY
cat "$out/device.txt"

step() {  # step NAME COMMAND...: run, log to $out/NAME.log, record the wall seconds
    local name=$1 start rc
    shift
    start=$(date +%s%N)
    set +e
    "$@" > "$out/$name.log" 2>&1
    rc=$?
    set -e
    awk -v n="$name" -v rc="$rc" -v ns="$(( $(date +%s%N) - start ))" 'BEGIN { printf "%s\t%s\t%.1f\n", n, rc, ns / 1e9 }' \
        | tee -a "$out/summary.tsv"
    tail -n 3 "$out/$name.log"
}

printf 'step\texit\tseconds\n' > "$out/summary.tsv"
step cuda-tests "$python" -m pytest -q -p no:cacheprovider -k cuda
step main-job "$python" train.py experiment_template.cfg --set Training.OUTPUT_PATH="$out/template" \
    --set Training.DEVICE=cuda
cp "$out/template/timings.json" "$out/template-timings.json" || true
step tless-epoch "$python" train.py configs/tless.cfg --set Dataset.MODEL_PATH_DATA="$ply" \
    --set Dataset.MODEL_PATH_LOSS="$obj" --set Training.OUTPUT_PATH="$out/tless" --set Training.NUM_ITER=1 \
    --set Training.DEVICE=cuda --set Dataset.CACHE_DIR="$out/cache"
cp "$out/tless/timings.json" "$out/tless-timings.json" || true
column -t "$out/summary.tsv"
