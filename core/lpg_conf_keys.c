/*
 * SPDX-License-Identifier: MIT
 *
 * lpg_conf_keys.c: the key table: every config key's name, type, place
 * in lpg_conf_t, default, range, whether a reload may change it, and its
 * help text (--help, the man page and etc/lpgate.conf follow it); and
 * the lookups of a key by name.
 */

#include "lpg_conf_int.h"

#include <stddef.h>


#define LPG_CONF_OFF(f) offsetof(lpg_conf_t, f)


const lpg_conf_key_t lpg_conf_table[] = {

    { "workers", LPG_CONF_INT, LPG_CONF_OFF(workers), "0", 0, LPG_MAX_WORKERS,
      true, "worker processes; 0 means one per CPU" },

    { "db_maxconn", LPG_CONF_INT, LPG_CONF_OFF(db_maxconn), "8", 1, 1000, true,
      "most database connections one process may hold" },

    { "max_cron_threads", LPG_CONF_INT, LPG_CONF_OFF(max_cron_threads), "1", 0,
      64, true,
      "cron slots (bus_bus cleanup, presence flushes) in the budget" },

    { "database", LPG_CONF_STR, LPG_CONF_OFF(database), "", 0, 0, false,
      "comma-separated databases served; empty: the libpq default" },

    { "odoo_version", LPG_CONF_INT, LPG_CONF_OFF(odoo_version), "0", 0, 99,
      false, "Odoo major version of the bus shapes; 0: detect per database" },

    { "dbfilter", LPG_CONF_STR, LPG_CONF_OFF(dbfilter), "", 0, 0, true,
      "Odoo's dbfilter: a regex on the Host header (%h host, %d its first "
      "label) choosing the database of a poll without ?db=" },

    { "interface", LPG_CONF_STR, LPG_CONF_OFF(interface), "127.0.0.1", 0, 0,
      true, "address the HTTP listener binds" },

    { "port", LPG_CONF_INT, LPG_CONF_OFF(port), "8072", 1, 65535, true,
      "TCP port of the HTTP listener" },

    { "admin_interface", LPG_CONF_STR, LPG_CONF_OFF(admin_interface),
      "127.0.0.1", 0, 0, false,
      "address of the admin listener (/metrics); keep it private" },

    { "admin_port", LPG_CONF_INT, LPG_CONF_OFF(admin_port), "9072", 0, 65535,
      false, "port of the admin listener; 0: none" },

    { "trusted_proxies", LPG_CONF_STR, LPG_CONF_OFF(trusted_proxies),
      "127.0.0.1,::1", 0, 0, true,
      "peers whose X-Forwarded-For is believed (comma-separated addresses)" },

    { "db_host", LPG_CONF_STR, LPG_CONF_OFF(db_host), "", 0, 0, true,
      "database host or socket directory; empty: PGHOST or libpq's" },

    { "db_port", LPG_CONF_INT, LPG_CONF_OFF(db_port), "0", 0, 65535, true,
      "database port; 0: PGPORT or libpq's" },

    { "db_user", LPG_CONF_STR, LPG_CONF_OFF(db_user), "", 0, 0, true,
      "database user; empty: PGUSER or libpq's" },

    { "db_password", LPG_CONF_STR, LPG_CONF_OFF(db_password), "", 0, 0, true,
      "database password; empty: PGPASSWORD, ~/.pgpass or none" },

    { "listen_dsn", LPG_CONF_STR, LPG_CONF_OFF(listen_dsn), "", 0, 0, true,
      "libpq DSN of the LISTEN connection; empty: db_* with dbname=postgres" },

    { "node_name", LPG_CONF_STR, LPG_CONF_OFF(node_name), "", 0, 0, true,
      "this node's name in its connection claim (application_name "
      "lpgate:<node_name>:<claim> of the LISTEN connection); empty: "
      "<hostname>:<port>" },

    { "listen_channel", LPG_CONF_STR, LPG_CONF_OFF(listen_channel), "imbus", 0,
      0, false, "NOTIFY channel the master LISTENs on" },

    { "longpolling_path", LPG_CONF_STR, LPG_CONF_OFF(longpolling_path),
      "/longpolling", 0, 0, true, "URL prefix of the routes" },

    { "demo", LPG_CONF_BOOL, LPG_CONF_OFF(demo), "false", 0, 1, true,
      "serve the demo chat page at <path>/demo (send opens for demo-*)" },

    { "allow_send", LPG_CONF_BOOL, LPG_CONF_OFF(allow_send), "false", 0, 1,
      true, "serve Odoo 8-14's public <path>/send route" },

    { "send_channels", LPG_CONF_STR, LPG_CONF_OFF(send_channels), "", 0, 0,
      true, "comma-separated shell patterns of the channels send accepts" },

    { "send_max_bytes", LPG_CONF_INT, LPG_CONF_OFF(send_max_bytes), "4096", 2,
      1048576, true, "largest message send accepts, as JSON text" },

    { "max_header_size", LPG_CONF_INT, LPG_CONF_OFF(max_header_size), "8192",
      1024, 1048576, true,
      "bytes of request line and headers; more is answered 431" },

    { "max_body_size", LPG_CONF_SIZE, LPG_CONF_OFF(max_body_size), "1M", 1024,
      67108864, true, "bytes of request body; more is answered 413" },

    { "max_channels_per_poll", LPG_CONF_INT,
      LPG_CONF_OFF(max_channels_per_poll), "1000", 1, 100000, true,
      "channels one poll may name; more is a JSON-RPC error" },

    { "max_answer_size", LPG_CONF_SIZE, LPG_CONF_OFF(max_answer_size), "8M",
      65536, 1073741824, true,
      "bytes of notifications in one answer; the rest comes on the next "
      "poll" },

    { "client_header_timeout", LPG_CONF_INT,
      LPG_CONF_OFF(client_header_timeout), "60", 1, 3600, true,
      "seconds a client has to send its headers (then 408)" },

    { "client_body_timeout", LPG_CONF_INT, LPG_CONF_OFF(client_body_timeout),
      "60", 1, 3600, true, "seconds a client has to send its body (then 408)" },

    { "send_timeout", LPG_CONF_INT, LPG_CONF_OFF(send_timeout), "60", 1, 3600,
      true, "seconds a client that stops reading is given before it is cut" },

    { "keepalive_timeout", LPG_CONF_INT, LPG_CONF_OFF(keepalive_timeout), "75",
      1, 3600, true, "seconds an idle keep-alive connection is kept" },

    { "odoo_url", LPG_CONF_STR, LPG_CONF_OFF(odoo_url), "http://127.0.0.1:8069",
      0, 0, true,
      "Odoo's HTTP server, asked who a session_id cookie is; empty: every "
      "poll is the public user's" },

    { "odoo_timeout", LPG_CONF_INT, LPG_CONF_OFF(odoo_timeout), "5", 1, 300,
      true, "seconds a session lookup may take before Odoo counts as down" },

    { "odoo_maxconn", LPG_CONF_INT, LPG_CONF_OFF(odoo_maxconn), "4", 1, 1000,
      true, "session lookups one worker runs at once; more wait" },

    { "odoo_cafile", LPG_CONF_STR, LPG_CONF_OFF(odoo_cafile), "", 0, 0, true,
      "PEM file of the CA(s) an https odoo_url's certificate is checked "
      "against; empty: the system's store" },

    { "session_ttl", LPG_CONF_INT, LPG_CONF_OFF(session_ttl), "30", 1, 86400,
      true, "seconds Odoo's answer about a session is cached" },

    { "session_retry", LPG_CONF_INT, LPG_CONF_OFF(session_retry), "5", 1, 3600,
      true,
      "seconds a session is served as public after Odoo did not answer; "
      "such polls are held at most this long" },

    { "max_sessions", LPG_CONF_INT, LPG_CONF_OFF(max_sessions), "100000", 16,
      10000000, true, "sessions one worker caches" },

    { "presence_interval", LPG_CONF_INT, LPG_CONF_OFF(presence_interval), "20",
      0, 50, true,
      "seconds between a worker's bus_presence writes (one statement per "
      "database, in a cron slot); 0: never written" },

    { "websocket_same_origin", LPG_CONF_BOOL,
      LPG_CONF_OFF(websocket_same_origin), "false", 0, 1, true,
      "a /websocket whose Origin host or scheme differs from the request's "
      "is served as public, without the cookie's session (Odoo's "
      "ODOO_BUS_PUBLIC_SAMESITE_WS)" },

    { "websocket_keep_alive", LPG_CONF_INT, LPG_CONF_OFF(websocket_keep_alive),
      "3600", 1, 86400, true,
      "seconds a websocket lives, plus up to half as much jitter, before it "
      "is closed with 4002 (the client reconnects at once)" },

    { "websocket_ping_interval", LPG_CONF_INT,
      LPG_CONF_OFF(websocket_ping_interval), "45", 1, 3600, true,
      "seconds without incoming traffic before a websocket is pinged" },

    { "websocket_pong_timeout", LPG_CONF_INT,
      LPG_CONF_OFF(websocket_pong_timeout), "15", 1, 3600, true,
      "seconds a pinged websocket has to answer before it is cut" },

    { "socketio_ping_interval", LPG_CONF_INT,
      LPG_CONF_OFF(socketio_ping_interval), "25", 1, 3600, true,
      "seconds between the pings of a Socket.IO session (engine.io's "
      "pingInterval)" },

    { "socketio_ping_timeout", LPG_CONF_INT,
      LPG_CONF_OFF(socketio_ping_timeout), "20", 1, 3600, true,
      "seconds a Socket.IO client has to answer a ping before its session "
      "ends (engine.io's pingTimeout)" },

    { "socketio_max_payload", LPG_CONF_SIZE, LPG_CONF_OFF(socketio_max_payload),
      "100000", 1024, 1048576, true,
      "bytes of a Socket.IO polling payload or websocket message (engine.io's "
      "maxPayload); larger: 413, or the websocket closed with 1009" },

    { "socketio_namespaces", LPG_CONF_STR, LPG_CONF_OFF(socketio_namespaces),
      "*", 0, 0, true,
      "comma-separated patterns (fnmatch) of the Socket.IO namespaces served; "
      "a namespace /x serves the channels x/<name>, / the names themselves; "
      "others are refused (44)" },
    { "sse_retry", LPG_CONF_INT, LPG_CONF_OFF(sse_retry), "3000", 0, 3600000,
      true,
      "milliseconds an EventSource waits before it reconnects, sent once "
      "at the start of each <path>/sse stream (its retry: field)" },

    { "sse_heartbeat", LPG_CONF_INT, LPG_CONF_OFF(sse_heartbeat), "15", 1, 3600,
      true,
      "seconds between the comment lines a <path>/sse stream gets, so "
      "proxies and browsers keep an idle stream open" },

    { "timeout", LPG_CONF_INT, LPG_CONF_OFF(timeout), "50", 1, 3600, true,
      "seconds a poll is held before it is answered []" },

    { "shutdown_timeout", LPG_CONF_INT, LPG_CONF_OFF(shutdown_timeout), "10", 1,
      3600, true, "seconds a graceful stop waits for requests in flight" },

    { "drain_delay", LPG_CONF_INT, LPG_CONF_OFF(drain_delay), "1", 0, 3600,
      true,
      "seconds after SIGQUIT that /health answers 503 \"draining\" while "
      "the node still serves, before the graceful stop" },

    { "log_level", LPG_CONF_LEVEL, LPG_CONF_OFF(log_level), "notice", 0, 0,
      true, "emerg, alert, error, warn, notice, info or debug" },

    { "logfile", LPG_CONF_STR, LPG_CONF_OFF(logfile), "", 0, 0, true,
      "log file; empty: stderr" },

    { "pidfile", LPG_CONF_STR, LPG_CONF_OFF(pidfile), "", 0, 0, false,
      "file the master writes its pid to; empty: none" },

    { "ring_size", LPG_CONF_SIZE, LPG_CONF_OFF(ring_size), "64M", 65536,
      (int64_t) 1 << 34, false,
      "bytes of the shared notification ring (suffixes k, M, G)" },
};

const size_t lpg_conf_nkeys = LPG_NELEMS(lpg_conf_table);


const lpg_conf_key_t *
lpg_conf_keys(size_t *n)
{
    *n = LPG_NELEMS(lpg_conf_table);
    return lpg_conf_table;
}


const lpg_conf_key_t *
lpg_conf_find(const char *name)
{
    size_t i, j;

    for (i = 0; i < LPG_NELEMS(lpg_conf_table); i++) {
        const char *k = lpg_conf_table[i].name;

        for (j = 0; k[j] != '\0' && name[j] != '\0'; j++) {
            if (k[j] != name[j] && !(k[j] == '_' && name[j] == '-')) {
                break;
            }
        }

        if (k[j] == '\0' && name[j] == '\0') {
            return &lpg_conf_table[i];
        }
    }

    return NULL;
}
