/*
 * SPDX-License-Identifier: MIT
 *
 * lpgate.js: a dependency-free client for lpgate (and Odoo's
 * /longpolling/poll).  Classic script: sets globalThis.LPGate; CommonJS:
 * module.exports; ES module: import LPGate from './lpgate.mjs'.
 *
 *   const bus = new LPGate.Client({ url: '/longpolling/poll',
 *                                   channels: ['room-1'] });
 *   bus.on('notification', (n) => console.log(n.id, n.channel, n.message));
 *   bus.on('status', (s, transport) => icon.className = s);
 *   bus.start();
 *
 * Transports, in the order of `transports` (default: lpgate's plain
 * WebSocket API <base>/ws, then Server-Sent Events <base>/sse, then long
 * polling <base>/poll; <base> is `url` without its /poll): a transport
 * that fails before it ever connected (no WebSocket in the runtime, a
 * proxy that strips Upgrade, a 404) gives way to the next one at once;
 * when every one failed, the client waits (exponential backoff with
 * jitter) and starts again from the first.  A transport that worked and
 * dropped is tried again first, three times with the backoff before it
 * gives way (a server restarting refuses for a moment).  Each switch resumes from `last`, the
 * largest id seen, so nothing is lost; ids already delivered are dropped,
 * so nothing arrives twice.  `transport: 'sse'` forces one.  The status
 * event reports online|connecting|offline and the transport in use
 * (client.transport).
 *
 * A channel change re-subscribes (WebSocket), reopens the stream (SSE) or
 * aborts and re-polls (long polling).  When the browser has
 * BroadcastChannel and Web Locks, one tab per browser holds the
 * connection (the lock holder) while the other tabs receive through
 * BroadcastChannel.
 */

(function (root) {
    'use strict';

    var STATUS = ['offline', 'connecting', 'online'];
    var TRANSPORTS = ['websocket', 'sse', 'poll'];
    var SEEN_MAX = 1024;    /* ids remembered to drop repeats */

    /* the delay before retry number `attempt` (1, 2, ...), with jitter */
    /* a transport that opened once is tried this many times in a row
     * (with the backoff) before the next one */
    var WORKED_RETRIES = 3;

    function backoff(attempt, baseMs, maxMs, random) {
        var d = Math.min(maxMs, baseMs * Math.pow(2, attempt - 1));
        return Math.round(d * (0.5 + random() / 2));
    }

    /* an http(s) or root-relative URL as ws(s) */
    function wsUrl(url) {
        var loc = root.location;
        if (/^https?:/.test(url)) {
            return url.replace(/^http/, 'ws');
        }
        if (url.charAt(0) === '/' && loc) {
            return (loc.protocol === 'https:' ? 'wss://' : 'ws://')
                + loc.host + url;
        }
        return url;
    }

    function Client(options) {
        var o = options || {};
        this.url = o.url || '/longpolling/poll';
        this.base = this.url.replace(/\/poll\/?$/, '');
        this.wsUrl = o.wsUrl || wsUrl(this.base + '/ws');
        this.sseUrl = o.sseUrl || this.base + '/sse';
        this.db = o.db || null;
        this.channels = (o.channels || []).slice();
        this.last = o.last || 0;
        this.timeoutMs = o.timeoutMs || 60000;
        this.retryBaseMs = o.retryBaseMs || 1000;
        this.retryMaxMs = o.retryMaxMs || 30000;
        this.fetch = o.fetch || (root.fetch && root.fetch.bind(root));
        this.WebSocket = o.WebSocket !== undefined ? o.WebSocket
            : root.WebSocket || null;
        this.EventSource = o.EventSource !== undefined ? o.EventSource
            : root.EventSource || null;
        this.transports = this.usable(o.transport ? [o.transport]
                                      : o.transports || TRANSPORTS);
        this.random = o.random || Math.random;
        this.setTimeout = o.setTimeout || root.setTimeout.bind(root);
        this.clearTimeout = o.clearTimeout || root.clearTimeout.bind(root);
        this.tabName = o.tabName === undefined ? 'lpgate' : o.tabName;
        this.locks = o.locks !== undefined ? o.locks
            : (root.navigator && root.navigator.locks) || null;
        this.BroadcastChannel = o.BroadcastChannel !== undefined
            ? o.BroadcastChannel : root.BroadcastChannel || null;
        this.status = 'offline';
        this.transport = null;  /* the one in use, or trying */
        this.ti = 0;            /* its index in transports */
        this.tried = 0;         /* transports failed in a row, unopened */
        this.worked = {};       /* transports that opened once */
        this.retries = 0;       /* unopened tries in a row of one that did */
        this.attempt = 0;
        this.running = false;
        this.leader = false;
        this.listeners = { notification: [], status: [], error: [],
                           transport: [] };
        this.seq = 0;           /* connection generation */
        this.rpcId = 0;
        this.conn = null;       /* the running transport's handle */
        this.timer = null;
        this.seen = {};
        this.seenQueue = [];
        this.peers = {};        /* follower tabs' channels, by tab id */
        this.tabId = Math.floor(this.random() * 1e12).toString(36);
        this.bc = null;
        this.releaseLock = null;
    }

    /* the transports this runtime can run, in the given order */
    Client.prototype.usable = function (list) {
        var self = this;
        return list.filter(function (t) {
            return (t === 'websocket' && self.WebSocket)
                || (t === 'sse' && self.EventSource)
                || (t === 'poll' && self.fetch);
        });
    };

    Client.prototype.on = function (event, fn) {
        this.listeners[event].push(fn);
        return this;
    };

    Client.prototype.emit = function (event, arg, arg2) {
        this.listeners[event].forEach(function (fn) { fn(arg, arg2); });
    };

    Client.prototype.setStatus = function (s) {
        if (STATUS.indexOf(s) < 0 || s === this.status) {
            return;
        }
        this.status = s;
        this.emit('status', s, this.transport);
        if (this.bc && this.leader) {
            this.bc.postMessage({ type: 'status', status: s,
                                  transport: this.transport });
        }
    };

    /* every channel this tab, and as leader its followers, want */
    Client.prototype.allChannels = function () {
        var set = {}, out = [], self = this;
        this.channels.forEach(function (c) { set[c] = 1; });
        Object.keys(this.peers).forEach(function (t) {
            self.peers[t].forEach(function (c) { set[c] = 1; });
        });
        Object.keys(set).forEach(function (c) { out.push(c); });
        return out.sort();
    };

    Client.prototype.subscribe = function (channels) {
        var self = this;
        [].concat(channels).forEach(function (c) {
            if (self.channels.indexOf(c) < 0) {
                self.channels.push(c);
            }
        });
        this.changed();
    };

    Client.prototype.unsubscribe = function (channels) {
        var drop = [].concat(channels);
        this.channels = this.channels.filter(function (c) {
            return drop.indexOf(c) < 0;
        });
        this.changed();
    };

    /* the channel list changed: tell the leader, or the transport */
    Client.prototype.changed = function () {
        if (this.bc && !this.leader) {
            this.bc.postMessage({ type: 'channels', tab: this.tabId,
                                  channels: this.channels });
            return;
        }
        if (this.running && this.conn) {
            this.conn.changed(this.allChannels());
        }
    };

    Client.prototype.start = function () {
        var self = this;
        if (this.running) {
            return this;
        }
        this.running = true;

        if (!this.tabName || !this.BroadcastChannel || !this.locks) {
            this.leader = true;
            this.connect();
            return this;
        }

        /* one tab per browser connects: whoever holds the lock */
        this.bc = new this.BroadcastChannel(this.tabName);
        this.bc.onmessage = function (ev) { self.onTabMessage(ev.data); };
        this.bc.postMessage({ type: 'channels', tab: this.tabId,
                              channels: this.channels });
        this.locks.request(this.tabName, function () {
            if (!self.running) {
                return undefined;
            }
            self.leader = true;
            self.bc.postMessage({ type: 'hello' });
            self.connect();
            return new Promise(function (resolve) {
                self.releaseLock = resolve;
            });
        });
        return this;
    };

    Client.prototype.stop = function () {
        this.running = false;
        this.seq++;
        if (this.conn) {
            this.conn.close();
            this.conn = null;
        }
        if (this.timer !== null) {
            this.clearTimeout(this.timer);
            this.timer = null;
        }
        if (this.bc) {
            if (!this.leader) {
                this.bc.postMessage({ type: 'bye', tab: this.tabId });
            }
            this.bc.close();
            this.bc = null;
        }
        if (this.releaseLock) {
            this.releaseLock();
            this.releaseLock = null;
        }
        this.leader = false;
        this.setStatus('offline');
    };

    Client.prototype.onTabMessage = function (m) {
        if (m.type === 'channels' && this.leader) {
            this.peers[m.tab] = m.channels;
            this.changed();
        } else if (m.type === 'bye' && this.leader) {
            delete this.peers[m.tab];
        } else if (m.type === 'hello' && !this.leader) {
            /* a new leader: tell it what this tab wants */
            this.bc.postMessage({ type: 'channels', tab: this.tabId,
                                  channels: this.channels });
        } else if (m.type === 'notification' && !this.leader) {
            this.deliver(m.notification);
        } else if (m.type === 'status' && !this.leader) {
            this.transport = m.transport || null;
            this.setStatus(m.status);
        }
    };

    /* a notification from any transport, or relayed by the leader */
    Client.prototype.deliver = function (n) {
        if (typeof n.id === 'number') {
            if (this.seen[n.id]) {
                return;     /* a replay after a switch or a re-subscribe */
            }
            this.seen[n.id] = 1;
            this.seenQueue.push(n.id);
            if (this.seenQueue.length > SEEN_MAX) {
                delete this.seen[this.seenQueue.shift()];
            }
            if (n.id > this.last) {
                this.last = n.id;
            }
        }
        if (this.bc && this.leader) {
            this.bc.postMessage({ type: 'notification', notification: n });
        }
        if (n.channel === undefined
            || this.channels.indexOf(n.channel) >= 0) {
            this.emit('notification', n);
        }
    };

    /* runs transports[ti] */
    Client.prototype.connect = function () {
        var self = this, id, t;

        if (!this.running || !this.leader) {
            return;
        }
        if (!this.transports.length) {
            this.emit('error', new Error('no usable transport'));
            return;
        }
        id = ++this.seq;
        t = this.transports[this.ti];
        if (t !== this.transport) {
            this.transport = t;
            this.emit('transport', t);
        }
        if (this.status === 'offline') {
            this.setStatus('connecting');
        }
        this.conn = this['open_' + t]({
            opened: function () {
                if (id !== self.seq) { return; }
                self.attempt = 0;
                self.tried = 0;
                self.retries = 0;
                self.worked[t] = true;
                self.setStatus('online');
            },
            failed: function (err, wasOpen) {
                if (id !== self.seq) { return; }
                self.failed(err, wasOpen);
            },
            deliver: function (n) {
                if (id === self.seq) { self.deliver(n); }
            },
        });
    };

    /*
     * The transport ended: one that never opened gives way to the next at
     * once, until every one failed in a row; then, or after a drop, wait.
     */
    Client.prototype.failed = function (err, wasOpen) {
        var self = this;

        if (this.conn) {
            this.conn.close();
            this.conn = null;
        }
        if (!this.running) {
            return;
        }
        this.emit('error', err);
        if (!wasOpen && this.worked[this.transport]
                && ++this.retries < WORKED_RETRIES) {
            /* it worked before: the server is more likely restarting (a
             * websocket refused while its database connects, say) than
             * the way to it broken; wait and try it again */
        } else if (!wasOpen && ++this.tried < this.transports.length) {
            this.retries = 0;
            this.ti = (this.ti + 1) % this.transports.length;
            this.connect();
            return;
        } else if (!wasOpen) {
            this.retries = 0;
            this.tried = 0;
            this.ti = 0;
        }
        this.attempt++;
        this.setStatus('offline');
        this.timer = this.setTimeout(function () {
            self.timer = null;
            self.connect();
        }, backoff(this.attempt, this.retryBaseMs, this.retryMaxMs,
                   this.random));
    };

    /* lpgate's plain WebSocket API: subscribe/unsubscribe, batches */
    Client.prototype.open_websocket = function (cb) {
        var self = this, open = false, closed = false, ws, subscribed;

        function sub(channels) {
            var add = channels.filter(function (c) {
                return subscribed.indexOf(c) < 0;
            });
            var drop = subscribed.filter(function (c) {
                return channels.indexOf(c) < 0;
            });
            if (drop.length) {
                ws.send(JSON.stringify({ op: 'unsubscribe', channels: drop }));
            }
            if (add.length) {
                ws.send(JSON.stringify(self.subscribeOp(add)));
            }
            subscribed = channels.slice();
        }

        try {
            ws = new this.WebSocket(this.wsUrl
                + (this.db ? '?db=' + encodeURIComponent(this.db) : ''));
        } catch (e) {
            cb.failed(e, false);
            return { close: function () {}, changed: function () {} };
        }
        subscribed = [];
        ws.onopen = function () {
            open = true;
            sub(self.allChannels());
            cb.opened();
        };
        ws.onmessage = function (ev) {
            var m;
            try {
                m = JSON.parse(ev.data);
            } catch (e) {
                return;
            }
            if (Array.isArray(m)) {
                m.forEach(cb.deliver);
            } else if (m && m.error) {
                self.emit('error', new Error(m.error));
            }
        };
        ws.onclose = function (ev) {
            if (!closed) {
                closed = true;
                cb.failed(new Error('websocket closed'
                                    + (ev && ev.code ? ' ' + ev.code : '')),
                          open);
            }
        };
        ws.onerror = function () {};
        return {
            close: function () {
                closed = true;
                ws.onopen = ws.onmessage = ws.onclose = null;
                try { ws.close(); } catch (e) { /* not open yet */ }
            },
            changed: function (channels) {
                if (open) { sub(channels); }
            },
        };
    };

    Client.prototype.subscribeOp = function (channels) {
        var op = { op: 'subscribe', channels: channels, last: this.last };
        if (this.db) {
            op.db = this.db;
        }
        return op;
    };

    /* Server-Sent Events: reopened from `last` on a channel change */
    Client.prototype.open_sse = function (cb) {
        var self = this, es = null, open = false;

        function start(channels) {
            var q = '?channels=' + channels.map(encodeURIComponent).join(',')
                + '&last=' + self.last
                + (self.db ? '&db=' + encodeURIComponent(self.db) : '');
            if (es) {
                es.close();
            }
            es = new self.EventSource(self.sseUrl + q);
            es.onopen = function () {
                if (!open) {
                    open = true;
                    cb.opened();
                }
            };
            es.onmessage = function (ev) {
                var d;
                try {
                    d = JSON.parse(ev.data);
                } catch (e) {
                    return;
                }
                cb.deliver({ id: Number(ev.lastEventId), channel: d.channel,
                             message: d.message });
            };
            /* EventSource would retry on its own with Last-Event-ID; the
             * client retries instead, from its own last */
            es.onerror = function () {
                es.close();
                cb.failed(new Error('event stream failed'), open);
            };
        }

        try {
            start(this.allChannels());
        } catch (e) {
            cb.failed(e, false);
        }
        return {
            close: function () { if (es) { es.close(); } },
            changed: function (channels) { start(channels); },
        };
    };

    /* long polling: Odoo's JSON-RPC /poll, one request at a time */
    Client.prototype.open_poll = function (cb) {
        var self = this, abort = null, done = false, open = false;

        function poll() {
            var body, timer, mine, url;
            if (done) {
                return;
            }
            mine = abort = typeof AbortController !== 'undefined'
                ? new AbortController() : null;
            url = self.url + (self.db ? '?db=' + encodeURIComponent(self.db)
                                      : '');
            body = JSON.stringify({ jsonrpc: '2.0', method: 'call',
                                    id: ++self.rpcId,
                                    params: { channels: self.allChannels(),
                                              last: self.last,
                                              options: {} } });
            timer = self.setTimeout(function () {
                if (mine) { mine.abort(); }
            }, self.timeoutMs);
            self.fetch(url, { method: 'POST', body: body,
                              headers: { 'Content-Type': 'application/json' },
                              signal: mine ? mine.signal : undefined })
                .then(function (r) {
                    if (r.status !== 200) {
                        throw new Error('HTTP ' + r.status);
                    }
                    return r.json();
                })
                .then(function (answer) {
                    self.clearTimeout(timer);
                    if (done) { return; }
                    if (answer.error) {
                        throw new Error(answer.error.data
                            ? answer.error.data.message
                            : answer.error.message);
                    }
                    if (!open) {
                        open = true;
                        cb.opened();
                    }
                    (answer.result || []).forEach(cb.deliver);
                    poll();
                })
                .catch(function (err) {
                    self.clearTimeout(timer);
                    if (done) {
                        return;
                    }
                    if (mine && mine.restart) {
                        /* the channels changed: poll with the new list */
                        poll();
                        return;
                    }
                    done = true;
                    cb.failed(err, open);
                });
        }

        poll();
        return {
            close: function () {
                done = true;
                if (abort) { abort.abort(); }
            },
            changed: function () {
                if (abort) {
                    abort.restart = true;
                    abort.abort();
                }
            },
        };
    };

    var LPGate = { Client: Client, backoff: backoff, STATUS: STATUS,
                   TRANSPORTS: TRANSPORTS };

    if (typeof module === 'object' && module.exports) {
        module.exports = LPGate;
    }
    root.LPGate = LPGate;
})(typeof globalThis !== 'undefined' ? globalThis : this);
