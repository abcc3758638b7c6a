/*
 * SPDX-License-Identifier: MIT
 *
 * test_strlist.c: core/lpg_strlist.c, the packed set of channel names a
 * socket keeps: order, no duplicates, NULs inside a string, removal from
 * the head, middle and tail, copies, and the empty list.
 */

#include "lpg_strlist.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>


/* the list as "a,b,c" (a NUL inside a string shows as '0') */
static const char *
t_join(const lpg_strlist_t *l)
{
    static char        out[256];
    size_t             n = 0, i;
    lpg_strlist_iter_t it;

    memset(&it, 0, sizeof(it));
    out[0] = '\0';

    while (lpg_strlist_next(l, &it)) {
        if (n > 0) {
            out[n++] = ',';
        }

        for (i = 0; i < it.len; i++) {
            out[n++] = it.str[i] == '\0' ? '0' : it.str[i];
        }

        assert_int_equal(it.str[it.len], '\0');
        out[n] = '\0';
    }

    return out;
}


static void
test_add_keeps_order_and_no_duplicates(void **state)
{
    lpg_strlist_t l;

    (void) state;
    memset(&l, 0, sizeof(l));

    assert_string_equal(t_join(&l), "");
    assert_false(lpg_strlist_has(&l, "a", 1));

    assert_int_equal(lpg_strlist_add(&l, "chat", 4), LPG_OK);
    assert_int_equal(lpg_strlist_add(&l, "news", 4), LPG_OK);
    assert_int_equal(lpg_strlist_add(&l, "chat", 4), LPG_OK);
    assert_int_equal(lpg_strlist_add(&l, "ch", 2), LPG_OK);
    assert_int_equal(l.n, 3);
    assert_string_equal(t_join(&l), "chat,news,ch");
    assert_true(lpg_strlist_has(&l, "ch", 2));
    assert_false(lpg_strlist_has(&l, "cha", 3));

    /* bytes after a NUL count */
    assert_int_equal(lpg_strlist_add(&l, "x\0y", 3), LPG_OK);
    assert_int_equal(lpg_strlist_add(&l, "x\0z", 3), LPG_OK);
    assert_int_equal(lpg_strlist_add(&l, "x", 1), LPG_OK);
    assert_int_equal(l.n, 6);
    assert_string_equal(t_join(&l), "chat,news,ch,x0y,x0z,x");

    lpg_strlist_free(&l);
    assert_int_equal(l.n, 0);
    assert_null(l.data);
}


static void
test_remove_anywhere(void **state)
{
    lpg_strlist_t l;

    (void) state;
    memset(&l, 0, sizeof(l));

    assert_int_equal(lpg_strlist_add(&l, "a", 1), LPG_OK);
    assert_int_equal(lpg_strlist_add(&l, "bb", 2), LPG_OK);
    assert_int_equal(lpg_strlist_add(&l, "ccc", 3), LPG_OK);
    assert_int_equal(lpg_strlist_add(&l, "dddd", 4), LPG_OK);

    assert_false(lpg_strlist_remove(&l, "b", 1));
    assert_true(lpg_strlist_remove(&l, "bb", 2));
    assert_string_equal(t_join(&l), "a,ccc,dddd");
    assert_true(lpg_strlist_remove(&l, "a", 1));
    assert_string_equal(t_join(&l), "ccc,dddd");
    assert_true(lpg_strlist_remove(&l, "dddd", 4));
    assert_string_equal(t_join(&l), "ccc");
    assert_false(lpg_strlist_remove(&l, "dddd", 4));
    assert_true(lpg_strlist_remove(&l, "ccc", 3));
    assert_int_equal(l.n, 0);
    assert_int_equal(l.size, 0);
    assert_null(l.data);

    /* usable again after it emptied */
    assert_int_equal(lpg_strlist_add(&l, "e", 1), LPG_OK);
    assert_string_equal(t_join(&l), "e");
    lpg_strlist_free(&l);
}


static void
test_copy(void **state)
{
    lpg_strlist_t a, b;

    (void) state;
    memset(&a, 0, sizeof(a));
    memset(&b, 0, sizeof(b));

    assert_int_equal(lpg_strlist_add(&a, "one", 3), LPG_OK);
    assert_int_equal(lpg_strlist_add(&a, "two", 3), LPG_OK);
    assert_int_equal(lpg_strlist_add(&b, "old", 3), LPG_OK);

    assert_int_equal(lpg_strlist_copy(&b, &a), LPG_OK);
    assert_int_equal(lpg_strlist_add(&b, "three", 5), LPG_OK);
    assert_string_equal(t_join(&a), "one,two");
    assert_string_equal(t_join(&b), "one,two,three");
    assert_int_equal(b.n, 3);

    /* an empty source empties the copy */
    lpg_strlist_free(&a);
    assert_int_equal(lpg_strlist_copy(&b, &a), LPG_OK);
    assert_int_equal(b.n, 0);
    assert_null(b.data);
}


int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_add_keeps_order_and_no_duplicates),
        cmocka_unit_test(test_remove_anywhere),
        cmocka_unit_test(test_copy),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
