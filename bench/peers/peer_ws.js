// SPDX-License-Identifier: MIT
//
// peer_ws.js: a Node.js WebSocket broadcast server (npm `ws`), the peer of
// lpgate's WebSocket benchmarks (scripts/bench.py).  Fed by PostgreSQL
// LISTEN (feed.js), it speaks what lpgate-bench's WebSocket clients send:
// Odoo 16+'s {"event_name": "subscribe", "data": {"channels": [...],
// "last": N}} (--proto=odoo-ws) and lpgate's plain API {"op": "subscribe",
// "channels": [...], "last": N} (--proto=ws, answered with {"op":
// "subscribe", "channels": [...]}), on any path.  A batch of rows goes to
// each socket as one text frame [{"id", "channel", "message"}, ...]; the
// frame of a channel is built once per batch and sent to each of its
// sockets (ws's broadcast idiom), one socket at a time.
//
//   node peer_ws.js --port=P --dsn=postgresql://... [--listen-dsn=...]
//
// Prints "listening on P" once ready.

'use strict';

const http = require('http');
const { WebSocketServer } = require('ws');
const feed = require('./feed');

function arg(name, dflt) {
    const a = process.argv.find((x) => x.startsWith('--' + name + '='));
    return a ? a.slice(name.length + 3) : dflt;
}

const subs = new Map(); // key -> Set of sockets

function frame(rows) {
    return '[' + rows.map((r) => '{"id":' + r.id + ',"channel":'
                          + r.channel + ',"message":' + r.message + '}')
        .join(',') + ']';
}

function broadcast(rows) {
    const byKey = new Map();
    for (const r of rows) {
        if (!subs.has(r.key)) {
            continue;
        }
        if (!byKey.has(r.key)) {
            byKey.set(r.key, []);
        }
        byKey.get(r.key).push(r);
    }
    if (byKey.size === 1) {
        // one channel (fanout): one frame for every socket
        const [[key, list]] = byKey;
        const data = frame(list);
        for (const ws of subs.get(key)) {
            ws.send(data);
        }
        return;
    }
    // several channels: each socket gets its rows in one frame
    const per = new Map();
    for (const [key, list] of byKey) {
        for (const ws of subs.get(key)) {
            if (!per.has(ws)) {
                per.set(ws, []);
            }
            per.get(ws).push(...list);
        }
    }
    for (const [ws, list] of per) {
        if (list.length > 1) {
            list.sort((a, b) => a.id - b.id);
        }
        ws.send(frame(list));
    }
}

async function main() {
    const port = Number(arg('port', '8090'));
    const bus = await feed.start({ dsn: arg('dsn'),
                                   listenDsn: arg('listen-dsn'),
                                   onRows: broadcast });
    const server = http.createServer((req, res) => {
        res.writeHead(404);
        res.end();
    });
    const wss = new WebSocketServer({ server, perMessageDeflate: false });

    wss.on('connection', (ws) => {
        ws.keys = new Set();
        ws.on('message', async (data) => {
            let m;
            try {
                m = JSON.parse(data);
            } catch (e) {
                ws.send('{"error":"not JSON"}');
                return;
            }
            const plain = m.op === 'subscribe';
            const d = plain ? m : (m.event_name === 'subscribe' ? m.data
                                                                : null);
            if (!d || !Array.isArray(d.channels)) {
                return;
            }
            const fresh = new Set();
            for (const c of d.channels) {
                const key = typeof c === 'string' ? c : feed.channelKey(
                    JSON.stringify(c));
                if (!ws.keys.has(key)) {
                    fresh.add(key);
                }
                ws.keys.add(key);
                if (!subs.has(key)) {
                    subs.set(key, new Set());
                }
                subs.get(key).add(ws);
            }
            if (plain) {
                ws.send(JSON.stringify({ op: 'subscribe',
                                         channels: [...ws.keys] }));
            }
            const last = Number(d.last);
            if (fresh.size > 0 && last > 0 && last < bus.cursor()) {
                const rows = await bus.since(fresh, last);
                if (rows.length > 0) {
                    ws.send(frame(rows));
                }
            }
        });
        ws.on('close', () => {
            for (const key of ws.keys) {
                const set = subs.get(key);
                set.delete(ws);
                if (set.size === 0) {
                    subs.delete(key);
                }
            }
        });
        ws.on('error', () => {});
    });

    server.listen(port, '127.0.0.1', () => {
        console.log('listening on ' + port);
    });
}

main().catch((e) => {
    console.error('peer_ws: ' + e.message);
    process.exit(1);
});
