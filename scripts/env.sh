#!/usr/bin/env bash
# Prints the path of the project's virtual environment, creating it first if needed.
#
# The venv lives outside the checkout, keyed by the hash of requirements/lock.txt, so every
# clone (CI included) reuses the ~2 GB install until the lock changes. Override the place
# with EDGEFACE_VENV. All messages go to stderr: stdout is only the path.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
lock="$root/requirements/lock.txt"
key=$(sha256sum "$lock" | cut -c1-12)
venv=${EDGEFACE_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/edgeface/venv-$key}
py=${PYTHON:-python3}

if [ ! -f "$venv/.edgeface-complete" ]; then
  echo "edgeface: creating $venv from requirements/lock.txt (one time, ~2 GB, several minutes)" >&2
  rm -rf "$venv"
  "$py" -m venv "$venv"
  "$venv/bin/python" -m pip install -q --upgrade pip >&2
  # torch is pinned in the lock; the constraint repeats it so nothing can pull a CUDA build.
  "$venv/bin/python" -m pip install -q -r "$lock" -c "$lock" >&2
  touch "$venv/.edgeface-complete"
fi
# The package itself: an editable install pointing at this checkout (cheap, every call, so a
# fresh clone in another folder is what runs).
# -I: ignore the current folder and PYTHONPATH, so the check sees what the venv itself imports.
if [ ! -x "$venv/bin/edgeface" ] || ! "$venv/bin/python" -I -c "import edgeface, sys; sys.exit(0 if edgeface.__file__.startswith('$root/') else 1)" 2>/dev/null; then
  "$venv/bin/python" -m pip install -q --no-deps --no-build-isolation -e "$root" >&2
fi
echo "$venv"
