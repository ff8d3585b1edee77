#!/usr/bin/env bash
# What this host needs to run the emulated ARM64 board (device_tests/arm64_board.py) and the aarch64 SDK build:
# Debian's qemu-user-static, binfmt-support, debootstrap, g++-aarch64-linux-gnu and openssh-server (installed when
# missing, as root), binfmt_misc mounted and qemu-aarch64 enabled in it. Idempotent; prints nothing when all is there.
set -euo pipefail
pkgs=(qemu-user-static binfmt-support debootstrap g++-aarch64-linux-gnu openssh-server openssh-client)
missing=()
for p in "${pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then echo "arm64_host.sh: missing ${missing[*]} and not root: install them first" >&2; exit 1; fi
  echo "arm64_host.sh: installing ${missing[*]}" >&2
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
[ -e /proc/sys/fs/binfmt_misc/status ] || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
grep -q enabled /proc/sys/fs/binfmt_misc/qemu-aarch64 2>/dev/null || update-binfmts --enable qemu-aarch64
grep -q enabled /proc/sys/fs/binfmt_misc/qemu-aarch64
