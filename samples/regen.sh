#!/usr/bin/env bash
# Regenerate the v23 sample images: build the engine and the sample programs, start each
# program, wait for its "ready", checkpoint it with the engine into v23/<name>.img (the
# engine kills it afterwards, --kill) and record how in v23/<name>.txt.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
engine="$root/engine/build/imgtools-engine"
max_size=$((1024 * 1024))

make -s -C "$root/engine"
make -s -C "$here"
mkdir -p "$here/v23"
cd "$here"

fifo=$(mktemp -u /tmp/imgtools-sample.XXXXXX.fifo)
trap 'rm -f "$fifo"' EXIT

for name in single threads pipes signals; do
	args=()
	[ "$name" = pipes ] && args=("$fifo")
	# stdout is our pipe (for "ready"); stdin and stderr are /dev/null so the image holds
	# nothing of the terminal regen.sh runs in
	exec {ready}< <(exec "$here/build/$name" "${args[@]}" </dev/null 2>/dev/null)
	pid=$!
	if ! read -r -t 10 line <&"$ready" || [ "$line" != ready ]; then
		echo "regen.sh: $name did not get ready" >&2
		kill "$pid" 2>/dev/null
		exit 1
	fi
	img="v23/$name.img"
	if ! "$engine" dump "$pid" -o "$img" --kill; then
		echo "regen.sh: dumping $name failed" >&2
		kill $(cat /proc/"$pid"/task/*/children 2>/dev/null) "$pid" 2>/dev/null
		exit 1
	fi
	exec {ready}<&-
	size=$(stat -c %s "$img")
	if [ "$size" -ge "$max_size" ]; then
		echo "regen.sh: $img is $size bytes, samples must stay under 1 MiB" >&2
		exit 1
	fi
	cat > "v23/$name.txt" <<TXT
kernel: $(uname -r)
engine: $("$engine" --version)
program: samples/build/$name ${args[*]:-} (from samples/src/$name.c, gcc -g -O0)
command: imgtools-engine dump $pid -o samples/$img --kill
size: $size bytes
TXT
	echo "$img: $size bytes"
done
bash "$here/convert.sh"
