#!/usr/bin/env bash
# Builds the llama.cpp used for hearth's reference fixtures, outside the repo.
# Source: the llama.cpp copy vendored in PyPI's llama-cpp-python 0.3.36 sdist (llama.cpp commit 0c1e57098),
# the same as tests/fixtures/REFERENCE.md. CPU-only, no GGML_NATIVE (a native build enables AMX, which traps
# on some hosts); AVX-512 flags only when the host has AVX-512. Then compiles tools/reference/refclient.cpp
# against the built libllama.so.
#   usage: tools/reference/build-llama.sh [DIR]      (DIR defaults to /work/llama; env JOBS defaults to 2)
# Outputs: DIR/llama_cpp_python-0.3.36/vendor/llama.cpp/build/bin/{llama-tokenize,llama-perplexity,
#          llama-bench,llama-quantize,libllama.so,...} and DIR/refclient.
set -euo pipefail
VERSION=0.3.36
DIR="${1:-/work/llama}"
JOBS="${JOBS:-2}"
HERE="$(cd "$(dirname "$0")" && pwd)"
mkdir -p "$DIR"
cd "$DIR"
command -v cmake >/dev/null || pip install cmake ninja
if [ ! -f "llama_cpp_python-$VERSION.tar.gz" ]; then
  # --no-binary only for llama-cpp-python: its build dependencies (cmake, ninja) may come as wheels.
  pip download --no-deps --no-binary llama-cpp-python "llama-cpp-python==$VERSION"
fi
[ -d "llama_cpp_python-$VERSION" ] || tar xzf "llama_cpp_python-$VERSION.tar.gz"
SRC="$DIR/llama_cpp_python-$VERSION/vendor/llama.cpp"
FLAGS=(-DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DCMAKE_BUILD_TYPE=Release
       -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_APP=OFF
       -DLLAMA_OPENSSL=OFF)
if grep -qw avx512f /proc/cpuinfo; then
  FLAGS+=(-DGGML_AVX512=ON)
  grep -qw avx512_vnni /proc/cpuinfo && FLAGS+=(-DGGML_AVX512_VNNI=ON)
  grep -qw avx512_bf16 /proc/cpuinfo && FLAGS+=(-DGGML_AVX512_BF16=ON)
fi
echo "cmake flags: ${FLAGS[*]}"
cmake -S "$SRC" -B "$SRC/build" "${FLAGS[@]}"
cmake --build "$SRC/build" -j "$JOBS" --target llama llama-tokenize llama-perplexity llama-bench llama-quantize
g++ -O2 -std=c++17 -I"$SRC/include" -I"$SRC/ggml/include" "$HERE/refclient.cpp" -o "$DIR/refclient" \
    -L"$SRC/build/bin" -lllama -lggml -lggml-base -Wl,-rpath,"$SRC/build/bin"
echo "built: $SRC/build/bin and $DIR/refclient"
