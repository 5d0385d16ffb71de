#!/usr/bin/env bash
# make install / make uninstall (docs: README, "Installing").
#   scripts/install.sh install BUILD [DESTDIR]
#   scripts/install.sh uninstall BUILD
# BUILD is a configured and built CMake folder; the prefix is its
# CMAKE_INSTALL_PREFIX (make install PREFIX=...). install refuses a prefix
# that does not exist (without DESTDIR: a typo would scatter a new tree) and
# one it cannot write, naming the path. Before it copies anything, it
# writes BUILD/installed_files.txt: CMake's install manifest (from an
# install into a scratch folder) with the DESTDIR prepended, which CMake's
# own install_manifest.txt leaves out; so `uninstall` removes what a
# failed, partial install left too. Installing twice is harmless (CMake
# copies what changed). uninstall removes the files and symlinks
# installed_files.txt lists, and the folders named for treemig that are
# left empty; nothing else.
set -euo pipefail

die() { echo "make $action: $*" >&2; exit 1; }

action=${1:-}
build=${2:-}
case $action in
  install | uninstall) ;;
  *) echo "usage: $0 install BUILD [DESTDIR] | uninstall BUILD" >&2; exit 2 ;;
esac
[ -n "$build" ] && [ -f "$build/CMakeCache.txt" ] ||
  die "no configured build folder at '${build}' (run make first)"
build=$(cd "$build" && pwd)
cmake_manifest=$build/install_manifest.txt
manifest=$build/installed_files.txt
rootfile=$build/install_root.txt

if [ "$action" = install ]; then
  destdir=${3:-}
  prefix=$(sed -n 's/^CMAKE_INSTALL_PREFIX:PATH=//p' "$build/CMakeCache.txt")
  case $prefix in
    /*) ;;
    *) die "the prefix '$prefix' is not an absolute path (PREFIX=/usr/local, for example)" ;;
  esac
  if [ -n "$destdir" ]; then
    destdir=$(realpath -m -- "$destdir")
    [ "$destdir" != / ] || destdir=
  fi
  root=$destdir$prefix
  if [ -z "$destdir" ] && [ ! -e "$prefix" ]; then
    die "the prefix $prefix does not exist: create it first (mkdir -p $prefix), or give another PREFIX="
  fi
  # the deepest folder that exists on the way to the root must be writable
  probe=$root
  while [ ! -e "$probe" ] && [ ! -L "$probe" ]; do
    probe=$(dirname -- "$probe")
  done
  [ -d "$probe" ] || die "cannot install into $root: $probe is not a folder"
  if [ ! -w "$probe" ]; then
    if [ "$probe" = "$root" ]; then
      die "cannot write to $root: read-only, or no permission for $(id -un)"
    fi
    die "cannot create $root: $probe is read-only, or no permission for $(id -un)"
  fi

  # the manifest first: what CMake installs into a scratch folder, moved to
  # the real root
  plan=$build/install-plan
  rm -rf -- "$plan" "$cmake_manifest"
  if ! out=$(DESTDIR=$plan cmake --install "$build" 2>&1); then
    echo "$out" >&2
    rm -rf -- "$plan"
    die "cannot list what to install (cmake --install into $plan failed)"
  fi
  rm -rf -- "$plan"
  [ -s "$cmake_manifest" ] || die "cmake wrote no install manifest"
  while IFS= read -r f || [ -n "$f" ]; do
    case $f in
      "$plan"/*) f=${f#"$plan"} ;;  # the DESTDIR, if a CMake writes it
    esac
    printf '%s\n' "$destdir$f"
  done < "$cmake_manifest" > "$manifest.tmp"
  mv -- "$manifest.tmp" "$manifest"
  printf '%s\n%s\n' "$root" "$destdir" > "$rootfile"

  if ! DESTDIR=$destdir cmake --install "$build"; then
    die "failed; what it would have installed is listed in $manifest, and 'make uninstall' removes the part that was"
  fi
  # the dynamic linker's cache, for a library installed for real as root
  # (/usr/local/lib is in Debian's /etc/ld.so.conf.d/libc.conf)
  if [ -z "$destdir" ] && [ "$(id -u)" -eq 0 ] && command -v ldconfig >/dev/null; then
    ldconfig || echo "make install: ldconfig failed; run it before using libtreemig" >&2
  fi
  echo "make install: installed $(wc -l < "$manifest") files under $root; 'make uninstall' removes them"
  exit 0
fi

# uninstall
[ -f "$manifest" ] || die "nothing to uninstall: $manifest is missing (make install writes it)"
root=
destdir=
if [ -f "$rootfile" ]; then
  { IFS= read -r root || true; IFS= read -r destdir || true; } < "$rootfile"
fi
removed=0
listed=0
dirs=()
while IFS= read -r f || [ -n "$f" ]; do
  [ -n "$f" ] || continue
  listed=$((listed + 1))
  case $f in
    /*) ;;
    *) die "$manifest lists a relative path '$f': not a manifest of make install" ;;
  esac
  if [ -L "$f" ] || [ -f "$f" ]; then
    rm -f -- "$f" || die "cannot remove $f"
    echo "-- Removed: $f"
    removed=$((removed + 1))
    dirs+=("$(dirname -- "$f")")
  elif [ -e "$f" ]; then
    echo "-- Left alone (not a file): $f"
  fi
done < "$manifest"

# folders named for treemig (share/doc/treemig/examples...), once empty
if [ -n "$root" ]; then
  for d in "${dirs[@]}"; do
    while [ "$d" != "$root" ] && [ "${d#"$root"/}" != "$d" ]; do
      case ${d#"$root"/} in
        *treemig*) rmdir -- "$d" 2>/dev/null && echo "-- Removed: $d/" || break ;;
        *) break ;;
      esac
      d=$(dirname -- "$d")
    done
  done
fi
if [ -n "$root" ] && [ -z "$destdir" ] && [ "$removed" -gt 0 ] && [ "$(id -u)" -eq 0 ] &&
   command -v ldconfig >/dev/null; then
  ldconfig || true
fi
echo "make uninstall: removed $removed of the $listed files listed in $manifest"
