#!/usr/bin/env bash
# Build the ApolloCar3D shape prior for benchmarks (non-commercial data: the result stays OUTSIDE
# the repository, in ~/.cache/autolabel_ros/apollo_prior.npz; never commit it).
# Usage: benchmarks/build_apollo_prior.sh [OUT.npz] [extra autolabel-build-prior args]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
models="${APOLLO_MODELS:-$root/../shared/data/cars/apollocar3d/car_models_json}"
out="${1:-$HOME/.cache/autolabel_ros/apollo_prior.npz}"
shift || true
if [ ! -d "$models" ]; then
  echo "ApolloCar3D models not found at $models (set APOLLO_MODELS)" >&2
  exit 2
fi
venv="$(ls -d "${AUTOLABEL_CACHE:-$HOME/.cache/autolabel_ros}"/venv-*/ 2>/dev/null | head -1)"
py="${venv:+${venv}bin/python}"
py="${py:-python3}"
mkdir -p "$(dirname "$out")"
PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}" "$py" -m autolabel_ros.cli.build_prior \
  --models "$models" --out "$out" "$@"
