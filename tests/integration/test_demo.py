"""The demo chat page in a real browser: Debian's Chromium, headless,
driven by playwright-core (tests/e2e/demo.mjs).  Two browser contexts; a
message sent from one appears in the other; lpgate stopped, the status
icon turns red; lpgate started again, it turns green and the messages sent
meanwhile through SQL (contrib/sql/lpgate.sql) arrive, none lost.  Once
with the transport lpgate.js chooses (WebSocket), then with SSE and long
polling forced in turn (?transport=); the page shows the one in use.
"""

import os
import shutil
import signal
import subprocess

import pytest

from conftest import SRCDIR

E2E = os.path.join(SRCDIR, "tests", "e2e")
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
NODE = shutil.which("node")


@pytest.mark.skipif(not (NODE and os.path.exists(CHROMIUM) and os.path.isdir(
    os.path.join(E2E, "node_modules", "playwright-core"))),
    reason="needs node, chromium and tests/e2e/node_modules "
           "(scripts/deps.sh installs them)")
@pytest.mark.parametrize("forced,shown", [(None, "websocket"),
                                          ("sse", "sse"), ("poll", "poll")])
def test_demo_page_in_chromium(pg, gateway, tmp_path, forced, shown):
    with open(os.path.join(SRCDIR, "contrib", "sql", "lpgate.sql")) as f:
        pg.sql(f.read(), dbname="lpgtest")
    args = ["--demo", "--timeout", "2"]
    gw = gateway(workers=2, extra_args=args)
    gw.wait_log('database "lpgtest": Odoo 14 bus shapes')

    texts = ["sent through SQL one", "sent through SQL two"]
    shot = str(tmp_path / "demo.png")
    if forced is None:
        shot = os.environ.get("LPGATE_SCREENSHOT", shot)
    url = "http://127.0.0.1:%d/longpolling/demo" % gw.port
    if forced:
        url += "?transport=" + forced
    env = dict(os.environ, LPGATE_SCREENSHOT=shot, LPGATE_TRANSPORT=shown,
               LPGATE_SQL_TEXTS=",".join(texts), LPGATE_DEMO_URL=url)
    proc = subprocess.Popen([NODE, os.path.join(E2E, "demo.mjs")], env=env,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, cwd=E2E)
    out = []

    def until(word):
        for line in proc.stdout:
            out.append(line)
            print("demo.mjs:", line.rstrip())
            if line.strip() == word:
                return
        raise AssertionError("demo.mjs ended before %s:\n%s"
                             % (word, "".join(out)))

    try:
        until("STOP")
        gw.signal(signal.SIGTERM)
        assert gw.wait(10) == 0
        proc.stdin.write("stopped\n")
        proc.stdin.flush()
        until("STOPPED")
        for t in texts:
            pg.sql("SELECT lpgate_send('demo-chat', %s::json)",
                   ('{"from": "sql", "text": "%s"}' % t,), dbname="lpgtest")
        gateway(workers=2, extra_args=args, port=gw.port)
        proc.stdin.write("go\n")
        proc.stdin.flush()
        until("DONE")
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert os.path.getsize(shot) > 0
