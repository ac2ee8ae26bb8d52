#!/usr/bin/env bash
# Set up (if needed) and solve a few ARC tasks with the embedded SmolLM2 on the CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/arcsynth solve runs/quickstart.toml "$@"
