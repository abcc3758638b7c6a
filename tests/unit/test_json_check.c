/*
 * SPDX-License-Identifier: MIT
 *
 * test_json_check.c: lpg_json_check() accepts exactly what jansson's
 * json_loadb(JSON_DECODE_ANY) accepts: hand-picked edge cases (each with
 * the answer written down, and jansson asked too), the nesting limit, the
 * number limits, and a seeded stream of mutated documents where jansson is
 * the oracle.
 */

#include "lpg_json.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>


static bool
jansson_says(const char *s, size_t len)
{
    json_t *v = json_loadb(s, len, JSON_DECODE_ANY, NULL);

    json_decref(v);

    return v != NULL;
}


static void
expect(const char *s, size_t len, bool ok)
{
    if (lpg_json_check(s, len) != ok || jansson_says(s, len) != ok) {
        fail_msg("'%.*s': lpg_json_check %d, jansson %d, expected %d",
                 (int) len, s, lpg_json_check(s, len), jansson_says(s, len),
                 ok);
    }
}


#define YES(s) expect(s, sizeof(s) - 1, true)
#define NO(s)  expect(s, sizeof(s) - 1, false)


static void
test_cases(void **state)
{
    (void) state;

    YES("{}");
    YES(" [ ] ");
    YES("{\"type\": \"mail.message/new\", \"payload\": {\"id\": 5}}");
    YES("[\"db\",\"res.partner\",3]");
    YES("\"bench-1\"");
    YES("0");
    YES("-0");
    YES("1.5e+3");
    YES("-0.25E-2");
    YES("true");
    YES("null");
    YES("[true,false,null]");
    YES("\"\\u00e9\\ud83d\\ude00\\\"\\\\\\/\\b\\f\\n\\r\\t\"");
    YES("\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\"");
    YES("\"\x7f\"");
    YES("{\"a\":{\"b\":[1,{\"c\":[]}]}}");
    YES("{\"a\":1,\"a\":2}");

    NO("");
    NO("   ");
    NO("{");
    NO("[1,]");
    NO("{\"a\":1,}");
    NO("{\"a\"}");
    NO("{1:2}");
    NO("[1 2]");
    NO("[1]]");
    NO("{}{}");
    NO("01");
    NO("-");
    NO("1.");
    NO(".5");
    NO("1e");
    NO("1e+");
    NO("+1");
    NO("0x10");
    NO("tru");
    NO("truex");
    NO("True");
    NO("nul");
    NO("[truefalse]");
    NO("'a'");
    NO("\"abc");
    NO("\"a\nb\"");
    NO("\"a\tb\"");
    NO("\"\\x\"");
    NO("\"\\u12\"");
    NO("\"\\u12g4\"");
    NO("\"\\u0000\"");
    NO("{\"\\u0000\":1}");
    NO("\"\\ud800\"");
    NO("\"\\ud800x\"");
    NO("\"\\ud800\\u0041\"");
    NO("\"\\udc00\"");
    NO("\"\xc3\"");
    NO("\"\xc0\xaf\"");
    NO("\"\xed\xa0\x80\"");
    NO("\"\xf4\x90\x80\x80\"");
    NO("\"\xff\"");
    NO("\xef\xbb\xbf{}");

    /* a NUL byte inside and after the text; jansson skips one after a
     * number or a word ("1\0" loads), lpg_json_check refuses it */
    expect("\"a\0b\"", 5, false);
    expect("{}\0", 3, false);
    assert_false(lpg_json_check("1\0", 2));
    assert_false(lpg_json_check("[true\0]", 7));
}


static void
test_numbers(void **state)
{
    (void) state;

    YES("9223372036854775807");
    YES("-9223372036854775808");
    YES("1000000000000000000");
    NO("9223372036854775808");
    NO("-9223372036854775809");
    NO("10000000000000000000");
    NO("123456789012345678901234567890");

    YES("1e308");
    YES("1e-400");
    YES("123456789012345678901234567890.5");
    NO("1e309");
    NO("-1e309");
    NO("[1.5e99999]");
}


static char *
nested(size_t n, const char *inner)
{
    size_t k, len = strlen(inner);
    char  *s = malloc(2 * n + len + 1);

    assert_non_null(s);
    for (k = 0; k < n; k++) {
        s[k] = '[';
        s[n + len + k] = ']';
    }
    memcpy(s + n, inner, len);
    s[2 * n + len] = '\0';

    return s;
}


static void
test_depth(void **state)
{
    size_t k;
    char  *s;
    const struct {
        size_t      n;
        const char *inner;
        bool        ok;
    } cases[] = {
        { JSON_PARSER_MAX_DEPTH - 1, "1", true },
        { JSON_PARSER_MAX_DEPTH, "1", false },
        { JSON_PARSER_MAX_DEPTH, "", true },
        { JSON_PARSER_MAX_DEPTH + 1, "", false },
        { 100000, "", false },
    };

    (void) state;

    for (k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
        s = nested(cases[k].n, cases[k].inner);
        expect(s, strlen(s), cases[k].ok);
        free(s);
    }
}


static const char *const seeds[] = {
    "{\"type\": \"bus.bus/im_status_updated\", \"payload\": {\"im_status\": "
    "\"online\", \"partner_id\": 3, \"x\": [1.5, -2e3, true, null]}}",
    "[\"db\", \"res.partner\", 7]",
    "{\"s\": 12, \"t\": 1733221234567890, \"p\": \"\\u00e9\\ud83d\\ude00\"}",
    "\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\"",
    "[[[[]]], {}, {\"a\": {\"b\": {}}}, 0, -0.0, 1E+2, \"\\\\\"]",
};


/* bytes a mutation inserts: every token's first byte and the odd ones */
static const char alphabet[] = "{}[]:,\"\\/-+.0123456789eEtrufalsn "
                               "\t\r\n\x01\x7f\x80\xbf\xc3\xe2\xed\xf0\xff";


static void
test_mutations(void **state)
{
    char     buf[512];
    size_t   len, k, n, at;
    unsigned seed = 16;
    int      round, valid = 0;

    (void) state;

    for (round = 0; round < 200000; round++) {
        const char *s = seeds[round % (sizeof(seeds) / sizeof(seeds[0]))];

        len = strlen(s);
        memcpy(buf, s, len);
        n = 1 + rand_r(&seed) % 4;

        for (k = 0; k < n; k++) {
            at = len ? (size_t) rand_r(&seed) % len : 0;

            switch (rand_r(&seed) % 4) {
            case 0: /* replace a byte */
                if (len) {
                    buf[at] = alphabet[rand_r(&seed) % (sizeof(alphabet) - 1)];
                }
                break;
            case 1: /* insert one */
                if (len < sizeof(buf) - 1) {
                    memmove(buf + at + 1, buf + at, len - at);
                    buf[at] = alphabet[rand_r(&seed) % (sizeof(alphabet) - 1)];
                    len++;
                }
                break;
            case 2: /* delete one */
                if (len) {
                    memmove(buf + at, buf + at + 1, len - at - 1);
                    len--;
                }
                break;
            default: /* cut the end */
                len = at;
                break;
            }
        }

        valid += jansson_says(buf, len);

        if (lpg_json_check(buf, len) != jansson_says(buf, len)) {
            fail_msg("round %d: '%.*s': lpg_json_check %d, jansson %d", round,
                     (int) len, buf, lpg_json_check(buf, len),
                     jansson_says(buf, len));
        }
    }

    /* both answers were tried often */
    assert_in_range(valid, 10000, 190000);
    print_message("%d of 200000 mutated documents are JSON\n", valid);
}


int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cases),
        cmocka_unit_test(test_numbers),
        cmocka_unit_test(test_depth),
        cmocka_unit_test(test_mutations),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
