#!/usr/bin/env bash
# Cross-builds the C++ SDK core (sdk/cpp) for aarch64 and prints the build folder.
#   bash scripts/sdk_aarch64.sh        -> sdk/build/aarch64 (libedgeface.so, edgeface_vectors_test, ... for ARM64)
# Uses Debian's g++-aarch64-linux-gnu and qemu-user-static (installed if missing, as root), the arm64
# builds of the core's dependencies (libsqlite3-dev, libssl-dev; nlohmann-json and stb headers) downloaded
# with apt into a private folder (no multiarch on this host), the ONNX Runtime headers sdk/build.sh
# caches, and libonnxruntime.so from the aarch64 onnxruntime wheel (the version pinned in requirements/lock.txt).
# The vectors run under qemu: device_tests/test_sdk_aarch64.py (EDGEFACE_DEVICE_ARM64=1).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
log() { echo "sdk_aarch64.sh: $*" >&2; }
cache=${XDG_CACHE_HOME:-$HOME/.cache}/edgeface

# 1. host tools
need=()
command -v aarch64-linux-gnu-g++ >/dev/null || need+=(g++-aarch64-linux-gnu)
command -v qemu-aarch64-static >/dev/null || need+=(qemu-user-static binfmt-support)
command -v cmake >/dev/null || need+=(cmake)
if [ "${#need[@]}" -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then log "missing ${need[*]} and not root: install them first"; exit 1; fi
  log "installing ${need[*]}"
  apt-get update -qq >&2 || true
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

# 2. arm64 dependencies, unpacked into one folder (cached)
pkgs=(libsqlite3-dev libsqlite3-0 libssl-dev libssl3 nlohmann-json3-dev libstb-dev)
deps=$cache/aarch64-sdk-deps-$(echo "${pkgs[*]}" | sha256sum | cut -c1-12)
if [ ! -f "$deps/.complete" ]; then
  log "downloading arm64 ${pkgs[*]}"
  tmp=$(mktemp -d)
  mkdir -p "$tmp/lists/partial" "$tmp/archives/partial"
  mirror=$( (grep -rhoE "https?://[^ ]*debian\.org/debian/?" /etc/apt/sources.list /etc/apt/sources.list.d/ 2>/dev/null || true) | head -1)
  mirror=${EDGEFACE_DEBIAN_MIRROR:-${mirror:-http://deb.debian.org/debian}}
  echo "deb [arch=arm64 signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] ${mirror%/} bookworm main" >"$tmp/sources.list"
  opts=(-o APT::Architecture=arm64 -o APT::Architectures::=arm64 -o Dir::State="$tmp" -o Dir::State::Lists="$tmp/lists"
        -o Dir::Etc::SourceList="$tmp/sources.list" -o Dir::Etc::SourceParts=/dev/null -o Dir::Cache="$tmp" -o Dir::Cache::Archives="$tmp/archives")
  apt-get -qq "${opts[@]}" update >&2
  (cd "$tmp" && apt-get -qq "${opts[@]}" download "${pkgs[@]}" >&2)
  rm -rf "$deps.partial"; mkdir -p "$deps.partial"
  for f in "$tmp"/*.deb; do dpkg -x "$f" "$deps.partial"; done
  rm -rf "$tmp" "$deps"; mv "$deps.partial" "$deps"; touch "$deps/.complete"
fi

# 3. ONNX Runtime: headers from sdk/build.sh's cache, library from the aarch64 wheel
ort_inc=$cache/ort-headers/usr/include
[ -f "$ort_inc/onnxruntime/onnxruntime_c_api.h" ] || { log "no ONNX Runtime headers in $ort_inc: run sdk/build.sh once first"; exit 1; }
ort_ver=$(grep -i '^onnxruntime==' "$root/requirements/lock.txt" | cut -d= -f3)
ort_dir=$cache/aarch64-onnxruntime-$ort_ver
if [ ! -f "$ort_dir/.complete" ]; then
  log "downloading the aarch64 onnxruntime $ort_ver wheel"
  py=${EDGEFACE_PYTHON:-python3}
  tmp=$(mktemp -d)
  plats=(--platform manylinux2014_aarch64); for g in 17 27 28 31 34 35; do plats+=(--platform "manylinux_2_${g}_aarch64"); done
  "$py" -m pip download -q --no-deps --only-binary=:all: "${plats[@]}" --python-version 3.11 --implementation cp -d "$tmp" "onnxruntime==$ort_ver" >&2
  rm -rf "$ort_dir"; mkdir -p "$ort_dir"
  "$py" -c "import sys, zipfile; z = zipfile.ZipFile(sys.argv[1]); [z.extract(n, sys.argv[2]) for n in z.namelist() if '/capi/libonnxruntime.so' in n]" "$tmp"/onnxruntime-*.whl "$ort_dir"
  mv "$ort_dir"/onnxruntime/capi/libonnxruntime.so* "$ort_dir"/; rm -rf "$ort_dir/onnxruntime" "$tmp"; touch "$ort_dir/.complete"
fi
ort_lib=$(ls "$ort_dir"/libonnxruntime.so.1* | head -1)

# 4. configure + build (no JNI: the Android/ARM JVM front is another build)
build=$root/sdk/build/aarch64
export EF_AARCH64_DEPS=$deps
multi=$deps/usr/lib/aarch64-linux-gnu
cmake -S "$root/sdk/cpp" -B "$build" -DCMAKE_TOOLCHAIN_FILE="$root/sdk/cpp/toolchain-aarch64-linux-gnu.cmake" -DEF_JNI=OFF \
  -DORT_INCLUDE_DIR="$ort_inc" -DORT_LIBRARY="$ort_lib" \
  -DSQLite3_INCLUDE_DIR="$deps/usr/include" -DSQLite3_LIBRARY="$multi/libsqlite3.so" \
  -DOPENSSL_ROOT_DIR="$deps/usr" -DOPENSSL_INCLUDE_DIR="$deps/usr/include" -DOPENSSL_CRYPTO_LIBRARY="$multi/libcrypto.so" -DOPENSSL_SSL_LIBRARY="$multi/libssl.so" \
  -Dnlohmann_json_DIR="$deps/usr/share/cmake/nlohmann_json" -DCMAKE_CXX_FLAGS="-I$deps/usr/include -I$deps/usr/include/aarch64-linux-gnu" >/dev/null
cur=$(nice)
jobs=${EF_BUILD_JOBS:-2}
if [ "$cur" -lt 10 ]; then nice -n $((10 - cur)) cmake --build "$build" -j "$jobs" >&2; else cmake --build "$build" -j "$jobs" >&2; fi
# what the tests need to run a binary of this build under qemu
printf 'QEMU_LD_PREFIX=/usr/aarch64-linux-gnu\nLD_LIBRARY_PATH=%s:%s\n' "$multi" "$build/ort" >"$build/run.env"
echo "$build"
