#!/usr/bin/env bash
# Create (or reuse) the project's virtual environment and print its directory on the last line.
#
# The venv lives outside the clone, keyed by a hash of the pinned requirements, so a fresh clone with
# unchanged pins reuses it and changed pins build a new one. Override the parent folder with
# MUSIC_SSL_ENV_ROOT (default: ~/.cache/music-ssl) and the interpreter with PYTHON312.
set -euo pipefail

find_python312() {
  local c
  for c in "${PYTHON312:-}" python3.12 "$HOME"/.pyenv/versions/3.12*/bin/python3.12 /usr/bin/python3.12 /usr/local/bin/python3.12; do
    [ -n "$c" ] || continue
    if "$c" -c 'import sys, venv; assert sys.version_info[:2] == (3, 12)' >/dev/null 2>&1; then
      command -v "$c" 2>/dev/null || echo "$c"; return 0
    fi
  done
  echo "make_env: no working Python 3.12 found; install it (e.g. 'pyenv install 3.12') or set PYTHON312=/path/to/python3.12" >&2
  return 1
}

# FluidSynth + a General MIDI soundfont render the demo corpus (Debian package names).
install_system_packages() {
  local missing=()
  command -v fluidsynth >/dev/null 2>&1 || missing+=(fluidsynth)
  [ -e /usr/share/sounds/sf2/FluidR3_GM.sf2 ] || missing+=(fluid-soundfont-gm)
  [ ${#missing[@]} -eq 0 ] && return 0
  local sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo -n"
  if command -v apt-get >/dev/null 2>&1 && { $sudo apt-get update -qq && \
      DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}"; } >&2; then
    echo "make_env: installed ${missing[*]}" >&2
  else
    echo "make_env: could not install ${missing[*]}; the demo corpus needs them: apt-get install ${missing[*]}" >&2
  fi
}

build_venv() {  # $1 = venv dir, $2 = repo
  local py; py=$(find_python312)
  echo "make_env: building $1 with $py (first run downloads ~5 GB: torch CUDA build + deps)" >&2
  rm -rf "$1"
  "$py" -m venv "$1"
  "$1/bin/python" -m pip install -q --upgrade pip wheel >&2
  "$1/bin/python" -m pip install --progress-bar off -r "$2/requirements.txt" -r "$2/requirements-dev.txt" >&2
  touch "$1/.complete"
}

main() {
  local repo root hash venv
  repo=$(cd "$(dirname "$0")/.." && pwd)
  root=${MUSIC_SSL_ENV_ROOT:-$HOME/.cache/music-ssl}
  install_system_packages
  hash=$(cat "$repo/requirements.txt" "$repo/requirements-dev.txt" | sha256sum | cut -c1-12)
  venv="$root/venv-py312-$hash"
  mkdir -p "$root"
  exec 9>"$root/.lock-$hash"
  flock 9
  [ -f "$venv/.complete" ] || build_venv "$venv" "$repo"
  # the package itself: cheap, re-pointed at this clone each time (console scripts + `import music_ssl`)
  local log; log=$("$venv/bin/python" -m pip install -q --no-deps --no-build-isolation -e "$repo" 2>&1) \
    || { echo "$log" >&2; echo "make_env: installing $repo into $venv failed (see above)" >&2; return 1; }
  echo "$venv"
}

main "$@"
