// Tests of contrib/js/lpgate.js with node's test runner, against a real
// lpgate when LPGATE_URL is set (tests/integration/test_js.py starts one
// with the send route open for channels "js-*"), and a closed port for the
// offline paths.  Run: node --test contrib/js/test/
import { test } from 'node:test';
import assert from 'node:assert/strict';
import LPGate from '../lpgate.mjs';

const BASE = process.env.LPGATE_URL;   // e.g. http://127.0.0.1:8072
const CLOSED = process.env.LPGATE_CLOSED_URL || 'http://127.0.0.1:1';

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

// an in-process Web Locks stand-in: the first requester holds the lock
// until its callback's promise settles, then the next one gets it
function fakeLocks() {
    const queue = [];
    let held = false;
    function next() {
        if (held || !queue.length) return;
        held = true;
        const cb = queue.shift();
        Promise.resolve(cb()).finally(() => { held = false; next(); });
    }
    return { request(name, cb) { queue.push(cb); next(); } };
}

test('backoff doubles, caps and jitters', () => {
    const half = () => 0.5;
    assert.equal(LPGate.backoff(1, 1000, 30000, half), 750);
    assert.equal(LPGate.backoff(2, 1000, 30000, half), 1500);
    assert.equal(LPGate.backoff(10, 1000, 30000, half), 22500);
    assert.equal(LPGate.backoff(3, 1000, 30000, () => 0), 2000);
    assert.equal(LPGate.backoff(3, 1000, 30000, () => 1), 4000);
});

test('unreachable server: offline, retried with backoff', async () => {
    const delays = [];
    const statuses = [];
    const c = new LPGate.Client({
        url: CLOSED + '/longpolling/poll', channels: ['x'], tabName: null,
        random: () => 0.5,
        setTimeout: (fn, ms) => { if (ms < 60000) delays.push(ms);
                                  return setTimeout(fn, 1); },
    });
    c.on('status', (s) => statuses.push(s));
    c.start();
    await waitFor(() => delays.length >= 3);
    c.stop();
    assert.deepEqual(delays.slice(0, 3), [750, 1500, 3000]);
    assert.equal(statuses[0], 'connecting');
    assert.ok(statuses.includes('offline'));
    assert.ok(!statuses.includes('online'));
});

test('receives notifications and keeps last', { skip: !BASE }, async () => {
    const got = [];
    const c = new LPGate.Client({ url: BASE + '/longpolling/poll',
                                  channels: ['js-a'], tabName: null });
    c.on('notification', (n) => got.push(n));
    c.start();
    await waitFor(() => c.status === 'online' || c.status === 'connecting');
    await new Promise((r) => setTimeout(r, 300));
    await send('js-a', { n: 1 });
    await send('js-a', { n: 2 });
    await waitFor(() => got.length >= 2);
    assert.deepEqual(got.map((n) => n.message), [{ n: 1 }, { n: 2 }]);
    assert.equal(c.last, got[1].id);
    assert.equal(c.status, 'online');

    // a new channel: the poll restarts with it, nothing is lost
    c.subscribe('js-b');
    await new Promise((r) => setTimeout(r, 300));
    await send('js-b', 'b');
    await waitFor(() => got.length >= 3);
    assert.equal(got[2].channel, 'js-b');
    c.stop();
    assert.equal(c.status, 'offline');
});

test('one tab polls, the others receive through BroadcastChannel',
     { skip: !BASE }, async () => {
    const locks = fakeLocks();
    const name = 'lpgate-test-' + Date.now();
    const polls = [];
    const countingFetch = (url, init) => { polls.push(url); return fetch(url, init); };
    const a = new LPGate.Client({ url: BASE + '/longpolling/poll',
        channels: ['js-tab-a'], tabName: name, locks, fetch: countingFetch });
    const b = new LPGate.Client({ url: BASE + '/longpolling/poll',
        channels: ['js-tab-b'], tabName: name, locks, fetch: countingFetch });
    const gotA = [], gotB = [];
    a.on('notification', (n) => gotA.push(n));
    b.on('notification', (n) => gotB.push(n));
    a.start();
    b.start();
    await waitFor(() => a.leader);
    assert.equal(b.leader, false);
    await new Promise((r) => setTimeout(r, 400));
    await send('js-tab-b', 'for b');
    await send('js-tab-a', 'for a');
    await waitFor(() => gotA.length >= 1 && gotB.length >= 1);
    assert.deepEqual(gotB.map((n) => n.message), ['for b']);
    assert.deepEqual(gotA.map((n) => n.message), ['for a']);
    assert.equal(b.status, 'online');   // relayed by the leader

    // the leader tab closes: the other takes over the polling
    a.stop();
    await waitFor(() => b.leader);
    await new Promise((r) => setTimeout(r, 300));
    await send('js-tab-b', 'after');
    await waitFor(() => gotB.length >= 2);
    assert.equal(gotB[1].message, 'after');
    b.stop();
});
