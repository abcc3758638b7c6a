#!/usr/bin/env bash
# deps.sh: installs what lpgate needs to build, run and test, from Debian 12.
# Used by run.sh and test.sh; safe to run again (apt-get skips what is there).
set -euo pipefail

LPG_PACKAGES=(
    build-essential autoconf automake pkg-config
    libpq-dev libev-dev libmsgpack-dev libconfig-dev libjansson-dev
    libhttp-parser-dev libcmocka-dev libcurl4-openssl-dev libwslay-dev nettle-dev
    liburing-dev
    postgresql postgresql-contrib
    python3 python3-pytest python3-psycopg python3-prometheus-client python3-websockets
    curl clang-format nginx haproxy libnginx-mod-nchan apache2 chromium clang libclang-rt-14-dev
)

if [ "$(id -u)" -ne 0 ]; then
    SUDO=sudo
else
    SUDO=
fi

# node runs the JS client's tests; any node >= 18 will do (Debian's nodejs)
command -v node >/dev/null 2>&1 || LPG_PACKAGES+=(nodejs)
command -v npm >/dev/null 2>&1 || LPG_PACKAGES+=(npm)

missing=()
for p in "${LPG_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" \
        || missing+=("$p")
done

if [ "${#missing[@]}" -gt 0 ]; then
    echo "deps: installing ${missing[*]}"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
        "${missing[@]}" >/dev/null
fi

# the browser test drives Debian's Chromium with playwright-core (npm)
top=$(cd "$(dirname "$0")/.." && pwd)
if [ ! -d "$top/tests/e2e/node_modules/playwright-core" ]; then
    echo "deps: npm install in tests/e2e (playwright-core)"
    (cd "$top/tests/e2e" && npm install --no-audit --no-fund --loglevel=error) \
        || echo "deps: npm install failed: the browser test will be skipped"
fi

# the Socket.IO tests drive the unmodified socket.io-client (npm) in node
# and, its dist/socket.io.min.js, in Chromium
if [ ! -d "$top/tests/socketio/node_modules/socket.io-client" ]; then
    echo "deps: npm install in tests/socketio (socket.io-client)"
    (cd "$top/tests/socketio" && npm install --no-audit --no-fund --loglevel=error) \
        || echo "deps: npm install failed: the Socket.IO tests will be skipped"
fi

# the JS client's transport tests: node 20 has no WebSocket or EventSource
# of its own, so they use npm's ws and eventsource
if [ ! -d "$top/contrib/js/test/node_modules/eventsource" ]; then
    echo "deps: npm install in contrib/js/test (ws, eventsource)"
    (cd "$top/contrib/js/test" && npm install --no-audit --no-fund --loglevel=error) \
        || echo "deps: npm install failed: the JS transport tests will fail"
fi

# the Node.js peers of the WebSocket and Socket.IO benchmarks (npm ws,
# socket.io, pg: bench/peers/package.json)
if [ ! -d "$top/bench/peers/node_modules/ws" ]; then
    echo "deps: npm install in bench/peers (ws, socket.io, pg)"
    (cd "$top/bench/peers" && npm install --no-audit --no-fund --loglevel=error) \
        || echo "deps: npm install failed: the benchmarks run without Node.js peers"
fi
