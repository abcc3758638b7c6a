/*
 * SPDX-License-Identifier: MIT
 *
 * test_ring.c: the shared-memory ring (wrap-around, lapping, every record
 * size, a two-process writer/reader stress) and the msgpack record codec.
 */

#include "lpg_record.h"
#include "lpg_ring.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>


/* record content derived from its sequence number, so a torn or misplaced
 * copy is detected */
static size_t
fill(unsigned char *buf, uint64_t seq, size_t max)
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


static void
check(const unsigned char *buf, size_t len, uint64_t seq, size_t max)
{
    unsigned char *want = malloc(max + 1);
    size_t         wlen = fill(want, seq, max);

    assert_int_equal(len, wlen);
    assert_memory_equal(buf, want, len);
    free(want);
}


static void
test_init_too_small(void **state)
{
    char mem[1024];

    assert_null(lpg_ring_init(mem, sizeof(mem)));
}


static void
test_push_read_wrap(void **state)
{
    size_t            len, max;
    uint64_t          seq, lost;
    lpg_ring_t       *r;
    unsigned char     buf[4096], out[4096];
    lpg_ring_reader_t rd;
    void             *mem = aligned_alloc(64, 16384);

    r = lpg_ring_init(mem, 16384);
    assert_non_null(r);
    max = 1000;
    assert_true(lpg_ring_max_record(r) >= max);

    lpg_ring_reader_init(&rd, r, false);
    assert_int_equal(lpg_ring_read(r, &rd, out, sizeof(out), &len, &lost),
                     LPG_AGAIN);

    /* many laps, the reader keeping up */
    for (seq = 0; seq < 20000; seq++) {
        len = fill(buf, seq, max);
        assert_int_equal(lpg_ring_push(r, buf, len), LPG_OK);
        assert_int_equal(lpg_ring_read(r, &rd, out, sizeof(out), &len, &lost),
                         LPG_OK);
        assert_int_equal(lost, 0);
        check(out, len, seq, max);
    }

    assert_int_equal(lpg_ring_read(r, &rd, out, sizeof(out), &len, &lost),
                     LPG_AGAIN);
    assert_int_equal(lpg_ring_head_seq(r), 20000);
    free(mem);
}


static void
test_lapped_reader_counts_losses(void **state)
{
    size_t            len;
    uint64_t          seq, lost, got, total_lost, next;
    lpg_ring_t       *r;
    unsigned char     buf[4096], out[4096];
    lpg_ring_reader_t rd;
    void             *mem = aligned_alloc(64, 16384);

    r = lpg_ring_init(mem, 16384);
    lpg_ring_reader_init(&rd, r, false);

    /* far more than the ring holds */
    for (seq = 0; seq < 1000; seq++) {
        len = fill(buf, seq, 500);
        assert_int_equal(lpg_ring_push(r, buf, len), LPG_OK);
    }

    got = 0;
    total_lost = 0;
    next = 0;
    while (lpg_ring_read(r, &rd, out, sizeof(out), &len, &lost) == LPG_OK) {
        total_lost += lost;
        next += lost;
        check(out, len, next, 500);
        next++;
        got++;
    }

    assert_true(total_lost > 0);
    assert_int_equal(got + total_lost, 1000);

    /* the reader goes on with new records after the lap */
    len = fill(buf, 1000, 500);
    assert_int_equal(lpg_ring_push(r, buf, len), LPG_OK);
    assert_int_equal(lpg_ring_read(r, &rd, out, sizeof(out), &len, &lost),
                     LPG_OK);
    assert_int_equal(lost, 0);
    check(out, len, 1000, 500);

    /* a reader from the oldest record loses nothing it expected */
    lpg_ring_reader_init(&rd, r, true);
    assert_int_equal(lpg_ring_read(r, &rd, out, sizeof(out), &len, &lost),
                     LPG_OK);
    assert_int_equal(lost, 0);
    free(mem);
}


static void
test_every_size(void **state)
{
    size_t            len, n, max;
    uint64_t          lost;
    lpg_ring_t       *r;
    unsigned char    *buf, *out;
    lpg_ring_reader_t rd;
    void             *mem = aligned_alloc(64, 65536);

    r = lpg_ring_init(mem, 65536);
    max = lpg_ring_max_record(r);
    buf = malloc(max + 1);
    out = malloc(max + 1);
    lpg_ring_reader_init(&rd, r, false);

    for (n = 0; n <= max; n++) {
        memset(buf, (int) (n & 0xff), n);
        assert_int_equal(lpg_ring_push(r, buf, n), LPG_OK);
        assert_int_equal(lpg_ring_read(r, &rd, out, max, &len, &lost), LPG_OK);
        assert_int_equal(len, n);
        assert_int_equal(lost, 0);
        assert_memory_equal(out, buf, n);
    }

    assert_int_equal(lpg_ring_push(r, buf, max + 1), LPG_ERROR);

    /* a record bigger than the reader's buffer is skipped and counted */
    assert_int_equal(lpg_ring_push(r, buf, 100), LPG_OK);
    assert_int_equal(lpg_ring_push(r, buf, 10), LPG_OK);
    assert_int_equal(lpg_ring_read(r, &rd, out, 50, &len, &lost), LPG_ERROR);
    assert_int_equal(lost, 1);
    assert_int_equal(lpg_ring_read(r, &rd, out, 50, &len, &lost), LPG_OK);
    assert_int_equal(len, 10);

    free(buf);
    free(out);
    free(mem);
}


/* the writer in a child process, the reader here, sharing a mapping */
static void
test_two_process_stress(void **state)
{
    int               status;
    pid_t             pid;
    size_t            len, size = 65536, max = 2000;
    uint64_t          seq, lost, got, total_lost, next, total = 1000000;
    lpg_ring_t       *r;
    unsigned char     buf[4096], out[4096];
    lpg_ring_reader_t rd;
    void             *mem;

    mem = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
               -1, 0);
    assert_true(mem != MAP_FAILED);
    r = lpg_ring_init(mem, size);
    lpg_ring_reader_init(&rd, r, false);

    pid = fork();
    assert_true(pid >= 0);

    if (pid == 0) {
        for (seq = 0; seq < total; seq++) {
            len = fill(buf, seq, max);
            if (lpg_ring_push(r, buf, len) != LPG_OK) {
                _exit(1);
            }
        }

        _exit(0);
    }

    got = 0;
    total_lost = 0;
    next = 0;

    while (next < total) {
        int rc = lpg_ring_read(r, &rd, out, sizeof(out), &len, &lost);

        if (rc == LPG_AGAIN) {
            continue;
        }

        assert_int_equal(rc, LPG_OK);
        total_lost += lost;
        next += lost;
        check(out, len, next, max);
        next++;
        got++;

        /* now and then fall behind, to be lapped */
        if (got % 50000 == 0) {
            usleep(2000);
        }
    }

    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    assert_int_equal(got + total_lost, total);
    print_message("stress: %llu records read intact, %llu reported lost\n",
                  (unsigned long long) got, (unsigned long long) total_lost);
    munmap(mem, size);
}


static void
test_record_round_trip(void **state)
{
    char         buf[512];
    size_t       len, n;
    lpg_record_t in, out;

    memset(&in, 0, sizeof(in));
    in.id = 42;
    in.create_us = 1764000000123456;
    in.notify_us = 987654321;
    in.database = "mydb";
    in.database_len = 4;
    in.channel = "[\"mydb\",\"res.partner\",3]";
    in.channel_len = strlen(in.channel);
    in.message = "{\"body\":\"caf\xc3\xa9\"}";
    in.message_len = strlen(in.message);

    assert_int_equal(lpg_record_encode(&in, buf, sizeof(buf), &len), LPG_OK);
    assert_int_equal(lpg_record_decode(buf, len, &out), LPG_OK);
    assert_true(out.id == 42 && out.create_us == in.create_us);
    assert_true(out.notify_us == 987654321);
    assert_int_equal(out.channel_len, in.channel_len);
    assert_memory_equal(out.channel, in.channel, in.channel_len);
    assert_memory_equal(out.message, in.message, in.message_len);
    assert_memory_equal(out.database, "mydb", 4);
    assert_true(out.channel >= buf && out.channel < buf + len);

    /* empty strings */
    in.message = "";
    in.message_len = 0;
    assert_int_equal(lpg_record_encode(&in, buf, sizeof(buf), &len), LPG_OK);
    assert_int_equal(lpg_record_decode(buf, len, &out), LPG_OK);
    assert_int_equal(out.message_len, 0);

    /* too small a buffer */
    assert_int_equal(lpg_record_encode(&in, buf, 10, &len), LPG_ERROR);

    /* every truncation and trailing garbage fail cleanly */
    assert_int_equal(lpg_record_encode(&in, buf, sizeof(buf), &len), LPG_OK);
    for (n = 0; n < len; n++) {
        assert_int_equal(lpg_record_decode(buf, n, &out), LPG_ERROR);
    }

    buf[len] = 0;
    assert_int_equal(lpg_record_decode(buf, len + 1, &out), LPG_ERROR);

    /* wrong shapes */
    assert_int_equal(lpg_record_decode("\x93\x01\x02\x03", 4, &out), LPG_ERROR);
    assert_int_equal(
        lpg_record_decode("\x95\xa1x\xa1x\xa1x\xa1x\x01", 11, &out), LPG_ERROR);
    assert_int_equal(lpg_record_decode("\xc1", 1, &out), LPG_ERROR);
}


int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_init_too_small),
        cmocka_unit_test(test_push_read_wrap),
        cmocka_unit_test(test_lapped_reader_counts_losses),
        cmocka_unit_test(test_every_size),
        cmocka_unit_test(test_two_process_stress),
        cmocka_unit_test(test_record_round_trip),
    };

    return cmocka_run_group_tests_name("ring", tests, NULL, NULL);
}
