/*
 * SPDX-License-Identifier: MIT
 *
 * lpg_pgconn.c: libpq parameters and the blocking connect used at start.
 *
 * The event-driven connections live in lpg_pglisten.c (master) and the
 * worker's pool; both take their parameters from here so the rules about
 * which keys apply to which connection live in one place.
 */

#include "lpg_pgconn.h"

#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>


void
lpg_pgconn_params(lpg_pgconn_params_t *p, const lpg_conf_t *conf,
                  const char *dbname, const char *appname)
{
    int n = 0;

#define LPG_PARAM(k, v)                                                        \
    do {                                                                       \
        if ((v) != NULL && (v)[0] != '\0') {                                   \
            p->keys[n] = (k);                                                  \
            p->values[n] = (v);                                                \
            n++;                                                               \
        }                                                                      \
    } while (0)

    memset(p, 0, sizeof(*p));

    LPG_PARAM("connect_timeout", "5");
    LPG_PARAM("fallback_application_name", appname);
    LPG_PARAM("keepalives", "1");
    LPG_PARAM("keepalives_idle", "10");
    LPG_PARAM("keepalives_interval", "5");
    LPG_PARAM("keepalives_count", "3");

    if (dbname == NULL && conf->listen_dsn[0] != '\0') {
        /* the DSN is expanded in place and overrides everything above */
        LPG_PARAM("dbname", conf->listen_dsn);
        p->expand = 1;

    } else {
        if (conf->db_port != 0) {
            snprintf(p->port, sizeof(p->port), "%d", conf->db_port);
        }

        LPG_PARAM("host", conf->db_host);
        LPG_PARAM("port", p->port);
        LPG_PARAM("user", conf->db_user);
        LPG_PARAM("password", conf->db_password);
        LPG_PARAM("dbname", dbname != NULL ? dbname : "postgres");
    }

#undef LPG_PARAM

    p->keys[n] = NULL;
    p->values[n] = NULL;
}


void
lpg_pgconn_params_appname(lpg_pgconn_params_t *p, const char *name)
{
    int n;

    for (n = 0; n < LPG_PGCONN_NPARAMS - 1 && p->keys[n] != NULL; n++) {
        /* count */
    }

    if (n == LPG_PGCONN_NPARAMS - 1) {
        return; /* cannot happen: NPARAMS leaves room for it */
    }

    snprintf(p->appname, sizeof(p->appname), "%s", name);
    p->keys[n] = "application_name";
    p->values[n] = p->appname;
    p->keys[n + 1] = NULL;
    p->values[n + 1] = NULL;
}


PGconn *
lpg_pgconn_connect(const lpg_conf_t *conf, const char *dbname, char *err,
                   size_t errlen)
{
    PGconn             *conn;
    lpg_pgconn_params_t p;

    lpg_pgconn_params(&p, conf, dbname, "lpgate");

    conn = PQconnectdbParams(p.keys, p.values, p.expand);
    if (conn == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }

    if (PQstatus(conn) != CONNECTION_OK) {
        lpg_pgconn_error(conn, err, errlen);
        PQfinish(conn);
        return NULL;
    }

    return conn;
}


void
lpg_pgconn_error(PGconn *conn, char *err, size_t errlen)
{
    size_t len;

    snprintf(err, errlen, "%s", conn ? PQerrorMessage(conn) : "no connection");

    len = strlen(err);
    while (len > 0 && (err[len - 1] == '\n' || err[len - 1] == ' ')) {
        err[--len] = '\0';
    }

    /* multi-line libpq errors ("connection to server ... failed: ...") */
    for (char *c = err; *c != '\0'; c++) {
        if (*c == '\n' || *c == '\t') {
            *c = ' ';
        }
    }
}


int
lpg_pgconn_odoo_version(const lpg_conf_t *conf, const char *major)
{
    if (conf->odoo_version != 0) {
        return conf->odoo_version;
    }

    return major == NULL ? 14 : atoi(major);
}


const char *
lpg_pgconn_default_db(const lpg_conf_t *conf)
{
    const char    *s;
    struct passwd *pw;

    s = getenv("PGDATABASE");
    if (s != NULL && s[0] != '\0') {
        return s;
    }

    if (conf->db_user[0] != '\0') {
        return conf->db_user;
    }

    s = getenv("PGUSER");
    if (s != NULL && s[0] != '\0') {
        return s;
    }

    pw = getpwuid(geteuid());

    return pw != NULL ? pw->pw_name : "postgres";
}
