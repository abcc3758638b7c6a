// SPDX-License-Identifier: MIT
//
// peer_socketio.js: a Node.js Socket.IO v4 server (npm `socket.io`), the
// peer of lpgate's Socket.IO benchmarks (scripts/bench.py).  Fed by
// PostgreSQL LISTEN (feed.js), it maps channels as lpgate's Socket.IO
// endpoint does: the client emits `subscribe` with a list of channels and
// an optional `last` (also accepted as the connect packet's auth.last, or
// as one object {channels, last}); every row arrives as an event
// `notification` with {id, channel, message}.  A channel is a room; a
// batch's rows are emitted to their rooms (io.to(key).emit: the packet is
// encoded once per room and written to each socket).
//
//   node peer_socketio.js --port=P --dsn=postgresql://... [--listen-dsn=...]
//
// Prints "listening on P" once ready.

'use strict';

const http = require('http');
const { Server } = require('socket.io');
const feed = require('./feed');

function arg(name, dflt) {
    const a = process.argv.find((x) => x.startsWith('--' + name + '='));
    return a ? a.slice(name.length + 3) : dflt;
}

function note(r) {
    return { id: r.id, channel: JSON.parse(r.channel),
             message: JSON.parse(r.message) };
}

async function main() {
    const port = Number(arg('port', '8091'));
    const server = http.createServer();
    // lpgate's route, which lpgate-bench --proto=socketio asks for
    const io = new Server(server, { path: arg('path',
                                              '/longpolling/socket.io/'),
                                    cors: { origin: true },
                                    perMessageDeflate: false,
                                    httpCompression: false });
    const bus = await feed.start({
        dsn: arg('dsn'),
        listenDsn: arg('listen-dsn'),
        onRows: (rows) => {
            for (const r of rows) {
                io.to(r.key).emit('notification', note(r));
            }
        },
    });

    io.on('connection', (socket) => {
        const auth = socket.handshake.auth || {};
        socket.on('subscribe', async (a, b) => {
            let channels = a;
            let last = b;
            if (a && !Array.isArray(a) && typeof a === 'object') {
                channels = a.channels;
                last = a.last;
            }
            if (last && typeof last === 'object') {
                last = last.last;
            }
            if (last === undefined) {
                last = auth.last;
            }
            if (!Array.isArray(channels)) {
                socket.emit('error', 'subscribe: channels must be a list');
                return;
            }
            const fresh = new Set();
            for (const c of channels) {
                const key = typeof c === 'string' ? c : feed.channelKey(
                    JSON.stringify(c));
                if (!socket.rooms.has(key)) {
                    fresh.add(key);
                }
                socket.join(key);
            }
            last = Number(last);
            if (fresh.size > 0 && last > 0 && last < bus.cursor()) {
                for (const r of await bus.since(fresh, last)) {
                    socket.emit('notification', note(r));
                }
            }
        });
    });

    server.listen(port, '127.0.0.1', () => {
        console.log('listening on ' + port);
    });
}

main().catch((e) => {
    console.error('peer_socketio: ' + e.message);
    process.exit(1);
});
