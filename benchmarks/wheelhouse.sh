#!/usr/bin/env bash
# Build the device-run wheelhouse: cp312 wheels of benchmarks/wheelhouse.txt (pinned) + this package, into $2.
# usage: bash benchmarks/wheelhouse.sh <venv python> <out dir>     (called by `make wheelhouse`)
set -euo pipefail
python=$1
out=$2
limit_mib=60
cd "$(dirname "$0")/.."
rm -rf "$out" && mkdir -p "$out"
pins=$("$python" - <<'PY'
import importlib.metadata as md, re
pinned = {}
for line in open("requirements.txt"):
    line = line.split("#")[0].strip()
    if "==" in line:
        name, version = line.split("==")
        pinned[re.sub(r"[-_.]+", "-", name).lower()] = version
for line in open("benchmarks/wheelhouse.txt"):
    name = line.split("#")[0].strip()
    if name:
        key = re.sub(r"[-_.]+", "-", name).lower()
        print(f"{name}=={pinned.get(key) or md.version(name)}")
PY
)
# shellcheck disable=SC2086
"$python" -m pip wheel --quiet --no-deps --prefer-binary -w "$out" $pins
"$python" -m pip wheel --quiet --no-deps --no-build-isolation -w "$out" .
size=$(du -sm "$out" | cut -f1)
ls -1 "$out"
echo "wheelhouse $out: $(ls "$out" | wc -l) wheels, ${size} MiB (limit ${limit_mib})"
if [ "$size" -gt "$limit_mib" ]; then echo "error: wheelhouse over ${limit_mib} MiB" >&2; exit 1; fi
