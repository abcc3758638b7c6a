"""Quiet PONGs on Odoo's /websocket (websocket_quiet_pongs): a client's
six-byte PONG stays below the socket's receive low-water mark, wakes no
worker and is read at its deadline (counted in
lpgate_websocket_quiet_pongs_total); the next PING keeps its cadence.
Other six-byte frames wait for that deadline too; with the switch off,
every frame is read at once."""

from conftest import free_port, wait_until
from test_metrics import scrape, value
from test_websocket import frame, odoo, open_raw, read_frame, start  # noqa: F401

PINGS = "websocket_ping_interval = 2;\nwebsocket_pong_timeout = 1;\n"


def quiet_pongs(admin):
    return value(scrape(admin), "lpgate_websocket_quiet_pongs_total")


def first_frames_after_an_empty_ping(gateway, odoo, quiet):
    admin = free_port()
    gw = start(gateway, odoo, args=["--admin-port", str(admin)],
               config=PINGS + "websocket_quiet_pongs = %s;\n"
               % ("true" if quiet else "false"))
    s = open_raw(gw)
    s.settimeout(15)

    # answered PINGs keep the socket, quiet or not
    for n in range(1, 4):
        assert read_frame(s) == (0x9, b"")
        s.sendall(frame(0xA))
        if quiet:
            wait_until(lambda: quiet_pongs(admin) >= n,
                       what="PONG %d read at its deadline" % n)
    if not quiet:
        assert quiet_pongs(admin) == 0

    # the client's empty PING (six bytes, like a PONG) while nothing else
    # is due: answered at once, or, quiet, after the next PING's deadline
    s.sendall(frame(0x9))
    frames = [read_frame(s), read_frame(s)]
    s.close()
    return frames


def test_quiet_pongs_are_read_at_their_deadline(gateway, odoo):
    assert first_frames_after_an_empty_ping(gateway, odoo, True) == [
        (0x9, b""), (0xA, b"")]


def test_without_quiet_pongs_every_frame_is_read_at_once(gateway, odoo):
    # the PONG comes first: the next PING is seconds away
    assert first_frames_after_an_empty_ping(gateway, odoo, False)[0] == (
        0xA, b"")
