/*
 * SPDX-License-Identifier: MIT
 *
 * lpg_fetch_int.h: what lpg_fetch.c shares with lpg_fetch_conn.c (the
 * master's process only; nothing here is in shared memory).
 */

#ifndef LPG_FETCH_INT_H
#define LPG_FETCH_INT_H


#include "lpg_fetch.h"
#include "lpg_fetch_page.h"
#include "lpg_gap.h"
#include "lpg_pgasync.h"


typedef enum {
    LPG_FETCH_DOWN = 0,
    LPG_FETCH_TABLES, /* asking which of Odoo's tables exist */
    LPG_FETCH_CURSOR, /* reading max(id) and the Odoo version */
    LPG_FETCH_READY,
    LPG_FETCH_RUNNING
} lpg_fetch_state_e;


typedef struct {
    lpg_pgasync_t     conn;
    int               idx;
    lpg_fetch_state_e state;
    bool              dirty;
    bool              has_cursor;
    bool              has_bus;
    bool              has_modules;
    bool              warned;
    bool              has_seq;   /* seq is bus_bus's id sequence, readable */
    bool              snap_seen; /* the running fetch's first row arrived */
    char              listen[80];
    char              seq[192];  /* as pg_get_serial_sequence quotes it */
    uint32_t          table_oid; /* bus_bus's oid when the cursor was set */
    uint32_t          snap_oid;  /* bus_bus's oid, as last seen */
    int64_t           snap_high; /* the largest id allocated, as last seen */
    int64_t           notify_us; /* first NOTIFY since the last fetch */
    int64_t           fetch_notify_us;
    int64_t           run_us;   /* the last fetch's start */
    int64_t           fetch_ms; /* the running fetch's snapshot arrived */
    lpg_gap_t         gap;
    uint64_t          xmin;
    uint64_t          xmax;
    lpg_fetch_page_t  page; /* the running fetch's page */
    ev_timer          again;
} lpg_fetch_db_t;


typedef struct {
    struct ev_loop   *loop;
    const lpg_conf_t *conf;
    lpg_shm_t        *shm;
    lpg_ring_t       *ring;
    const int        *doorbells;
    int               nslots;
    int               ndbs;
    bool              pending_doorbell;
    ev_timer          kick;
    char             *buf;
    size_t            buf_cap;
    lpg_fetch_db_t    dbs[LPG_SHM_MAX_DBS];
} lpg_fetch_global_t;


/* the one fetcher of the master (lpg_fetch.c) */
extern lpg_fetch_global_t lpg_fetch;

void lpg_fetch_run(lpg_fetch_db_t *db);
void lpg_fetch_resync(lpg_fetch_db_t *db);
void lpg_fetch_set_high(lpg_fetch_db_t *db, int64_t high);

/* lpg_fetch_conn.c: a connection's opening, before its fetches */
void lpg_fetch_conn_ready(lpg_pgasync_t *a);
void lpg_fetch_conn_result(lpg_fetch_db_t *db, const PGresult *res);
void lpg_fetch_conn_done(lpg_fetch_db_t *db);

/* "ident" with inner quotes doubled, as PQescapeIdentifier does */
void lpg_fetch_quote(char *out, size_t cap, const char *ident);


#endif /* LPG_FETCH_INT_H */
