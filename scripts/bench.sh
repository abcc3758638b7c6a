#!/usr/bin/env bash
# bench.sh [--quick] [--only NAME,...] [--out FILE]: installs the
# dependencies (with nginx and Debian's nchan module), builds lpgate and
# lpgate-bench, and runs every benchmark scenario against lpgate and
# nginx+nchan in one run (scripts/bench.py), writing docs/benchmarks.md.
# --quick: small scenarios in about a minute, report in $TMPDIR.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)

"$top/scripts/deps.sh"
"$top/scripts/build.sh" "$top/build"
LPGATE_BIN="$top/build/lpgate" exec /usr/bin/python3 "$top/scripts/bench.py" "$@"
