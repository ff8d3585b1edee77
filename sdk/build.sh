#!/usr/bin/env bash
# Builds the C++ core (sdk/cpp) and the JNI front (sdk/java) on a fresh Debian bookworm machine.
#   bash sdk/build.sh [--asan]      -> prints the build folder (sdk/build/release or sdk/build/asan)
# Idempotent and quiet: installs what is missing (apt, as root), fetches Debian trixie's ONNX Runtime
# *headers* once (bookworm ships none; trixie's library needs a newer glibc, so the library used is the
# one inside the onnxruntime wheel of the project venv), configures and builds incrementally.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
variant=release
cmake_flags=()
if [ "${1:-}" = "--asan" ]; then
  variant=asan
  cmake_flags+=(-DEF_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug -DEF_JNI=OFF)
fi
log() { echo "sdk/build.sh: $*" >&2; }

# 1. Debian packages
pkgs=(cmake g++ pkg-config libsqlite3-dev libssl-dev nlohmann-json3-dev libstb-dev default-jdk-headless)
missing=()
for p in "${pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ "${#missing[@]}" -gt 0 ]; then
  # a JDK that is already installed under another name is enough
  if command -v javac >/dev/null 2>&1; then missing=("${missing[@]/default-jdk-headless}"); fi
  mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sed '/^$/d')
fi
if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then log "missing packages ${missing[*]} and not root: install them first"; exit 1; fi
  log "installing ${missing[*]}"
  apt-get update -qq >&2 || true
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# 2. ONNX Runtime headers (Debian trixie's libonnxruntime-dev, headers only), cached per user
cache=${XDG_CACHE_HOME:-$HOME/.cache}/edgeface/ort-headers
ort_inc=$cache/usr/include
if [ ! -f "$ort_inc/onnxruntime/onnxruntime_c_api.h" ]; then
  log "fetching ONNX Runtime headers (Debian trixie libonnxruntime-dev)"
  tmp=$(mktemp -d)
  mkdir -p "$tmp/lists/partial" "$tmp/archives/partial" "$cache"
  mirror=$( (grep -rhoE "https?://[^ ]*debian\.org/debian/?" /etc/apt/sources.list /etc/apt/sources.list.d/ 2>/dev/null || true) | head -1)
  mirror=${mirror:-http://deb.debian.org/debian}
  echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] ${mirror%/} trixie main" >"$tmp/sources.list"
  apt_opts=(-o Dir::State="$tmp" -o Dir::State::Lists="$tmp/lists" -o Dir::Etc::SourceList="$tmp/sources.list"
            -o Dir::Etc::SourceParts=/dev/null -o Dir::Cache="$tmp" -o Dir::Cache::Archives="$tmp/archives")
  apt-get -qq "${apt_opts[@]}" update >&2
  (cd "$tmp" && apt-get -qq "${apt_opts[@]}" download libonnxruntime-dev >&2 2>/dev/null || apt-get -qq "${apt_opts[@]}" download libonnxruntime-dev >&2)
  dpkg -x "$tmp"/libonnxruntime-dev_*.deb "$tmp/x"
  mkdir -p "$ort_inc"
  rm -rf "$ort_inc/onnxruntime"
  cp -r "$tmp/x/usr/include/onnxruntime" "$ort_inc/"
  rm -rf "$tmp"
fi

# 3. ONNX Runtime library: the one the project venv's onnxruntime wheel ships
venv=${EDGEFACE_VENV:-$(bash "$root/scripts/env.sh")}
ort_lib=$(ls "$venv"/lib/python3*/site-packages/onnxruntime/capi/libonnxruntime.so.1* 2>/dev/null | head -1)
if [ -z "$ort_lib" ]; then log "no libonnxruntime.so in $venv (is onnxruntime installed there?)"; exit 1; fi

# 4. configure + build (JAVA_HOME: where the JNI headers are)
if [ -z "${JAVA_HOME:-}" ] && command -v javac >/dev/null 2>&1; then
  export JAVA_HOME=$(dirname "$(dirname "$(readlink -f "$(command -v javac)")")")
fi
build=$root/sdk/build/$variant
jobs=${EF_BUILD_JOBS:-2}
cmake -S "$root/sdk/cpp" -B "$build" -DORT_INCLUDE_DIR="$ort_inc" -DORT_LIBRARY="$ort_lib" "${cmake_flags[@]}" >/dev/null
# niceness 10 (the machine is shared), not more: a niceness of 19 starves the compiler
cur=$(nice)
if [ "$cur" -lt 10 ]; then nice -n $((10 - cur)) cmake --build "$build" -j "$jobs" >&2; else cmake --build "$build" -j "$jobs" >&2; fi

# 5. Java classes (the JNI library was built by CMake above)
if command -v javac >/dev/null 2>&1 && [ "$variant" = release ]; then
  mkdir -p "$build/java"
  srcs=$(find "$root/sdk/java/src" -name '*.java' 2>/dev/null || true)
  if [ -n "$srcs" ]; then
    stamp="$build/java/.stamp"
    if [ ! -f "$stamp" ] || [ -n "$(find "$root/sdk/java/src" "$root/sdk/java/test" -name '*.java' -newer "$stamp")" ]; then
      javac -Xlint:all -d "$build/java" $srcs >&2
      tests=$(find "$root/sdk/java/test" -name '*.java')
      mkdir -p "$build/java-test"
      javac -d "$build/java-test" -cp "$build/java" $tests >&2
      touch "$stamp"
    fi
  fi
fi
echo "$build"
