/*
 * SPDX-License-Identifier: MIT
 *
 * test_ring.c: the shared-memory ring: sizes, empty reads, wrap-around,
 * lapping (exact loss counts), every record size, records bigger than the
 * reader's buffer, a corrupt header, and a two-process writer/reader
 * stress with the reader's mapping read-only.  LPG_TEST_RING_RECORDS
 * overrides the stress test's record count (for valgrind).
 */

#include "lpg_ring.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>


#define LPG_TEST_SMALL  16384
#define LPG_TEST_STRESS 65536


/* record content derived from its sequence number, so a torn or misplaced
 * copy is detected: pseudo-random length in [0, max] and bytes, and the
 * sequence number itself in the first 8 bytes when there is room */
static size_t
lpg_test_fill(unsigned char *buf, uint64_t seq, size_t max)
{
    size_t   i, len;
    uint64_t x = seq * 0x9e3779b97f4a7c15ull + 1;

    len = (size_t) (x >> 40) % (max + 1);
    for (i = 0; i < len; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        buf[i] = (unsigned char) x;
    }

    if (len >= 8) {
        memcpy(buf, &seq, 8);
    }

    return len;
}


/* whether buf[0..len) is record seq; no cmocka call, so the stress loop
 * stays fast */
static bool
lpg_test_intact(const unsigned char *buf, size_t len, uint64_t seq, size_t max)
{
    size_t         wlen;
    unsigned char *want = malloc(max + 1);
    bool           ok;

    if (want == NULL) {
        return false;
    }

    wlen = lpg_test_fill(want, seq, max);
    ok = len == wlen && memcmp(buf, want, len) == 0;
    free(want);

    return ok;
}


static lpg_ring_t *
lpg_test_ring(void **mem, size_t size)
{
    lpg_ring_t *r;

    *mem = aligned_alloc(LPG_CACHELINE, size);
    assert_non_null(*mem);
    r = lpg_ring_init(*mem, size);
    assert_non_null(r);

    return r;
}


static void
lpg_test_push(lpg_ring_t *r, uint64_t seq, size_t max)
{
    size_t         len;
    unsigned char *buf = malloc(max + 1);

    assert_non_null(buf);
    len = lpg_test_fill(buf, seq, max);
    assert_int_equal(lpg_ring_push(r, buf, len), LPG_OK);
    free(buf);
}


static void
test_init_too_small(void **state)
{
    void       *mem;
    lpg_ring_t *r;
    size_t      min = lpg_ring_min_size();

    LPG_UNUSED(state);

    mem = aligned_alloc(LPG_CACHELINE, min + LPG_CACHELINE);
    assert_non_null(mem);

    assert_null(lpg_ring_init(NULL, min));
    assert_null(lpg_ring_init(mem, 0));
    assert_null(lpg_ring_init(mem, min - 1));
    assert_null(lpg_ring_init((char *) mem + 4, min));

    r = lpg_ring_init(mem, min);
    assert_ptr_equal(r, mem);
    assert_true(lpg_ring_max_record(r) > 0);
    assert_true(lpg_ring_max_record(r) <= 4096 / 4);
    assert_int_equal(lpg_ring_head_seq(r), 0);
    assert_int_equal(lpg_ring_oldest_seq(r), 0);

    free(mem);
}


static void
test_push_read_one(void **state)
{
    void             *mem;
    size_t            len;
    uint64_t          lost;
    lpg_ring_t       *r;
    unsigned char     out[256];
    lpg_ring_reader_t rd, old, late;

    LPG_UNUSED(state);

    r = lpg_test_ring(&mem, LPG_TEST_SMALL);

    /* nothing yet */
    lpg_ring_reader_init(&rd, r, false);
    lpg_ring_reader_init(&old, r, true);
    assert_int_equal(lpg_ring_read(r, &rd, out, sizeof(out), &len, &lost),
                     LPG_AGAIN);
    assert_int_equal(lost, 0);
    assert_int_equal(lpg_ring_read(r, &old, out, sizeof(out), &len, &lost),
                     LPG_AGAIN);

    assert_int_equal(lpg_ring_push(r, "hello", 5), LPG_OK);
    assert_int_equal(lpg_ring_head_seq(r), 1);
    assert_int_equal(lpg_ring_oldest_seq(r), 0);

    /* a reader started now sees only what comes next */
    lpg_ring_reader_init(&late, r, false);
    assert_int_equal(lpg_ring_read(r, &late, out, sizeof(out), &len, &lost),
                     LPG_AGAIN);

    assert_int_equal(lpg_ring_read(r, &rd, out, sizeof(out), &len, &lost),
                     LPG_OK);
    assert_int_equal(len, 5);
    assert_int_equal(lost, 0);
    assert_memory_equal(out, "hello", 5);
    assert_int_equal(rd.seq, 1);
    assert_int_equal(lpg_ring_read(r, &rd, out, sizeof(out), &len, &lost),
                     LPG_AGAIN);

    assert_int_equal(lpg_ring_read(r, &old, out, sizeof(out), &len, &lost),
                     LPG_OK);
    assert_int_equal(len, 5);
    assert_memory_equal(out, "hello", 5);

    /* an empty record, read into no buffer at all */
    assert_int_equal(lpg_ring_push(r, NULL, 0), LPG_OK);
    assert_int_equal(lpg_ring_read(r, &late, NULL, 0, &len, &lost), LPG_OK);
    assert_int_equal(len, 0);
    assert_int_equal(lost, 0);
    assert_int_equal(lpg_ring_read(r, &late, NULL, 0, &len, &lost), LPG_AGAIN);

    free(mem);
}


static void
test_wrap_around(void **state)
{
    void             *mem;
    size_t            len, max = 1000;
    uint64_t          seq, lost, n = 20000;
    lpg_ring_t       *r;
    unsigned char     out[1024];
    lpg_ring_reader_t rd;

    LPG_UNUSED(state);

    /* 20,000 records of 0-1000 bytes through 16 KiB: about 600 laps */
    r = lpg_test_ring(&mem, LPG_TEST_SMALL);
    assert_true(lpg_ring_max_record(r) >= max);
    lpg_ring_reader_init(&rd, r, false);

    for (seq = 0; seq < n; seq++) {
        lpg_test_push(r, seq, max);

        /* keep one to three records in flight */
        if (seq % 3 != 0) {
            continue;
        }

        while (rd.seq <= seq) {
            assert_int_equal(
                lpg_ring_read(r, &rd, out, sizeof(out), &len, &lost), LPG_OK);
            assert_int_equal(lost, 0);
            assert_true(lpg_test_intact(out, len, rd.seq - 1, max));
        }
    }

    while (lpg_ring_read(r, &rd, out, sizeof(out), &len, &lost) == LPG_OK) {
        assert_int_equal(lost, 0);
        assert_true(lpg_test_intact(out, len, rd.seq - 1, max));
    }

    assert_int_equal(rd.seq, n);
    assert_int_equal(lpg_ring_head_seq(r), n);
    assert_true(lpg_ring_oldest_seq(r) > n - 100);
    assert_int_equal(lpg_ring_read(r, &rd, out, sizeof(out), &len, &lost),
                     LPG_AGAIN);

    free(mem);
}


/* read everything left, checking contents; returns the records lost */
static uint64_t
lpg_test_drain(lpg_ring_t *r, lpg_ring_reader_t *rd, size_t max, uint64_t *got)
{
    int           rc;
    size_t        len;
    uint64_t      lost, total = 0;
    unsigned char out[4096];

    for (;;) {
        rc = lpg_ring_read(r, rd, out, sizeof(out), &len, &lost);
        if (rc == LPG_AGAIN) {
            return total;
        }

        assert_int_equal(rc, LPG_OK);
        total += lost;
        (*got)++;
        assert_true(lpg_test_intact(out, len, rd->seq - 1, max));
    }
}


static void
test_lapped_exact_loss(void **state)
{
    void             *mem;
    size_t            len;
    uint64_t          seq, lost, got, oldest;
    lpg_ring_t       *r;
    unsigned char     out[4096];
    lpg_ring_reader_t rd, from_oldest;

    LPG_UNUSED(state);

    r = lpg_test_ring(&mem, LPG_TEST_SMALL);
    lpg_ring_reader_init(&rd, r, false);

    /* far more than the ring holds */
    for (seq = 0; seq < 1000; seq++) {
        lpg_test_push(r, seq, 500);
    }

    oldest = lpg_ring_oldest_seq(r);
    assert_true(oldest > 0 && oldest < 1000);

    /* the first read says exactly how many were overwritten, and returns
     * the oldest record still there */
    assert_int_equal(lpg_ring_read(r, &rd, out, sizeof(out), &len, &lost),
                     LPG_OK);
    assert_int_equal(lost, oldest);
    assert_true(lpg_test_intact(out, len, oldest, 500));

    got = 1;
    assert_int_equal(lpg_test_drain(r, &rd, 500, &got), 0);
    assert_int_equal(got + oldest, 1000);

    /* the reader goes on with new records after the lap */
    lpg_test_push(r, 1000, 500);
    assert_int_equal(lpg_ring_read(r, &rd, out, sizeof(out), &len, &lost),
                     LPG_OK);
    assert_int_equal(lost, 0);
    assert_true(lpg_test_intact(out, len, 1000, 500));

    /* lapped again in the middle of a stream */
    for (seq = 1001; seq < 1011; seq++) {
        lpg_test_push(r, seq, 500);
    }

    got = 0;
    assert_int_equal(lpg_ring_read(r, &rd, out, sizeof(out), &len, &lost),
                     LPG_OK);
    assert_int_equal(lost, 0);
    assert_true(lpg_test_intact(out, len, 1001, 500));

    for (seq = 1011; seq < 3000; seq++) {
        lpg_test_push(r, seq, 500);
    }

    oldest = lpg_ring_oldest_seq(r);
    assert_int_equal(lpg_ring_read(r, &rd, out, sizeof(out), &len, &lost),
                     LPG_OK);
    assert_int_equal(lost, oldest - 1002);
    assert_true(lpg_test_intact(out, len, oldest, 500));
    got = 1;
    assert_int_equal(lpg_test_drain(r, &rd, 500, &got), 0);
    assert_int_equal(1002 + lost + got, 3000);

    /* a reader from the oldest record loses nothing it expected */
    lpg_ring_reader_init(&from_oldest, r, true);
    assert_int_equal(
        lpg_ring_read(r, &from_oldest, out, sizeof(out), &len, &lost), LPG_OK);
    assert_int_equal(lost, 0);
    assert_true(lpg_test_intact(out, len, oldest, 500));

    /* ... unless it is lapped after its first read */
    for (seq = 3000; seq < 4000; seq++) {
        lpg_test_push(r, seq, 500);
    }

    assert_int_equal(
        lpg_ring_read(r, &from_oldest, out, sizeof(out), &len, &lost), LPG_OK);
    assert_int_equal(lost, lpg_ring_oldest_seq(r) - (oldest + 1));

    free(mem);
}


/* a worker starts on an empty ring: a lap before its first record is a
 * loss too (it read the ring, so it expected every record pushed since) */
static void
test_lapped_before_first_record(void **state)
{
    void             *mem;
    size_t            len;
    uint64_t          lost, seq;
    lpg_ring_t       *r;
    unsigned char     out[600];
    lpg_ring_reader_t rd;

    LPG_UNUSED(state);

    r = lpg_test_ring(&mem, LPG_TEST_SMALL);
    lpg_ring_reader_init(&rd, r, true);
    assert_int_equal(lpg_ring_read(r, &rd, out, sizeof(out), &len, &lost),
                     LPG_AGAIN);

    for (seq = 0; seq < 1000; seq++) {
        lpg_test_push(r, seq, 500);
    }

    assert_int_equal(lpg_ring_read(r, &rd, out, sizeof(out), &len, &lost),
                     LPG_OK);
    assert_true(lost > 0);
    assert_int_equal(lost, lpg_ring_oldest_seq(r));

    free(mem);
}


static void
test_every_size(void **state)
{
    void             *mem;
    size_t            len, n, max;
    uint64_t          lost, head;
    lpg_ring_t       *r;
    unsigned char    *buf, *out;
    lpg_ring_reader_t rd, lag;

    LPG_UNUSED(state);

    r = lpg_test_ring(&mem, LPG_TEST_STRESS);
    max = lpg_ring_max_record(r);
    assert_int_equal(max, (LPG_TEST_STRESS - 3 * LPG_CACHELINE) / 4 - 16);

    buf = malloc(max + 1);
    out = malloc(max + 1);
    assert_non_null(buf);
    assert_non_null(out);
    lpg_ring_reader_init(&rd, r, false);
    lpg_ring_reader_init(&lag, r, false);

    /* every size from 0 to the maximum, the records' bytes differing */
    for (n = 0; n <= max; n++) {
        memset(buf, (int) (n * 7 + 1), n);
        if (n >= 4) {
            memcpy(buf, &n, 4);
        }

        assert_int_equal(lpg_ring_push(r, buf, n), LPG_OK);
        assert_int_equal(lpg_ring_read(r, &rd, out, max, &len, &lost), LPG_OK);
        assert_int_equal(len, n);
        assert_int_equal(lost, 0);
        assert_memory_equal(out, buf, n);

        /* a second reader up to two records behind, reading exactly into
         * a buffer of the record's size */
        if (n % 2 == 1) {
            while (lag.seq <= n) {
                size_t want = (size_t) lag.seq;

                assert_int_equal(lpg_ring_read(r, &lag, out, want, &len, &lost),
                                 LPG_OK);
                assert_int_equal(len, want);
                assert_int_equal(lost, 0);
            }
        }
    }

    head = lpg_ring_head_seq(r);
    assert_int_equal(lpg_ring_push(r, buf, max + 1), LPG_ERROR);
    assert_int_equal(lpg_ring_push(r, buf, SIZE_MAX), LPG_ERROR);
    assert_int_equal(lpg_ring_head_seq(r), head);
    assert_int_equal(lpg_ring_read(r, &rd, out, max, &len, &lost), LPG_AGAIN);

    /* the largest record, many times round the ring */
    for (n = 0; n < 200; n++) {
        memset(buf, (int) n, max);
        assert_int_equal(lpg_ring_push(r, buf, max), LPG_OK);
        assert_int_equal(lpg_ring_read(r, &rd, out, max, &len, &lost), LPG_OK);
        assert_int_equal(len, max);
        assert_int_equal(lost, 0);
        assert_memory_equal(out, buf, max);
    }

    free(buf);
    free(out);
    free(mem);
}


static void
test_bigger_than_cap(void **state)
{
    void             *mem;
    size_t            len;
    uint64_t          lost;
    lpg_ring_t       *r;
    unsigned char     buf[200], out[50];
    lpg_ring_reader_t rd;

    LPG_UNUSED(state);

    r = lpg_test_ring(&mem, LPG_TEST_SMALL);
    lpg_ring_reader_init(&rd, r, false);
    memset(buf, 'x', sizeof(buf));

    /* skipped and counted, then the next record is read */
    assert_int_equal(lpg_ring_push(r, buf, 100), LPG_OK);
    assert_int_equal(lpg_ring_push(r, buf, 50), LPG_OK);
    assert_int_equal(lpg_ring_read(r, &rd, out, sizeof(out), &len, &lost),
                     LPG_ERROR);
    assert_int_equal(lost, 1);
    assert_int_equal(lpg_ring_read(r, &rd, out, sizeof(out), &len, &lost),
                     LPG_OK);
    assert_int_equal(len, 50);
    assert_int_equal(lost, 0);
    assert_int_equal(lpg_ring_read(r, &rd, out, sizeof(out), &len, &lost),
                     LPG_AGAIN);

    /* lapped and then too big: both counted */
    for (len = 0; len < 200; len++) {
        assert_int_equal(lpg_ring_push(r, buf, 51 + len % 100), LPG_OK);
    }

    assert_int_equal(lpg_ring_read(r, &rd, out, sizeof(out), &len, &lost),
                     LPG_ERROR);
    assert_int_equal(lost, lpg_ring_oldest_seq(r) - 2 + 1);
    assert_int_equal(rd.seq, lpg_ring_oldest_seq(r) + 1);

    free(mem);
}


static void
test_corrupt_header(void **state)
{
    void             *mem;
    size_t            len;
    uint32_t          bad = 0x7ffffff0;
    uint64_t          lost;
    lpg_ring_t       *r;
    unsigned char    *p, out[64];
    lpg_ring_reader_t rd;

    LPG_UNUSED(state);

    /* white box: a record is a 16-byte header {u32 len, u32 flags, u64 seq}
     * before its payload; a stray write gives one an impossible length */
    r = lpg_test_ring(&mem, LPG_TEST_SMALL);
    lpg_ring_reader_init(&rd, r, false);
    assert_int_equal(lpg_ring_push(r, "first", 5), LPG_OK);
    assert_int_equal(lpg_ring_push(r, "MARKER-corrupt-me", 17), LPG_OK);
    assert_int_equal(lpg_ring_push(r, "third", 5), LPG_OK);

    p = memmem(mem, LPG_TEST_SMALL, "MARKER-corrupt-me", 17);
    assert_non_null(p);
    memcpy(p - 16, &bad, 4);

    assert_int_equal(lpg_ring_read(r, &rd, out, sizeof(out), &len, &lost),
                     LPG_OK);
    assert_memory_equal(out, "first", 5);

    /* everything up to the head is dropped and counted; nothing is read
     * out of bounds (ASan checks) */
    assert_int_equal(lpg_ring_read(r, &rd, out, sizeof(out), &len, &lost),
                     LPG_ERROR);
    assert_int_equal(lost, 2);
    assert_int_equal(lpg_ring_read(r, &rd, out, sizeof(out), &len, &lost),
                     LPG_AGAIN);

    assert_int_equal(lpg_ring_push(r, "fourth", 6), LPG_OK);
    assert_int_equal(lpg_ring_read(r, &rd, out, sizeof(out), &len, &lost),
                     LPG_OK);
    assert_int_equal(lost, 0);
    assert_memory_equal(out, "fourth", 6);

    free(mem);
}


static double
lpg_test_now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);

    return ts.tv_sec + ts.tv_nsec / 1e9;
}


/*
 * The writer in a child process, the reader here on a read-only view of
 * the same MAP_SHARED mapping (as the workers have it).  Every record is
 * checked against its sequence number, so a torn copy would fail; the
 * reader sleeps now and then to be lapped, and every record must be either
 * read or reported lost.
 */
static void
test_two_process_stress(void **state)
{
    int               rc, status = 0;
    pid_t             pid;
    size_t            len, max = 2000;
    uint64_t          seq, lost, got, total_lost, total, laps, bad, expect;
    double            t0;
    const char       *env;
    lpg_ring_t       *r;
    unsigned char     buf[4096], out[4096];
    lpg_ring_reader_t rd;
    void             *mem;

    LPG_UNUSED(state);

    env = getenv("LPG_TEST_RING_RECORDS");
    total = env != NULL ? strtoull(env, NULL, 10) : 2000000;

    mem = mmap(NULL, LPG_TEST_STRESS, PROT_READ | PROT_WRITE,
               MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    assert_true(mem != MAP_FAILED);
    r = lpg_ring_init(mem, LPG_TEST_STRESS);
    assert_non_null(r);
    lpg_ring_reader_init(&rd, r, false);

    t0 = lpg_test_now();
    pid = fork();
    assert_true(pid >= 0);

    if (pid == 0) {
        for (seq = 0; seq < total; seq++) {
            len = lpg_test_fill(buf, seq, max);
            if (lpg_ring_push(r, buf, len) != LPG_OK) {
                _exit(1);
            }
        }

        _exit(0);
    }

    /* a reader that wrote to the ring would crash here */
    assert_int_equal(mprotect(mem, LPG_TEST_STRESS, PROT_READ), 0);

    got = 0;
    total_lost = 0;
    laps = 0;
    bad = 0;
    expect = 0;

    while (rd.seq < total) {
        rc = lpg_ring_read(r, &rd, out, sizeof(out), &len, &lost);

        if (rc == LPG_AGAIN) {
            if (waitpid(pid, &status, WNOHANG) == pid) {
                /* the writer is gone: whatever it pushed is in by now */
                pid = -1;
                if (lpg_ring_head_seq(r) < total) {
                    break;
                }
            }

            continue;
        }

        if (rc != LPG_OK) {
            bad++;
            break;
        }

        total_lost += lost;
        laps += lost > 0;
        got++;

        /* in order: the one expected, or lost more after it */
        expect += lost;
        if (rd.seq - 1 != expect++
            || !lpg_test_intact(out, len, rd.seq - 1, max)) {
            bad++;
            break;
        }

        /* now and then fall behind, to be lapped */
        if (got % 50000 == 0) {
            usleep(2000);
        }
    }

    if (pid > 0) {
        if (bad > 0) {
            kill(pid, SIGKILL);
        }

        assert_int_equal(waitpid(pid, &status, 0), pid);
    }

    print_message("stress: %llu records in %.2f s: %llu read intact, %llu "
                  "reported lost, lapped %llu times\n",
                  (unsigned long long) total, lpg_test_now() - t0,
                  (unsigned long long) got, (unsigned long long) total_lost,
                  (unsigned long long) laps);

    assert_int_equal(bad, 0);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    assert_int_equal(rd.seq, total);
    assert_int_equal(got + total_lost, total);
    assert_true(laps > 0);

    munmap(mem, LPG_TEST_STRESS);
}


int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_init_too_small),
        cmocka_unit_test(test_push_read_one),
        cmocka_unit_test(test_wrap_around),
        cmocka_unit_test(test_lapped_exact_loss),
        cmocka_unit_test(test_lapped_before_first_record),
        cmocka_unit_test(test_every_size),
        cmocka_unit_test(test_bigger_than_cap),
        cmocka_unit_test(test_corrupt_header),
        cmocka_unit_test(test_two_process_stress),
    };

    return cmocka_run_group_tests_name("ring", tests, NULL, NULL);
}
