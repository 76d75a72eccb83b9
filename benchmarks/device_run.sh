#!/usr/bin/env bash
# Issue #15's GPU measurements and issue #24's time-to-quality step (section ttq) in one run (<= 9 min): installs
# the wheelhouse (.whl/, `make wheelhouse`) if fairseq is missing, checks every import, then runs
# benchmarks/device_run.py, which writes device_run.json and
# device_run.md (the table) to $OUT.
#   GPU (the `run` device tool): command `bash benchmarks/device_run.sh`, carry [".whl"]
#   CPU rehearsal:               OUT=/tmp/x bash benchmarks/device_run.sh --smoke
# PYTHON picks the interpreter (default python3).
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
out=${OUT:-$PWD/device_out}
mkdir -p "$out"
if ! "$python" -c "import fairseq" >/dev/null 2>&1; then
  ls .whl/*.whl >/dev/null 2>&1 || { echo "error: fairseq is not installed and .whl/ holds no wheels: run \`make wheelhouse\` here and carry .whl" >&2; exit 1; }
  "$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
"$python" - <<'PY'
import importlib, sys
needed = ["torch", "numpy", "scipy", "sklearn", "threadpoolctl", "tqdm", "yaml", "fairseq", "hydra", "omegaconf",
          "soundfile", "mir_eval"]
missing = []
for name in needed:
    try:
        importlib.import_module(name)
    except Exception as err:  # an ImportError or a broken binary
        missing.append(f"{name} ({type(err).__name__}: {err})")
if missing:
    sys.exit("error: cannot import " + "; ".join(missing) + ": add the package to benchmarks/wheelhouse.txt, "
             "run `make wheelhouse` and carry .whl")
PY
PYTHONUNBUFFERED=1 "$python" benchmarks/device_run.py --out "$out" "$@" 2>&1 | tee "$out/device_run.log"
