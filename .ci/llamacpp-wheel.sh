#!/usr/bin/env bash
# Build llama-cpp-python's wheel once per machine (about 5 minutes on 2 cores) and keep it,
# so later installs take seconds. Prints the folder to pass to pip as --find-links.
set -euo pipefail
VERSION=$(sed -n 's/.*"llama-cpp-python\[server\]==\([0-9.]*\)".*/\1/p' "$(dirname "$0")/../pyproject.toml")
CACHE=${AGENTEVAL_WHEEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/agenteval/wheels}
mkdir -p "$CACHE"
if ! ls "$CACHE"/llama_cpp_python-"$VERSION"-*.whl >/dev/null 2>&1; then
  echo "llamacpp-wheel: building llama-cpp-python $VERSION once into $CACHE" >&2
  CMAKE_ARGS="${CMAKE_ARGS:--DLLAVA_BUILD=OFF}" python3 -m pip wheel --no-deps -q -w "$CACHE" \
    "llama-cpp-python==$VERSION" >&2
fi
echo "$CACHE"
