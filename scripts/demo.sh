#!/usr/bin/env bash
# make demo: a real migration (discover, review, copy, verify) of a generated
# local tree, then a discovery of a simulated pair checked against its
# ground truth. No server needed.
# The source is a small project tree; the destination is an older copy of
# it: some files missing, some changed, some only on the destination.
set -euo pipefail
bin=${1:-build/treemig}
dir=${DEMO_DIR:-build/demo}
mkdir -p "$dir" && dir=$(cd "$dir" && pwd)  # absolute: the sim overlay= wants one
rm -rf "$dir"
mkdir -p "$dir/src" "$dir/dst"

echo "== generating a source tree in $dir/src"
for d in $(seq 1 12); do
  for s in $(seq 1 8); do
    mkdir -p "$dir/src/dept$d/team$s/archive"
    for f in $(seq 1 10); do
      printf 'report %d-%d-%d\n' "$d" "$s" "$f" > "$dir/src/dept$d/team$s/report$f.txt"
    done
    printf 'old\n' > "$dir/src/dept$d/team$s/archive/2019.log"
  done
done
mkdir -p "$dir/src/empty folder" "$dir/src/naïve café"
printf 'x' > "$dir/src/naïve café/menu.txt"
ln -s dept1/team1/report1.txt "$dir/src/latest"
touch -d '2024-01-01 00:00:00' "$dir/src"/dept*/team*/*.txt

echo "== making the destination an older, partial copy in $dir/dst"
cp -a "$dir/src/." "$dir/dst/"
rm -rf "$dir/dst/dept12"                       # a whole folder missing
rm -f "$dir"/dst/dept1/team*/report1*.txt      # some files missing
printf 'changed\n' > "$dir/dst/dept2/team1/report2.txt"   # differs in size
touch -d '2023-06-01' "$dir/dst/dept3/team1/report3.txt"   # older on dst
mkdir -p "$dir/dst/only-on-destination"
printf 'keep me\n' > "$dir/dst/only-on-destination/notes.txt"

echo "== treemig discover $dir/src $dir/dst"
"$bin" discover --db "$dir/treemig.db" "$dir/src" "$dir/dst"
echo
echo "== treemig status --json"
"$bin" status --db "$dir/treemig.db" --json
echo
echo "== treemig review"
"$bin" review --db "$dir/treemig.db"
echo
echo "== treemig copy --yes"
"$bin" copy --db "$dir/treemig.db" --yes
echo
echo "== treemig verify --checksum"
"$bin" verify --db "$dir/treemig.db" --checksum
echo
echo "== the destination now holds the source (diff -r, mtimes):"
if diff -r "$dir/src" "$dir/dst" | grep -v '^Only in .*dst: only-on-destination$'; then
  echo "unexpected differences" >&2; exit 1
fi
echo "   no differences but the destination-only folder, which was left alone"

echo
echo "== a simulated pair: 45k source nodes generated on the fly, with faults"
spec='sim:seed=7,depth=5,folders=8,files=8,tail=3,decay=1,size=4k'
rm -f "$dir/sim.db"* "$dir/sim-dst.ovl"
"$bin" discover --db "$dir/sim.db" --quiet --retries 10 "$spec,transient=0.02" \
  "$spec,world=dst,keep=0.9,extra=0.01,csize=0.01,cmtime=0.01,ctype=0.002,overlay=$dir/sim-dst.ovl"
echo "ground truth (treemig sim-stats) against what discovery recorded:"
"$bin" sim-stats "$spec,world=dst,keep=0.9,extra=0.01,csize=0.01,cmtime=0.01,ctype=0.002" \
  > "$dir/sim-truth.json"
"$bin" status --db "$dir/sim.db" --json > "$dir/sim-status.json"
if command -v python3 >/dev/null 2>&1; then
  python3 - "$dir/sim-truth.json" "$dir/sim-status.json" <<'PY'
import json, sys
truth, st = (json.load(open(p)) for p in sys.argv[1:3])
ok = all(truth[k] == st[k] for k in ("src", "dst", "copy"))
for k in ("src", "dst", "copy"):
    print("  %-4s %s" % (k, "equal" if truth[k] == st[k] else "DIFFERS: %s vs %s" % (truth[k], st[k])))
sys.exit(0 if ok else 1)
PY
else
  cat "$dir/sim-truth.json" "$dir/sim-status.json"
fi
echo "copy into the simulated destination (its writes kept in $dir/sim-dst.ovl),"
echo "then verify every byte:"
"$bin" copy --db "$dir/sim.db" --yes --quiet
"$bin" verify --db "$dir/sim.db" --checksum
echo
echo "The state files are $dir/treemig.db and $dir/sim.db: query them with"
echo "sqlite3 (docs/state-file.md), or run: $bin review --db $dir/treemig.db"
