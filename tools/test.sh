#!/usr/bin/env bash
# The test command (README): set up, check notebooks and library are in sync and clean, run every chapter, run pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh dev
bash tools/llama_cpp.sh   # chapter 5c: builds llama-cpp-python once (about 8 min on 2 cores), then reuses the cached wheel
. .venv/bin/activate
snap() { find playbook_lib nbs README.md -type f \( -name '*.py' -o -name '*.ipynb' -o -name 'README.md' \) -not -path '*/__pycache__/*' -print0 | sort -z | xargs -0 sha256sum; }
before=$(snap)
echo "== nbdev-export: the library must match the notebooks"
nbdev-export
after=$(snap)
if [ "$before" != "$after" ]; then diff <(echo "$before") <(echo "$after") || true; echo "nbdev-export changed files: run nbdev-export and commit" >&2; exit 1; fi
echo "== nbdev-clean: notebooks must be clean"
nbdev-clean
after=$(snap)
if [ "$before" != "$after" ]; then diff <(echo "$before") <(echo "$after") || true; echo "nbdev-clean changed notebooks: run nbdev-clean and commit" >&2; exit 1; fi
echo "== every chapter's Colab install cell must match pyproject.toml"
python tools/colab.py --check
echo "== README.md must be generated from nbs/index.ipynb"
python tools/readme.py --check
echo "== diagrams drawn from code are current, and the site check"
python tools/diagrams.py --check
python tools/check_site.py nbs/*.ipynb   # every kind on every chapter (06 was re-run in full on 2026-12-07)
echo "== nbdev-test: every chapter, IN_TEST budgets"
# two notebooks run at once on a 2-core machine: one intra-op thread each. Two 2-thread torch processes on 2 cores spin against
# each other (measured: a LoRA step 2.4 s alone, 21 s with two such processes; 3.7-3.9 s each with OMP_NUM_THREADS=1)
OMP_NUM_THREADS=1 nbdev-test --n-workers 2 --timing
echo "== pytest"
python -m pytest tests/ -q -p no:cacheprovider
