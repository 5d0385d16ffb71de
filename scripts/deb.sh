#!/usr/bin/env bash
# make deb: the Debian packages of treemig, built with CPack from the
# install rules (docs/packaging.md), then checked with lintian.
#   scripts/deb.sh [BUILD]     (default build-deb)
# Configures BUILD for /usr with the flags Debian builds with
# (dpkg-buildflags, all hardening on), builds without the test suite,
# packages treemig, libtreemigMAJOR and libtreemig-dev into BUILD/*.deb,
# and runs lintian on them: any error or warning fails (each finding that
# stays is overridden with its reason in packaging/lintian/).
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build-deb}
mkdir -p "$build"
build=$(cd "$build" && pwd)

export DEB_BUILD_MAINT_OPTIONS=hardening=+all
eval "$(dpkg-buildflags --export=sh)"
# CMake takes CFLAGS, CPPFLAGS (appended here) and LDFLAGS from the
# environment on the first configure of a folder
export CFLAGS="$CFLAGS $CPPFLAGS"
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=None -DCMAKE_INSTALL_PREFIX=/usr \
  -DTREEMIG_DEB=ON -DTREEMIG_TESTS=OFF >/dev/null
cmake --build "$build" -j "${JOBS:-$(nproc 2>/dev/null || echo 2)}"
rm -f "$build"/*.deb
(cd "$build" && cpack -G DEB >/dev/null)
debs=("$build"/*.deb)
[ -e "${debs[0]}" ] || { echo "make deb: cpack made no package" >&2; exit 1; }
echo "== lintian"
lintian --fail-on error,warning --info "${debs[@]}"
echo "make deb: built ${debs[*]}"
