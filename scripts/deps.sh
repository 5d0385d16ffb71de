#!/usr/bin/env bash
# Installs the Debian packages treemig needs, if any is missing. The one
# list of the project's packages (the README's table mirrors it):
#   scripts/deps.sh build   building and running treemig, make demo, make check-src
#   scripts/deps.sh test    that, plus what the test suite needs (make test, asan, tsan, fuzz)
#   scripts/deps.sh bench   that of build, plus the peers the benchmarks run
#   scripts/deps.sh deb     that of build, plus what make deb needs
#   scripts/deps.sh list TARGET   prints the packages of TARGET, one a line
#   scripts/deps.sh test-only     prints the packages test adds to build (what
#                                 .ci/run removes or hides to play a fresh machine)
# Each name is the package that holds the file used (dpkg -S), except the
# two metapackages build-essential and libclang-rt-dev (which follows the
# default clang: libclang-rt-14-dev on Debian 12). diffutils, findutils,
# perl-base and util-linux are Essential on Debian (always there); they are
# named for completeness. apt-get runs as root, through sudo otherwise,
# waits for the dpkg lock (another apt may be running), and says what it
# installs. Quiet when nothing is missing.
set -euo pipefail

# what building, running and the demo need
build=(
  build-essential  # gcc, make, libc6-dev
  cmake            # the build
  pkgconf          # pkg-config (finds the three libraries below)
  libsqlite3-dev   # the state file
  libpq-dev        # PostgreSQL as the state store (--db postgresql://...)
  libyaml-dev      # the YAML file
  libxxhash-dev    # verify --checksum
  libssh2-1-dev    # the SFTP client layer
  libcurl4-openssl-dev # the S3 client: HTTP
  libssl-dev       # the S3 client: SigV4 (HMAC/SHA-256), Content-MD5
  libexpat1-dev    # the S3 client: XML answers
  libmicrohttpd-dev # treemig ui: the local web page's server
  scdoc            # the man pages (docs/man/*.scd, built by make)
  sqlite3          # querying the state file; make demo compares JSON with it
  diffutils        # make demo: diff -r of the trees
  findutils        # make demo: find -printf of modes and mtimes
  perl-base        # make check-src
)
# what the test suite and the benchmarks need
scripting=(
  python3          # the integration tests (standard library only), the bench reports
  rsync            # the oracle of test_attrs.py (rsync -n --itemize-changes) and test_filters.py; a bench peer
)
# what the test suite and the benchmarks need for SFTP
ssh=(
  openssh-server   # sshd: a real SFTP server on 127.0.0.1 (tests, bench/latency_proxy examples)
  openssh-client   # ssh-keygen, ssh-agent (tests); sftp, scp (benchmarks)
)
# what only the test suite needs
test_only=(
  libcmocka-dev    # the unit tests
  clang            # the fuzzers (make test runs them 5 s each)
  libclang-rt-dev  # the libFuzzer runtime (libclang_rt.fuzzer)
  util-linux       # setpriv: tests that run treemig as another user
  postgresql       # a throwaway PostgreSQL server (test_pg.py: initdb, pg_ctl)
  mount            # mount, umount: tmpfs destinations (full, read-only)
  e2fsprogs        # chattr: an immutable state file
  strace           # proves special files are never opened
  acl              # setfacl, getfacl: test_fidelity.py's ACLs and their oracle
  man-db           # man: the install test reads the installed man pages
  awscli           # a second S3 client that checks ours
  chromium         # treemig ui's page, tested in a headless browser
)
# what make deb needs (and the test of it, tests/install/test_deb.py)
deb=(
  dpkg-dev         # dpkg-shlibdeps, dpkg-architecture
  lintian          # checks the packages
)
# what only the benchmarks need
bench_only=(
  rclone           # a peer
  time             # /usr/bin/time: wall, CPU and peak RSS
  openssl          # openssl speed: the cipher floor of bench/sftp_floor.sh
  awscli           # a peer (aws s3 sync, bench/s3.sh)
  postgresql       # a throwaway server (bench/pg.sh, bench/scaleout.sh)
)

case "${1:-build}" in
  build) want=("${build[@]}") ;;
  test) want=("${build[@]}" "${scripting[@]}" "${ssh[@]}" "${test_only[@]}" "${deb[@]}") ;;
  bench) want=("${build[@]}" "${scripting[@]}" "${ssh[@]}" "${bench_only[@]}") ;;
  deb) want=("${build[@]}" "${deb[@]}") ;;
  test-only) printf '%s\n' "${scripting[@]}" "${ssh[@]}" "${test_only[@]}" "${deb[@]}"; exit 0 ;;
  list)
    case "${2:-}" in
      build) printf '%s\n' "${build[@]}" ;;
      test) printf '%s\n' "${build[@]}" "${scripting[@]}" "${ssh[@]}" "${test_only[@]}" "${deb[@]}" ;;
      bench) printf '%s\n' "${build[@]}" "${scripting[@]}" "${ssh[@]}" "${bench_only[@]}" ;;
      deb) printf '%s\n' "${build[@]}" "${deb[@]}" ;;
      *) echo "usage: $0 list build|test|bench|deb" >&2; exit 2 ;;
    esac
    exit 0 ;;
  *) echo "usage: $0 build|test|bench|deb|list TARGET|test-only" >&2; exit 2 ;;
esac
# npm fetches s3rver for the S3 tests and bench/s3.sh; a Node.js from
# elsewhere (NodeSource) brings its own npm, which will do, and clashes
# with Debian's package
if { [ "${1:-build}" = test ] || [ "${1:-build}" = bench ]; } && ! command -v npm >/dev/null 2>&1; then
  want+=(npm)
fi

missing=()
for p in "${want[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed'; then
    missing+=("$p")
  fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "deps.sh: installing the missing Debian packages: ${missing[*]}" >&2
if [ "$(id -u)" -eq 0 ]; then
  sudo=()
elif command -v sudo >/dev/null 2>&1; then
  sudo=(sudo)
  echo "deps.sh: (through sudo)" >&2
else
  echo "deps.sh: missing packages (${missing[*]}), and neither root nor sudo to install them" >&2
  exit 1
fi
# DPkg::Lock::Timeout makes apt-get wait for the dpkg lock; `update` takes
# the lists lock too, which that option does not cover: retry it.
apt=("${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600)
for try in $(seq 1 60); do
  if "${apt[@]}" update -qq; then
    break
  fi
  [ "$try" -lt 60 ] || { echo "deps.sh: apt-get update failed" >&2; exit 1; }
  echo "deps.sh: apt-get update failed (the lists may be locked by another apt); retrying in 10 s" >&2
  sleep 10
done
"${apt[@]}" install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "deps.sh: installed ${missing[*]}" >&2
