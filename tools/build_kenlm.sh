#!/usr/bin/env bash
# Build KenLM's lmplz and build_binary from the kenlm sdist into .cache/kenlm/bin (about 1 minute).
# Needs cmake, a C++ compiler, Boost (program_options, system, thread) and zlib; on Debian/Ubuntu
# they are installed with apt-get when missing and we run as root.
set -euo pipefail
PYTHON=${PYTHON:-python3}
OUT=${1:-.cache/kenlm}
if [[ -x "$OUT/bin/lmplz" && -x "$OUT/bin/build_binary" ]]; then exit 0; fi
need=()
for pkg in libboost-program-options-dev libboost-system-dev libboost-thread-dev libboost-test-dev zlib1g-dev cmake; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if (( ${#need[@]} )); then
  if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
    apt-get install -y -q "${need[@]}" >/dev/null || { apt-get update -q >/dev/null && apt-get install -y -q "${need[@]}" >/dev/null; }
  else
    echo "error: install ${need[*]} (e.g. sudo apt-get install ${need[*]}) and rerun make kenlm-tools" >&2; exit 1
  fi
fi
SRC=$(mktemp -d)
trap 'rm -rf "$SRC"' EXIT
SDIST=$($PYTHON -c 'from ziya_jax.data.offline import _pip_sdist, cache_dir; (cache_dir()/"src").mkdir(parents=True, exist_ok=True); print(_pip_sdist("kenlm", "0.3.0", cache_dir()/"src"))')
tar xzf "$SDIST" -C "$SRC"
mkdir -p "$SRC/build"
( cd "$SRC/build" && cmake "$SRC/kenlm-0.3.0" -DCMAKE_BUILD_TYPE=Release >/dev/null && make -j"$(nproc)" lmplz build_binary >/dev/null )
mkdir -p "$OUT/bin"
cp "$SRC/build/bin/lmplz" "$SRC/build/bin/build_binary" "$OUT/bin/"
echo "built $OUT/bin/lmplz and $OUT/bin/build_binary"
