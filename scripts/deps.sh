#!/usr/bin/env bash
# Installs the Debian packages treemig needs, if any is missing.
#   scripts/deps.sh build   what building and running needs
#   scripts/deps.sh test    that, plus what the test suite needs
#   scripts/deps.sh bench   that, plus the peers the benchmarks run
#   scripts/deps.sh deb     that of build, plus what make deb needs
# apt-get runs as root, through sudo otherwise. Quiet when nothing is missing.
set -euo pipefail

want=(build-essential cmake pkg-config libsqlite3-dev sqlite3 libyaml-dev libxxhash-dev
      scdoc libssh2-1-dev libcurl4-openssl-dev libssl-dev libexpat1-dev)
# make deb: dpkg-shlibdeps and dpkg-buildflags (dpkg-dev), lintian
deb=(dpkg-dev lintian)
case "${1:-build}" in
  build) ;;
  test) want+=(libcmocka-dev python3 clang libclang-rt-dev util-linux e2fsprogs strace
              diffutils man-db "${deb[@]}" openssh-server openssh-client awscli)
        # npm fetches s3rver for the S3 tests; a Node.js from elsewhere
        # may bring its own npm, which will do
        command -v npm >/dev/null 2>&1 || want+=(npm) ;;
  bench) want+=(libcmocka-dev python3 rclone rsync time openssh-server openssh-client) ;;
  deb) want+=("${deb[@]}") ;;
  *) echo "usage: $0 build|test|bench|deb" >&2; exit 2 ;;
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
