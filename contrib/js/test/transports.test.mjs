// The transports of contrib/js/lpgate.js against a real lpgate
// (tests/integration/test_js.py sets LPGATE_URL): WebSocket (npm ws) and
// Server-Sent Events (npm eventsource), as node 20 has neither built in;
// the fallback from one to the next, resuming from `last`.
// Run: node --test contrib/js/test/
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { WebSocket } from 'ws';
import { EventSource } from 'eventsource';
import LPGate from '../lpgate.mjs';

const BASE = process.env.LPGATE_URL;   // e.g. http://127.0.0.1:8072
const skip = !BASE;

function send(channel, message) {
    return fetch(BASE + '/longpolling/send', {
        method: 'POST', headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ jsonrpc: '2.0', method: 'call', id: 1,
                               params: { channel, message } }),
    }).then((r) => r.json()).then((a) => {
        assert.equal(a.error, undefined, JSON.stringify(a.error));
    });
}

function waitFor(pred, ms = 10000) {
    const t0 = Date.now();
    return new Promise((resolve, reject) => {
        (function check() {
            if (pred()) return resolve();
            if (Date.now() - t0 > ms) return reject(new Error('timed out'));
            setTimeout(check, 20);
        })();
    });
}

const pause = (ms) => new Promise((r) => setTimeout(r, ms));

function client(channels, extra) {
    return new LPGate.Client(Object.assign({
        url: BASE + '/longpolling/poll', channels, tabName: null,
        WebSocket, EventSource, retryBaseMs: 100, retryMaxMs: 400,
    }, extra || {}));
}

for (const transport of ['websocket', 'sse', 'poll']) {
    test(`${transport}: receives, re-subscribes, resumes from last`,
         { skip }, async () => {
        const ch = `js-${transport}-` + Date.now();
        const got = [];
        const statuses = [];
        const c = client([ch + 'a'], { transport });
        c.on('notification', (n) => got.push(n));
        c.on('status', (s, t) => statuses.push(s + ':' + t));
        c.start();
        await waitFor(() => c.status === 'online' || transport === 'poll');
        await pause(300);
        await send(ch + 'a', { n: 1 });
        await send(ch + 'a', { n: 2 });
        await waitFor(() => got.length >= 2);
        assert.deepEqual(got.map((n) => n.message), [{ n: 1 }, { n: 2 }]);
        assert.equal(c.last, got[1].id);
        assert.equal(c.transport, transport);
        assert.ok(statuses.includes('online:' + transport), statuses);

        // a second channel: the transport takes it, nothing lost
        c.subscribe(ch + 'b');
        await pause(300);
        await send(ch + 'b', 'b');
        await waitFor(() => got.length >= 3);
        assert.equal(got[2].channel, ch + 'b');
        c.stop();

        // published while stopped, then a new client from the old last:
        // exactly the missed ones, in order
        const last = c.last;
        await send(ch + 'a', 'missed 1');
        await send(ch + 'b', 'missed 2');
        const again = [];
        const d = client([ch + 'a', ch + 'b'], { transport, last });
        d.on('notification', (n) => again.push(n));
        d.start();
        await waitFor(() => again.length >= 2);
        await pause(300);
        d.stop();
        assert.deepEqual(again.map((n) => n.message),
                         ['missed 1', 'missed 2']);
        assert.ok(again[0].id > last && again[1].id > again[0].id);
    });
}

test('a websocket that cannot upgrade gives way to SSE, then long polling',
     { skip }, async () => {
    const ch = 'js-fallback-' + Date.now();
    const got = [];
    const transports = [];
    // the upgrade answered 404, as behind a proxy without /ws: the client
    // falls back to SSE at once
    const c = client([ch], { wsUrl: BASE.replace(/^http/, 'ws')
                                    + '/longpolling/no-such-ws' });
    c.on('notification', (n) => got.push(n));
    c.on('transport', (t) => transports.push(t));
    c.start();
    await waitFor(() => c.status === 'online');
    assert.equal(c.transport, 'sse');
    await pause(200);
    await send(ch, 'over sse');
    await waitFor(() => got.length >= 1);
    c.stop();
    assert.deepEqual(transports, ['websocket', 'sse']);

    // neither WebSocket nor SSE reachable: long polling
    const e = client([ch], {
        wsUrl: BASE.replace(/^http/, 'ws') + '/longpolling/no-such-ws',
        sseUrl: BASE + '/longpolling/no-such-sse', last: c.last });
    const got2 = [];
    e.on('notification', (n) => got2.push(n));
    e.start();
    await waitFor(() => e.transport === 'poll');
    await pause(300);
    await send(ch, 'over poll');
    await waitFor(() => got2.length >= 1);
    e.stop();
    assert.deepEqual(got2.map((n) => n.message), ['over poll']);
});

test('a dropped websocket that cannot come back: SSE resumes from last, '
     + 'nothing lost or repeated', { skip }, async () => {
    const ch = 'js-switch-' + Date.now();
    const sockets = [];
    let broken = false;
    // the runtime's WebSocket, until the "proxy" starts stripping Upgrade
    class FlakyWebSocket extends WebSocket {
        constructor(url) {
            super(broken ? url.replace('/ws', '/no-such-ws') : url);
            sockets.push(this);
        }
    }
    const got = [];
    const c = client([ch], { WebSocket: FlakyWebSocket });
    c.on('notification', (n) => got.push(n));
    c.start();
    await waitFor(() => c.status === 'online');
    assert.equal(c.transport, 'websocket');
    await pause(200);
    await send(ch, 1);
    await waitFor(() => got.length >= 1);

    broken = true;
    sockets[0].terminate();              // the connection drops
    await send(ch, 2);                   // published in the gap
    await send(ch, 3);
    await waitFor(() => c.transport === 'sse' && c.status === 'online');
    await send(ch, 4);
    await waitFor(() => got.length >= 4);
    await pause(300);
    c.stop();
    assert.deepEqual(got.map((n) => n.message), [1, 2, 3, 4]);
});

test('a websocket that worked and is refused for a moment (a restart) is '
     + 'tried again before SSE', { skip }, async () => {
    const ch = 'js-again-' + Date.now();
    const sockets = [];
    let refuse = 0;
    // the runtime's WebSocket; the next `refuse` upgrades get a 404
    class RestartingWebSocket extends WebSocket {
        constructor(url) {
            super(refuse > 0 ? url.replace('/ws', '/no-such-ws') : url);
            refuse = Math.max(0, refuse - 1);
            sockets.push(this);
        }
    }
    const got = [];
    const transports = [];
    const c = client([ch], { WebSocket: RestartingWebSocket });
    c.on('notification', (n) => got.push(n));
    c.on('transport', (t) => transports.push(t));
    c.start();
    await waitFor(() => c.status === 'online');
    await pause(200);
    await send(ch, 1);
    await waitFor(() => got.length >= 1);

    refuse = 2;
    sockets[0].terminate();              // the connection drops
    await send(ch, 2);                   // published in the gap
    await waitFor(() => sockets.length >= 4 && c.status === 'online');
    await send(ch, 3);
    await waitFor(() => got.length >= 3);
    c.stop();
    assert.deepEqual(transports, ['websocket']);
    assert.deepEqual(got.map((n) => n.message), [1, 2, 3]);
});
