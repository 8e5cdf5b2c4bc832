#!/usr/bin/env bash
# Reference solution: the reviewed English translation of this variant's source, written to /workspace/output.md.
set -euo pipefail
cp "$AGENTEVAL_SOLUTION/outputs/$AGENTEVAL_VARIANT_ID.md" output.md
chmod 0644 output.md
