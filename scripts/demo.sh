#!/usr/bin/env bash
# make demo: a real migration (discover, review, copy, verify) of a generated
# local tree, then a discovery of a simulated pair checked against its
# ground truth. No server needed.
# The source is a small project tree; the destination is an older copy of
# it: some files missing, some changed, some with another mode, some only
# on the destination.
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
chmod 600 "$dir/dst/dept4/team1/report4.txt"                # same content, another mode
chmod 700 "$dir/dst/dept5/team2"                            # a folder of another mode
mkdir -p "$dir/dst/only-on-destination"
printf 'keep me\n' > "$dir/dst/only-on-destination/notes.txt"
cp -a "$dir/dst/only-on-destination" "$dir/only-on-destination.before"

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
echo "== the destination now holds the source:"
# contents: diff -r exits 1 on any difference (set -e stops the demo), and
# the destination-only folder is left out of it
diff -r --no-dereference --exclude=only-on-destination "$dir/src" "$dir/dst"
echo "   contents (diff -r): equal"
# type, mode, mtime (ns) and symlink target of every node below the roots
# (the copy leaves the roots' own attributes alone)
attrs() {
  (cd "$1" && find . -mindepth 1 -path ./only-on-destination -prune -o \
    -printf '%P type=%y mode=%m mtime=%T@ target=%l\n' | LC_ALL=C sort)
}
attrs "$dir/src" > "$dir/src.attrs"
attrs "$dir/dst" > "$dir/dst.attrs"
if ! cmp -s "$dir/src.attrs" "$dir/dst.attrs"; then
  echo "the destination's types, modes, mtimes or symlink targets differ from the source's:" >&2
  diff "$dir/src.attrs" "$dir/dst.attrs" | head -20 >&2
  exit 1
fi
echo "   types, modes, mtimes (ns), symlink targets of $(wc -l < "$dir/src.attrs") nodes: equal"
if ! diff -r --no-dereference "$dir/only-on-destination.before" "$dir/dst/only-on-destination"; then
  echo "the destination-only folder was changed" >&2; exit 1
fi
echo "   the destination-only folder: left as it was"
echo
echo "== a simulated pair: 45k source nodes generated on the fly, with faults"
spec='sim:seed=7,depth=5,folders=8,files=8,tail=3,decay=1,size=4k'
rm -f "$dir/sim.db"* "$dir/sim-dst.ovl"
"$bin" discover --db "$dir/sim.db" --quiet --retries 10 "$spec,transient=0.02" \
  "$spec,world=dst,keep=0.9,extra=0.01,csize=0.01,cmtime=0.01,ctype=0.002,cmode=0.01,overlay=$dir/sim-dst.ovl"
echo "ground truth (treemig sim-stats) against what discovery recorded:"
"$bin" sim-stats "$spec,world=dst,keep=0.9,extra=0.01,csize=0.01,cmtime=0.01,ctype=0.002,cmode=0.01" \
  > "$dir/sim-truth.json"
"$bin" status --db "$dir/sim.db" --json > "$dir/sim-status.json"
# every value below src, dst and copy must be equal in both (a key missing
# on either side is a difference); compared with SQLite's JSON functions
sql_str() { printf "'%s'" "${1//\'/\'\'}"; }
diffs=$(sqlite3 -batch :memory: "
  WITH t AS (SELECT fullkey AS k, type, atom FROM json_tree(readfile($(sql_str "$dir/sim-truth.json")))
             WHERE type NOT IN ('object', 'array')),
       s AS (SELECT fullkey AS k, type, atom FROM json_tree(readfile($(sql_str "$dir/sim-status.json")))
             WHERE type NOT IN ('object', 'array'))
  SELECT coalesce(t.k, s.k) || ': sim-stats ' ||
         CASE WHEN t.k IS NULL THEN 'missing' ELSE quote(t.atom) END ||
         ', status ' || CASE WHEN s.k IS NULL THEN 'missing' ELSE quote(s.atom) END
  FROM t FULL JOIN s ON t.k = s.k
  WHERE coalesce(t.k, s.k) GLOB '$.src.*' OR coalesce(t.k, s.k) GLOB '$.dst.*'
        OR coalesce(t.k, s.k) GLOB '$.copy.*'
  EXCEPT
  SELECT t.k || ': sim-stats ' || quote(t.atom) || ', status ' || quote(s.atom)
  FROM t JOIN s ON t.k = s.k AND t.type = s.type AND t.atom IS s.atom;")
for k in src dst copy; do
  n=$(sqlite3 -batch :memory: "SELECT count(*) FROM json_tree(readfile($(sql_str "$dir/sim-truth.json")), '\$.$k')
                               WHERE type NOT IN ('object', 'array')")
  [ "$n" -gt 0 ] || { echo "sim-stats gave no $k counts" >&2; exit 1; }
  if grep -qF -- "\$.$k." <<<"$diffs"; then
    echo "  $k: DIFFERS"
  else
    echo "  $k: $n counts equal"
  fi
done
if [ -n "$diffs" ]; then
  printf 'discovery differs from the ground truth:\n%s\n' "$diffs" >&2
  exit 1
fi
echo "copy into the simulated destination (its writes kept in $dir/sim-dst.ovl),"
echo "then verify every byte:"
"$bin" copy --db "$dir/sim.db" --yes --quiet
"$bin" verify --db "$dir/sim.db" --checksum
echo
echo "The state files are $dir/treemig.db and $dir/sim.db: query them with"
echo "sqlite3 (docs/state-file.md), or run: $bin review --db $dir/treemig.db"
