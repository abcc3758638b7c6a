#!/usr/bin/env bash
# build.sh [DIR] [configure options...]: configures and builds lpgate out of
# tree in DIR (default build/), warnings as errors.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
dir=${1:-$top/build}
shift || true

cd "$top"
[ -x configure ] && [ configure -nt configure.ac ] && [ Makefile.in -nt Makefile.am ] \
    || ./autogen.sh >/dev/null 2>&1
mkdir -p "$dir"
cd "$dir"
if [ ! -f Makefile ] || [ "$top/configure" -nt Makefile ] || [ "$#" -gt 0 ]; then
    "$top/configure" -q --enable-werror "$@" 2> >(grep -v "cannot remove 'core'" >&2)
fi
make -s -j"$(nproc)"
