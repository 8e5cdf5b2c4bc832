#!/usr/bin/env bash
# The README's main job exactly as a user meets it: a fresh clone of this repository, a new
# venv holding only what the command installs (first on PATH, so the command's python3 is the
# venv's), the command copied from README.md (block 'run main-job'), then the block a user runs
# after it ('run after-main-job'). Fails unless both exit 0 and .ci/check_main_job.py agrees that
# the run did what the README says. Caches the project keeps (the llama-cpp-python wheel, the
# models, the images, pip's cache) are used as a user's second run would use them.
set -uo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/agenteval-main-job-XXXXXX")
trap 'rm -rf "$WORK"' EXIT
fail() { echo "main-job: $*" >&2; exit 1; }

python3 "$REPO/.ci/readme.py" get main-job >"$WORK/main-job.sh" || fail "no main-job block in README.md"
python3 "$REPO/.ci/readme.py" get after-main-job >"$WORK/after-main-job.sh" || fail "no after-main-job block"
git clone -q "$REPO" "$WORK/agenteval" || fail "git clone failed"
python3 -m venv "$WORK/venv" || fail "python3 -m venv failed"
export PATH="$WORK/venv/bin:$PATH" VIRTUAL_ENV="$WORK/venv"
cd "$WORK/agenteval"
echo "main-job: in a fresh clone and venv, running README.md's main job:" >&2
cat "$WORK/main-job.sh" >&2
start=$SECONDS
bash -e "$WORK/main-job.sh"
rc=$?
echo "main-job: exit $rc after $((SECONDS - start)) s" >&2
[ "$rc" -eq 0 ] || fail "the README's main job exited $rc"
python3 "$REPO/.ci/check_main_job.py" "$WORK/main-job.sh" || fail "the main job did not do what the README says"
bash -e "$WORK/after-main-job.sh" || fail "the README's export commands failed"
trials=$(python3 -c "import duckdb; print(duckdb.connect('reports/agenteval.duckdb', read_only=True).execute(
  'SELECT count(*) FROM trials WHERE run_id = (SELECT run_id FROM runs ORDER BY started_at DESC LIMIT 1)').fetchone()[0])")
[ -f runs/trials.parquet ] || fail "export --format parquet wrote no runs/trials.parquet"
[ "$(wc -l <trials.jsonl)" -eq "$trials" ] || fail "export --format jsonl wrote $(wc -l <trials.jsonl) lines for $trials trials"
[ "$(grep -c "<testcase" junit.xml)" -eq "$trials" ] || fail "export --format junit wrote $(grep -c "<testcase" junit.xml) testcases for $trials trials"
echo "main-job: ok" >&2
