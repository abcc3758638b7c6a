#!/usr/bin/python3
"""ws_standin.py --port N --dsn CONNINFO [--db NAME] [--ping] [--kick N]:
a stand-in for Odoo 16/17's /websocket bus, for testing lpgate-bench's
--proto=odoo-ws without lpgate's server side.  Debian's python3-websockets
(10.4) and psycopg 3.

What it does, as Odoo's bus/websocket.py and bus/models/bus.py do
(shared/reference/odoo-websocket.md sections 1-4):
* GET /websocket upgrade; Origin required (400 without); other paths 404;
* `subscribe {channels, last}`: string channels become (db, channel) keys,
  stored as compact JSON (Odoo's channel_with_db + json_dump) plus
  (db, "broadcast"); `last` above max(bus_bus.id) is reset to 0; `last = 0`
  means the rows of the last 50 s; rows are replayed at once, then every
  NOTIFY imbus wakes a dispatch: each socket gets one TEXT frame
  `[{"id": N, "message": {...}}]` (default separators) of its rows above
  its last sent id, never an empty one;
* bad JSON, unknown events, non-string channels: ignored, socket kept.
Test knobs: --ping sends a PING before every batch and sends the batch
only once its PONG is back (no PONG within 10 s: close 1011), so a client
that does not answer PINGs gets nothing;
--kick N closes each socket with 4002 after every N frames it was sent,
so the client must reconnect and resubscribe with its last id.
It prints "listening on PORT" once it accepts connections.
"""

import argparse
import asyncio
import json
import sys

import psycopg
import websockets
import websockets.server

TIMEOUT = 50  # bus.py: last == 0 replays the last 50 s


class Bus:
    def __init__(self, args):
        self.args = args
        self.sockets = {}  # ws -> [channel key set, last sent id, frames]
        self.lock = asyncio.Lock()
        self.db = None

    async def start(self):
        self.db = await psycopg.AsyncConnection.connect(self.args.dsn,
                                                        autocommit=True)
        if self.args.db is None:
            cur = await self.db.execute("SELECT current_database()")
            self.args.db = (await cur.fetchone())[0]
        self.listen = await psycopg.AsyncConnection.connect(self.args.dsn,
                                                            autocommit=True)
        await self.listen.execute("LISTEN imbus")
        asyncio.get_running_loop().create_task(self.notified())

    def key(self, channel):
        return json.dumps([self.args.db, channel], separators=(",", ":"))

    async def notified(self):
        async for _ in self.listen.notifies():
            await self.dispatch(list(self.sockets))

    async def rows(self, last, keys):
        if last == 0:
            cur = await self.db.execute(
                "SELECT id, channel, message FROM bus_bus WHERE create_date "
                "> (now() AT TIME ZONE 'UTC') - interval '%d seconds' "
                "AND channel = ANY(%%s) ORDER BY id" % TIMEOUT, (keys,))
        else:
            cur = await self.db.execute(
                "SELECT id, channel, message FROM bus_bus WHERE id > %s "
                "AND channel = ANY(%s) ORDER BY id", (last, keys))
        return await cur.fetchall()

    async def dispatch(self, sockets):
        async with self.lock:
            if not sockets:
                return
            # one query for every socket, from the smallest last id
            keys = sorted(set().union(*(self.sockets[ws][0]
                                        for ws in sockets
                                        if ws in self.sockets)))
            lasts = [self.sockets[ws][1] for ws in sockets
                     if ws in self.sockets]
            if not keys or not lasts:
                return
            rows = await self.rows(min(lasts), keys)
            sends = []
            for ws in sockets:
                state = self.sockets.get(ws)
                if state is None:
                    continue
                keyset, last = state[0], state[1]
                batch = [{"id": i, "message": json.loads(m)}
                         for i, ch, m in rows if i > last and ch in keyset]
                if not batch:
                    continue
                state[1] = batch[-1]["id"]
                state[2] += 1
                kick = self.args.kick and state[2] % self.args.kick == 0
                sends.append(self.send(ws, json.dumps(batch), kick))
            await asyncio.gather(*sends)

    async def send(self, ws, text, kick):
        try:
            if self.args.ping:
                pong = await ws.ping()
                try:
                    await asyncio.wait_for(pong, 10)
                except asyncio.TimeoutError:
                    print("no pong", file=sys.stderr, flush=True)
                    await ws.close(1011, "no pong")
                    return
            await ws.send(text)
            if kick:
                await ws.close(4002, "keep alive timeout")
        except websockets.ConnectionClosed:
            pass

    async def subscribe(self, ws, data):
        channels = data.get("channels", [])
        last = data.get("last", 0)
        if not isinstance(channels, list) or not all(
                isinstance(c, str) for c in channels) or not isinstance(
                last, int):
            print("bad subscribe %r" % (data,), file=sys.stderr)
            return
        async with self.lock:
            cur = await self.db.execute(
                "SELECT coalesce(max(id), 0) FROM bus_bus")
            if last > (await cur.fetchone())[0]:
                last = 0
            keys = {self.key(c) for c in channels + ["broadcast"]}
            old = self.sockets.get(ws)
            frames = old[2] if old else 0
            self.sockets[ws] = [keys, max(last, old[1]) if old else last,
                                frames]
        await self.dispatch([ws])

    async def serve(self, ws, path=None):
        try:
            async for text in ws:
                try:
                    event = json.loads(text)
                    name, data = event["event_name"], event.get("data", {})
                except (ValueError, KeyError, TypeError):
                    print("bad event %r" % (text,), file=sys.stderr)
                    continue
                if name == "subscribe" and isinstance(data, dict):
                    await self.subscribe(ws, data)
        except websockets.ConnectionClosed:
            pass
        finally:
            self.sockets.pop(ws, None)


def check_request(path, headers):
    if path.split("?")[0] != "/websocket":
        return (404, [], b"not found\n")
    if not headers.get("Origin"):
        return (400, [], b"Empty or missing header(s): origin\n")
    return None


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--dsn", required=True)
    ap.add_argument("--db")
    ap.add_argument("--ping", action="store_true")
    ap.add_argument("--kick", type=int, default=0)
    args = ap.parse_args()

    bus = Bus(args)
    await bus.start()
    async with websockets.server.serve(
            bus.serve, "127.0.0.1", args.port,
            process_request=check_request, compression=None,
            ping_interval=None,
            max_size=2 ** 20, backlog=4096):
        print("listening on %d" % args.port, flush=True)
        await asyncio.Future()


if __name__ == "__main__":
    asyncio.run(main())
