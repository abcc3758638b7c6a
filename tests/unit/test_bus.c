/*
 * SPDX-License-Identifier: MIT
 *
 * test_bus.c: a worker's history and its channel index (bus/lpg_bus.c,
 * bus/lpg_bus_chan.c), fed through a real ring.  300,000 records over two
 * databases and a mix of busy and one-off channels (so the history wraps
 * and the index both keeps and drops channels), with a reset of one
 * database on the way; at every step a random set of queries compares
 * lpg_bus_channels_since (the chains) with a scan of the whole history
 * (lpg_bus_since, filtered by channel), and every channel's newest record
 * and chain with the history itself.
 */

#include "lpg_bus.h"
#include "lpg_bus_chan.h"
#include "lpg_record.h"
#include "lpg_ring.h"
#include "lpg_shm.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cmocka.h>


#define LPG_TEST_RECORDS 300000
#define LPG_TEST_STEP    1499 /* records pushed between two checks */
#define LPG_TEST_BUSY    40   /* channels that recur */
#define LPG_TEST_QUERIES 24   /* per check */
#define LPG_TEST_MAX     (LPG_BUS_HISTORY + 8)


typedef struct {
    int64_t ids[LPG_TEST_MAX];
    size_t  n;
    char    keys[3][32];
    size_t  lens[3];
    size_t  nkeys;
} lpg_test_found_t;


static lpg_test_found_t lpg_test_want, lpg_test_got;
static uint64_t         lpg_test_rand = 0x2545f4914f6cdd1dull;


static uint64_t
lpg_test_next(void)
{
    lpg_test_rand ^= lpg_test_rand << 13;
    lpg_test_rand ^= lpg_test_rand >> 7;
    lpg_test_rand ^= lpg_test_rand << 17;
    return lpg_test_rand;
}


/* a channel's JSON text: a busy one ("bN") most of the time, else one
 * that will rarely come again ("oN") */
static size_t
lpg_test_channel(char *buf, size_t cap)
{
    uint64_t x = lpg_test_next();

    if (x % 2 == 0) {
        return (size_t) snprintf(buf, cap, "\"b%d\"",
                                 (int) ((x >> 8) % LPG_TEST_BUSY));
    }

    return (size_t) snprintf(buf, cap, "[\"o\",%d]", (int) ((x >> 8) % 400000));
}


static void
lpg_test_push(lpg_ring_t *ring, const char *db, int64_t id, const char *channel,
              size_t channel_len)
{
    lpg_record_t rec;
    char         buf[256];
    size_t       len;

    memset(&rec, 0, sizeof(rec));
    rec.id = id;
    rec.create_us = id;
    rec.database = db;
    rec.database_len = strlen(db);
    rec.channel = channel;
    rec.channel_len = channel_len;
    rec.message = "{}";
    rec.message_len = 2;

    assert_int_equal(lpg_record_encode(&rec, buf, sizeof(buf), &len), LPG_OK);
    assert_int_equal(lpg_ring_push(ring, buf, len), LPG_OK);
}


/* the reference: every record of the history after last, by channel */
static void
lpg_test_scan_cb(const lpg_bus_rec_t *r, void *arg)
{
    lpg_test_found_t *f = arg;
    size_t            k;

    for (k = 0; k < lpg_test_want.nkeys; k++) {
        if (lpg_test_want.lens[k] == r->channel_len
            && memcmp(lpg_test_want.keys[k], r->channel, r->channel_len) == 0)
        {
            f->ids[f->n++] = r->id;
            return;
        }
    }
}


static void
lpg_test_chain_cb(const lpg_bus_rec_t *r, void *arg)
{
    lpg_test_found_t *f = arg;

    f->ids[f->n++] = r->id;
}


static void
lpg_test_query(int db, int64_t newest)
{
    char   *keys[3];
    size_t  k, n;
    int64_t last;

    lpg_test_want.nkeys = 1 + lpg_test_next() % 3;
    for (k = 0; k < lpg_test_want.nkeys; k++) {
        if (k > 0 && lpg_test_next() % 8 == 0) {
            /* the same channel twice */
            memcpy(lpg_test_want.keys[k], lpg_test_want.keys[0],
                   sizeof(lpg_test_want.keys[0]));
            lpg_test_want.lens[k] = lpg_test_want.lens[0];
        } else {
            lpg_test_want.lens[k] = lpg_test_channel(
                lpg_test_want.keys[k], sizeof(lpg_test_want.keys[k]));
        }
        keys[k] = lpg_test_want.keys[k];
    }

    /* a last anywhere from before the history to the newest id */
    last = newest - (int64_t) (lpg_test_next() % (LPG_BUS_HISTORY + 5000));
    if (last < 1) {
        last = 1;
    }

    lpg_test_want.n = 0;
    lpg_bus_since(db, last, 0, lpg_test_scan_cb, &lpg_test_want);

    lpg_test_got.n = 0;
    n = lpg_bus_channels_since(db, keys, lpg_test_want.lens,
                               lpg_test_want.nkeys, last, lpg_test_chain_cb,
                               &lpg_test_got);

    assert_int_equal(n, lpg_test_got.n);
    assert_int_equal(lpg_test_got.n, lpg_test_want.n);
    assert_memory_equal(lpg_test_got.ids, lpg_test_want.ids,
                        lpg_test_want.n * sizeof(int64_t));
}


/* every live record is reachable from its channel's newest, newest first,
 * and the newest is indexed: walks the history from the newest back */
static void
lpg_test_chains(uint64_t appended)
{
    uint64_t             seq;
    const lpg_bus_rec_t *r, *newest, *c;
    size_t               live = 0, reached = 0;

    for (seq = appended; seq-- > 0;) {
        r = lpg_bus_at(seq);
        if (r == NULL) {
            break;
        }
        if (r->db < 0) {
            continue;
        }
        live++;

        newest = lpg_bus_chan_newest(r->db, r->channel, r->channel_len);
        assert_non_null(newest);
        assert_true(newest->seq >= r->seq);

        /* r is on newest's chain (only checked for a few: quadratic) */
        if (seq % 211 == 0) {
            for (c = newest; c != NULL && c->seq > r->seq;
                 c = c->prev == LPG_BUS_NONE ? NULL : lpg_bus_at(c->prev))
            {
                assert_int_equal(c->db, r->db);
                assert_memory_equal(c->channel, r->channel, r->channel_len);
            }
            assert_ptr_equal(c, r);
            reached++;
        }
    }

    assert_true(live > 0);
    assert_true(reached > 0);
}


static void
lpg_test_history(void **state)
{
    lpg_shm_t          shm;
    lpg_ring_t        *ring;
    lpg_bus_handlers_t h;
    struct ev_loop    *loop = ev_loop_new(EVFLAG_AUTO);
    char               err[128], channel[32];
    int64_t            ids[2] = { 1000, 5000000 };
    size_t             len;
    int                i, q, db, doorbell;
    uint64_t           appended = 0;
    bool               reset = false;

    (void) state;

    assert_int_equal(lpg_shm_create(&shm, 1, 8 << 20), LPG_OK);
    ring = lpg_ring_init(shm.ring, shm.ring_size);
    assert_non_null(ring);
    assert_int_equal(lpg_shm_set_dbs(&shm, "one,two", err, sizeof(err)),
                     LPG_OK);

    doorbell = eventfd(0, EFD_NONBLOCK);
    assert_true(doorbell >= 0);
    memset(&h, 0, sizeof(h));
    assert_int_equal(
        lpg_bus_init(loop, &shm, &shm.workers[0], ring, doorbell, &h), LPG_OK);

    for (i = 0; i < LPG_TEST_RECORDS; i++) {
        db = (int) (lpg_test_next() % 2);
        len = lpg_test_channel(channel, sizeof(channel));
        lpg_test_push(ring, db ? "two" : "one", ++ids[db], channel, len);
        appended++;

        if (!reset && i == LPG_TEST_RECORDS / 2) {
            /* "two"'s ids go backwards: its history is dropped */
            reset = true;
            ids[1] = 100;
            lpg_test_push(ring, "two", ids[1], "", 0);
        }

        if (i % LPG_TEST_STEP == LPG_TEST_STEP - 1) {
            lpg_bus_poll();
            for (q = 0; q < LPG_TEST_QUERIES; q++) {
                db = (int) (lpg_test_next() % 2);
                lpg_test_query(db, ids[db]);
            }
            if (i % (LPG_TEST_STEP * 40) == LPG_TEST_STEP - 1) {
                lpg_test_chains(appended);
            }
        }
    }

    lpg_bus_poll();
    lpg_test_chains(appended);

    /* a channel with no record, and one only in the other database */
    assert_null(lpg_bus_chan_newest(0, "\"none\"", 6));
    lpg_test_push(ring, "one", ++ids[0], "\"only-one\"", 10);
    lpg_bus_poll();
    assert_non_null(lpg_bus_chan_newest(0, "\"only-one\"", 10));
    assert_null(lpg_bus_chan_newest(1, "\"only-one\"", 10));

    lpg_bus_stop();
    close(doorbell);
    ev_loop_destroy(loop);
    lpg_shm_destroy(&shm);
}


int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(lpg_test_history),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
