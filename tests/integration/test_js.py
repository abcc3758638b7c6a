"""contrib/js/lpgate.js: node's test runner against a real lpgate (the
send route opened for "js-*" channels so the JS tests can publish): the
long-poll client, and each transport (WebSocket, SSE, long polling) with
the fallback from one to the next (contrib/js/test/transports.test.mjs,
with npm's ws and eventsource, installed by scripts/deps.sh)."""

import os
import shutil
import subprocess

import pytest

from conftest import SRCDIR, free_port

NODE = shutil.which("node") or shutil.which("nodejs")


@pytest.mark.skipif(NODE is None, reason="node is not installed")
def test_js_client(gateway):
    gw = gateway(workers=2, config='allow_send = true;\n'
                 'send_channels = "js-*";\n')
    gw.wait_log('database "lpgtest": Odoo 14 bus shapes')
    env = dict(os.environ,
               LPGATE_URL="http://127.0.0.1:%d" % gw.port,
               LPGATE_CLOSED_URL="http://127.0.0.1:%d" % free_port())
    r = subprocess.run([NODE, "--test",
                        os.path.join(SRCDIR, "contrib", "js", "test")],
                       capture_output=True, text=True, timeout=120, env=env)
    print(r.stdout[-5000:], r.stderr[-2000:])
    assert r.returncode == 0
    assert "# fail 0" in r.stdout
    assert "# pass 10" in r.stdout and "# skipped 0" in r.stdout
