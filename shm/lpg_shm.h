/*
 * SPDX-License-Identifier: MIT
 *
 * lpg_shm.h: the shared-memory segment the master creates before forking.
 *
 * Layout: one header line (magic, version, size, generation, master state),
 * then one 128-byte stats slot per worker slot, then the notification ring
 * area.  Each cache line has one writer: the header is the master's, a
 * worker slot is its worker's (the master only resets a slot after reaping
 * its worker).  Fields read by other processes are atomics.
 */

#ifndef LPG_SHM_H
#define LPG_SHM_H


#include "lpg_core.h"

#include <stdatomic.h>


#define LPG_SHM_MAGIC   0x4c504754u /* "LPGT" */
#define LPG_SHM_VERSION 2

/* databases one gateway serves (-d db1,db2,...) */
#define LPG_SHM_MAX_DBS 16
#define LPG_SHM_DBNAME  64

/* delivery latency histogram bounds, seconds (the last is +Inf) */
/* the close codes a websocket's closes are counted by (1006: the TCP
 * connection ended without a close frame), then "other" */
#define LPG_SHM_WS_CODES                                                       \
    {                                                                          \
        1000, 1001, 1002, 1007, 1009, 1011, 1013, 4001, 4002, 1006             \
    }
#define LPG_SHM_WS_NCODES 11

#define LPG_SHM_LAT_BUCKETS 12
#define LPG_SHM_LAT_BOUNDS                                                     \
    {                                                                          \
        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5      \
    }

/* cron slots (max_cron_threads * db_maxconn connections) a segment can
 * track; a worker holds one while its presence flush runs */
#define LPG_SHM_CRON_SLOTS 64

/*
 * The session answers the workers share, so one Odoo lookup per session
 * and TTL serves every worker: a table of slots indexed by a hash of the
 * session key; a seqlock per slot (one writer: the claim's owner) and an
 * owner field saying who is asking Odoo now.  The data is opaque here.
 */
#define LPG_SHM_SESSIONS     1024
#define LPG_SHM_SESSION_DATA 2016

/* a process whose heartbeat is older than this is reported down */
#define LPG_SHM_STALE_MS 3000


typedef struct {
    uint32_t         magic;
    uint32_t         version;
    uint64_t         size;
    uint64_t         generation;
    int32_t          nslots;
    _Atomic int32_t  nworkers;
    _Atomic int32_t  master_pid;
    _Atomic int64_t  master_heartbeat;
    _Atomic int32_t  db_up;
    _Atomic uint32_t db_error_seq;
    char             db_error[160];
    int32_t          ndbs;
    _Atomic uint64_t notifies;
    _Atomic uint64_t bad_payloads;
    _Atomic uint64_t fetches;
    _Atomic uint64_t records;
    _Atomic uint64_t gaps_final;
    _Atomic uint64_t gaps_forced;
    _Atomic uint64_t gaps_held; /* databases holding rows back now */
    _Atomic uint64_t ring_bytes;
    _Atomic uint64_t listen_reconnects;
    _Atomic uint64_t bus_resets; /* re-syncs after ids went backwards */
    _Atomic int32_t  cron_pids[LPG_SHM_CRON_SLOTS]; /* 0: free */
    /* per database, what serves its sessions (lpg_session.c: 0 not known
     * yet, 1 the addon's route, 2 the built-in SQL); written by the worker
     * that sees it change, so that one line is logged per change */
    _Atomic int32_t session_source[LPG_SHM_MAX_DBS];
    /* 1 from SIGQUIT on: /health says "draining" (the master's) */
    _Atomic int32_t draining;
    /* the ring's head_seq when the master last rang the doorbells: a
     * worker that has read less has a doorbell waiting (lpg_bus.c) */
    _Atomic uint64_t rung;
    _Atomic uint64_t doorbells; /* times the master rang them */
} __attribute__((aligned(LPG_CACHELINE))) lpg_shm_header_t;


/*
 * What the master knows of one database; written by the master only.
 *
 * Ids that go backwards (TRUNCATE bus_bus RESTART IDENTITY, a restore, the
 * database dropped and created again): the master re-syncs its cursor to
 * 0, stores the new high and cursor here, adds one to resets, and then
 * pushes a reset marker into the ring (lpg_record.h) before the rows of
 * the new table.  The marker tells each worker, in ring order, to drop
 * its history of the database and start its parked polls of it again
 * from the new cursor (the new table's rows wake them); resets lets a
 * worker that the ring lapped (and that may have missed the marker)
 * notice it all the same.
 *
 * high is an upper bound of every id the master has handed out: it is
 * stored before the records it covers are pushed, so a worker that reads
 * a record also sees a high at least as large.  A poll whose last is
 * above it comes from before a reset (or from a client that kept an old
 * last), and is served from the cursor: it gets every later row.  Odoo
 * 16+ serves it as last = 0, but its client then adopts the lower ids;
 * an 8-15 client keeps max(last, ids) and would get the same rows of
 * the last timeout seconds again and again.
 */
typedef struct {
    char             name[LPG_SHM_DBNAME];
    _Atomic int32_t  ready;   /* cursor and version are known */
    _Atomic int32_t  version; /* Odoo major version, 14 if none */
    _Atomic int64_t  cursor;  /* highest bus id published */
    _Atomic int64_t  start;   /* the cursor when the master first connected
                               * (or re-synced) */
    _Atomic int64_t  high;    /* the largest id known to exist or have been
                               * allocated (the id sequence's last value) */
    _Atomic uint64_t resets;  /* times the ids went backwards */
    /* fetches of db the master began, and the number of the last one
     * published (high set): a worker waits for a fetch begun after a
     * poll whose last is above high (lpg_bus_fetched_since) */
    _Atomic uint64_t fetch_begun;
    _Atomic uint64_t fetch_done;
} __attribute__((aligned(LPG_CACHELINE))) lpg_shm_db_t;


typedef struct {
    _Atomic int32_t  pid;
    _Atomic uint32_t generation;
    _Atomic int64_t  heartbeat;
    _Atomic int64_t  started;
    _Atomic uint64_t connections;
    _Atomic uint64_t requests;
    _Atomic uint64_t active;
    _Atomic uint64_t parked;
    _Atomic uint64_t answered_message;
    _Atomic uint64_t answered_timeout;
    _Atomic uint64_t answered_error;
    _Atomic uint64_t answered_refused;
    _Atomic uint64_t ring_seq; /* records read: lag = head - this */
    _Atomic uint64_t backfills;
    _Atomic uint64_t db_conns;
    _Atomic uint64_t db_waiters;
    _Atomic uint64_t session_lookups;
    _Atomic uint64_t presence_flushes;
    _Atomic uint64_t lat_count;
    _Atomic uint64_t lat_sum_us;
    _Atomic uint64_t lat[LPG_SHM_LAT_BUCKETS];
    /* /websocket: open sockets, messages and frames, closes by code
     * (LPG_SHM_WS_CODES; the last slot counts any other code) */
    _Atomic uint64_t ws_open;
    _Atomic uint64_t ws_in;
    _Atomic uint64_t ws_out;
    _Atomic uint64_t ws_closes[LPG_SHM_WS_NCODES];
    /* <path>/ws, the plain WebSocket API: open sockets, records sent */
    _Atomic uint64_t wsapi_open;
    _Atomic uint64_t wsapi_delivered;
    /* <path>/socket.io/: open sessions, their websockets, records sent */
    _Atomic uint64_t sio_sessions;
    _Atomic uint64_t sio_ws_open;
    _Atomic uint64_t sio_delivered;
    /* <path>/sse, Server-Sent Events: open streams, records sent */
    _Atomic uint64_t sse_open;
    _Atomic uint64_t sse_delivered;
    /* answers sent in io_uring batches (lpg_http_batch), and the
     * io_uring_enter calls that sent them */
    _Atomic uint64_t batched_sends;
    _Atomic uint64_t batch_submits;
} __attribute__((aligned(LPG_CACHELINE))) lpg_shm_worker_t;


typedef struct {
    _Atomic uint32_t seq;     /* odd while written */
    _Atomic int32_t  owner;   /* pid asking Odoo for this slot, 0: none */
    _Atomic int64_t  claimed; /* monotonic ms of that claim */
    uint32_t         hash;
    uint32_t         len;     /* bytes of data */
    int64_t          expires; /* monotonic ms (one clock for all) */
    char             data[LPG_SHM_SESSION_DATA];
} lpg_shm_session_t;


typedef struct {
    lpg_shm_header_t  *header;
    lpg_shm_db_t      *dbs;
    lpg_shm_worker_t  *workers;
    lpg_shm_session_t *sessions; /* LPG_SHM_SESSIONS slots */
    void              *ring;
    size_t             ring_size;
    size_t             size;
} lpg_shm_t;


/*
 * Maps every page of the segment into the calling process now (write:
 * also allocates them; the master does that once, before it forks), so
 * a process's RSS is its whole footprint from the start instead of
 * creeping up to ring_size as the ring fills for the first time.
 */
void lpg_shm_prefault(const lpg_shm_t *shm, bool write);


/* master, before fork: maps nslots worker slots, the database table and
 * a ring area of ring_size bytes (formatted by lpg_ring_init) */
int lpg_shm_create(lpg_shm_t *shm, int nslots, size_t ring_size) LPG_MUSTCHECK;

/* splits a comma list into the database table; LPG_ERROR when there are
 * too many or a name is too long (err says which) */
int lpg_shm_set_dbs(lpg_shm_t *shm, const char *list, char *err,
                    size_t errlen) LPG_MUSTCHECK;

/* index of a database by name, -1 when not served */
int  lpg_shm_find_db(const lpg_shm_t *shm, const char *name, size_t len);
void lpg_shm_destroy(lpg_shm_t *shm);

/*
 * Shared session answers.  read: copies the data of hash's slot into buf
 * (cap bytes) and its expiry into *expires when it holds hash and has not
 * expired at now; its length, else -1.  claim: pid becomes the slot's asker unless another process
 * claimed it less than stale_ms ago (false then: wait for its answer).
 * write: the claim's owner publishes data and gives the claim up;
 * release: gives it up without an answer.
 */
ssize_t lpg_shm_session_read(lpg_shm_t *shm, uint32_t hash, int64_t now,
                             char *buf, size_t cap, int64_t *expires);
bool    lpg_shm_session_claim(lpg_shm_t *shm, uint32_t hash, int32_t pid,
                              int64_t now, int64_t stale_ms);
void    lpg_shm_session_write(lpg_shm_t *shm, uint32_t hash, int32_t pid,
                              int64_t expires, const char *data, size_t len);
void    lpg_shm_session_release(lpg_shm_t *shm, uint32_t hash, int32_t pid);

/* takes one of the first n cron slots for pid: its index, or -1 when all
 * are taken */
int  lpg_shm_cron_take(lpg_shm_t *shm, int n, int32_t pid);
void lpg_shm_cron_give(lpg_shm_t *shm, int slot);

/* master: the slots a dead process held are free again */
void lpg_shm_cron_reap(lpg_shm_t *shm, int32_t pid);

/* any process: checks magic, version and size of an inherited mapping */
bool lpg_shm_valid(const lpg_shm_t *shm);

/* master: publish the database state and its last error text */
void lpg_shm_set_db(lpg_shm_t *shm, bool up, const char *error);

/*
 * Health as /health reports it: true when the master, every configured
 * worker and the master's database connection are up at now (monotonic
 * ms) and the node is not draining.  Otherwise why names what is down,
 * or is "draining" alone.
 */
bool lpg_shm_healthy(lpg_shm_t *shm, int64_t now, char *why, size_t len);


#endif /* LPG_SHM_H */
