// The command interpreter shared by the node driver (sio_client.mjs) and
// the browser page (browser.html, driven by tests/e2e/sio_browser.mjs):
// it runs the unmodified socket.io-client's io() on JSON commands and
// reports what the client sees as JSON events (tests/integration/
// test_socketio.py and test_socketio_browser.py read them).  It owns the
// sockets it opens.
//
// Commands:
//   {"op": "connect", "id": C, "url": U, "opts": {...}, "track_last": bool}
//       io(U, opts); with track_last, auth is a function that adds
//       {"last": the largest notification id seen} to opts.auth at each
//       (re)connect; with "subscribe": [channels], emits subscribe at each
//       (re)connect (a new session holds none), its ack as "subscribed"
//   {"op": "emit", "id": C, "event": E, "args": [...], "tag": T}
//       emits E; with a tag, the ack's arguments come back as "ack"
//   {"op": "transport", "id": C}  the engine's transport now
//   {"op": "drop", "id": C}     the transport is closed under the client
//                               (it reconnects by itself)
//   {"op": "close", "id": C}    socket.disconnect()
//   {"op": "closeall"}          every socket.disconnect()
// Events: {"ev": "connect"|"connect_error"|"disconnect"|"notification"|
//          "error"|"upgrade"|"ack"|"subscribed"|"transport", "id": C, ...}

export function driver(io, out) {
    const sockets = new Map();
    const lasts = new Map();

    function connect(cmd) {
        const opts = Object.assign({ forceNew: true, reconnectionDelay: 100,
                                     reconnectionDelayMax: 500 },
                                   cmd.opts || {});
        const base = opts.auth || {};
        const id = cmd.id;

        if (cmd.track_last) {
            opts.auth = (cb) => {
                const a = Object.assign({}, base);
                if (lasts.has(id)) {
                    a.last = lasts.get(id);
                }
                cb(a);
            };
        }

        const s = io(cmd.url, opts);
        sockets.set(id, s);

        s.on("connect", () => {
            out({ ev: "connect", id, sid: s.id,
                  transport: s.io.engine.transport.name });
            if (cmd.subscribe) {
                s.emit("subscribe", cmd.subscribe, (...a) => out({
                    ev: "subscribed", id, args: a }));
            }
        });
        /* each (re)connection has its own engine */
        s.io.on("open", () => s.io.engine.on("upgrade", (t) => out({
            ev: "upgrade", id, transport: t.name })));
        s.on("connect_error", (e) => out({ ev: "connect_error", id,
                                            message: e.message }));
        s.on("disconnect", (reason) => out({ ev: "disconnect", id, reason }));
        s.on("notification", (n) => {
            if (!lasts.has(id) || n.id > lasts.get(id)) {
                lasts.set(id, n.id);
            }
            out({ ev: "notification", id, n });
        });
        s.on("error", (e) => out({ ev: "error", id, e }));
    }

    return (cmd) => {
        const s = sockets.get(cmd.id);

        switch (cmd.op) {
        case "connect":
            connect(cmd);
            break;
        case "emit":
            if (cmd.tag != null) {
                s.emit(cmd.event, ...cmd.args, (...a) => out({ ev: "ack",
                    id: cmd.id, tag: cmd.tag, args: a }));
            } else {
                s.emit(cmd.event, ...cmd.args);
            }
            break;
        case "transport":
            out({ ev: "transport", id: cmd.id,
                  transport: s.io.engine ? s.io.engine.transport.name : null });
            break;
        case "drop":
            s.io.engine.close();
            break;
        case "close":
            s.disconnect();
            break;
        case "closeall":
            for (const x of sockets.values()) {
                x.disconnect();
            }
            sockets.clear();
            break;
        }
    };
}
