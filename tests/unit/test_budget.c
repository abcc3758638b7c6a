/*
 * SPDX-License-Identifier: MIT
 *
 * test_budget.c: the connection formula, the refusal text that tells the
 * operator what to change, and the --sizing report.
 */

#include "lpg_budget.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>


static lpg_budget_t
budget(int workers, int cron, int maxconn, int maxc, int reserved)
{
    lpg_budget_t b;

    memset(&b, 0, sizeof(b));
    b.workers = workers;
    b.max_cron_threads = cron;
    b.db_maxconn = maxconn;
    b.max_connections = maxc;
    b.reserved = reserved;
    b.fd_soft = 20000;
    b.fd_hard = 20000;
    b.ncpu = 2;

    return b;
}


static void
test_formula(void **state)
{
    lpg_budget_t b;

    b = budget(4, 1, 8, 100, 3);
    assert_int_equal(lpg_budget_need(&b), 48);
    assert_int_equal(lpg_budget_allowed(&b), 97);
    assert_true(lpg_budget_fits(&b));

    /* strictly less than: equality does not fit */
    b = budget(4, 1, 16, 99, 3);
    assert_int_equal(lpg_budget_need(&b), 96);
    assert_false(lpg_budget_fits(&b));

    b = budget(4, 1, 20, 100, 3);
    assert_false(lpg_budget_fits(&b));

    /* unknown server limits never refuse */
    b = budget(64, 8, 100, -1, 3);
    assert_true(lpg_budget_fits(&b));
}


static void
test_explain(void **state)
{
    char         msg[1024];
    lpg_budget_t b;

    b = budget(4, 1, 20, 100, 3);
    lpg_budget_explain(&b, msg, sizeof(msg));
    assert_non_null(strstr(msg, "(1 + 4 + 1) * 20 = 120"));
    assert_non_null(strstr(msg, "100 - 3 = 97"));
    /* 6 * 16 = 96 < 97; (96 / 20) - 1 - 1 = 2 workers; 124 connections */
    assert_non_null(strstr(msg, "--db-maxconn=16 or less"));
    assert_non_null(strstr(msg, "--workers=2 or less"));
    assert_non_null(strstr(msg, "max_connections in postgresql.conf to 124"));

    /* the advice itself fits */
    b = budget(4, 1, 16, 100, 3);
    assert_true(lpg_budget_fits(&b));
    b = budget(2, 1, 20, 100, 3);
    assert_true(lpg_budget_fits(&b));
    b = budget(4, 1, 20, 124, 3);
    assert_true(lpg_budget_fits(&b));
}


static void
test_report(void **state)
{
    char        *text = NULL;
    size_t       len = 0;
    FILE        *f;
    lpg_budget_t b;

    b = budget(4, 1, 8, -1, 0);
    f = open_memstream(&text, &len);
    lpg_budget_report(&b, "connection refused", f);
    fclose(f);
    assert_non_null(strstr(text, "could not read max_connections"));
    assert_non_null(strstr(text, "connection refused"));
    assert_non_null(strstr(text, "fd limit:       20000"));
    /* 20000 - 32 - 8 = 19960 per worker, 4 workers */
    assert_non_null(strstr(text, "19960 per worker"));
    assert_non_null(strstr(text, "79840 in total"));
    free(text);

    b = budget(4, 1, 8, 100, 3);
    f = open_memstream(&text, &len);
    lpg_budget_report(&b, NULL, f);
    fclose(f);
    assert_non_null(strstr(text, "(1 + 4 + 1) * 8 = 48 < 100 - 3 = 97: fits"));
    free(text);
}


static void
test_claims(void **state)
{
    char         name[LPG_BUDGET_CLAIM_LEN];
    lpg_budget_t b;

    lpg_budget_claim_name("web-1:8072", 48, name, sizeof(name));
    assert_string_equal(name, "lpgate:web-1:8072:48");

    b = budget(4, 1, 8, 100, 3);
    b.node_name = "web-1:8072";

    /* host:port names: the claim is the last field */
    lpg_budget_add_claim(&b, "lpgate:web-2:8072:24");
    lpg_budget_add_claim(&b, "lpgate:web-3:12");
    /* this node's own name: not counted twice */
    lpg_budget_add_claim(&b, name);
    /* not claims: other applications, lpgate's other connections, junk */
    lpg_budget_add_claim(&b, "lpgate master");
    lpg_budget_add_claim(&b, "lpgate worker");
    lpg_budget_add_claim(&b, "psql");
    lpg_budget_add_claim(&b, "lpgate:web-4:");
    lpg_budget_add_claim(&b, "lpgate:web-4:12x");
    lpg_budget_add_claim(&b, "lpgate::12");
    lpg_budget_add_claim(&b, "lpgate:web-4:-5");
    lpg_budget_add_claim(&b, NULL);

    assert_int_equal(b.nothers, 2);
    assert_int_equal(b.others, 36);
    assert_true(b.self_seen);
    assert_string_equal(b.nodes[0].name, "web-2:8072");
    assert_int_equal(b.nodes[1].claim, 12);

    /* 48 + 36 = 84 < 97 */
    assert_true(lpg_budget_fits(&b));
    lpg_budget_add_claim(&b, "lpgate:web-5:13");
    /* 48 + 49 = 97: equality does not fit, as for one node */
    assert_false(lpg_budget_fits(&b));

    assert_true(lpg_budget_node_valid("web-1.example:8072"));
    assert_true(lpg_budget_node_valid("a_b"));
    assert_false(lpg_budget_node_valid(""));
    assert_false(lpg_budget_node_valid("a b"));
    assert_false(lpg_budget_node_valid("a'b"));
    assert_false(lpg_budget_node_valid(
        "0123456789012345678901234567890123456789012345678"));
}


static void
test_explain_cluster(void **state)
{
    char         msg[1024];
    lpg_budget_t b;

    /* (1 + 2 + 1) * 8 = 32 beside 70: 102 >= 97 */
    b = budget(2, 1, 8, 100, 3);
    b.node_name = "c";
    lpg_budget_add_claim(&b, "lpgate:a:40");
    lpg_budget_add_claim(&b, "lpgate:b:30");
    assert_false(lpg_budget_fits(&b));

    lpg_budget_explain(&b, msg, sizeof(msg));
    assert_non_null(strstr(msg,
                           "(1 + 2 + 1) * 8 = 32, plus 70 claimed by 2 "
                           "other node(s) (a 40, b 30) = 102, but "
                           "100 - 3 = 97."));
    /* 97 - 70 = 27 left: 4 * 6 = 24 < 27; 26 / 8 - 2 = 1 worker */
    assert_non_null(strstr(msg, "--db-maxconn=6 or less"));
    assert_non_null(strstr(msg, "--workers=1 or less"));
    assert_non_null(strstr(msg, "stop another node"));
    assert_non_null(strstr(msg, "max_connections in postgresql.conf to 106"));

    /* the advice fits */
    b.db_maxconn = 6;
    assert_true(lpg_budget_fits(&b));
    b.db_maxconn = 8;
    b.workers = 1;
    assert_true(lpg_budget_fits(&b));
    b.workers = 2;
    b.max_connections = 106;
    assert_true(lpg_budget_fits(&b));
}


int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_formula),         cmocka_unit_test(test_explain),
        cmocka_unit_test(test_report),          cmocka_unit_test(test_claims),
        cmocka_unit_test(test_explain_cluster),
    };

    return cmocka_run_group_tests_name("budget", tests, NULL, NULL);
}
