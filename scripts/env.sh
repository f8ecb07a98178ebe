# Sourced by the project's commands: create or reuse the virtualenv, install cfutils and the data.
# The venv lives outside the clone, keyed by the pinned requirements, so fresh clones (CI) reuse it.
# Override its location with CFBOOK_VENV=/path/to/venv.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
KEY="$(cat "$ROOT/requirements.txt" "$ROOT/requirements-nodeps.txt" | sha256sum | cut -c1-12)"
VENV="${CFBOOK_VENV:-$HOME/.cache/cfbook/venv-$KEY}"
PY="$VENV/bin/python"

if [ ! -f "$VENV/.complete" ]; then
    echo "[env] creating $VENV (first time: ~5 min, mostly the torch download)"
    rm -rf "$VENV"
    python3 -m venv "$VENV"
    quiet() { "$@" 2>&1 | { grep -v "^WARNING: Location" || true; }; }   # this machine's pip config is chatty
    quiet "$PY" -m pip install -q -r "$ROOT/requirements.txt"
    quiet "$PY" -m pip install -q --no-deps -r "$ROOT/requirements-nodeps.txt"
    touch "$VENV/.complete"
fi
# cfutils is imported from this checkout through PYTHONPATH (kernels inherit it), so several
# checkouts can share one venv; `pip install -e .` is only for your own scripts elsewhere.
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"

# Data and Chromium: Debian's packages when we can use apt (root); otherwise torchvision downloads the
# data on first use and the browser test is skipped.
need_apt=()
[ -d /usr/share/datasets/fashion-mnist ] || need_apt+=(dataset-fashion-mnist)
[ -d /usr/share/games/fortunes ] || need_apt+=(fortunes)
command -v bible >/dev/null || need_apt+=(bible-kjv)
command -v chromium >/dev/null || need_apt+=(chromium)      # the browser test (tests/test_browser.py)
if [ ${#need_apt[@]} -gt 0 ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "[env] apt-get install ${need_apt[*]}"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi
"$PY" -c "from cfutils.data import load_dataset; load_dataset('fashion_mnist')"

export PATH="$VENV/bin:$PATH"
export CFUTILS_PROGRESS=0 PYTHONHASHSEED=0 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
cd "$ROOT"
