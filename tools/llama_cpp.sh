#!/usr/bin/env bash
# llama.cpp for chapter 5c (GGUF export and serving), from PyPI only:
#   bash tools/llama_cpp.sh
# PyPI has no Linux wheel of llama-cpp-python, only its sdist, which vendors the whole of llama.cpp. This builds that sdist
# once into a wheel (measured: 7 min 47 s on a 2-core AMD EPYC), keeps the wheel in $PLAYBOOK_CACHE/wheels (default
# ~/.cache/playbook_lib/wheels) and installs it with the [server] extra; later runs reuse the wheel (seconds). It also
# unpacks the converter llama.cpp ships (convert_hf_to_gguf.py) from the same sdist, where playbook_lib.gguf looks for it.
# The build is portable x86-64 (AVX2/FMA/F16C, no -march=native): a cached wheel runs on every machine this project uses.
set -euo pipefail
cd "$(dirname "$0")/.."
VERSION=$(sed -n 's/^LLAMA_CPP_VERSION = "\([0-9.]*\)".*/\1/p' playbook_lib/gguf.py)
CACHE=${PLAYBOOK_CACHE:-$HOME/.cache/playbook_lib}
WHEELS=$CACHE/wheels
PY=.venv/bin/python
[ -x "$PY" ] || PY=python3
mkdir -p "$WHEELS"
SDIST=$WHEELS/llama_cpp_python-$VERSION.tar.gz
if [ ! -f "$SDIST" ]; then
  "$PY" -m pip download -q --no-deps --no-binary :all: -d "$WHEELS" "llama-cpp-python==$VERSION"
fi
if ! ls "$WHEELS"/llama_cpp_python-"$VERSION"-*.whl >/dev/null 2>&1; then
  echo "building llama-cpp-python $VERSION from its sdist (several minutes, once)"
  case "$(uname -m)" in
    x86_64) ARCH="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON" ;;
    *) ARCH="" ;;
  esac
  CMAKE_BUILD_PARALLEL_LEVEL=$(nproc) \
  CMAKE_ARGS="$ARCH -DLLAVA_BUILD=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_SERVER=OFF" \
    "$PY" -m pip wheel -q --no-deps -w "$WHEELS" "$SDIST"
fi
"$PY" -m pip install -q --find-links "$WHEELS" "llama-cpp-python[server]==$VERSION"
"$PY" -c "from playbook_lib.gguf import ensure_converter; print('llama.cpp converter:', ensure_converter('$VERSION', sdist='$SDIST'))"
