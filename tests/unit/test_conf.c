/*
 * SPDX-License-Identifier: MIT
 *
 * test_conf.c: the key table, libconfig errors, the command-line overlay,
 * and the rule that etc/lpgate.conf documents every key with its default.
 */

#include "lpg_conf.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>


static char *
write_tmp(const char *text)
{
    static char path[64];
    FILE       *f;
    int         fd;

    snprintf(path, sizeof(path), "/tmp/lpg-test-conf-XXXXXX");
    fd = mkstemp(path);
    assert_true(fd >= 0);
    f = fdopen(fd, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);

    return path;
}


static void
test_defaults(void **state)
{
    lpg_conf_t c;

    assert_int_equal(lpg_conf_init(&c), LPG_OK);
    assert_int_equal(c.workers, 0);
    assert_int_equal(c.db_maxconn, 8);
    assert_int_equal(c.max_cron_threads, 1);
    assert_int_equal(c.port, 8072);
    assert_string_equal(c.interface, "127.0.0.1");
    assert_string_equal(c.longpolling_path, "/longpolling");
    assert_int_equal(c.timeout, 50);
    assert_int_equal(c.log_level, LPG_LOG_NOTICE);
    assert_true(c.ring_size == 64 * 1024 * 1024);
    lpg_conf_free(&c);
}


static void
test_set_text(void **state)
{
    lpg_conf_t c;
    char       err[LPG_CONF_ERRLEN];

    assert_int_equal(lpg_conf_init(&c), LPG_OK);
    assert_int_equal(lpg_conf_set(&c, "db-maxconn", "16", err, sizeof(err)),
                     LPG_OK);
    assert_int_equal(c.db_maxconn, 16);
    assert_int_equal(lpg_conf_set(&c, "workers", "x", err, sizeof(err)),
                     LPG_ERROR);
    assert_non_null(strstr(err, "not an integer"));
    assert_int_equal(lpg_conf_set(&c, "port", "0", err, sizeof(err)),
                     LPG_ERROR);
    assert_non_null(strstr(err, "out of range"));
    assert_int_equal(lpg_conf_set(&c, "ring_size", "2M", err, sizeof(err)),
                     LPG_OK);
    assert_true(c.ring_size == 2 * 1024 * 1024);
    assert_int_equal(lpg_conf_set(&c, "ring_size", "2X", err, sizeof(err)),
                     LPG_ERROR);
    assert_int_equal(lpg_conf_set(&c, "log_level", "debug", err, sizeof(err)),
                     LPG_OK);
    assert_int_equal(c.log_level, LPG_LOG_DEBUG);
    assert_int_equal(lpg_conf_set(&c, "log_level", "loud", err, sizeof(err)),
                     LPG_ERROR);
    assert_int_equal(lpg_conf_set(&c, "nope", "1", err, sizeof(err)),
                     LPG_ERROR);
    lpg_conf_free(&c);
}


static void
expect_load_error(const char *text, const char *needle1, const char *needle2)
{
    lpg_conf_t c;
    char       err[LPG_CONF_ERRLEN], *path;

    path = write_tmp(text);
    assert_int_equal(lpg_conf_init(&c), LPG_OK);
    assert_int_equal(lpg_conf_load(&c, path, err, sizeof(err)), LPG_ERROR);
    assert_non_null(strstr(err, path));
    if (strstr(err, needle1) == NULL || strstr(err, needle2) == NULL) {
        fail_msg("\"%s\" lacks \"%s\" or \"%s\"", err, needle1, needle2);
    }

    lpg_conf_free(&c);
    unlink(path);
}


static void
test_load_errors(void **state)
{
    expect_load_error("workers = 2;\n\nbogus_key = 1;\n", ":3:", "bogus_key");
    expect_load_error("port = 8000;\nworkers = \"two\";\n", ":2:", "workers");
    expect_load_error("port = 70000;\n", ":1:", "out of range");
    expect_load_error("workers = 2\nport = ;\n", ":2:", "syntax error");
    expect_load_error("log_level = \"shout\";\n", ":1:", "log_level");
    expect_load_error("timeout = 1.5;\n", ":1:", "a float");
    expect_load_error("db-port = 5;\n", ":1:", "unknown key");
}


static void
test_load_and_override(void **state)
{
    lpg_conf_t      c;
    char            err[LPG_CONF_ERRLEN], *path;
    lpg_conf_args_t args;

    path = write_tmp("workers = 3;\ndb_host = \"db.example\";\n"
                     "longpolling_path = \"/lp/\";\nring_size = 1048576;\n");

    memset(&args, 0, sizeof(args));
    args.path = path;
    args.keys[0] = "workers";
    args.values[0] = "1";
    args.n = 1;

    assert_int_equal(lpg_conf_build(&c, &args, err, sizeof(err)), LPG_OK);
    assert_int_equal(c.workers, 1);
    assert_string_equal(c.db_host, "db.example");
    assert_string_equal(c.longpolling_path, "/lp");
    assert_true(c.ring_size == 1048576);
    lpg_conf_free(&c);

    /* a bad command-line value is an error too */
    args.values[0] = "-1";
    assert_int_equal(lpg_conf_build(&c, &args, err, sizeof(err)), LPG_ERROR);
    assert_non_null(strstr(err, "workers"));
    unlink(path);
}


static void
test_copy_equal(void **state)
{
    lpg_conf_t            a, b;
    size_t                i, n;
    const lpg_conf_key_t *keys;

    assert_int_equal(lpg_conf_init(&a), LPG_OK);
    assert_int_equal(lpg_conf_copy(&b, &a), LPG_OK);
    keys = lpg_conf_keys(&n);
    for (i = 0; i < n; i++) {
        assert_true(lpg_conf_equal(&a, &b, &keys[i]));
    }

    assert_true(a.interface != b.interface);
    lpg_conf_free(&a);
    lpg_conf_free(&b);
}


/* odoo_url: only what lpgate's client can use */
static void
test_parse_url(void **state)
{
    char           err[LPG_CONF_ERRLEN];
    lpg_conf_t     c;
    lpg_conf_url_t u;

    assert_int_equal(lpg_conf_parse_url("http://127.0.0.1:8069", &u), LPG_OK);
    assert_string_equal(u.host, "127.0.0.1");
    assert_int_equal(u.port, 8069);
    assert_string_equal(u.prefix, "");

    assert_int_equal(lpg_conf_parse_url("http://odoo/erp/", &u), LPG_OK);
    assert_string_equal(u.host, "odoo");
    assert_int_equal(u.port, 80);
    assert_string_equal(u.prefix, "/erp");

    assert_int_equal(lpg_conf_parse_url("http://[::1]:8069/", &u), LPG_OK);
    assert_string_equal(u.host, "::1");
    assert_int_equal(u.port, 8069);

    assert_false(u.tls);

    /* Odoo behind TLS on another host */
    assert_int_equal(lpg_conf_parse_url("https://odoo.example.com", &u),
                     LPG_OK);
    assert_string_equal(u.host, "odoo.example.com");
    assert_int_equal(u.port, 443);
    assert_true(u.tls);
    assert_int_equal(lpg_conf_parse_url("https://odoo:8443/x", &u), LPG_OK);
    assert_int_equal(u.port, 8443);
    assert_string_equal(u.prefix, "/x");

    assert_int_equal(lpg_conf_parse_url("https://", &u), LPG_ERROR);
    assert_int_equal(lpg_conf_parse_url("httpx://odoo", &u), LPG_ERROR);
    assert_int_equal(lpg_conf_parse_url("http://", &u), LPG_ERROR);
    assert_int_equal(lpg_conf_parse_url("http://a:0", &u), LPG_ERROR);
    assert_int_equal(lpg_conf_parse_url("http://a:99999", &u), LPG_ERROR);
    assert_int_equal(lpg_conf_parse_url("http://u@a", &u), LPG_ERROR);
    assert_int_equal(lpg_conf_parse_url("http://a/?x", &u), LPG_ERROR);

    /* finish refuses a bad one and names the key */
    assert_int_equal(lpg_conf_init(&c), LPG_OK);
    assert_int_equal(lpg_conf_set(&c, "odoo-url", "ftp://x", err, sizeof(err)),
                     LPG_OK);
    assert_int_equal(lpg_conf_finish(&c, err, sizeof(err)), LPG_ERROR);
    assert_non_null(strstr(err, "odoo_url"));
    assert_int_equal(lpg_conf_set(&c, "odoo_url", "", err, sizeof(err)),
                     LPG_OK);
    assert_int_equal(lpg_conf_finish(&c, err, sizeof(err)), LPG_OK);

    /* odoo_cafile must be readable when given */
    assert_int_equal(lpg_conf_set(&c, "odoo_cafile", "/nonexistent/ca.pem", err,
                                  sizeof(err)),
                     LPG_OK);
    assert_int_equal(lpg_conf_finish(&c, err, sizeof(err)), LPG_ERROR);
    assert_non_null(strstr(err, "odoo_cafile"));
    assert_int_equal(
        lpg_conf_set(&c, "odoo_cafile", "/dev/null", err, sizeof(err)), LPG_OK);
    assert_int_equal(lpg_conf_finish(&c, err, sizeof(err)), LPG_OK);
    lpg_conf_free(&c);
}


/* every key of the table appears in etc/lpgate.conf as "key = default;" */
static void
test_shipped_conf_documents_every_key(void **state)
{
    FILE                 *f;
    size_t                i, n, len;
    char                 *text, want[256], err[LPG_CONF_ERRLEN];
    lpg_conf_t            c;
    const lpg_conf_key_t *keys;

    f = fopen(LPG_SRCDIR "/etc/lpgate.conf", "r");
    assert_non_null(f);
    text = calloc(1, 65536);
    len = fread(text, 1, 65535, f);
    fclose(f);
    assert_true(len > 0);

    keys = lpg_conf_keys(&n);
    for (i = 0; i < n; i++) {
        if (keys[i].type == LPG_CONF_INT || keys[i].type == LPG_CONF_BOOL) {
            snprintf(want, sizeof(want), "\n%s = %s;", keys[i].name,
                     keys[i].def);

        } else {
            snprintf(want, sizeof(want), "\n%s = \"%s\";", keys[i].name,
                     keys[i].def);
        }

        if (strstr(text, want) == NULL) {
            fail_msg("etc/lpgate.conf lacks \"%s\"", want + 1);
        }
    }

    free(text);

    /* and it loads cleanly */
    assert_int_equal(lpg_conf_init(&c), LPG_OK);
    assert_int_equal(
        lpg_conf_load(&c, LPG_SRCDIR "/etc/lpgate.conf", err, sizeof(err)),
        LPG_OK);
    lpg_conf_free(&c);
}


int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_set_text),
        cmocka_unit_test(test_load_errors),
        cmocka_unit_test(test_load_and_override),
        cmocka_unit_test(test_copy_equal),
        cmocka_unit_test(test_shipped_conf_documents_every_key),
        cmocka_unit_test(test_parse_url),
    };

    return cmocka_run_group_tests_name("conf", tests, NULL, NULL);
}
