#!/usr/bin/env bash
# Build llama-cpp-python's wheel once per machine (about 5 minutes on 2 cores) and keep it,
# so later installs take seconds. Prints the folder to pass to pip as --find-links.
#
# The build is portable (AVX2, no -march=native): a native build on a CPU with AMX/AVX-512
# crashed in llama.cpp's CPU kernels on batched decoding of the tiny test model. The cache
# folder is keyed by the build flags, and an installed llama-cpp-python whose CPU library
# differs from the kept wheel's is uninstalled, so pip installs the kept wheel.
set -euo pipefail
VERSION=$(sed -n 's/.*"llama-cpp-python\[server\]==\([0-9.]*\)".*/\1/p' "$(dirname "$0")/../pyproject.toml")
FLAGS=${CMAKE_ARGS:--DLLAVA_BUILD=OFF -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON}
KEY=$(printf '%s' "$FLAGS" | sha256sum | cut -c1-12)
CACHE=${AGENTEVAL_WHEEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/agenteval/wheels}/$KEY
mkdir -p "$CACHE"
if ! ls "$CACHE"/llama_cpp_python-"$VERSION"-*.whl >/dev/null 2>&1; then
  echo "llamacpp-wheel: building llama-cpp-python $VERSION once into $CACHE ($FLAGS)" >&2
  CMAKE_ARGS="$FLAGS" python3 -m pip wheel --no-deps --no-cache-dir -q -w "$CACHE" "llama-cpp-python==$VERSION" >&2
fi
WHEEL=$(ls "$CACHE"/llama_cpp_python-"$VERSION"-*.whl | head -n 1)
python3 - "$WHEEL" >&2 <<'PY'
import importlib.util, pathlib, subprocess, sys, zipfile

spec = importlib.util.find_spec("llama_cpp")
if spec is None or spec.origin is None:
    sys.exit(0)
root = pathlib.Path(spec.origin).parent
with zipfile.ZipFile(sys.argv[1]) as wheel:
    libs = [n for n in wheel.namelist() if n.startswith("llama_cpp/lib/libggml-cpu.so")]
    same = bool(libs) and all((root / n.split("/", 1)[1]).is_file()
                              and (root / n.split("/", 1)[1]).read_bytes() == wheel.read(n) for n in libs)
if not same:
    print("llamacpp-wheel: the installed llama-cpp-python is another build; uninstalling it", file=sys.stderr)
    subprocess.run([sys.executable, "-m", "pip", "uninstall", "-y", "-q", "llama-cpp-python"], check=True)
PY
echo "$CACHE"
