#!/usr/bin/env bash
# Installs the Debian packages treemig needs, if any is missing.
#   scripts/deps.sh build   what building and running needs
#   scripts/deps.sh test    that, plus what the test suite needs
#   scripts/deps.sh bench   that, plus the peers the benchmarks run
# apt-get runs as root, through sudo otherwise. Quiet when nothing is missing.
set -euo pipefail

want=(build-essential cmake pkg-config libsqlite3-dev sqlite3 libyaml-dev libxxhash-dev
      libmicrohttpd-dev)
case "${1:-build}" in
  build) ;;
  test) want+=(libcmocka-dev python3 clang libclang-rt-dev util-linux e2fsprogs strace
              diffutils chromium) ;;
  bench) want+=(libcmocka-dev python3 rclone rsync time) ;;
  *) echo "usage: $0 build|test|bench" >&2; exit 2 ;;
esac

missing=()
for p in "${want[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed'; then
    missing+=("$p")
  fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "installing missing packages: ${missing[*]}" >&2
if [ "$(id -u)" -eq 0 ]; then
  sudo=()
elif command -v sudo >/dev/null 2>&1; then
  sudo=(sudo)
else
  echo "error: missing packages (${missing[*]}) and no root or sudo to install them" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
