/*
 * SPDX-License-Identifier: MIT
 *
 * test_dispatch.c: the channel index and Odoo's json_dump text form.
 */

#include "lpg_dispatch.h"
#include "lpg_json.h"
#include "lpg_rpc.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>


typedef struct {
    int                id;
    int                hits;
    lpg_dispatch_sub_t subs[4];
} poll_t;


static void
hit(void *owner, void *arg)
{
    poll_t *p = owner;

    p->hits++;
    (*(int *) arg)++;
}


static size_t
key(char *buf, const char *db, const char *chan)
{
    return lpg_dispatch_key(buf, 256, db, strlen(db), chan, strlen(chan));
}


static void
test_add_match_remove(void **state)
{
    int             n;
    char            k[256];
    size_t          len;
    poll_t          a, b;
    lpg_dispatch_t *d;

    memset(&a, 0, sizeof(a));
    memset(&b, 0, sizeof(b));
    d = lpg_dispatch_create();
    assert_non_null(d);

    len = key(k, "db1", "\"c1\"");
    assert_int_equal(lpg_dispatch_add(d, &a.subs[0], k, len, &a), LPG_OK);
    assert_int_equal(lpg_dispatch_add(d, &b.subs[0], k, len, &b), LPG_OK);
    len = key(k, "db1", "[\"db1\",\"res.partner\",3]");
    assert_int_equal(lpg_dispatch_add(d, &b.subs[1], k, len, &b), LPG_OK);
    assert_int_equal(lpg_dispatch_channels(d), 2);
    assert_int_equal(lpg_dispatch_subs(d), 3);

    n = 0;
    len = key(k, "db1", "\"c1\"");
    assert_int_equal(lpg_dispatch_match(d, k, len, hit, &n), 2);
    assert_int_equal(n, 2);

    /* the same channel text in another database is another channel */
    len = key(k, "db2", "\"c1\"");
    assert_int_equal(lpg_dispatch_match(d, k, len, hit, &n), 0);

    lpg_dispatch_remove(d, &a.subs[0]);
    lpg_dispatch_remove(d, &a.subs[0]); /* twice is harmless */
    assert_int_equal(lpg_dispatch_subs(d), 2);
    len = key(k, "db1", "\"c1\"");
    assert_int_equal(lpg_dispatch_match(d, k, len, hit, &n), 1);

    lpg_dispatch_remove(d, &b.subs[0]);
    lpg_dispatch_remove(d, &b.subs[1]);
    assert_int_equal(lpg_dispatch_channels(d), 0);
    assert_int_equal(lpg_dispatch_match(d, k, len, hit, &n), 0);

    lpg_dispatch_destroy(d);
}


static void
remove_self(void *owner, void *arg)
{
    poll_t *p = owner;

    p->hits++;
    lpg_dispatch_remove(arg, &p->subs[0]);
}


static void
test_remove_in_callback_and_grow(void **state)
{
    int             i;
    char            k[256], name[32];
    size_t          len;
    poll_t         *polls;
    lpg_dispatch_t *d;

    d = lpg_dispatch_create();
    polls = calloc(5000, sizeof(*polls));

    /* 5000 polls on 1000 channels forces several grows */
    for (i = 0; i < 5000; i++) {
        snprintf(name, sizeof(name), "\"c%d\"", i % 1000);
        len = key(k, "db", name);
        assert_int_equal(
            lpg_dispatch_add(d, &polls[i].subs[0], k, len, &polls[i]), LPG_OK);
    }

    assert_int_equal(lpg_dispatch_channels(d), 1000);

    for (i = 0; i < 1000; i++) {
        snprintf(name, sizeof(name), "\"c%d\"", i);
        len = key(k, "db", name);
        assert_int_equal(lpg_dispatch_match(d, k, len, remove_self, d), 5);
    }

    for (i = 0; i < 5000; i++) {
        assert_int_equal(polls[i].hits, 1);
    }

    assert_int_equal(lpg_dispatch_channels(d), 0);
    assert_int_equal(lpg_dispatch_subs(d), 0);

    free(polls);
    lpg_dispatch_destroy(d);
}


static void
expect_dump(const char *json, const char *want)
{
    json_t      *v;
    lpg_buf_t    b;
    json_error_t e;

    memset(&b, 0, sizeof(b));
    v = json_loads(json, JSON_DECODE_ANY | JSON_ALLOW_NUL, &e);
    assert_non_null(v);
    assert_int_equal(lpg_json_dump(&b, v), LPG_OK);
    assert_string_equal(b.data, want);
    json_decref(v);
    lpg_buf_free(&b);
}


/* the expectations are what CPython's json.dumps(v, separators=(',',':'))
 * prints */
static void
test_json_dump_matches_python(void **state)
{
    lpg_buf_t b;

    memset(&b, 0, sizeof(b));
    expect_dump("\"c1\"", "\"c1\"");
    expect_dump("[\"mydb\", \"res.partner\", 3]",
                "[\"mydb\",\"res.partner\",3]");
    expect_dump("\"caf\\u00e9 / \\\"q\\\" \\\\ \\n\\t\\u0001\"",
                "\"caf\\u00e9 / \\\"q\\\" \\\\ \\n\\t\\u0001\"");
    expect_dump("\"\xc3\xa9\xe2\x82\xac\"", "\"\\u00e9\\u20ac\"");
    expect_dump("\"\xf0\x9f\x98\x80\"", "\"\\ud83d\\ude00\"");
    expect_dump("\"\x7f\"", "\"\\u007f\"");
    expect_dump("{\"b\": 1, \"a\": [true, false, null]}",
                "{\"b\":1,\"a\":[true,false,null]}");

    /* invalid UTF-8 is refused, not copied */
    assert_int_equal(lpg_json_dump_string(&b, "\xc3", 1), LPG_ERROR);
    lpg_buf_free(&b);
    assert_int_equal(lpg_json_dump_string(&b, "\xed\xa0\x80", 3), LPG_ERROR);
    lpg_buf_free(&b);
    assert_int_equal(lpg_json_dump_string(&b, "\xc0\xaf", 2), LPG_ERROR);
    lpg_buf_free(&b);
}


static void
expect_rpc_error(const char *body, const char *needle)
{
    const char    *why;
    lpg_rpc_poll_t rp;

    assert_int_equal(lpg_rpc_poll_parse(body, strlen(body), 3, &rp, &why),
                     LPG_ERROR);
    if (strstr(why, needle) == NULL) {
        fail_msg("\"%s\" lacks \"%s\"", why, needle);
    }

    lpg_rpc_poll_free(&rp);
}


static void
test_rpc_poll(void **state)
{
    const char    *why;
    const char    *ok = "{\"id\": 7, \"params\": {\"channels\": [\"a\", "
                        "\"b\"], \"last\": 42, \"options\": "
                        "{\"peek\": true}}}";
    lpg_rpc_poll_t rp;

    assert_int_equal(lpg_rpc_poll_parse(ok, strlen(ok), 3, &rp, &why), LPG_OK);
    /* the common shape: the fast reader's */
    assert_null(rp.body);
    assert_int_equal(rp.nfast, 2);
    assert_true(rp.last == 42 && rp.peek);
    assert_string_equal(rp.id, "7");
    assert_true(rp.inactivity == -1); /* no bus_inactivity: no presence */
    lpg_rpc_poll_free(&rp);

    /* Odoo's JS sends bus_inactivity in ms, sometimes as a float */
    ok = "{\"params\": {\"channels\": [], \"options\": "
         "{\"bus_inactivity\": 1234.7}}}";
    assert_int_equal(lpg_rpc_poll_parse(ok, strlen(ok), 3, &rp, &why), LPG_OK);
    assert_true(rp.inactivity == 1234);
    lpg_rpc_poll_free(&rp);

    ok = "{\"params\": {\"channels\": [], \"options\": "
         "{\"bus_inactivity\": -5}}}";
    assert_int_equal(lpg_rpc_poll_parse(ok, strlen(ok), 3, &rp, &why), LPG_OK);
    assert_true(rp.inactivity == 0);
    lpg_rpc_poll_free(&rp);

    expect_rpc_error("{nope", "Invalid JSON");
    expect_rpc_error("{\"params\": 1}", "params");
    expect_rpc_error("{\"params\": {\"channels\": \"a\"}}", "channels");
    expect_rpc_error("{\"params\": {\"channels\": [[\"db\", \"x\"]]}}",
                     "bus.Bus only string channels are allowed.");
    expect_rpc_error("{\"params\": {\"channels\": [\"a\",\"b\",\"c\",\"d\"]}}",
                     "max_channels_per_poll");
    expect_rpc_error("{\"params\": {\"channels\": [], \"last\": -1}}", "last");
    expect_rpc_error("{\"params\": {\"channels\": [], \"options\": []}}",
                     "options");
}


/* the fast reader takes body, and jansson's reader decodes it the same */
static void
expect_fast(const char *body, size_t max)
{
    size_t         i;
    const char    *why;
    lpg_rpc_poll_t f, j;

    if (!lpg_rpc_poll_fast(body, strlen(body), max, &f)) {
        fail_msg("the fast reader declined %s", body);
    }

    assert_null(f.body);
    assert_int_equal(lpg_rpc_poll_parse_json(body, strlen(body), max, &j, &why),
                     LPG_OK);
    assert_true(f.last == j.last && f.peek == j.peek
                && f.inactivity == j.inactivity);
    assert_true((f.id == NULL && j.id == NULL)
                || (f.id != NULL && j.id != NULL && strcmp(f.id, j.id) == 0));
    assert_int_equal(f.nfast, json_array_size(j.channels));

    for (i = 0; i < f.nfast; i++) {
        json_t *ch = json_array_get(j.channels, i);

        assert_int_equal(f.fast[i].len, json_string_length(ch));
        assert_memory_equal(f.fast[i].p, json_string_value(ch), f.fast[i].len);
    }

    lpg_rpc_poll_free(&f);
    lpg_rpc_poll_free(&j);
}


static void
expect_declined(const char *body, size_t max)
{
    lpg_rpc_poll_t f;

    if (lpg_rpc_poll_fast(body, strlen(body), max, &f)) {
        fail_msg("the fast reader took %s", body);
    }

    /* nothing to free, nothing set */
    assert_null(f.id);
    assert_int_equal(f.nfast, 0);
}


static void
test_rpc_poll_fast(void **state)
{
    int            i;
    lpg_buf_t      b = { 0 };
    const char    *why;
    lpg_rpc_poll_t rp;

    /* what Odoo 8-15's web client and lpgate.js post */
    expect_fast("{\"jsonrpc\":\"2.0\",\"method\":\"call\",\"params\":"
                "{\"channels\":[\"lpgtest\",\"c 1\"],\"last\":1234,"
                "\"options\":{\"bus_inactivity\":4242}},\"id\":987654321}",
                3);
    expect_fast(" {\n \"params\" : { \"last\" : 0 , \"channels\" : [ ] ,"
                " \"options\" : { \"peek\" : true, \"x\": null, \"y\": "
                "\"s\", \"z\": -3 } } , \"id\" : \"r-7/x\" } \r\n",
                3);
    expect_fast("{\"params\":{\"channels\":[\"a\"],\"last\":null,"
                "\"options\":null},\"id\":null}",
                3);
    expect_fast("{\"params\":{\"channels\":[],\"options\":"
                "{\"bus_inactivity\":-5}},\"id\":-12}",
                3);

    /* anything else is jansson's */
    expect_declined("{\"params\":{\"channels\":[\"caf\\u00e9\"]}}", 3);
    expect_declined("{\"params\":{\"channels\":[\"caf\xc3\xa9\"]}}", 3);
    expect_declined("{\"params\":{\"channels\":[[\"db\",\"x\"]]}}", 3);
    expect_declined("{\"params\":{\"channels\":[],\"last\":1,\"last\":2}}", 3);
    expect_declined("{\"params\":{\"channels\":[],\"options\":"
                    "{\"peek\":false,\"peek\":true}}}",
                    3);
    expect_declined("{\"params\":{\"channels\":[]},\"other\":1}", 3);
    expect_declined("{\"params\":{\"channels\":[\"a\",\"b\"]}}", 1);
    expect_declined("{\"params\":{\"channels\":[],\"last\":01}}", 3);
    expect_declined("{\"params\":{\"channels\":[],\"last\":1.5}}", 3);
    expect_declined("{\"params\":{\"channels\":[],\"last\":-1}}", 3);
    expect_declined("{\"params\":{\"channels\":[]}} x", 3);
    expect_declined("{\"params\":{\"channels\":[]}", 3);
    expect_declined("{\"params\":{\"last\":1}}", 3);
    expect_declined("{\"id\":1.5,\"params\":{\"channels\":[]}}", 3);
    expect_declined("{\"params\":{\"channels\":[],\"options\":"
                    "{\"bus_inactivity\":1234.7}}}",
                    3);
    expect_declined("{\"params\":{\"channels\":[],\"options\":{\"a\":[]}}}", 3);

    /* more channels than the fast reader holds: jansson's, all of them */
    if (lpg_buf_append_str(&b, "{\"params\":{\"channels\":[") != LPG_OK) {
        fail();
    }
    for (i = 0; i <= LPG_RPC_FAST_CHANNELS; i++) {
        if (lpg_buf_append_str(&b, i > 0 ? ",\"c\"" : "\"c\"") != LPG_OK) {
            fail();
        }
    }
    if (lpg_buf_append_str(&b, "]}}") != LPG_OK) {
        fail();
    }
    expect_declined(b.data, 1000);
    assert_int_equal(lpg_rpc_poll_parse(b.data, b.len, 1000, &rp, &why),
                     LPG_OK);
    assert_int_equal(json_array_size(rp.channels), LPG_RPC_FAST_CHANNELS + 1);
    lpg_rpc_poll_free(&rp);
    lpg_buf_free(&b);
}


static void
test_rpc_payload(void **state)
{
    bool               mask[2];
    static const char *dbs[] = { "db1", "db2" };

#define PAYLOAD(s) s, strlen(s), dbs, 2, mask

    memset(mask, 0, sizeof(mask));
    assert_int_equal(lpg_rpc_payload_dbs(PAYLOAD("[[\"db2\", \"x\", 1]]")),
                     LPG_OK);
    assert_true(!mask[0] && mask[1]);

    memset(mask, 0, sizeof(mask));
    assert_int_equal(lpg_rpc_payload_dbs(PAYLOAD("[[\"other\", \"x\"]]")),
                     LPG_OK);
    assert_true(!mask[0] && !mask[1]);

    /* a string channel may live in any database */
    memset(mask, 0, sizeof(mask));
    assert_int_equal(lpg_rpc_payload_dbs(PAYLOAD("[\"c1\"]")), LPG_OK);
    assert_true(mask[0] && mask[1]);

    assert_int_equal(lpg_rpc_payload_dbs(PAYLOAD("not json")), LPG_ERROR);
    assert_int_equal(lpg_rpc_payload_dbs(PAYLOAD("{\"a\": 1}")), LPG_ERROR);

#undef PAYLOAD
}


int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_add_match_remove),
        cmocka_unit_test(test_remove_in_callback_and_grow),
        cmocka_unit_test(test_json_dump_matches_python),
        cmocka_unit_test(test_rpc_poll),
        cmocka_unit_test(test_rpc_poll_fast),
        cmocka_unit_test(test_rpc_payload),
    };

    return cmocka_run_group_tests_name("dispatch", tests, NULL, NULL);
}
