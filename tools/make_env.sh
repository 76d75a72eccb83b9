#!/usr/bin/env bash
# Create (or reuse) this checkout's virtual environment and print its directory on the last line.
#
# Two venvs, so that each checkout runs its own code while the heavy downloads are shared:
#   shared:   the pinned stack only (torch, fairseq, ...; never music_ssl), outside the clone in
#             $MUSIC_SSL_ENV_ROOT/venv-py312-<hash of requirements*.txt> (default root: ~/.cache/music-ssl);
#             a fresh clone with unchanged pins reuses it, changed pins build a new one. MUSIC_SSL_SHARED_VENV=DIR
#             uses an existing venv with the pinned stack instead (read, never written to).
#   checkout: <clone>/.venv (git-ignored; printed last): a light venv of the same Python whose site-packages
#             falls back on the shared one through a .pth holding its path (a plain path: the shared venv's own
#             .pth files, e.g. an editable music_ssl of an older setup, are not processed), with music_ssl
#             installed editable from THIS clone and the shared venv's console scripts (fairseq-hydra-train,
#             torchrun, pytest, ...) rewritten to start this venv's python. Rebuilt (seconds) when the clone moved,
#             the shared venv changed or setup.py / pyproject.toml changed; checked to import this clone's code.
# The interpreter for a new shared venv: PYTHON312 (else python3.12 on PATH, pyenv's, /usr/bin).
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

checkout_stamp() {  # $1 = repo, $2 = shared venv: what the checkout venv was made from
  printf 'repo=%s\nshared=%s\npackaging=%s\n' "$1" "$2" \
    "$(cat "$1/setup.py" "$1/pyproject.toml" "$1/music_ssl/core/version.py" 2>/dev/null | sha256sum | cut -c1-12)"
}

build_checkout_venv() {  # $1 = checkout venv dir, $2 = shared venv, $3 = repo
  local venv=$1 shared=$2 repo=$3 shared_lib lib log
  echo "make_env: making $venv (music_ssl from $repo; the pinned stack from $shared)" >&2
  rm -rf "$venv"
  "$shared/bin/python" -m venv --without-pip "$venv"  # the shared venv's base interpreter (sys._base_executable)
  shared_lib=$("$shared/bin/python" -I -c 'import sysconfig; p = sysconfig.get_paths(); print(p["purelib"]); print(p["platlib"])' | sort -u)
  lib=$("$venv/bin/python" -I -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  printf '%s\n' "$shared_lib" >"$lib/zz_music_ssl_shared_stack.pth"  # sorts last: this venv's own paths come first
  log=$(cd / && "$venv/bin/python" -m pip install -q --no-deps --no-build-isolation --no-index -e "$repo" 2>&1) \
    || { echo "$log" >&2; echo "make_env: installing $repo into $venv failed (see above)" >&2; return 1; }
  # the shared venv's other console scripts, started with this venv's python (music-ssl-* came from this clone)
  "$venv/bin/python" -I - "$shared" "$venv" <<'PY'
import os, sys
from pathlib import Path

shared, venv = (Path(a) for a in sys.argv[1:])
old = [str(shared / "bin" / n).encode() for n in ("python3.12", "python3", "python")]  # longest first
for script in sorted((shared / "bin").iterdir()):
    target = venv / "bin" / script.name
    if (script.name.startswith(("python", "activate", "Activate", "music-ssl-")) or target.exists()
            or script.is_symlink() or not script.is_file()):
        continue
    head, _, body = script.read_bytes().partition(b"\n")
    if not head.startswith(b"#!"):
        continue
    if head.startswith(b"#!/bin/sh"):  # pip's form for a long interpreter path: the path is on the next line
        line, _, body = body.partition(b"\n")
        head, line = head + b"\n" + line, line
    for prefix in old:
        if prefix in head:
            head = head.replace(prefix, str(venv / "bin" / "python").encode())
            break
    else:
        continue
    temporary = target.with_name(f".{target.name}.tmp")
    temporary.write_bytes(head + b"\n" + body)
    temporary.chmod(0o755)
    os.replace(temporary, target)
PY
}

checkout_venv() {  # $1 = checkout venv dir, $2 = shared venv, $3 = repo: (re)make it unless it is up to date
  local venv=$1 shared=$2 repo=$3 stamp origin
  stamp=$(checkout_stamp "$repo" "$shared")
  if [ -e "$venv" ] && [ ! -f "$venv/.music-ssl-checkout-venv" ]; then
    echo "make_env: $venv exists but was not made by tools/make_env.sh; move it away (this script makes it)" >&2
    return 1
  fi
  if [ "$(cat "$venv/.music-ssl-checkout-venv" 2>/dev/null)" != "$stamp" ] || ! "$venv/bin/python" -I -c '' 2>/dev/null; then
    build_checkout_venv "$venv" "$shared" "$repo"
    printf '%s\n' "$stamp" >"$venv/.music-ssl-checkout-venv"
  fi
  origin=$(cd / && "$venv/bin/python" -I -c 'import importlib.util; print(importlib.util.find_spec("music_ssl").origin)')
  if [ "$origin" != "$repo/music_ssl/__init__.py" ]; then
    rm -f "$venv/.music-ssl-checkout-venv"  # remade on the next run
    echo "make_env: $venv imports music_ssl from $origin, not from $repo; run it again (it remakes the venv)" >&2
    return 1
  fi
}

main() {
  local repo root hash shared
  repo=$(cd "$(dirname "$0")/.." && pwd -P)
  root=${MUSIC_SSL_ENV_ROOT:-$HOME/.cache/music-ssl}
  install_system_packages
  mkdir -p "$root"
  if [ -n "${MUSIC_SSL_SHARED_VENV:-}" ]; then
    shared=$(cd "$MUSIC_SSL_SHARED_VENV" 2>/dev/null && pwd) && [ -x "$shared/bin/python" ] || {
      echo "make_env: MUSIC_SSL_SHARED_VENV=$MUSIC_SSL_SHARED_VENV is not a venv (no bin/python); unset it to build one" >&2
      return 1; }
  else
    hash=$(cat "$repo/requirements.txt" "$repo/requirements-dev.txt" | sha256sum | cut -c1-12)
    shared="$root/venv-py312-$hash"
    exec 9>"$root/.lock-$hash"
    flock 9
    [ -f "$shared/.complete" ] || build_venv "$shared" "$repo"
    exec 9>&-
  fi
  exec 8>"$root/.lock-checkout-$(printf '%s' "$repo" | sha256sum | cut -c1-12)"
  flock 8  # two `make` in one clone at once
  checkout_venv "$repo/.venv" "$shared" "$repo"
  echo "$repo/.venv"
}

main "$@"
