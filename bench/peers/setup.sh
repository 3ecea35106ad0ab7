#!/usr/bin/env bash
# Create each peer's virtual environment OUTSIDE the repository (default /work/peers/<name>).
# Peers are never digitnet dependencies; the bench only runs their python as a subprocess.
# Usage: bash bench/peers/setup.sh [torch|keras-tf|keras-jax|sklearn ...]   (default: all)
set -euo pipefail
root="${DIGITNET_PEERS:-/work/peers}"
py="${PYTHON:-python3.11}"
command -v "$py" >/dev/null || py=python3
declare -A pkgs=(
  [torch]="torch==2.13.0 numpy"
  [keras-tf]="keras tensorflow-cpu numpy"
  [keras-jax]="keras jax numpy"
  [sklearn]="scikit-learn numpy"
)
names=("$@")
[ ${#names[@]} -eq 0 ] && names=(torch keras-tf keras-jax sklearn)
mkdir -p "$root"
for name in "${names[@]}"; do
  [ -n "${pkgs[$name]:-}" ] || { echo "unknown peer: $name" >&2; exit 2; }
  [ -x "$root/$name/bin/python" ] || "$py" -m venv "$root/$name"
  # torch's CPU wheel lies on local disk; pip finds it through the machine's find-links.
  nice "$root/$name/bin/python" -m pip install --quiet ${pkgs[$name]}
  echo "$name: $("$root/$name/bin/python" -m pip freeze | grep -iE '^(torch|keras|tensorflow[-_]cpu|jax|scikit-learn)==' | tr '\n' ' ')"
done
