#!/usr/bin/env bash
# The outcome tests (pytest -m outcome: optimisation, rendering and evaluation results) under the
# settings that change float reduction order the way another CPU does: 1 and 2 threads, and each SIMD
# kernel set torch can pick here (ATEN_CPU_CAPABILITY default, avx2, and avx512 where the CPU has it).
# A test that passes only in one basin fails here before it fails on someone else's machine.
#
#   tools/check-hosts.sh                 # every outcome test
#   tools/check-hosts.sh -k overfit      # extra arguments go to pytest
#
# Prints one line per setting (passed/failed, seconds) and the figures the tests recorded
# (record_property), and exits non-zero if any setting failed. Uses .venv (the README's test command).
set -uo pipefail
cd "$(dirname "$0")/.."
python=.venv/bin/python
[ -x "$python" ] || { echo "error: $python not found; run the README's test command first" >&2; exit 2; }

settings=("OMP_NUM_THREADS=1" "OMP_NUM_THREADS=2" "ATEN_CPU_CAPABILITY=default" "ATEN_CPU_CAPABILITY=avx2")
if grep -qw avx512f /proc/cpuinfo 2>/dev/null; then
    settings+=("ATEN_CPU_CAPABILITY=avx512")
fi

reports=$(mktemp -d)
trap 'rm -rf "$reports"' EXIT
failed=0
for setting in "${settings[@]}"; do
    start=$SECONDS
    env "$setting" "$python" -m pytest -m outcome -q -p no:cacheprovider --junitxml="$reports/$setting.xml" "$@" \
        >"$reports/$setting.log" 2>&1
    rc=$?
    if [ "$rc" -eq 0 ]; then verdict=passed; else verdict="FAILED (pytest exit $rc)"; failed=1; fi
    echo "== $setting: $verdict in $((SECONDS - start)) s ($(tail -n 1 "$reports/$setting.log"))"
    "$python" - "$reports/$setting.xml" <<'PY'
import sys
import xml.etree.ElementTree as ET

for case in ET.parse(sys.argv[1]).iter("testcase"):
    for prop in case.iter("property"):
        print(f"   {case.get('name')}: {prop.get('name')}: {prop.get('value')}")
PY
    if [ "$rc" -ne 0 ]; then
        grep -E "^(FAILED|ERROR)" "$reports/$setting.log" | sed 's/^/   /'
    fi
done
exit "$failed"
