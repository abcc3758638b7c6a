/*
 * SPDX-License-Identifier: MIT
 *
 * lpg_check.c: the blocking checks of the command line.
 *
 * lpg_check_budget reads the server's connection limits and the other
 * lpgate nodes' claims for the start-up check and --sizing.  lpg_check_run is lpgate --check: it connects as the
 * running gateway would (the LISTEN connection, one connection per served
 * database, odoo_url) and says, per database, what lpgate would find there
 * and whether it would work.  Everything here blocks, with timeouts: it
 * runs before any event loop exists.  Odoo is asked with libcurl's easy
 * interface; the version rule and its SQL are lpg_pgconn's, shared with
 * the master's fetch connections.
 */

#include "lpg_check.h"
#include "lpg_pgconn.h"
#include "lpg_shm.h"
#include "lpg_time.h"

#include <curl/curl.h>
#include <jansson.h>
#include <poll.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>


#define LPG_CHECK_NOTIFY_MS   5000  /* wait for a NOTIFY to come back */
#define LPG_CHECK_HTTP_S      10L   /* whole request to odoo_url */
#define LPG_CHECK_CONNECT_S   5L    /* connecting to odoo_url */
#define LPG_CHECK_BODY_MAX    65536 /* bytes of an answer kept */
#define LPG_CHECK_REASONS_MAX 2048


typedef enum {
    LPG_CHECK_SRC_OFF,     /* odoo_url is "": every poll is public */
    LPG_CHECK_SRC_ADDON,   /* /lpgate/session answered */
    LPG_CHECK_SRC_SQL,     /* 404 there, get_session_info answered */
    LPG_CHECK_SRC_UNKNOWN, /* 404 on both: no database for this Host */
    LPG_CHECK_SRC_ERROR    /* unreachable or not Odoo */
} lpg_check_src_e;


/* what odoo_url said, asked once for every database */
typedef struct {
    lpg_check_src_e source;
    int             version; /* the addon's release, 0: not said */
    char            db[LPG_SHM_DBNAME];
    char            what[512];
} lpg_check_odoo_t;


typedef struct {
    FILE  *out;
    char   reasons[LPG_CHECK_REASONS_MAX];
    size_t len;
} lpg_check_t;


typedef struct {
    char  *data;
    size_t len;
} lpg_check_body_t;


static void lpg_check_machine(lpg_budget_t *b);
static void lpg_check_fail(lpg_check_t *c, const char *fmt, ...)
    LPG_PRINTF(2, 3);
static bool lpg_check_listen_conn(lpg_check_t *c, const lpg_conf_t *conf);
static void lpg_check_budget_print(lpg_check_t *c, const lpg_conf_t *conf,
                                   int ndbs, bool server);
static void lpg_check_odoo(lpg_check_t *c, const lpg_conf_t *conf,
                           lpg_check_odoo_t *o);
static void lpg_check_db(lpg_check_t *c, const lpg_conf_t *conf,
                         const char *name, const lpg_check_odoo_t *o);
static int  lpg_check_notify(PGconn *conn, int64_t *ms, char *why, size_t len);
static int  lpg_check_post(const char *base, const char *cafile,
                           const char *path, long *status,
                           lpg_check_body_t *body, char *err, size_t errlen);
static size_t lpg_check_write_cb(char *p, size_t size, size_t n, void *data);


int
lpg_check_budget(const lpg_conf_t *conf, lpg_budget_t *b, char *why, size_t len)
{
    int       i;
    PGconn   *conn;
    PGresult *res;

    memset(b, 0, sizeof(*b));
    b->node_name = conf->node_name;
    b->workers = conf->workers;
    b->max_cron_threads = conf->max_cron_threads;
    b->db_maxconn = conf->db_maxconn;
    b->max_connections = -1;
    lpg_check_machine(b);

    conn = lpg_pgconn_connect(conf, NULL, why, len);
    if (conn == NULL) {
        return LPG_ERROR;
    }

    res = PQexec(conn, LPG_BUDGET_CLAIM_SQL);

    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) < 1) {
        lpg_pgconn_error(conn, why, len);
        PQclear(res);
        PQfinish(conn);
        return LPG_ERROR;
    }

    b->max_connections = atoi(PQgetvalue(res, 0, 0));
    b->reserved = atoi(PQgetvalue(res, 0, 1));

    /* the other nodes' live claims (their LISTEN connections) */
    for (i = 0; i < PQntuples(res); i++) {
        if (!PQgetisnull(res, i, 2)) {
            lpg_budget_add_claim(b, PQgetvalue(res, i, 2));
        }
    }

    PQclear(res);
    PQfinish(conn);

    return LPG_OK;
}


int
lpg_check_run(const lpg_conf_t *conf, FILE *out)
{
    int              i;
    bool             server;
    char             err[LPG_CONF_ERRLEN];
    lpg_check_t      c;
    lpg_check_odoo_t o;
    lpg_shm_t        shm;
    lpg_shm_header_t header;
    lpg_shm_db_t     dbs[LPG_SHM_MAX_DBS];

    memset(&c, 0, sizeof(c));
    c.out = out;

    /* the database list as the master reads it */
    memset(&header, 0, sizeof(header));
    memset(dbs, 0, sizeof(dbs));
    memset(&shm, 0, sizeof(shm));
    shm.header = &header;
    shm.dbs = dbs;

    fprintf(out, "lpgate check\n\n");

    if (lpg_shm_set_dbs(&shm,
                        conf->database[0] != '\0' ? conf->database
                                                  : lpg_pgconn_default_db(conf),
                        err, sizeof(err))
        != LPG_OK)
    {
        lpg_check_fail(&c, "%s", err);
        header.ndbs = 0;
    }

    server = lpg_check_listen_conn(&c, conf);
    lpg_check_budget_print(&c, conf, header.ndbs, server);
    lpg_check_odoo(&c, conf, &o);

    for (i = 0; i < header.ndbs; i++) {
        lpg_check_db(&c, conf, dbs[i].name, &o);
    }

    if (c.len == 0) {
        fprintf(out, "\ncheck: ok\n");
        return LPG_EXIT_OK;
    }

    fprintf(out, "\ncheck: FAILED: %s\n", c.reasons);

    return LPG_EXIT_FATAL;
}


static void
lpg_check_machine(lpg_budget_t *b)
{
    long          pages, psize;
    struct rlimit rl;

    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        b->fd_soft =
            rl.rlim_cur == RLIM_INFINITY ? 1048576 : (long) rl.rlim_cur;
        b->fd_hard =
            rl.rlim_max == RLIM_INFINITY ? 1048576 : (long) rl.rlim_max;
    }

    b->ncpu = (int) sysconf(_SC_NPROCESSORS_ONLN);

    pages = sysconf(_SC_PHYS_PAGES);
    psize = sysconf(_SC_PAGESIZE);
    b->mem_total = pages > 0 && psize > 0 ? (int64_t) pages * psize : 0;
}


/* adds a reason to the final line ("; " between reasons) */
static void
lpg_check_fail(lpg_check_t *c, const char *fmt, ...)
{
    int     n;
    va_list args;

    if (c->len + 3 >= sizeof(c->reasons)) {
        return;
    }

    if (c->len > 0) {
        c->len +=
            snprintf(c->reasons + c->len, sizeof(c->reasons) - c->len, "; ");
    }

    va_start(args, fmt);
    n = vsnprintf(c->reasons + c->len, sizeof(c->reasons) - c->len, fmt, args);
    va_end(args);

    if (n > 0) {
        c->len += (size_t) n;
    }

    if (c->len >= sizeof(c->reasons)) {
        c->len = sizeof(c->reasons) - 1;
    }
}


/* the connection the master LISTENs on for Odoo's NOTIFY imbus; false when
 * it could not connect */
static bool
lpg_check_listen_conn(lpg_check_t *c, const lpg_conf_t *conf)
{
    char    why[512];
    int64_t ms;
    PGconn *conn;

    conn = lpg_pgconn_connect(conf, NULL, why, sizeof(why));
    if (conn == NULL) {
        fprintf(c->out, "listen connection: FAILED: %s\n", why);
        lpg_check_fail(c, "the LISTEN connection failed: %s", why);
        return false;
    }

    fprintf(c->out, "listen connection: database \"%s\" on %s:%s\n", PQdb(conn),
            PQhost(conn), PQport(conn));

    if (lpg_check_notify(conn, &ms, why, sizeof(why)) == LPG_OK) {
        fprintf(c->out,
                "  LISTEN:          works (a NOTIFY to itself came back in "
                "%lld ms)\n",
                (long long) ms);

    } else {
        fprintf(c->out, "  LISTEN:          FAILED: %s\n", why);
        lpg_check_fail(c, "LISTEN on the LISTEN connection failed: %s", why);
    }

    PQfinish(conn);

    return true;
}


/* server: the LISTEN connection worked (else its failure is the reason) */
static void
lpg_check_budget_print(lpg_check_t *c, const lpg_conf_t *conf, int ndbs,
                       bool server)
{
    int          need, allowed;
    char         why[512], msg[2048];
    lpg_budget_t b;

    if (lpg_check_budget(conf, &b, why, sizeof(why)) != LPG_OK) {
        fprintf(c->out, "connection budget: not known (%s)\n", why);
        if (server) {
            lpg_check_fail(c, "could not read max_connections: %s", why);
        }

        return;
    }

    need = lpg_budget_need(&b);
    allowed = lpg_budget_allowed(&b);

    fprintf(c->out,
            "connection budget: (1 + workers %d + max_cron_threads %d) * "
            "db_maxconn %d = %d %s max_connections %d - "
            "superuser_reserved_connections %d = %d: %s\n",
            b.workers, b.max_cron_threads, b.db_maxconn, need,
            need < allowed ? "<" : ">=", b.max_connections, b.reserved, allowed,
            need < allowed ? "fits" : "DOES NOT FIT");

    lpg_budget_cluster(&b, "  ", c->out);

    if (!lpg_budget_fits(&b)) {
        lpg_budget_explain(&b, msg, sizeof(msg));
        fprintf(c->out, "  %s\n", msg);

        if (b.nothers == 0) {
            lpg_check_fail(c,
                           "connection budget: (1 + %d + %d) * %d = %d is not "
                           "below %d - %d = %d",
                           b.workers, b.max_cron_threads, b.db_maxconn, need,
                           b.max_connections, b.reserved, allowed);

        } else {
            lpg_check_fail(c,
                           "connection budget: (1 + %d + %d) * %d = %d plus "
                           "%d claimed by %d other node(s) = %d is not below "
                           "%d - %d = %d",
                           b.workers, b.max_cron_threads, b.db_maxconn, need,
                           b.others, b.nothers, need + b.others,
                           b.max_connections, b.reserved, allowed);
        }
    }

    /* the master's share: LISTEN + one fetch connection per database */
    fprintf(c->out,
            "master connections: LISTEN + %d database(s) = %d of db_maxconn "
            "%d: %s\n",
            ndbs, ndbs + 1, conf->db_maxconn,
            ndbs + 1 <= conf->db_maxconn ? "fits" : "DOES NOT FIT");

    if (ndbs + 1 > conf->db_maxconn) {
        lpg_check_fail(c,
                       "%d databases need %d master connections but "
                       "db_maxconn is %d",
                       ndbs, ndbs + 1, conf->db_maxconn);
    }
}


/*
 * Asks odoo_url what a session lookup would reach: the addon's route, else
 * Odoo's own get_session_info (the built-in SQL then), as a worker does.
 * Without a session cookie and a browser's Host, Odoo picks the database
 * by its dbfilter or because it has only one.
 */
static void
lpg_check_odoo(lpg_check_t *c, const lpg_conf_t *conf, lpg_check_odoo_t *o)
{
    long             status;
    char             err[CURL_ERROR_SIZE + 64];
    json_t          *root, *result, *v;
    lpg_check_body_t body = { NULL, 0 };

    memset(o, 0, sizeof(*o));

    if (conf->odoo_url[0] == '\0') {
        o->source = LPG_CHECK_SRC_OFF;
        snprintf(o->what, sizeof(o->what),
                 "none: odoo_url is \"\", every poll is public");
        fprintf(c->out, "odoo_url:          \"\" (sessions off)\n");
        return;
    }

    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        o->source = LPG_CHECK_SRC_ERROR;
        snprintf(o->what, sizeof(o->what), "curl_global_init() failed");
        lpg_check_fail(c, "curl_global_init() failed");
        return;
    }

    if (lpg_check_post(conf->odoo_url, conf->odoo_cafile, "/lpgate/session",
                       &status, &body, err, sizeof(err))
        != LPG_OK)
    {
        goto unreachable;
    }

    if (status == 200) {
        root = body.data ? json_loadb(body.data, body.len, 0, NULL) : NULL;
        result = json_object_get(root, "result");

        if (!json_is_object(result)) {
            o->source = LPG_CHECK_SRC_ERROR;
            snprintf(o->what, sizeof(o->what),
                     "FAILED: POST %s/lpgate/session answered 200 without a "
                     "JSON-RPC result: is odoo_url Odoo?",
                     conf->odoo_url);
            lpg_check_fail(c, "odoo_url %s is not Odoo's (no JSON-RPC answer)",
                           conf->odoo_url);
            json_decref(root);
            goto done;
        }

        o->source = LPG_CHECK_SRC_ADDON;
        v = json_object_get(result, "version");
        o->version = json_is_integer(v) ? (int) json_integer_value(v) : 0;
        v = json_object_get(result, "db");
        snprintf(o->db, sizeof(o->db), "%s",
                 json_is_string(v) ? json_string_value(v) : "");
        snprintf(o->what, sizeof(o->what),
                 "the lpgate_bus addon (POST %s/lpgate/session answered)",
                 conf->odoo_url);
        json_decref(root);
        goto done;
    }

    if (status != 404) {
        goto other;
    }

    /* no addon, or no database for this Host: Odoo's own route says */
    free(body.data);
    body.data = NULL;
    body.len = 0;

    if (lpg_check_post(conf->odoo_url, conf->odoo_cafile,
                       "/web/session/get_session_info", &status, &body, err,
                       sizeof(err))
        != LPG_OK)
    {
        goto unreachable;
    }

    if (status == 200) {
        root = body.data ? json_loadb(body.data, body.len, 0, NULL) : NULL;

        if (json_object_get(root, "result") == NULL
            && json_object_get(root, "error") == NULL)
        {
            o->source = LPG_CHECK_SRC_ERROR;
            snprintf(o->what, sizeof(o->what),
                     "FAILED: POST %s/web/session/get_session_info answered "
                     "200 without JSON-RPC: is odoo_url Odoo?",
                     conf->odoo_url);
            lpg_check_fail(c, "odoo_url %s is not Odoo's (no JSON-RPC answer)",
                           conf->odoo_url);
            json_decref(root);
            goto done;
        }

        json_decref(root);
        o->source = LPG_CHECK_SRC_SQL;
        snprintf(o->what, sizeof(o->what),
                 "built-in SQL (%s/lpgate/session is 404: addon lpgate_bus "
                 "not installed; Odoo's get_session_info, then lpgate's "
                 "SQL)",
                 conf->odoo_url);
        goto done;
    }

    if (status == 404) {
        /* not a failure: a browser's Host may select a database */
        o->source = LPG_CHECK_SRC_UNKNOWN;
        snprintf(o->what, sizeof(o->what),
                 "not known: %s answers 404 on both routes for its own "
                 "Host (several databases and no dbfilter?); lookups carry "
                 "the browser's Host",
                 conf->odoo_url);
        goto done;
    }

other:

    o->source = LPG_CHECK_SRC_ERROR;
    snprintf(o->what, sizeof(o->what),
             "FAILED: %s answered a session lookup with HTTP %ld",
             conf->odoo_url, status);
    lpg_check_fail(c, "odoo_url %s answered HTTP %ld", conf->odoo_url, status);
    goto done;

unreachable:

    o->source = LPG_CHECK_SRC_ERROR;
    snprintf(o->what, sizeof(o->what), "FAILED: odoo_url unreachable: %s", err);
    lpg_check_fail(c, "odoo_url %s unreachable: %s", conf->odoo_url, err);

done:

    fprintf(c->out, "odoo_url:          %s: %s\n", conf->odoo_url,
            o->source == LPG_CHECK_SRC_ADDON     ? "lpgate_bus addon"
                : o->source == LPG_CHECK_SRC_SQL ? "no lpgate_bus addon"
                : o->source == LPG_CHECK_SRC_ERROR
                ? "FAILED"
                : "no database for its Host");
    free(body.data);
    curl_global_cleanup();
}


static void
lpg_check_db(lpg_check_t *c, const lpg_conf_t *conf, const char *name,
             const lpg_check_odoo_t *o)
{
    int       version;
    bool      has_bus, has_modules;
    char      why[512], query[512];
    int64_t   ms;
    PGconn   *conn;
    PGresult *res;

    fprintf(c->out, "\ndatabase \"%s\"\n", name);

    conn = lpg_pgconn_connect(conf, name, why, sizeof(why));
    if (conn == NULL) {
        fprintf(c->out, "  connection:      FAILED: %s\n", why);
        lpg_check_fail(c, "database \"%s\": %s", name, why);
        return;
    }

    fprintf(c->out, "  connection:      ok (%s:%s)\n", PQhost(conn),
            PQport(conn));

    res = PQexec(conn, LPG_PGCONN_ODOO_TABLES_SQL);
    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
        lpg_pgconn_error(conn, why, sizeof(why));
        fprintf(c->out, "  tables:          FAILED: %s\n", why);
        lpg_check_fail(c, "database \"%s\": %s", name, why);
        goto done;
    }

    has_bus = PQgetvalue(res, 0, 0)[0] == 't';
    has_modules = PQgetvalue(res, 0, 1)[0] == 't';
    PQclear(res);
    res = NULL;

    if (!has_bus) {
        fprintf(c->out,
                "  tables:          FAILED: no bus_bus table (not an Odoo "
                "database, or Odoo's bus module is not installed)\n");
        lpg_check_fail(c, "database \"%s\" has no bus_bus table", name);
        goto done;
    }

    snprintf(query, sizeof(query),
             "SELECT (SELECT coalesce(max(id), 0) FROM bus_bus), %s",
             has_modules ? LPG_PGCONN_ODOO_VERSION_SQL : "NULL");

    res = PQexec(conn, query);
    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
        lpg_pgconn_error(conn, why, sizeof(why));
        fprintf(c->out, "  tables:          FAILED: %s\n", why);
        lpg_check_fail(c, "database \"%s\": %s", name, why);
        goto done;
    }

    version = lpg_pgconn_odoo_version(
        conf, PQgetisnull(res, 0, 1) ? NULL : PQgetvalue(res, 0, 1));

    fprintf(c->out, "  tables:          bus_bus (last id %s)%s\n",
            PQgetvalue(res, 0, 0), has_modules ? ", ir_module_module" : "");
    fprintf(c->out, "  Odoo version:    %d (%s)\n", version,
            conf->odoo_version != 0 ? "odoo_version in the configuration"
                : !PQgetisnull(res, 0, 1)
                ? "base's latest_version in ir_module_module"
                : "no ir_module_module version: Odoo 14's shapes");

    if (o->source == LPG_CHECK_SRC_ADDON && o->version != 0
        && o->version != version && strcmp(o->db, name) == 0)
    {
        fprintf(c->out,
                "  note:            the addon says Odoo %d: set odoo_version "
                "= %d if this database's version is wrong\n",
                o->version, o->version);
    }

    fprintf(c->out, "  session source:  %s\n", o->what);

    if (o->source == LPG_CHECK_SRC_ADDON && o->db[0] != '\0'
        && strcmp(o->db, name) != 0)
    {
        fprintf(c->out,
                "  note:            Odoo answered for database \"%s\" here; "
                "a lookup reaches the database its browser's Host selects\n",
                o->db);
    }

    if (lpg_check_notify(conn, &ms, why, sizeof(why)) == LPG_OK) {
        fprintf(c->out,
                "  LISTEN:          works (a NOTIFY to itself came back in "
                "%lld ms)\n",
                (long long) ms);

    } else {
        fprintf(c->out, "  LISTEN:          FAILED: %s\n", why);
        lpg_check_fail(c, "database \"%s\": LISTEN failed: %s", name, why);
    }

done:

    PQclear(res);
    PQfinish(conn);
}


/*
 * LISTEN on a channel of this process's own, NOTIFY it, and wait for the
 * notification to come back (LPG_CHECK_NOTIFY_MS at most).  ms: how long
 * it took.
 */
static int
lpg_check_notify(PGconn *conn, int64_t *ms, char *why, size_t len)
{
    int           rc, found;
    char          chan[64], query[192];
    int64_t       start, left;
    PGnotify     *n;
    PGresult     *res;
    struct pollfd pfd;

    snprintf(chan, sizeof(chan), "lpgate_check_%d", (int) getpid());
    snprintf(query, sizeof(query), "LISTEN %s; NOTIFY %s, 'lpgate --check'",
             chan, chan);

    start = lpg_time_mono_ms();
    res = PQexec(conn, query);

    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        lpg_pgconn_error(conn, why, len);
        PQclear(res);
        return LPG_ERROR;
    }

    PQclear(res);
    found = 0;
    rc = LPG_ERROR;

    while (!found) {
        if (!PQconsumeInput(conn)) {
            lpg_pgconn_error(conn, why, len);
            break;
        }

        while ((n = PQnotifies(conn)) != NULL) {
            found |= strcmp(n->relname, chan) == 0;
            PQfreemem(n);
        }

        if (found) {
            *ms = lpg_time_mono_ms() - start;
            rc = LPG_OK;
            break;
        }

        left = start + LPG_CHECK_NOTIFY_MS - lpg_time_mono_ms();
        if (left <= 0) {
            snprintf(why, len,
                     "LISTEN %s and NOTIFY %s ran, but no notification came "
                     "back within %d ms (a pooler in transaction mode?)",
                     chan, chan, LPG_CHECK_NOTIFY_MS);
            break;
        }

        pfd.fd = PQsocket(conn);
        pfd.events = POLLIN;
        (void) poll(&pfd, 1, (int) left);
    }

    PQclear(PQexec(conn, "UNLISTEN *"));

    return rc;
}


/*
 * POSTs an empty JSON-RPC call to base + path, as a worker's lookup does.
 * body is filled (caller frees body->data, even on failure); LPG_ERROR
 * with err when no HTTP answer came.
 */
static int
lpg_check_post(const char *base, const char *cafile, const char *path,
               long *status, lpg_check_body_t *body, char *err, size_t errlen)
{
    static const char  rpc[] = "{\"jsonrpc\":\"2.0\",\"method\":\"call\","
                               "\"id\":null,\"params\":{}}";
    int                rc;
    char               url[2048], cerr[CURL_ERROR_SIZE];
    size_t             blen;
    CURL              *h;
    CURLcode           code;
    struct curl_slist *headers;

    blen = strlen(base);
    while (blen > 0 && base[blen - 1] == '/') {
        blen--;
    }

    snprintf(url, sizeof(url), "%.*s%s", (int) blen, base, path);

    h = curl_easy_init();
    headers = curl_slist_append(NULL, "Content-Type: application/json");

    if (h == NULL || headers == NULL) {
        snprintf(err, errlen, "curl_easy_init() failed");
        curl_slist_free_all(headers);
        curl_easy_cleanup(h);
        return LPG_ERROR;
    }

    cerr[0] = '\0';
    (void) curl_easy_setopt(h, CURLOPT_URL, url);
#if LIBCURL_VERSION_NUM >= 0x075500
    (void) curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
#else
    (void) curl_easy_setopt(h, CURLOPT_PROTOCOLS,
                            (long) (CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
    (void) curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    /* as the workers ask: no proxy from the environment, odoo_cafile */
    (void) curl_easy_setopt(h, CURLOPT_PROXY, "");
    if (cafile != NULL && cafile[0] != '\0') {
        (void) curl_easy_setopt(h, CURLOPT_CAINFO, cafile);
    }
    (void) curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, LPG_CHECK_CONNECT_S);
    (void) curl_easy_setopt(h, CURLOPT_TIMEOUT, LPG_CHECK_HTTP_S);
    (void) curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers);
    (void) curl_easy_setopt(h, CURLOPT_POSTFIELDS, rpc);
    (void) curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, (long) sizeof(rpc) - 1);
    (void) curl_easy_setopt(h, CURLOPT_USERAGENT, "lpgate-check/" VERSION);
    (void) curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, lpg_check_write_cb);
    (void) curl_easy_setopt(h, CURLOPT_WRITEDATA, body);
    (void) curl_easy_setopt(h, CURLOPT_ERRORBUFFER, cerr);

    code = curl_easy_perform(h);

    if (code != CURLE_OK) {
        snprintf(err, errlen, "POST %.200s: %.100s", url,
                 cerr[0] != '\0' ? cerr : curl_easy_strerror(code));
        rc = LPG_ERROR;

    } else {
        (void) curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, status);
        rc = LPG_OK;
    }

    curl_slist_free_all(headers);
    curl_easy_cleanup(h);

    return rc;
}


/* keeps the first LPG_CHECK_BODY_MAX bytes of an answer */
static size_t
lpg_check_write_cb(char *p, size_t size, size_t n, void *data)
{
    size_t            len = size * n, keep;
    char             *buf;
    lpg_check_body_t *body = data;

    keep = body->len + len > LPG_CHECK_BODY_MAX ? LPG_CHECK_BODY_MAX - body->len
                                                : len;

    if (keep > 0) {
        buf = realloc(body->data, body->len + keep + 1);
        if (buf == NULL) {
            return 0; /* curl fails the transfer: CURLE_WRITE_ERROR */
        }

        memcpy(buf + body->len, p, keep);
        body->data = buf;
        body->len += keep;
        body->data[body->len] = '\0';
    }

    return len;
}
