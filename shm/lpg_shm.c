/*
 * SPDX-License-Identifier: MIT
 *
 * lpg_shm.c: creation and health reading of the shared segment.
 *
 * The segment is an anonymous MAP_SHARED mapping made by the master before
 * it forks, so every worker inherits it at the same address and no name in
 * /dev/shm can leak when the master is killed.  This file does not know what
 * the ring holds; shm/lpg_ring does.
 */

#include "lpg_shm.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ  22
#define MADV_POPULATE_WRITE 23
#endif


#define LPG_ALIGN(n, a) (((n) + ((a) -1)) & ~((size_t) (a) -1))


void
lpg_shm_prefault(const lpg_shm_t *shm, bool write)
{
    volatile char *p = (volatile char *) shm->header;
    size_t         off, page = (size_t) sysconf(_SC_PAGESIZE);

    if (madvise((void *) shm->header, shm->size,
                write ? MADV_POPULATE_WRITE : MADV_POPULATE_READ)
        == 0)
    {
        return;
    }

    /* kernels before 5.14: touch one byte per page */
    for (off = 0; off < shm->size; off += page) {
        if (write) {
            /* volatile: a real write of what is there (the header is
             * already set) */
            p[off] = p[off]; /* cppcheck-suppress selfAssignment */
        } else {
            (void) p[off];
        }
    }
}

int
lpg_shm_create(lpg_shm_t *shm, int nslots, size_t ring_size)
{
    void  *p;
    size_t size, dbs_off, workers_off, sessions_off, ring_off;

    dbs_off = LPG_ALIGN(sizeof(lpg_shm_header_t), LPG_CACHELINE);
    workers_off =
        LPG_ALIGN(dbs_off + LPG_SHM_MAX_DBS * sizeof(lpg_shm_db_t), 4096);
    sessions_off =
        LPG_ALIGN(workers_off + nslots * sizeof(lpg_shm_worker_t), 4096);
    ring_off = LPG_ALIGN(
        sessions_off + LPG_SHM_SESSIONS * sizeof(lpg_shm_session_t), 4096);
    size = LPG_ALIGN(ring_off + ring_size, 4096);

    p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1,
             0);
    if (p == MAP_FAILED) {
        lpg_log(LPG_LOG_EMERG, errno, "mmap(%zu) failed", size);
        return LPG_ERROR;
    }

    /* anonymous mappings are zero-filled: only the header needs values */
    shm->header = p;
    shm->dbs = (lpg_shm_db_t *) ((char *) p + dbs_off);
    shm->workers = (lpg_shm_worker_t *) ((char *) p + workers_off);
    shm->sessions = (lpg_shm_session_t *) ((char *) p + sessions_off);
    shm->ring = (char *) p + ring_off;
    shm->ring_size = ring_size;
    shm->size = size;

    shm->header->magic = LPG_SHM_MAGIC;
    shm->header->version = LPG_SHM_VERSION;
    shm->header->size = size;
    shm->header->generation = 1;
    shm->header->nslots = nslots;

    return LPG_OK;
}


int
lpg_shm_set_dbs(lpg_shm_t *shm, const char *list, char *err, size_t errlen)
{
    int         n;
    size_t      len;
    const char *p, *end;

    n = 0;
    p = list;

    while (*p != '\0') {
        while (*p == ',' || *p == ' ') {
            p++;
        }

        if (*p == '\0') {
            break;
        }

        end = p;
        while (*end != '\0' && *end != ',' && *end != ' ') {
            end++;
        }

        len = end - p;

        if (lpg_shm_find_db(shm, p, len) >= 0 && n > 0) {
            p = end;
            continue;
        }

        if (n == LPG_SHM_MAX_DBS || len >= LPG_SHM_DBNAME) {
            snprintf(err, errlen,
                     n == LPG_SHM_MAX_DBS ? "database: more than %d databases"
                                          : "database: a name is longer "
                                            "than %d bytes",
                     n == LPG_SHM_MAX_DBS ? LPG_SHM_MAX_DBS
                                          : LPG_SHM_DBNAME - 1);
            return LPG_ERROR;
        }

        memcpy(shm->dbs[n].name, p, len);
        shm->dbs[n].name[len] = '\0';
        shm->header->ndbs = ++n;
        p = end;
    }

    return LPG_OK;
}


int
lpg_shm_find_db(const lpg_shm_t *shm, const char *name, size_t len)
{
    int i;

    for (i = 0; i < shm->header->ndbs; i++) {
        if (strlen(shm->dbs[i].name) == len
            && memcmp(shm->dbs[i].name, name, len) == 0) {
            return i;
        }
    }

    return -1;
}


void
lpg_shm_destroy(lpg_shm_t *shm)
{
    if (shm->header != NULL) {
        munmap(shm->header, shm->size);
        shm->header = NULL;
    }
}


bool
lpg_shm_valid(const lpg_shm_t *shm)
{
    return shm->header != NULL && shm->header->magic == LPG_SHM_MAGIC
        && shm->header->version == LPG_SHM_VERSION
        && shm->header->size == shm->size;
}


void
lpg_shm_set_db(lpg_shm_t *shm, bool up, const char *error)
{
    lpg_shm_header_t *h = shm->header;

    /* seqlock: odd while the text is being written */
    atomic_fetch_add_explicit(&h->db_error_seq, 1, memory_order_acq_rel);
    snprintf(h->db_error, sizeof(h->db_error), "%s", error ? error : "");
    atomic_fetch_add_explicit(&h->db_error_seq, 1, memory_order_acq_rel);

    atomic_store_explicit(&h->db_up, up ? 1 : 0, memory_order_release);
}


bool
lpg_shm_healthy(lpg_shm_t *shm, int64_t now, char *why, size_t len)
{
    int               i, n, down;
    char              err[sizeof(shm->header->db_error)];
    size_t            off;
    int64_t           hb;
    uint32_t          seq;
    lpg_shm_header_t *h = shm->header;
    lpg_shm_worker_t *w;

    off = 0;
    why[0] = '\0';

    if (atomic_load_explicit(&h->draining, memory_order_acquire)) {
        /* the node is going away on purpose: a balancer tells this from
         * "dead" and takes it out before it stops accepting */
        snprintf(why, len, "draining");
        return false;
    }

#define LPG_SHM_WHY(...)                                                       \
    do {                                                                       \
        int m_ = snprintf(why + off, len - off, "%s", off ? "; " : "");        \
        if (m_ > 0 && (size_t) m_ < len - off) {                               \
            off += m_;                                                         \
        }                                                                      \
        m_ = snprintf(why + off, len - off, __VA_ARGS__);                      \
        if (m_ > 0 && (size_t) m_ < len - off) {                               \
            off += m_;                                                         \
        }                                                                      \
    } while (0)

    hb = atomic_load_explicit(&h->master_heartbeat, memory_order_acquire);
    if (atomic_load(&h->master_pid) == 0 || now - hb > LPG_SHM_STALE_MS) {
        LPG_SHM_WHY("master is down");
    }

    n = atomic_load(&h->nworkers);
    down = 0;

    for (i = 0; i < n && i < h->nslots; i++) {
        w = &shm->workers[i];
        hb = atomic_load_explicit(&w->heartbeat, memory_order_acquire);

        if (atomic_load(&w->pid) == 0 || now - hb > LPG_SHM_STALE_MS) {
            down++;
        }
    }

    if (down > 0) {
        LPG_SHM_WHY("%d of %d workers down", down, n);
    }

    if (!atomic_load_explicit(&h->db_up, memory_order_acquire)) {
        for (i = 0; i < 3; i++) {
            seq = atomic_load_explicit(&h->db_error_seq, memory_order_acquire);
            memcpy(err, h->db_error, sizeof(err));
            err[sizeof(err) - 1] = '\0';
            atomic_thread_fence(memory_order_acquire);
            if ((seq & 1) == 0 && seq == atomic_load(&h->db_error_seq)) {
                break;
            }

            err[0] = '\0';
        }

        if (err[0] != '\0') {
            LPG_SHM_WHY("database connection is down: %s", err);

        } else {
            LPG_SHM_WHY("database connection is down");
        }
    }

#undef LPG_SHM_WHY

    return off == 0;
}


int
lpg_shm_cron_take(lpg_shm_t *shm, int n, int32_t pid)
{
    int     i;
    int32_t free_pid;

    if (n > LPG_SHM_CRON_SLOTS) {
        n = LPG_SHM_CRON_SLOTS;
    }

    for (i = 0; i < n; i++) {
        free_pid = 0;
        if (atomic_compare_exchange_strong(&shm->header->cron_pids[i],
                                           &free_pid, pid)) {
            return i;
        }
    }

    return -1;
}


void
lpg_shm_cron_give(lpg_shm_t *shm, int slot)
{
    atomic_store(&shm->header->cron_pids[slot], 0);
}


void
lpg_shm_cron_reap(lpg_shm_t *shm, int32_t pid)
{
    int     i;
    int32_t held;

    for (i = 0; i < LPG_SHM_CRON_SLOTS; i++) {
        held = pid;
        (void) atomic_compare_exchange_strong(&shm->header->cron_pids[i], &held,
                                              0);
    }
}


ssize_t
lpg_shm_session_read(lpg_shm_t *shm, uint32_t hash, int64_t now, char *buf,
                     size_t cap, int64_t *expires)
{
    int                tries;
    uint32_t           seq;
    size_t             len;
    bool               hit;
    lpg_shm_session_t *s = &shm->sessions[hash % LPG_SHM_SESSIONS];

    for (tries = 0; tries < 100; tries++) {
        seq = atomic_load_explicit(&s->seq, memory_order_acquire);
        if (seq & 1) {
            continue;
        }

        len = s->len;
        *expires = s->expires;
        hit = s->hash == hash && *expires > now && len > 0 && len <= cap
            && len <= LPG_SHM_SESSION_DATA;
        if (hit) {
            memcpy(buf, s->data, len);
        }

        atomic_thread_fence(memory_order_acquire);
        if (atomic_load_explicit(&s->seq, memory_order_relaxed) == seq) {
            return hit ? (ssize_t) len : -1;
        }
    }

    return -1;
}


bool
lpg_shm_session_claim(lpg_shm_t *shm, uint32_t hash, int32_t pid, int64_t now,
                      int64_t stale_ms)
{
    int32_t            owner;
    lpg_shm_session_t *s = &shm->sessions[hash % LPG_SHM_SESSIONS];

    owner = atomic_load(&s->owner);

    if (owner != 0 && owner != pid && atomic_load(&s->claimed) + stale_ms > now)
    {
        return false;
    }

    if (!atomic_compare_exchange_strong(&s->owner, &owner, pid)) {
        return false;
    }

    atomic_store(&s->claimed, now);

    return true;
}


void
lpg_shm_session_write(lpg_shm_t *shm, uint32_t hash, int32_t pid,
                      int64_t expires, const char *data, size_t len)
{
    uint32_t           seq;
    lpg_shm_session_t *s = &shm->sessions[hash % LPG_SHM_SESSIONS];

    if (atomic_load(&s->owner) != pid || len > LPG_SHM_SESSION_DATA) {
        lpg_shm_session_release(shm, hash, pid);
        return;
    }

    seq = atomic_load_explicit(&s->seq, memory_order_relaxed);
    atomic_store_explicit(&s->seq, seq + 1, memory_order_relaxed);
    atomic_thread_fence(memory_order_release);

    s->hash = hash;
    s->len = (uint32_t) len;
    s->expires = expires;
    memcpy(s->data, data, len);

    atomic_store_explicit(&s->seq, seq + 2, memory_order_release);

    lpg_shm_session_release(shm, hash, pid);
}


void
lpg_shm_session_release(lpg_shm_t *shm, uint32_t hash, int32_t pid)
{
    int32_t            owner = pid;
    lpg_shm_session_t *s = &shm->sessions[hash % LPG_SHM_SESSIONS];

    (void) atomic_compare_exchange_strong(&s->owner, &owner, 0);
}
