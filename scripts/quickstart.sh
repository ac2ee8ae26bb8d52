#!/usr/bin/env bash
# Set up (if needed) and solve a few easy ARC tasks with the embedded Qwen2.5-Coder-0.5B on the CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/arcsynth solve runs/quickstart.toml "$@"
