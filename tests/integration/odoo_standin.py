"""A stand-in Odoo HTTP server for lpgate's session tests (issues 8, 13).

It is a real HTTP/1.1 server on a real socket, backed by the real test
PostgreSQL: the tables Odoo keeps sessions' channels and presence in, with
the columns lpgate's SQL reads, per database and Odoo version:

* all: res_partner, res_users, mail_guest, bus_presence, ir_model_data;
* 14/15: mail_channel, mail_channel_partner;
* 16: mail_channel (channel_type, group_public_id), mail_channel_member;
* 17: discuss_channel (the same columns), discuss_channel_member,
  res_groups_users_rel (for channels restricted to a group);
* 16/17: an ir_module_module row for base whose latest_version
  ("17.0.1.3") makes lpgate detect the series, as 15's does.

It answers the two routes lpgate calls, as Odoo does:

* POST /lpgate/session: the lpgate_bus addon's route (contrib/odoo): the
  uid, database and channel list Odoo builds for the calling session:
  14/15 what the _poll chain of bus + mail adds (and a presence refresh
  when options carry bus_inactivity), 16/17 what ir.websocket's
  _build_bus_channel_list of bus + mail gives for params.channels (the
  client's subscribe strings; 17 resolves discuss.channel_<id> and
  mail.guest_<token>, applies mail's record rule on discuss.channel and
  adds the (channel, "members") sub-channels).  `addon = False` makes it
  404, as an Odoo without the addon does.
* POST /web/session/get_session_info: the session's uid, db and
  partner_id, or JSON-RPC error 100 "Odoo Session Expired".

Sessions are in memory (login(), logout()/expire()); every request is
counted per route, every TCP connection accepted in `connections` (it
speaks HTTP/1.1 keep-alive).  stop() and start() take it down, open
connections included, and bring it back on the same port.  With `certfile`
(a PEM holding the certificate and its key) it serves https.
create_database() makes a database of a given series (bus_bus included)
for tests beyond conftest's lpgtest (14) and lpgtest15.  Run as a script
for manual checks:
    /usr/bin/python3 odoo_standin.py --port 8069 --dsn "dbname=x" --db x
"""

import argparse
import http.server
import json
import re
import secrets
import socket
import ssl
import threading
import time
import uuid

import psycopg


SCHEMA = """
CREATE TABLE IF NOT EXISTS res_partner (
    id serial PRIMARY KEY, name varchar, display_name varchar,
    active bool DEFAULT true);
CREATE TABLE IF NOT EXISTS res_users (
    id serial PRIMARY KEY, login varchar UNIQUE,
    partner_id int NOT NULL REFERENCES res_partner(id),
    active bool DEFAULT true);
CREATE TABLE IF NOT EXISTS mail_guest (
    id serial PRIMARY KEY, name varchar, access_token varchar NOT NULL);
CREATE TABLE IF NOT EXISTS bus_presence (
    id serial PRIMARY KEY,
    user_id int REFERENCES res_users(id) ON DELETE CASCADE,
    guest_id int REFERENCES mail_guest(id) ON DELETE CASCADE,
    last_poll timestamp, last_presence timestamp, status varchar);
CREATE UNIQUE INDEX IF NOT EXISTS bus_presence_user_unique
    ON bus_presence (user_id) WHERE user_id IS NOT NULL;
CREATE UNIQUE INDEX IF NOT EXISTS bus_presence_guest_unique
    ON bus_presence (guest_id) WHERE guest_id IS NOT NULL;
CREATE TABLE IF NOT EXISTS ir_model_data (
    id serial PRIMARY KEY, module varchar, name varchar, model varchar,
    res_id int);
-- the tests count statements that write bus_presence, and who ran them
CREATE TABLE IF NOT EXISTS presence_log (
    at timestamp DEFAULT clock_timestamp(), txid bigint, app text,
    backend int);
CREATE OR REPLACE FUNCTION presence_log() RETURNS trigger AS $$
BEGIN
    INSERT INTO presence_log (txid, app, backend) VALUES
        (txid_current(), current_setting('application_name'),
         pg_backend_pid());
    RETURN NULL;
END $$ LANGUAGE plpgsql;
DROP TRIGGER IF EXISTS presence_log ON bus_presence;
CREATE TRIGGER presence_log AFTER INSERT OR UPDATE ON bus_presence
    FOR EACH STATEMENT EXECUTE FUNCTION presence_log();
"""

# the discuss channels and their members, per series: (channel table,
# member table); the member table has channel_id, partner_id, guest_id
CHANNEL_TABLES = {14: ("mail_channel", "mail_channel_partner"),
                  15: ("mail_channel", "mail_channel_partner"),
                  16: ("mail_channel", "mail_channel_member"),
                  17: ("discuss_channel", "discuss_channel_member")}

# the model name bus_bus channels of those tables carry
CHANNEL_MODEL = {14: "mail.channel", 15: "mail.channel",
                 16: "mail.channel", 17: "discuss.channel"}

CHANNEL_SCHEMA = """
CREATE TABLE IF NOT EXISTS {ch} (
    id serial PRIMARY KEY, name varchar,
    channel_type varchar NOT NULL DEFAULT 'channel', group_public_id int);
CREATE TABLE IF NOT EXISTS {mem} (
    id serial PRIMARY KEY,
    channel_id int NOT NULL REFERENCES {ch}(id) ON DELETE CASCADE,
    partner_id int REFERENCES res_partner(id) ON DELETE CASCADE,
    guest_id int REFERENCES mail_guest(id) ON DELETE CASCADE);
"""

# 17: users' groups, for channels restricted to one (group_public_id)
GROUPS_SCHEMA = """
CREATE TABLE IF NOT EXISTS res_groups_users_rel (
    gid int NOT NULL,
    uid int NOT NULL REFERENCES res_users(id) ON DELETE CASCADE,
    PRIMARY KEY (gid, uid));
"""

# base's row as Odoo 16+ leaves it: lpgate reads the series from
# split_part(latest_version, '.', 1) (pq/lpg_pgconn.h)
MODULE_SCHEMA = """
CREATE TABLE IF NOT EXISTS ir_module_module (
    id serial PRIMARY KEY, name varchar, latest_version varchar);
DELETE FROM ir_module_module WHERE name = 'base';
INSERT INTO ir_module_module (name, latest_version)
    VALUES ('base', '{version}.0.1.3');
"""

# Odoo's bus_bus (the same columns 10.0 to 17.0)
BUS_BUS = """
CREATE TABLE IF NOT EXISTS bus_bus (
    id serial PRIMARY KEY,
    create_uid integer,
    create_date timestamp DEFAULT (now() at time zone 'UTC'),
    write_uid integer,
    write_date timestamp DEFAULT (now() at time zone 'UTC'),
    channel varchar,
    message varchar)
"""


def create_database(pg, name, version):
    """A database `name` of Odoo series `version` on the cluster `pg`
    (conftest's Postgres): bus_bus, and the tables OdooStandin creates
    when it is given the database.  Idempotent; returns its dsn."""
    if not pg.sql("SELECT 1 FROM pg_database WHERE datname = %s", (name,)):
        pg.sql('CREATE DATABASE "%s"' % name)
    pg.sql(BUS_BUS, dbname=name)
    dsn = pg.dsn(name)
    prepare(dsn, version)
    return dsn


def prepare(dsn, version):
    """The tables of series `version` in the database at dsn."""
    ch, mem = CHANNEL_TABLES[min(max(version, 14), 17)]
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute(SCHEMA)
        c.execute(CHANNEL_SCHEMA.format(ch=ch, mem=mem))
        if version >= 17:
            c.execute(GROUPS_SCHEMA)
            # 17's res.partner computes display_name (no column) and
            # stores complete_name
            c.execute("ALTER TABLE res_partner "
                      "DROP COLUMN IF EXISTS display_name, "
                      "ADD COLUMN IF NOT EXISTS complete_name varchar")
        if version >= 16:
            c.execute(MODULE_SCHEMA.format(version=int(version)))


def cookies(header):
    out = {}
    for part in (header or "").split(";"):
        if "=" in part:
            k, v = part.strip().split("=", 1)
            out.setdefault(k, v)
    return out


class OdooStandin:
    """dbs: {name: (dsn, version)}; the first is Odoo's monodb."""

    def __init__(self, dbs, port=0, certfile=None):
        self.dbs = dict(dbs)
        self.certfile = certfile
        self.connections = 0
        self.open = set()
        # the database of a request without a session (Odoo's dbfilter or
        # monodb); None: none, so Odoo answers 404 as its nodb routing does
        self.default_db = next(iter(self.dbs))
        self.port = port
        self.addon = True
        self.delay = 0.0
        self.sessions = {}
        self.counts = {}
        self.requests = []
        self.request_bodies = []  # (path, body text), in order
        self.header_names = []  # per request, in the order received
        self.lock = threading.Lock()
        self.server = None
        self.thread = None
        for dsn, version in self.dbs.values():
            prepare(dsn, version)

    # -- test helpers ---------------------------------------------------

    def sql(self, db, query, params=None):
        with psycopg.connect(self.dbs[db][0], autocommit=True) as c:
            cur = c.execute(query, params)
            return cur.fetchall() if cur.description else None

    def tables(self, db):
        """(channel table, member table) of db's series."""
        return CHANNEL_TABLES[min(max(self.dbs[db][1], 14), 17)]

    def user(self, db, name, channels=(), groups=()):
        """A partner, its user, memberships of discuss channels (by name,
        created as needed) and, 17, of res.groups ids; returns
        (uid, partner_id)."""
        col = "complete_name" if self.dbs[db][1] >= 17 else "display_name"
        pid = self.sql(db, "INSERT INTO res_partner (name, %s) "
                           "VALUES (%%s, %%s) RETURNING id" % col,
                       (name, name))[0][0]
        uid = self.sql(db, "INSERT INTO res_users (login, partner_id) VALUES "
                           "(%s, %s) RETURNING id",
                       (name + secrets.token_hex(4), pid))[0][0]
        for ch in channels:
            self.join(db, ch, partner_id=pid)
        for gid in groups:
            self.sql(db, "INSERT INTO res_groups_users_rel (gid, uid) "
                         "VALUES (%s, %s)", (gid, uid))
        return uid, pid

    def channel(self, db, name, channel_type="channel", group_public_id=None):
        """The id of the discuss channel `name` (mail.channel up to 16,
        discuss.channel from 17), created as needed; channel_type "chat"
        and "group" are private, "channel" is readable by everyone unless
        group_public_id restricts it (16+ columns)."""
        ch, _ = self.tables(db)
        row = self.sql(db, "SELECT id FROM %s WHERE name = %%s" % ch, (name,))
        if row:
            return row[0][0]
        if self.dbs[db][1] < 16:
            return self.sql(db, "INSERT INTO %s (name) VALUES (%%s) "
                                "RETURNING id" % ch, (name,))[0][0]
        return self.sql(db, "INSERT INTO %s (name, channel_type, "
                            "group_public_id) VALUES (%%s, %%s, %%s) "
                            "RETURNING id" % ch,
                        (name, channel_type, group_public_id))[0][0]

    def join(self, db, channel, partner_id=None, guest_id=None):
        _, mem = self.tables(db)
        cid = self.channel(db, channel)
        self.sql(db, "INSERT INTO %s (channel_id, partner_id, guest_id) "
                     "VALUES (%%s, %%s, %%s)" % mem,
                 (cid, partner_id, guest_id))
        return cid

    def leave(self, db, channel, partner_id=None, guest_id=None):
        _, mem = self.tables(db)
        self.sql(db, "DELETE FROM %s WHERE channel_id = %%s AND (partner_id "
                     "= %%s OR guest_id = %%s)" % mem,
                 (self.channel(db, channel), partner_id, guest_id))

    def discuss_channel(self, db, name, partners=(), guests=(),
                        channel_type="channel", group_public_id=None):
        """A discuss channel with these partner and guest ids as members;
        returns its id."""
        cid = self.channel(db, name, channel_type, group_public_id)
        for pid in partners:
            self.join(db, name, partner_id=pid)
        for gid in guests:
            self.join(db, name, guest_id=gid)
        return cid

    def guest(self, db, name, channels=()):
        """A mail.guest; returns (guest_id, dgid cookie value).  The
        access token is a uuid4 as Odoo makes them (17 splits a
        mail.guest_<id>|<token> string at "_")."""
        token = str(uuid.uuid4())
        gid = self.sql(db, "INSERT INTO mail_guest (name, access_token) "
                           "VALUES (%s, %s) RETURNING id", (name, token))[0][0]
        for ch in channels:
            self.join(db, ch, guest_id=gid)
        return gid, "%d|%s" % (gid, token)

    def login(self, db, uid):
        """A session of uid on db; returns its session_id."""
        sid = secrets.token_hex(20)
        with self.lock:
            self.sessions[sid] = {"db": db, "uid": uid}
        return sid

    def logout(self, sid):
        """Odoo stops vouching for the session: both routes answer as for
        an unknown session_id from now on."""
        self.expire(sid)

    def expire(self, sid):
        with self.lock:
            self.sessions.pop(sid, None)

    def count(self, route):
        with self.lock:
            return self.counts.get(route, 0)

    def bodies(self, route):
        """The request bodies received on route, in order."""
        with self.lock:
            return [b for p, b in self.request_bodies if p == route]

    def reset_counts(self):
        with self.lock:
            self.counts.clear()
            self.requests.clear()
            self.request_bodies.clear()
            self.header_names.clear()

    # -- server -----------------------------------------------------------

    def start(self):
        standin = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def setup(self):
                super().setup()
                with standin.lock:
                    standin.connections += 1
                    standin.open.add(self.connection)

            def finish(self):
                with standin.lock:
                    standin.open.discard(self.connection)
                super().finish()

            def do_POST(self):
                with standin.lock:
                    standin.header_names.append(list(self.headers.keys()))
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n)
                status, answer = standin.handle(
                    self.path, self.headers.get("Cookie"),
                    self.headers.get("Host"), body)
                data = (json.dumps(answer) if answer is not None
                        else "<h1>Not Found</h1>").encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json"
                                 if answer is not None else "text/html")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = http.server.ThreadingHTTPServer(
            ("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        if self.certfile:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(self.certfile)
            # the handshake runs in the connection's thread, on first read
            self.server.socket = ctx.wrap_socket(
                self.server.socket, server_side=True,
                do_handshake_on_connect=False)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever,
                                       daemon=True)
        self.thread.start()
        return self

    def stop(self):
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None
            # a stopped Odoo keeps no kept-alive connection either
            with self.lock:
                conns, self.open = list(self.open), set()
            for c in conns:
                try:
                    c.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    @property
    def url(self):
        return "%s://127.0.0.1:%d" % ("https" if self.certfile else "http",
                                      self.port)

    # -- Odoo's behaviour ---------------------------------------------------

    def handle(self, path, cookie_header, host, body):
        with self.lock:
            self.counts[path] = self.counts.get(path, 0) + 1
            self.requests.append((path, cookie_header, host))
            self.request_bodies.append((path, (body or b"").decode()))
        if self.delay:
            time.sleep(self.delay)
        try:
            req = json.loads(body or b"{}")
        except ValueError:
            req = {}
        params = req.get("params") or {}
        c = cookies(cookie_header)
        with self.lock:
            session = self.sessions.get(c.get("session_id", ""))
        db = session["db"] if session else self.default_db
        if db is None:
            return 404, None
        rpc = lambda result: {"jsonrpc": "2.0", "id": req.get("id"),
                              "result": result}

        if path == "/web/session/get_session_info":
            if session is None:
                return 200, {"jsonrpc": "2.0", "id": req.get("id"), "error": {
                    "code": 100, "message": "Odoo Session Expired",
                    "data": {"name": "odoo.http.SessionExpiredException",
                             "message": "Session expired"}}}
            pid = self.sql(db, "SELECT partner_id FROM res_users WHERE id = "
                               "%s", (session["uid"],))[0][0]
            return 200, rpc({"uid": session["uid"], "db": db,
                             "partner_id": pid, "username": "u",
                             "server_version_info":
                                 [self.dbs[db][1], 0, 0, "final", 0, ""]})

        if path == "/lpgate/session" and self.addon:
            if self.dbs[db][1] >= 16:
                channels = params.get("channels") or []
                if not isinstance(channels, list) or not all(
                        isinstance(x, str) for x in channels):
                    return 200, {"jsonrpc": "2.0", "id": req.get("id"),
                                 "error": {"code": 200, "message":
                                           "Odoo Server Error", "data": {
                                               "name": "builtins.ValueError",
                                               "message": "bus.Bus only "
                                               "string channels are "
                                               "allowed."}}}
                return 200, rpc(self.websocket_channels(db, session, c,
                                                        channels))
            return 200, rpc(self.poll_channels(db, session, c,
                                               params.get("options") or {}))

        return 404, None

    def poll_channels(self, db, session, c, options):
        """What bus + mail's _poll overrides add for channels=[] (14/15)."""
        version = self.dbs[db][1]
        uid = session["uid"] if session else None
        chans, pid, gid = [], None, None
        if uid:
            pid = self.sql(db, "SELECT partner_id FROM res_users WHERE id = "
                               "%s", (uid,))[0][0]
            members = [r[0] for r in self.sql(
                db, "SELECT channel_id FROM mail_channel_partner WHERE "
                    "partner_id = %s ORDER BY channel_id", (pid,))]
            if version >= 15:
                chans = [[db, "res.partner", pid]]
                chans += [[db, "mail.channel", m] for m in members]
            else:
                chans = [[db, "mail.channel", m] for m in members]
                chans += [[db, "res.partner", pid], [db, "ir.needaction", pid]]
        elif version >= 15 and "|" in c.get("dgid", ""):
            g, token = c["dgid"].split("|", 1)
            row = self.sql(db, "SELECT id FROM mail_guest WHERE id = %s AND "
                               "access_token = %s",
                           (int(g) if g.isdigit() else 0, token))
            if row:
                gid = row[0][0]
                chans = [[db, "mail.guest", gid]] + [
                    [db, "mail.channel", r[0]] for r in self.sql(
                        db, "SELECT channel_id FROM mail_channel_partner "
                            "WHERE guest_id = %s", (gid,))]
        if version >= 15:
            chans.append([db, "broadcast"])
        if uid and "bus_inactivity" in options:
            self.sql(db, "INSERT INTO bus_presence (user_id, last_poll, "
                         "last_presence, status) VALUES (%s, now() AT TIME "
                         "ZONE 'UTC', now() AT TIME ZONE 'UTC' - %s * "
                         "interval '1 ms', 'offline') ON CONFLICT (user_id) "
                         "WHERE user_id IS NOT NULL DO UPDATE SET last_poll "
                         "= EXCLUDED.last_poll",
                     (uid, int(options["bus_inactivity"])))
        return {"version": version, "db": db, "uid": uid or None,
                "partner_id": pid, "guest_id": gid, "channels": chans}


    def valid_guest(self, db, token):
        """mail.guest's _get_guest_from_token: "<id>|<access_token>"."""
        parts = (token or "").split("|")
        if len(parts) != 2 or not parts[0].isdigit() or not parts[1]:
            return None
        row = self.sql(db, "SELECT id FROM mail_guest WHERE id = %s AND "
                           "access_token = %s", (int(parts[0]), parts[1]))
        return row[0][0] if row else None

    def websocket_channels(self, db, session, c, requested):
        """What ir.websocket._build_bus_channel_list of bus + mail gives
        for the client's strings `requested` (16/17), in bus_bus form,
        de-duplicated in order: the addon's answer."""
        version = self.dbs[db][1]
        ch, mem = self.tables(db)
        model = CHANNEL_MODEL[min(version, 17)]
        uid = session["uid"] if session else None
        pid = gid = None
        if uid:
            pid = self.sql(db, "SELECT partner_id FROM res_users WHERE id = "
                               "%s", (uid,))[0][0]
        guest = self.valid_guest(db, c.get("dgid"))

        def members(column, value):
            return [r[0] for r in self.sql(
                db, "SELECT DISTINCT channel_id FROM %s WHERE %s = %%s "
                    "ORDER BY channel_id" % (mem, column), (value,))]

        chans = []
        if version == 16:
            # mail: the user's partner and channel_ids, else the guest's
            chans = [[db, s] for s in requested]
            if uid:
                chans.append([db, "res.partner", pid])
                chans += [[db, model, m] for m in members("partner_id", pid)]
            elif guest:
                gid = guest
                chans.append([db, "mail.guest", guest])
                chans += [[db, model, m] for m in members("guest_id", guest)]
            chans.append([db, "broadcast"])
        else:
            # mail: the client's guest and channel strings resolved, then
            # discuss.channel.search(is_member or asked for) under the
            # record rule, (channel, "members") for those not asked for
            wanted, rest = [], []
            for s in requested:
                if s.startswith("mail.guest_"):
                    g = self.valid_guest(db, s.split("_")[1])
                    if g:
                        guest = g
                    continue
                m = re.findall(r"discuss\.channel_(\d+)", s)
                if m:
                    wanted.append(int(m[0]))
                    continue
                rest.append(s)
            chans = [[db, s] for s in rest]
            if guest:
                chans.append([db, "mail.guest", guest])
                if not uid:
                    gid = guest
            mine = (members("partner_id", pid) if uid
                    else members("guest_id", guest) if guest else [])
            groups = [r[0] for r in self.sql(
                db, "SELECT gid FROM res_groups_users_rel WHERE uid = %s",
                (uid,))] if uid else []
            found = [r[0] for r in self.sql(
                db, "SELECT id FROM %s WHERE (id = ANY(%%s) OR id = ANY(%%s)) "
                    "AND ((channel_type != 'channel' AND id = ANY(%%s)) OR "
                    "(channel_type = 'channel' AND (group_public_id IS NULL "
                    "OR group_public_id = ANY(%%s)))) ORDER BY id" % ch,
                (mine, wanted, mine, groups))]
            chans += [[db, model, f] for f in found]
            chans += [[db, model, f, "members"] for f in found
                      if f not in wanted]
            chans.append([db, "broadcast"])
            if uid:
                chans.append([db, "res.partner", pid])
        out = []
        for x in chans:
            if x not in out:
                out.append(x)
        return {"version": version, "db": db, "uid": uid or None,
                "partner_id": pid, "guest_id": gid, "channels": out}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--port", type=int, default=8069)
    ap.add_argument("--dsn", required=True)
    ap.add_argument("--db", required=True)
    ap.add_argument("--version", type=int, default=15)
    ap.add_argument("--no-addon", action="store_true")
    a = ap.parse_args()
    s = OdooStandin({a.db: (a.dsn, a.version)}, a.port)
    s.addon = not a.no_addon
    s.start()
    print("stand-in Odoo on %s" % s.url, flush=True)
    threading.Event().wait()


if __name__ == "__main__":
    main()
