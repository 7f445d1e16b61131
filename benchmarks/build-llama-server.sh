#!/usr/bin/env bash
# Build llama.cpp's own llama-server and llama-bench: the peer that benchmarks/serving.py measures aimi
# against. They are built from the llama.cpp vendored in the llama-cpp-python sdist of the version
# installed in .venv, with the CPU flags of scripts/cmake-args.sh, so peer and engine run the same
# llama.cpp compiled the same way.
#
# The binaries go to a cache dir outside the repository (never commit them):
#   ${AIMI_LLAMA_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/aimi}/llama-server-<version>-<flags hash>/bin
# A second run finds them there and builds nothing. The last line on stdout is that bin dir; all
# progress goes to stderr.
#
# Environment:
#   PYTHON            the interpreter whose llama-cpp-python version is used [default: <repo>/.venv/bin/python]
#   LLAMA_CPP_SDIST   a llama_cpp_python-<version>.tar.gz already on disk (skips `pip download`)
#   AIMI_LLAMA_CACHE  where the per-version build dirs live
#   JOBS              parallel compile jobs [default: nproc]
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
python=${PYTHON:-$repo/.venv/bin/python}
jobs=${JOBS:-$(nproc)}
log() { printf 'build-llama-server: %s\n' "$*" >&2; }

version=$("$python" -c 'import importlib.metadata as m; print(m.version("llama-cpp-python"))')

# LLAMA_CURL and LLAVA_BUILD are not options of every llama.cpp (cmake then only warns that they are
# unused); they are kept so the flag set, and so the cache key, is one fixed list. LLAMA_BUILD_TOOLS
# must be ON because llama-server and llama-bench live under tools/ (cmake-args.sh turns examples off).
cpu_flags=$("$repo/scripts/cmake-args.sh")
flags="$cpu_flags -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_SERVER=ON -DLLAMA_BUILD_TOOLS=ON"
flags+=" -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF -DBUILD_SHARED_LIBS=OFF -DCMAKE_BUILD_TYPE=Release"
hash=$(printf '%s\n%s\n' "$version" "$flags" | sha256sum | cut -c1-12)

cache_root=${AIMI_LLAMA_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/aimi}
dest="$cache_root/llama-server-$version-$hash"
bin="$dest/bin"
targets=(llama-server llama-bench)

built() {
  local t
  for t in "${targets[@]}"; do [[ -x "$bin/$t" ]] || return 1; done
}

mkdir -p "$dest"
# One build at a time per flag set; a second caller waits, then finds the binaries.
exec 9>"$dest/.lock"
flock 9

if built; then
  log "cached: $bin"
  echo "$bin"
  exit 0
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/aimi-llama-build.XXXXXX")
trap 'rm -rf "$work"' EXIT

if [[ -n "${LLAMA_CPP_SDIST:-}" ]]; then
  sdist=$LLAMA_CPP_SDIST
else
  log "downloading the llama-cpp-python $version sdist"
  "$python" -m pip download --quiet --no-deps --no-binary :all: "llama-cpp-python==$version" -d "$work" >&2
  sdist=$(ls "$work"/llama_cpp_python-*.tar.gz)
fi
log "extracting vendor/llama.cpp from $(basename "$sdist")"
tar -xzf "$sdist" -C "$work" --wildcards '*/vendor/llama.cpp/*'
src=$(ls -d "$work"/llama_cpp_python-*/vendor/llama.cpp)

log "configuring: $flags"
generator=()
command -v ninja >/dev/null && generator=(-G Ninja)
# shellcheck disable=SC2086  # $flags is a list of words
cmake -S "$src" -B "$work/build" "${generator[@]}" $flags >&2
log "building ${targets[*]} with $jobs jobs (several minutes on 2 cores)"
started=$SECONDS
cmake --build "$work/build" --target "${targets[@]}" -j "$jobs" >&2

mkdir -p "$bin.tmp"
for t in "${targets[@]}"; do cp "$work/build/bin/$t" "$bin.tmp/"; done
printf '%s\n' "llama-cpp-python $version" "$flags" >"$bin.tmp/BUILD-FLAGS"
rm -rf "$bin"
mv "$bin.tmp" "$bin"
log "built in $((SECONDS - started)) s: $bin"
echo "$bin"
