/*
 * SPDX-License-Identifier: MIT
 *
 * lpg_session_shm.c: one lookup per session for every worker.
 *
 * The worker that claims a session's slot in the shared segment asks Odoo
 * and publishes the answer there (key, uid, database, guest and channel
 * keys, with its expiry); the others wait on their entry's remote list and
 * look at the slot every LPG_SESSION_REMOTE s, or take the claim over
 * when the asker gave up or died.  An answer too big for a slot stays in
 * the asker's cache only.
 */

#include "lpg_session_int.h"

#include <stdlib.h>
#include <string.h>


/* what lpg_shm_session_write() stores after the key and its NUL */
typedef struct {
    int32_t  known;
    int32_t  db;
    int64_t  uid;
    int64_t  guest;
    uint32_t nkeys;
} lpg_session_wire_t;


/* e's answer for the other workers (too big for a slot: only this
 * worker's cache keeps it) */
void
lpg_session_publish(lpg_session_t *e)
{
    char               buf[LPG_SHM_SESSION_DATA];
    size_t             i, off;
    lpg_session_wire_t h;

    e->claimed = false;

    h.known = e->info.known;
    h.db = e->info.db;
    h.uid = e->info.uid;
    h.guest = e->info.guest_id;
    h.nkeys = (uint32_t) e->info.nkeys;

    off = e->key_len + 1 + sizeof(h);
    for (i = 0; i < e->info.nkeys; i++) {
        off += e->key_lens[i] + 1;
    }

    if (off > sizeof(buf)) {
        lpg_shm_session_release(lpg_sess.shm, e->hash, lpg_sess.pid);
        return;
    }

    memcpy(buf, e->key, e->key_len + 1);
    off = e->key_len + 1;
    memcpy(buf + off, &h, sizeof(h));
    off += sizeof(h);

    for (i = 0; i < e->info.nkeys; i++) {
        memcpy(buf + off, e->keys[i], e->key_lens[i] + 1);
        off += e->key_lens[i] + 1;
    }

    lpg_shm_session_write(lpg_sess.shm, e->hash, lpg_sess.pid, e->expires, buf,
                          off);
}


/* fills e from another worker's answer, if one is there and fresh */
bool
lpg_session_shared(lpg_session_t *e, int64_t now)
{
    char               buf[LPG_SHM_SESSION_DATA];
    char              *k, *end;
    size_t             len;
    ssize_t            n;
    int64_t            expires;
    uint32_t           i;
    lpg_session_wire_t h;

    n = lpg_shm_session_read(lpg_sess.shm, e->hash, now, buf, sizeof(buf),
                             &expires);
    if (n < 0 || (size_t) n < e->key_len + 1 + sizeof(h)
        || memcmp(buf, e->key, e->key_len + 1) != 0)
    {
        return false;
    }

    memcpy(&h, buf + e->key_len + 1, sizeof(h));
    k = buf + e->key_len + 1 + sizeof(h);
    end = buf + n;

    lpg_session_free_keys(e);

    for (i = 0; i < h.nkeys; i++) {
        char *copy;

        len = strnlen(k, end - k);
        if (k + len >= end) {
            break;
        }

        copy = strndup(k, len);
        if (copy == NULL || lpg_session_push(e, copy, len) != LPG_OK) {
            free(copy);
            lpg_session_free_keys(e);
            return false;
        }

        k += len + 1;
    }

    e->info.known = h.known;
    e->info.db = h.db;
    e->info.uid = h.uid;
    e->info.guest_id = h.guest;
    e->info.nkeys = h.db >= 0 ? e->nkeys : 0;
    e->info.keys = e->keys;
    e->info.key_lens = e->key_lens;

    /* the same expiry as the worker that asked */
    e->expires = expires;

    return true;
}


/* entries waiting for another worker's lookup: its answer, or, if it gave
 * up or died, a lookup of this worker's own */
void
lpg_session_remote_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    int64_t         now = lpg_time_mono_ms();
    lpg_session_t **pe, *e;

    for (pe = &lpg_sess.remote; (e = *pe) != NULL;) {
        if (lpg_session_shared(e, now)) {
            *pe = e->rnext;
            e->pending = false;
            lpg_session_forget_lookup(e);
            lpg_log(LPG_LOG_DEBUG, 0,
                    "session %s: answered by another worker's lookup", e->key);
            lpg_session_tell(e);
            continue;
        }

        if (lpg_shm_session_claim(lpg_sess.shm, e->hash, lpg_sess.pid, now,
                                  lpg_sess.stale_ms))
        {
            *pe = e->rnext;
            (void) lpg_session_lookup(e);
            continue;
        }

        pe = &e->rnext;
    }

    if (lpg_sess.remote == NULL) {
        ev_timer_stop(loop, w);
    }
}
