#!/usr/bin/env bash
# Print the llama.cpp CMake flags for this CPU: explicit AVX2 / AVX-512 from /proc/cpuinfo, never
# GGML_NATIVE (it compiles AMX kernels that die with SIGILL on these VMs), AMX and llava off.
# Used by scripts/install.sh (llama-cpp-python) and benchmarks/build-llama-server.sh (the peer),
# so both are built the same way.
set -euo pipefail
flags=$(grep -m1 '^flags' /proc/cpuinfo 2>/dev/null || true)
has() { [[ " $flags " == *" $1 "* ]]; }
args="-DGGML_NATIVE=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF -DLLAVA_BUILD=OFF"
args+=" -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF"
if has avx2 && has fma && has f16c; then
  args+=" -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON"
  has bmi2 && args+=" -DGGML_BMI2=ON"
  has avx_vnni && args+=" -DGGML_AVX_VNNI=ON"
  if has avx512f && has avx512bw && has avx512vl; then
    args+=" -DGGML_AVX512=ON"
    has avx512vbmi && args+=" -DGGML_AVX512_VBMI=ON"
    has avx512_vnni && args+=" -DGGML_AVX512_VNNI=ON"
    has avx512_bf16 && args+=" -DGGML_AVX512_BF16=ON"
  fi
fi
echo "$args"
