/*
 * SPDX-License-Identifier: MIT
 *
 * test_dlist.c: worker/lpg_dlist.c, the deadline lists of the websocket
 * and SSE transports: FIFO order and removal, and the timer's grid (a
 * deadline to come fires on the next LPG_DLIST_SLACK_MS of the clock, so
 * neighbours share a run; a deadline gone fires at once).
 */

#include "lpg_dlist.h"
#include "lpg_time.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>


static void
test_fifo_and_remove(void **state)
{
    lpg_dlist_t      lists[1] = { { NULL, NULL, 0 } };
    lpg_dlist_link_t k[3];
    int              i;

    for (i = 0; i < 3; i++) {
        k[i].list = -1;
        lpg_dlist_push(lists, 0, &k[i], 100 + i, false);
    }

    assert_int_equal(lpg_dlist_next(lists, 1), 100);
    lpg_dlist_remove(lists, &k[1]);
    assert_null(lpg_dlist_pop_due(lists, 0, 99));
    assert_ptr_equal(lpg_dlist_pop_due(lists, 0, 150), &k[0]);
    assert_ptr_equal(lpg_dlist_pop_due(lists, 0, 150), &k[2]);
    assert_null(lpg_dlist_pop_due(lists, 0, 150));
    assert_int_equal(lpg_dlist_next(lists, 1), INT64_MAX);
}


static void
test_timer_on_the_grid(void **state)
{
    struct ev_loop   *loop = ev_loop_new(EVFLAG_AUTO);
    lpg_dlist_timer_t t;
    int64_t           now, d;

    ev_init(&t.ev, NULL);
    t.at = INT64_MAX;

    for (d = 1; d <= 2000; d += 37) {
        ev_timer_stop(loop, &t.ev);
        now = lpg_time_mono_ms();
        lpg_dlist_timer_at(loop, &t, now + d);

        /* on the grid, by the deadline at the earliest, one step late at
         * the most (the clock may have moved a millisecond since now) */
        assert_int_equal(t.at % LPG_DLIST_SLACK_MS, 0);
        assert_true(t.at >= now + d);
        assert_true(t.at < now + d + LPG_DLIST_SLACK_MS + 2);
    }

    /* an earlier deadline on the same grid step changes nothing; one on
     * an earlier step moves the timer there */
    ev_timer_stop(loop, &t.ev);
    now = lpg_time_mono_ms();
    lpg_dlist_timer_at(loop, &t, now + 1000);
    d = t.at;
    lpg_dlist_timer_at(loop, &t, d - 1);
    assert_int_equal(t.at, d);
    lpg_dlist_timer_at(loop, &t, d - LPG_DLIST_SLACK_MS - 1);
    assert_int_equal(t.at, d - LPG_DLIST_SLACK_MS);

    /* a deadline gone (a doomed socket's 0): at once, off the grid */
    lpg_dlist_timer_at(loop, &t, 0);
    assert_true(t.at <= lpg_time_mono_ms() + 1);

    ev_timer_stop(loop, &t.ev);
    ev_loop_destroy(loop);
}


int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fifo_and_remove),
        cmocka_unit_test(test_timer_on_the_grid),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
