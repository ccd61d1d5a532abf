#!/usr/bin/env bash
# The accelerator benchmark (benchmarks/accelerator.py) on a lent GPU, as one call of at most
# 8 minutes that writes its JSON under $OUT.
#
# 1. Here, once, with PyPI reachable (PYTHON: an interpreter with pip):
#        PYTHON=python-with-pip bash benchmarks/device_run.sh --fetch-wheels
#    downloads the peers the device image lacks -- torchcfm, POT (compiled: CPython 3.12
#    manylinux, the device's python3) and torchdyn with what it needs beyond the image
#    (torchcde, torchsde, trampoline) -- into benchmarks/wheels/ (git-ignored).
# 2. On the device, the tool's command (benchmarks/wheels named in its carry):
#        bash benchmarks/device_run.sh [more accelerator.py arguments]
#    installs the wheels of the peers that do not import there (--no-deps, into a scratch
#    folder put on PYTHONPATH with the repository, which the image does not have installed),
#    then runs accelerator.py full size with --budget-s $BUDGET_S (default 400) under a hard
#    timeout of $BUDGET_S + 60 s; the JSON is rewritten after every part, so a cut run keeps
#    what it measured. Writes $OUT/accelerator.json, $OUT/accelerator.log, $OUT/nvidia-smi.txt.
# Test here at reduced size:
#        OUT=/tmp/accel_out PYTHON=python-with-torch bash benchmarks/device_run.sh --quick
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
WHEELS=benchmarks/wheels
PEERS=(torchcfm==1.0.7 pot==0.9.7.post1 torchdyn==1.0.6 torchcde==0.2.5 torchsde==0.2.6
       trampoline==0.1.2)

if [[ "${1:-}" == "--fetch-wheels" ]]; then
  mkdir -p "$WHEELS"
  "$PY" -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 -d "$WHEELS" "${PEERS[@]}"
  ls -l "$WHEELS"
  exit 0
fi

: "${OUT:?set OUT to the folder for the results}"
mkdir -p "$OUT"
BUDGET_S="${BUDGET_S:-400}"
SITE="${SITE:-/tmp/accel_site}"
# module:distribution of each peer; only those that do not import are installed
missing=()
for pair in torchcfm:torchcfm ot:pot torchdyn:torchdyn torchcde:torchcde torchsde:torchsde \
    trampoline:trampoline; do
  "$PY" -c "import importlib.util as u, sys; sys.exit(u.find_spec('${pair%%:*}') is None)" \
    || missing+=("${pair##*:}")
done
if ((${#missing[@]})); then
  echo "installing from $WHEELS: ${missing[*]}"
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target "$SITE" --find-links "$WHEELS" "${missing[@]}"
  export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
(nvidia-smi || echo "no nvidia-smi") >"$OUT/nvidia-smi.txt" 2>&1
timeout "$((BUDGET_S + 60))" "$PY" benchmarks/accelerator.py --budget-s "$BUDGET_S" \
  --out "$OUT/accelerator.json" "$@" 2>&1 | tee "$OUT/accelerator.log"
exit "${PIPESTATUS[0]}"
