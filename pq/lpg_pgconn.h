/*
 * SPDX-License-Identifier: MIT
 *
 * lpg_pgconn.h: libpq connection parameters built from lpg_conf_t.
 *
 * Two kinds of connection exist: the LISTEN connection (listen_dsn, or the
 * db_* keys with dbname=postgres, where Odoo NOTIFYs) and query connections
 * to a served database (db_* keys; may go through PgBouncer).  Empty keys are
 * left out so libpq falls back to PGHOST, PGPORT, PGUSER, PGPASSWORD.
 */

#ifndef LPG_PGCONN_H
#define LPG_PGCONN_H


#include "lpg_conf.h"

#include <libpq-fe.h>


#define LPG_PGCONN_NPARAMS 13

/*
 * How lpgate learns what a served database is (the master's fetch
 * connection and lpgate --check ask the same): one row, whether bus_bus and
 * ir_module_module exist; then, when ir_module_module does, this
 * expression gives base's major version as text (NULL: no row).
 */
#define LPG_PGCONN_ODOO_TABLES_SQL                                             \
    "SELECT to_regclass('bus_bus') IS NOT NULL, "                              \
    "to_regclass('ir_module_module') IS NOT NULL"
#define LPG_PGCONN_ODOO_VERSION_SQL                                            \
    "(SELECT split_part(latest_version, '.', 1) FROM ir_module_module "        \
    "WHERE name = 'base')"


typedef struct {
    const char *keys[LPG_PGCONN_NPARAMS];
    const char *values[LPG_PGCONN_NPARAMS];
    char        port[16];
    char        appname[64]; /* lpg_pgconn_params_appname's copy */
    int         expand;
} lpg_pgconn_params_t;


/*
 * Fills p for the LISTEN connection (dbname NULL) or for a query connection
 * to dbname.  p borrows the strings of conf and dbname: keep them alive
 * while p is in use.
 */
void lpg_pgconn_params(lpg_pgconn_params_t *p, const lpg_conf_t *conf,
                       const char *dbname, const char *appname);

/*
 * Sets application_name (not the fallback) to a copy of name, after a
 * listen_dsn so that it wins over the DSN's own: the master's LISTEN
 * connection carries its cluster claim there.  PgBouncer may not pass it
 * on to the server.
 */
void lpg_pgconn_params_appname(lpg_pgconn_params_t *p, const char *name);

/* blocking connect with a 5 s timeout; NULL and err filled on failure */
PGconn *lpg_pgconn_connect(const lpg_conf_t *conf, const char *dbname,
                           char *err, size_t errlen);

/* copies PQerrorMessage without its trailing newline */
void lpg_pgconn_error(PGconn *conn, char *err, size_t errlen);

/* the Odoo version lpgate serves a database with: the odoo_version key when
 * set, else major (LPG_PGCONN_ODOO_VERSION_SQL's value, NULL when none),
 * else 14's shapes */
int lpg_pgconn_odoo_version(const lpg_conf_t *conf, const char *major);

/* libpq's default database, served when no database is configured:
 * PGDATABASE, else the user name; static or conf's storage */
const char *lpg_pgconn_default_db(const lpg_conf_t *conf);


#endif /* LPG_PGCONN_H */
