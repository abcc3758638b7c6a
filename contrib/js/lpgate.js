/*
 * SPDX-License-Identifier: MIT
 *
 * lpgate.js: a dependency-free long-polling client for lpgate (and Odoo's
 * /longpolling/poll).  Classic script: sets globalThis.LPGate; CommonJS:
 * module.exports; ES module: import LPGate from './lpgate.mjs'.
 *
 *   const bus = new LPGate.Client({ url: '/longpolling/poll',
 *                                   channels: ['room-1'] });
 *   bus.on('notification', (n) => console.log(n.id, n.channel, n.message));
 *   bus.on('status', (s) => icon.className = s);  // offline|connecting|online
 *   bus.start();
 *
 * It keeps `last` (the largest id seen), re-polls at once after an answer,
 * retries after errors with exponential backoff and jitter, aborts and
 * re-polls when the channel list changes, and, when the browser has
 * BroadcastChannel and Web Locks, lets one tab per browser poll (the lock
 * holder) while the other tabs receive through BroadcastChannel.
 */

(function (root) {
    'use strict';

    var STATUS = ['offline', 'connecting', 'online'];

    /* the delay before retry number `attempt` (1, 2, ...), with jitter */
    function backoff(attempt, baseMs, maxMs, random) {
        var d = Math.min(maxMs, baseMs * Math.pow(2, attempt - 1));
        return Math.round(d * (0.5 + random() / 2));
    }

    function Client(options) {
        var o = options || {};
        this.url = o.url || '/longpolling/poll';
        this.db = o.db || null;
        this.channels = (o.channels || []).slice();
        this.last = o.last || 0;
        this.timeoutMs = o.timeoutMs || 60000;
        this.retryBaseMs = o.retryBaseMs || 1000;
        this.retryMaxMs = o.retryMaxMs || 30000;
        this.fetch = o.fetch || (root.fetch && root.fetch.bind(root));
        this.random = o.random || Math.random;
        this.setTimeout = o.setTimeout || root.setTimeout.bind(root);
        this.clearTimeout = o.clearTimeout || root.clearTimeout.bind(root);
        this.tabName = o.tabName === undefined ? 'lpgate' : o.tabName;
        this.locks = o.locks !== undefined ? o.locks
            : (root.navigator && root.navigator.locks) || null;
        this.BroadcastChannel = o.BroadcastChannel !== undefined
            ? o.BroadcastChannel : root.BroadcastChannel || null;
        this.status = 'offline';
        this.attempt = 0;
        this.running = false;
        this.leader = false;
        this.listeners = { notification: [], status: [], error: [] };
        this.seq = 0;
        this.abort = null;
        this.restarting = false;
        this.timer = null;
        this.peers = {};        /* follower tabs' channels, by tab id */
        this.tabId = Math.floor(this.random() * 1e12).toString(36);
        this.bc = null;
        this.releaseLock = null;
    }

    Client.prototype.on = function (event, fn) {
        this.listeners[event].push(fn);
        return this;
    };

    Client.prototype.emit = function (event, arg) {
        this.listeners[event].forEach(function (fn) { fn(arg); });
    };

    Client.prototype.setStatus = function (s) {
        if (STATUS.indexOf(s) < 0 || s === this.status) {
            return;
        }
        this.status = s;
        this.emit('status', s);
        if (this.bc && this.leader) {
            this.bc.postMessage({ type: 'status', status: s });
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

    /* like Odoo's client: abort the pending poll, poll with the new list */
    Client.prototype.changed = function () {
        if (this.bc && !this.leader) {
            this.bc.postMessage({ type: 'channels', tab: this.tabId,
                                  channels: this.channels });
            return;
        }
        this.restart();
    };

    /* abort the running poll on purpose: the next one starts at once */
    Client.prototype.restart = function () {
        if (this.running && this.abort) {
            this.restarting = true;
            this.abort.abort();
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
            this.poll();
            return this;
        }

        /* one tab per browser polls: whoever holds the lock */
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
            self.poll();
            return new Promise(function (resolve) {
                self.releaseLock = resolve;
            });
        });
        return this;
    };

    Client.prototype.stop = function () {
        this.running = false;
        if (this.abort) {
            this.abort.abort();
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
            this.restart();
        } else if (m.type === 'bye' && this.leader) {
            delete this.peers[m.tab];
        } else if (m.type === 'hello' && !this.leader) {
            /* a new leader: tell it what this tab wants */
            this.bc.postMessage({ type: 'channels', tab: this.tabId,
                                  channels: this.channels });
        } else if (m.type === 'notification' && !this.leader) {
            this.deliver(m.notification);
        } else if (m.type === 'status' && !this.leader) {
            this.setStatus(m.status);
        }
    };

    Client.prototype.deliver = function (n) {
        if (n.id > this.last) {
            this.last = n.id;
        }
        if (n.channel === undefined
            || this.channels.indexOf(n.channel) >= 0) {
            this.emit('notification', n);
        }
    };

    Client.prototype.poll = function () {
        var self = this, body, abort, timer, url, id;

        if (!this.running || !this.leader) {
            return;
        }

        id = ++this.seq;
        abort = this.abort = typeof AbortController !== 'undefined'
            ? new AbortController() : null;
        url = this.url + (this.db ? '?db=' + encodeURIComponent(this.db) : '');
        body = JSON.stringify({ jsonrpc: '2.0', method: 'call', id: id,
                                params: { channels: this.allChannels(),
                                          last: this.last, options: {} } });
        if (this.status === 'offline') {
            this.setStatus('connecting');
        }
        timer = this.setTimeout(function () {
            if (abort) { abort.abort(); }
        }, this.timeoutMs);

        this.fetch(url, { method: 'POST', body: body,
                          headers: { 'Content-Type': 'application/json' },
                          signal: abort ? abort.signal : undefined })
            .then(function (r) {
                if (r.status !== 200) {
                    throw new Error('HTTP ' + r.status);
                }
                return r.json();
            })
            .then(function (answer) {
                self.clearTimeout(timer);
                if (answer.error) {
                    throw new Error(answer.error.data
                        ? answer.error.data.message : answer.error.message);
                }
                self.attempt = 0;
                self.setStatus('online');
                (answer.result || []).forEach(function (n) {
                    self.deliver(n);
                    if (self.bc) {
                        self.bc.postMessage({ type: 'notification',
                                              notification: n });
                    }
                });
                self.poll();
            })
            .catch(function (err) {
                self.clearTimeout(timer);
                if (!self.running) {
                    return;
                }
                if (self.restarting && id === self.seq) {
                    /* the channels changed: poll again with the new list */
                    self.restarting = false;
                    self.poll();
                    return;
                }
                self.attempt++;
                self.setStatus('offline');
                self.emit('error', err);
                self.timer = self.setTimeout(function () {
                    self.timer = null;
                    self.poll();
                }, backoff(self.attempt, self.retryBaseMs, self.retryMaxMs,
                           self.random));
            });
    };

    var LPGate = { Client: Client, backoff: backoff, STATUS: STATUS };

    if (typeof module === 'object' && module.exports) {
        module.exports = LPGate;
    }
    root.LPGate = LPGate;
})(typeof globalThis !== 'undefined' ? globalThis : this);
