"""The Socket.IO server (issue 14, item 3) with the unmodified
socket.io-client in a browser: its dist/socket.io.min.js in Debian's
Chromium (headless, driven by playwright-core: tests/e2e/sio_browser.mjs),
through Debian's nginx with the shipped contrib/nginx/lpgate.conf.  The
page (tests/socketio/browser.html) comes from the application's side of
that nginx, so it talks to /longpolling/socket.io/ on its own origin, as
an Odoo page would.  Both transports, the upgrade from polling to
websocket, a reconnect with auth.last and a refused namespace; the same
checks as test_socketio.py's in node (its helpers), one browser for the
module and a page per client.
"""

import functools
import http.server
import os
import shutil
import threading

import pytest

from conftest import SRCDIR, free_port
from test_proxy import nginx  # noqa: F401 (fixture)
from test_socketio import (NAMESPACES, NODE, SIO_DIR, Node,
                           connect_and_roundtrip, reconnect_rounds,
                           refused_namespace, sql, start)  # noqa: F401

E2E = os.path.join(SRCDIR, "tests", "e2e")
CHROMIUM = os.environ.get("CHROMIUM") or shutil.which("chromium") or \
    "/usr/bin/chromium"

pytestmark = pytest.mark.skipif(not (
    NODE and os.path.exists(CHROMIUM)
    and os.path.isdir(os.path.join(E2E, "node_modules", "playwright-core"))
    and os.path.isdir(os.path.join(SIO_DIR, "node_modules",
                                   "socket.io-client"))),
    reason="needs node, chromium, tests/e2e's playwright-core and "
           "tests/socketio's socket.io-client (scripts/deps.sh)")


class Static(http.server.SimpleHTTPRequestHandler):
    """tests/socketio as files: browser.html, sio_driver.mjs (a module
    script wants a JavaScript type) and socket.io-client's dist."""

    extensions_map = dict(http.server.SimpleHTTPRequestHandler.extensions_map,
                          **{".mjs": "text/javascript",
                             ".js": "text/javascript"})

    def log_message(self, *args):
        pass


@pytest.fixture
def app():
    """The application behind nginx's location /: it serves the page."""
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", free_port()),
        functools.partial(Static, directory=SIO_DIR))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()


@pytest.fixture(scope="module")
def chromium():
    c = Node(os.path.join(E2E, "sio_browser.mjs"))
    yield c
    c.close()


@pytest.fixture
def browser(chromium):
    """The module's browser; its pages are closed after each test, and no
    page threw."""
    yield chromium
    chromium.send(op="closeall")
    chromium.wait("closedall")
    errors = [e for e in chromium.seen if e["ev"] == "page_error"]
    chromium.seen.clear()
    assert errors == []


def through_nginx(gateway, nginx, config=""):  # noqa: F811
    return nginx(start(gateway, workers=2, config=config).port)


@pytest.mark.parametrize("transports", [["polling"], ["websocket"], None],
                         ids=["polling", "websocket", "upgrade"])
def test_transports(pg, gateway, sql, nginx, browser,  # noqa: F811
                    transports):
    connect_and_roundtrip(pg, browser, through_nginx(gateway, nginx),
                          transports)


@pytest.mark.parametrize("transports", [["polling"], ["websocket"], None],
                         ids=["polling", "websocket", "upgrade"])
def test_reconnect_with_last(pg, gateway, sql, nginx, browser,  # noqa: F811
                             transports):
    reconnect_rounds(pg, browser, through_nginx(gateway, nginx), transports)


def test_refused_namespace(pg, gateway, sql, nginx, browser):  # noqa: F811
    refused_namespace(browser, through_nginx(gateway, nginx, NAMESPACES))
