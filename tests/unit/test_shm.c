/*
 * SPDX-License-Identifier: MIT
 *
 * test_shm.c: the shared segment's header and the health verdict that
 * /health reports from it.
 */

#include "lpg_shm.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>


static void
up(lpg_shm_t *shm, int n, int64_t now)
{
    int i;

    atomic_store(&shm->header->master_pid, 1);
    atomic_store(&shm->header->master_heartbeat, now);
    atomic_store(&shm->header->nworkers, n);
    for (i = 0; i < n; i++) {
        atomic_store(&shm->workers[i].pid, 100 + i);
        atomic_store(&shm->workers[i].heartbeat, now);
    }

    lpg_shm_set_db(shm, true, NULL);
}


static void
test_create(void **state)
{
    lpg_shm_t shm;

    assert_int_equal(lpg_shm_create(&shm, 4, 65536), LPG_OK);
    assert_true(lpg_shm_valid(&shm));
    assert_true((uintptr_t) shm.workers % LPG_CACHELINE == 0);
    assert_true(sizeof(lpg_shm_worker_t) % LPG_CACHELINE == 0);
    assert_true((char *) shm.ring >= (char *) (shm.workers + 4));
    assert_true(shm.size >= 65536);
    memset(shm.ring, 0xff, shm.ring_size);
    lpg_shm_destroy(&shm);
}


static void
test_health(void **state)
{
    lpg_shm_t shm;
    char      why[256];
    int64_t   now = 1000000;

    assert_int_equal(lpg_shm_create(&shm, 4, 4096), LPG_OK);

    /* nothing started yet */
    assert_false(lpg_shm_healthy(&shm, now, why, sizeof(why)));
    assert_non_null(strstr(why, "master is down"));

    up(&shm, 3, now);
    assert_true(lpg_shm_healthy(&shm, now + 100, why, sizeof(why)));
    assert_string_equal(why, "");

    /* a worker gone from its slot */
    atomic_store(&shm.workers[1].pid, 0);
    assert_false(lpg_shm_healthy(&shm, now, why, sizeof(why)));
    assert_non_null(strstr(why, "1 of 3 workers down"));
    atomic_store(&shm.workers[1].pid, 101);

    /* a stale heartbeat counts as down */
    assert_false(
        lpg_shm_healthy(&shm, now + LPG_SHM_STALE_MS + 1, why, sizeof(why)));
    assert_non_null(strstr(why, "master is down"));

    /* the database, with the master's error text */
    lpg_shm_set_db(&shm, false, "connection refused");
    assert_false(lpg_shm_healthy(&shm, now, why, sizeof(why)));
    assert_non_null(strstr(why,
                           "database connection is down: connection "
                           "refused"));

    lpg_shm_destroy(&shm);
}


/* pages of [p, p + size) mapped in this process (mincore) */
static size_t
resident(void *p, size_t size)
{
    size_t         page = (size_t) sysconf(_SC_PAGESIZE), i, n = 0;
    unsigned char *vec = malloc(size / page + 1);

    assert_non_null(vec);
    assert_int_equal(mincore(p, size, vec), 0);
    for (i = 0; i < size / page; i++) {
        n += vec[i] & 1;
    }
    free(vec);

    return n;
}


/* RssShmem of this process, KiB */
static long
rss_shmem_kib(void)
{
    char  line[256];
    long  kib = -1;
    FILE *f = fopen("/proc/self/status", "r");

    assert_non_null(f);
    while (fgets(line, sizeof(line), f) != NULL) {
        if (strncmp(line, "RssShmem:", 9) == 0) {
            kib = strtol(line + 9, NULL, 10);
        }
    }
    fclose(f);

    return kib;
}


/* RSS is the whole ring from the start: the master allocates every page,
 * a forked worker maps them all (without prefault, none are) */
static void
test_prefault(void **state)
{
    lpg_shm_t shm;
    size_t    pages;
    pid_t     pid;
    int       status;

    (void) state;

    assert_int_equal(lpg_shm_create(&shm, 4, 4 << 20), LPG_OK);
    pages = shm.size / (size_t) sysconf(_SC_PAGESIZE);
    assert_true(resident(shm.ring, shm.ring_size) < 16);

    lpg_shm_prefault(&shm, true);
    assert_int_equal(resident(shm.header, shm.size), pages);

    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        /* a forked child starts with the pages unmapped (its RSS does not
         * count them); prefault maps them all */
        long before = rss_shmem_kib(), after;

        lpg_shm_prefault(&shm, false);
        after = rss_shmem_kib();
        _exit(after - before >= (long) (shm.size / 1024) * 9 / 10 ? 0 : 1);
    }
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);

    munmap(shm.header, shm.size);
}


/* cron slots: a bounded pool shared by pid, freed by the master when a
 * holder dies */
static void
test_cron_slots(void **state)
{
    int       a, b;
    lpg_shm_t shm;

    assert_int_equal(lpg_shm_create(&shm, 2, 4096), LPG_OK);

    a = lpg_shm_cron_take(&shm, 2, 100);
    b = lpg_shm_cron_take(&shm, 2, 200);
    assert_true(a >= 0 && b >= 0 && a != b);
    assert_int_equal(lpg_shm_cron_take(&shm, 2, 300), -1);

    lpg_shm_cron_give(&shm, a);
    a = lpg_shm_cron_take(&shm, 2, 300);
    assert_true(a >= 0);

    /* pid 200 died holding b */
    lpg_shm_cron_reap(&shm, 200);
    assert_int_equal(lpg_shm_cron_take(&shm, 2, 400), b);
    assert_int_equal(atomic_load(&shm.header->cron_pids[a]), 300);

    /* more than the segment tracks is capped, not overrun */
    lpg_shm_cron_reap(&shm, 300);
    lpg_shm_cron_reap(&shm, 400);
    for (a = 0; a < LPG_SHM_CRON_SLOTS; a++) {
        assert_true(lpg_shm_cron_take(&shm, 1000, 500) >= 0);
    }
    assert_int_equal(lpg_shm_cron_take(&shm, 1000, 500), -1);

    munmap(shm.header, shm.size);
}


int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_create),
        cmocka_unit_test(test_health),
        cmocka_unit_test(test_prefault),
        cmocka_unit_test(test_cron_slots),
    };

    return cmocka_run_group_tests_name("shm", tests, NULL, NULL);
}
