#!/usr/bin/env bash
# run-pytest.sh: the integration layer of `make check`.  Exits 77 (skip)
# when no PostgreSQL server binaries are installed; otherwise runs pytest
# under Debian's /usr/bin/python3 against the lpgate in LPGATE_BIN.
set -u
here=$(cd "$(dirname "$0")" && pwd)
export LPGATE_SRCDIR=${LPGATE_SRCDIR:-$(cd "$here/../.." && pwd)}
export LPGATE_BIN=${LPGATE_BIN:-$PWD/lpgate}

if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && ! command -v initdb >/dev/null; then
    echo "no PostgreSQL server binaries (initdb): skipping the integration tests"
    exit 77
fi

# shellcheck disable=SC2086
/usr/bin/python3 -m pytest -v -p no:cacheprovider -rfE ${PYTEST_ARGS:-} \
    "$LPGATE_SRCDIR/tests/integration"
rc=$?
[ "$rc" -eq 5 ] && rc=1   # no tests collected is a failure
exit $rc
