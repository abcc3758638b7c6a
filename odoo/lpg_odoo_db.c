/*
 * SPDX-License-Identifier: MIT
 *
 * lpg_odoo_db.c: which database a request is for, and its Odoo version.
 *
 * Odoo's order: ?db=, then the dbfilter regular expression on the Host
 * header (%h: the host, %d: its first label), then the only database
 * served.  The version of a database is what the master detected in it,
 * else odoo_version, else 14.
 */

#include "lpg_odoo_db.h"
#include "lpg_json.h"

#include <regex.h>
#include <stdlib.h>
#include <string.h>


static int lpg_odoo_dbfilter(const char *host, size_t len);


static struct {
    const lpg_conf_t *conf; /* the master's copy, read-only */
    lpg_shm_t        *shm;
} lpg_odoo_db;


void
lpg_odoo_db_init(const lpg_conf_t *conf, lpg_shm_t *shm)
{
    lpg_odoo_db.conf = conf;
    lpg_odoo_db.shm = shm;
}


/* Odoo's order: ?db=, then dbfilter on the Host header, then the only
 * database served; -1 when none (an error for the client) */
int
lpg_odoo_pick_db(const lpg_http_request_t *r)
{
    int         db;
    const char *q, *e;
    lpg_shm_t  *shm = lpg_odoo_db.shm;

    for (q = r->query; q != NULL && q < r->query + r->query_len; q = e + 1) {
        e = memchr(q, '&', r->query + r->query_len - q);
        if (e == NULL) {
            e = r->query + r->query_len;
        }

        if (e - q > 3 && memcmp(q, "db=", 3) == 0) {
            return lpg_shm_find_db(shm, q + 3, e - q - 3);
        }
    }

    if (lpg_odoo_db.conf->dbfilter[0] != '\0' && r->host != NULL) {
        db = lpg_odoo_dbfilter(r->host, r->host_len);
        if (db >= 0) {
            return db;
        }
    }

    return shm->header->ndbs == 1 ? 0 : -1;
}


/* appends s[0..len) to b with POSIX ERE metacharacters escaped */
static int
lpg_odoo_re_escape(lpg_buf_t *b, const char *s, size_t len)
{
    size_t i;

    for (i = 0; i < len; i++) {
        if (strchr(".[]{}()\\*+?^$|", s[i]) != NULL
            && lpg_buf_append(b, "\\", 1) != LPG_OK)
        {
            return LPG_ERROR;
        }

        if (lpg_buf_append(b, &s[i], 1) != LPG_OK) {
            return LPG_ERROR;
        }
    }

    return LPG_OK;
}


/* the one database whose name the dbfilter matches for this host */
static int
lpg_odoo_dbfilter(const char *host, size_t len)
{
    int         i, found, rc;
    size_t      hlen, dlen;
    regex_t     re;
    lpg_buf_t   pat;
    const char *f, *d, *dot, *rest;
    lpg_shm_t  *shm = lpg_odoo_db.shm;

    /* %h: the host without its port; %d: its first label, www. skipped */
    for (hlen = 0; hlen < len && host[hlen] != ':'; hlen++) {
        /* void */
    }

    d = host;
    dot = memchr(host, '.', hlen);
    dlen = dot ? (size_t) (dot - host) : hlen;
    if (dlen == 3 && memcmp(host, "www", 3) == 0 && dot != NULL) {
        rest = dot + 1;
        d = rest;
        dot = memchr(rest, '.', host + hlen - rest);
        dlen = dot ? (size_t) (dot - rest) : (size_t) (host + hlen - rest);
    }

    memset(&pat, 0, sizeof(pat));
    rc = lpg_buf_append(&pat, "^(", 2);

    for (f = lpg_odoo_db.conf->dbfilter; *f != '\0' && rc == LPG_OK; f++) {
        if (f[0] == '%' && f[1] == 'h') {
            rc = lpg_odoo_re_escape(&pat, host, hlen);
            f++;

        } else if (f[0] == '%' && f[1] == 'd') {
            rc = lpg_odoo_re_escape(&pat, d, dlen);
            f++;

        } else {
            rc = lpg_buf_append(&pat, f, 1);
        }
    }

    if (rc != LPG_OK || lpg_buf_append(&pat, ")", 1) != LPG_OK
        || regcomp(&re, pat.data, REG_EXTENDED | REG_NOSUB) != 0)
    {
        lpg_log(LPG_LOG_WARN, 0,
                "dbfilter \"%s\" is not a valid regular "
                "expression",
                lpg_odoo_db.conf->dbfilter);
        lpg_buf_free(&pat);
        return -1;
    }

    lpg_buf_free(&pat);

    found = -1;
    for (i = 0; i < shm->header->ndbs; i++) {
        if (regexec(&re, shm->dbs[i].name, 0, NULL, 0) == 0) {
            if (found >= 0) {
                /* several: Odoo cannot choose either */
                found = -1;
                break;
            }

            found = i;
        }
    }

    regfree(&re);

    return found;
}


int
lpg_odoo_version(int db)
{
    int v;

    v = db >= 0 ? atomic_load(&lpg_odoo_db.shm->dbs[db].version) : 0;
    if (v != 0) {
        return v;
    }

    return lpg_odoo_db.conf->odoo_version ? lpg_odoo_db.conf->odoo_version : 14;
}


const char *
lpg_odoo_db_name(int db)
{
    return lpg_odoo_db.shm->dbs[db].name;
}
