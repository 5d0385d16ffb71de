#!/usr/bin/env bash
# make demo: a real discovery on a generated local tree pair, no server.
# The source is a small project tree; the destination is an older copy of
# it: some files missing, some changed, some only on the destination.
set -euo pipefail
bin=${1:-build/treemig}
dir=${DEMO_DIR:-build/demo}
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
echo "== conflicts, straight from the state file"
sqlite3 -column -header "$dir/treemig.db" \
  "SELECT path, conflict FROM src_nodes WHERE conflict IS NOT NULL ORDER BY path"
echo
echo "The state file is $dir/treemig.db: query it with sqlite3 (docs/state-file.md)."
