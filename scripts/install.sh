#!/usr/bin/env bash
# Installs dali-mix and everything it needs into a virtual environment (default ./.venv).
# Idempotent: a second run reuses the environment and only checks that everything is there.
#
#   VENV=/path/to/venv      where to install (default: .venv beside this repo)
#   TORCH_SPEC="torch==X torchvision==Y"   the torch build to install when none is present
#                           (default: torch==2.14.1 torchvision==0.29.1). Bring your own CUDA
#                           build by installing it into the venv first; it is then kept.
#   EXTRAS=dev              pip extras of dali-mix to install (default: dev; EXTRAS= for none)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${VENV:-$here/.venv}"
extras="${EXTRAS-dev}"  # unset: dev extras; empty: none
torch_spec="${TORCH_SPEC:-torch==2.14.1 torchvision==0.29.1}"
py="${PYTHON:-python3}"

if [ ! -x "$venv/bin/python" ]; then
    "$py" -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --upgrade pip
fi
pip=("$venv/bin/python" -m pip install --quiet --disable-pip-version-check)
if ! "$venv/bin/python" -c "import torch, torchvision" >/dev/null 2>&1; then
    # shellcheck disable=SC2086
    "${pip[@]}" $torch_spec
fi
target="$here"
[ -n "$extras" ] && target="$here[$extras]"
"${pip[@]}" -e "$target"
# the fused CPU mixing operator (C++ DALI plugin, ~10 s, cached in $DALI_MIX_NATIVE_DIR or
# ~/.cache/dali-mix/native); without a compiler dali-mix still works, on DALI's operators (slower)
"$venv/bin/python" -m dali_mix.native >/dev/null \
    || echo "warning: the fused CPU operator was not built (see above); RandomMix will use DALI's operators" >&2
# the embedded real data set (Debian package); train.py also installs it on first use when root
idx=/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz
if [ ! -f "$idx" ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    (apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist >/dev/null) \
        || echo "warning: could not install dataset-fashion-mnist; see README (Set up)" >&2
fi
# the speech synthesiser of `dali-mix data spoken-commands` (Debian package); also installed on
# first use when root
if ! command -v espeak-ng >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    (apt-get update -qq && apt-get install -y -qq espeak-ng >/dev/null) \
        || echo "warning: could not install espeak-ng; dali-mix data spoken-commands needs it" >&2
fi
"$venv/bin/python" -c "import dali_mix, nvidia.dali, torch; print('dali-mix', dali_mix.__version__, '| DALI', nvidia.dali.__version__, '| torch', torch.__version__)"
