// SPDX-License-Identifier: MIT
//
// feed.js: what the Node.js peers share: bus_bus rows, read as lpgate's
// master reads them.  Two connections LISTEN on the NOTIFY channel (imbus),
// in the listen database (postgres) and in the served one; the latter
// fetches `SELECT ... FROM bus_bus WHERE id > cursor ORDER BY id`
// once per NOTIFY batch (NOTIFYs that arrive during a fetch cost one more
// fetch, not one each), and hands the rows, in id order, to onRows.  The
// cursor starts at max(id).  A subscriber that names a `last` below what it
// was sent gets its rows from since() (one query).  No gap handling: the
// peers are what a small Node.js service would do, not lpgate.
//
// Channel keys: bus_bus.channel is JSON text (Odoo's json_dump); a string
// channel is its own key, a [db, name] pair is keyed by name.

'use strict';

const { Client } = require('pg');

function channelKey(text) {
    try {
        const c = JSON.parse(text);
        if (typeof c === 'string') {
            return c;
        }
        if (Array.isArray(c) && c.length >= 2 && typeof c[1] === 'string') {
            return c[1];
        }
        return JSON.stringify(c);
    } catch (e) {
        return text;
    }
}

const SELECT = 'SELECT id, channel, message FROM bus_bus';

// a libpq DSN, URL or "host=... port=... dbname=..." (as the bench gives)
function pgConfig(dsn) {
    if (/^postgres(ql)?:/.test(dsn)) {
        return { connectionString: dsn };
    }
    const names = { dbname: 'database', host: 'host', port: 'port',
                    user: 'user', password: 'password' };
    const c = {};
    for (const kv of dsn.trim().split(/\s+/)) {
        const i = kv.indexOf('=');
        if (i > 0 && names[kv.slice(0, i)]) {
            c[names[kv.slice(0, i)]] = kv.slice(i + 1);
        }
    }
    return c;
}

function row(r) {
    // the message text is sent as it is stored, as lpgate does
    return { id: Number(r.id), key: channelKey(r.channel),
             channel: r.channel, message: r.message };
}

async function start({ dsn, listenDsn, channel, onRows }) {
    const q = new Client(pgConfig(dsn));
    const l = new Client(pgConfig(listenDsn || dsn));
    await q.connect();
    await l.connect();
    let cursor = Number((await q.query(
        'SELECT coalesce(max(id), 0) AS m FROM bus_bus')).rows[0].m);
    let running = false;
    let again = false;

    async function fetch() {
        if (running) {
            again = true;
            return;
        }
        running = true;
        try {
            do {
                again = false;
                const res = await q.query(
                    SELECT + ' WHERE id > $1 ORDER BY id', [cursor]);
                if (res.rows.length > 0) {
                    cursor = Number(res.rows[res.rows.length - 1].id);
                    onRows(res.rows.map(row));
                }
            } while (again);
        } catch (e) {
            console.error('peer: fetch failed: ' + e.message);
        } finally {
            running = false;
        }
    }

    // Odoo 16+ notifies on "postgres", 8-15 and lpgate_send() in the
    // database itself: both are listened to
    const listen = 'LISTEN ' + JSON.stringify(channel || 'imbus');
    l.on('notification', () => { fetch(); });
    q.on('notification', () => { fetch(); });
    await l.query(listen);
    await q.query(listen);

    return {
        cursor: () => cursor,
        // rows of keys with last < id <= cursor, in id order
        since: async (keys, last) => {
            const res = await q.query(
                SELECT + ' WHERE id > $1 AND id <= $2 ORDER BY id',
                [last, cursor]);
            return res.rows.map(row).filter((r) => keys.has(r.key));
        },
    };
}

module.exports = { start, channelKey };
