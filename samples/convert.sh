#!/usr/bin/env bash
# Derive the samples of every older ABI version from the engine's v23 samples with
# imgtools convert (--allow-loss: what an older ABI cannot hold is dropped and listed in
# the .txt beside each image). Run from anywhere; regen.sh calls it last.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
cd "$(dirname "$here")"
for v in v17 v18 v19-rc1 v19-rc2 v19 v21 v23-rc1; do
	mkdir -p "samples/$v"
	for img in samples/v23/*.img; do
		name=$(basename "$img" .img)
		out="samples/$v/$name.img"
		losses=$(python3 -m imgtools convert "$img" --to "$v" --allow-loss -o "$out" --json)
		cat > "samples/$v/$name.txt" <<TXT
derived from: samples/v23/$name.img
command: imgtools convert samples/v23/$name.img --to $v --allow-loss -o $out
report: $losses
TXT
		echo "$out: $(stat -c %s "$out") bytes"
	done
done
