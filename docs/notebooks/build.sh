#!/usr/bin/env bash
# Regenerate the executed .ipynb of every notebook from its jupytext percent-format .py
# (the source of truth). Needs the docs and dev extras (jupytext, nbclient, ipykernel).
# Usage: bash docs/notebooks/build.sh [NAME.py ...]
set -euo pipefail
cd "$(dirname "$0")"
export MPLBACKEND=module://matplotlib_inline.backend_inline
for source in "${@:-*.py}"; do
  for f in $source; do
    jupytext --to ipynb --execute "$f"
  done
done
