/*
 * SPDX-License-Identifier: MIT
 *
 * lpg_json_check.c: is this text one JSON value?  Without building it.
 *
 * The master checks every bus_bus row's channel and message before it
 * goes into the ring (a row that is not JSON would break every answer it
 * is spliced into).  jansson answered that by building a tree per row and
 * freeing it: about half of the master's time on a 10,000-row fetch.
 * This walks the bytes once, allocates nothing, and accepts exactly what
 * json_loadb(JSON_DECODE_ANY) accepts: strict UTF-8, no control bytes in
 * strings, \u escapes with paired surrogates and no \u0000, integers that
 * fit in a long long, reals that do not overflow a double, and at most
 * JSON_PARSER_MAX_DEPTH nested values (tests/unit/test_json_check.c and
 * the fuzz_json_check harness compare the two).  One difference: a NUL
 * byte is refused wherever it is, where jansson's buffer reader skips one
 * that follows a number or a word; PostgreSQL text never holds a NUL.
 */

#include "lpg_json.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>


/* a real's text longer than this is copied to the heap for strtod */
#define LPG_JSON_CHECK_NUM 128


typedef struct {
    const unsigned char *s;
    size_t               len;
    size_t               i;
} lpg_json_cur_t;


static void lpg_json_check_ws(lpg_json_cur_t *c);
static bool lpg_json_check_string(lpg_json_cur_t *c);
static bool lpg_json_check_escape(lpg_json_cur_t *c);
static int  lpg_json_check_hex4(const lpg_json_cur_t *c, size_t at);
static bool lpg_json_check_number(lpg_json_cur_t *c);
static bool lpg_json_check_range(const unsigned char *t, size_t n,
                                 bool integer);
static bool lpg_json_check_word(lpg_json_cur_t *c);


bool
lpg_json_check(const char *text, size_t len)
{
    unsigned char  open[JSON_PARSER_MAX_DEPTH];
    size_t         depth = 0;
    lpg_json_cur_t c;

    c.s = (const unsigned char *) text;
    c.len = len;
    c.i = 0;

value:

    /* jansson counts the value being parsed with its containers */
    lpg_json_check_ws(&c);
    if (c.i == c.len || depth + 1 > JSON_PARSER_MAX_DEPTH) {
        return false;
    }

    switch (c.s[c.i]) {
    case '{':
    case '[':
        open[depth] = c.s[c.i++];
        lpg_json_check_ws(&c);
        if (c.i < c.len && c.s[c.i] == (open[depth] == '{' ? '}' : ']')) {
            /* empty: nothing opened */
            c.i++;
            goto after;
        }
        if (open[depth++] == '{') {
            goto key;
        }
        goto value;

    case '"':
        if (!lpg_json_check_string(&c)) {
            return false;
        }
        goto after;

    case 't':
    case 'f':
    case 'n':
        if (!lpg_json_check_word(&c)) {
            return false;
        }
        goto after;

    default:
        if (!lpg_json_check_number(&c)) {
            return false;
        }
        goto after;
    }

key:

    lpg_json_check_ws(&c);
    if (c.i == c.len || c.s[c.i] != '"' || !lpg_json_check_string(&c)) {
        return false;
    }

    lpg_json_check_ws(&c);
    if (c.i == c.len || c.s[c.i] != ':') {
        return false;
    }

    c.i++;
    goto value;

after:

    lpg_json_check_ws(&c);

    if (depth == 0) {
        return c.i == c.len;
    }

    if (c.i == c.len) {
        return false;
    }

    if (c.s[c.i] == ',') {
        c.i++;
        if (open[depth - 1] == '{') {
            goto key;
        }
        goto value;
    }

    if (c.s[c.i] != (open[depth - 1] == '{' ? '}' : ']')) {
        return false;
    }

    c.i++;
    depth--;
    goto after;
}


static void
lpg_json_check_ws(lpg_json_cur_t *c)
{
    while (c->i < c->len
           && (c->s[c->i] == ' ' || c->s[c->i] == '\n' || c->s[c->i] == '\r'
               || c->s[c->i] == '\t'))
    {
        c->i++;
    }
}


/* at the opening quote; leaves c after the closing one */
static bool
lpg_json_check_string(lpg_json_cur_t *c)
{
    unsigned char b;
    uint32_t      cp;

    c->i++;

    while (c->i < c->len) {
        b = c->s[c->i];

        if (b == '"') {
            c->i++;
            return true;
        }

        if (b < 0x20) {
            return false;
        }

        if (b == '\\') {
            if (!lpg_json_check_escape(c)) {
                return false;
            }
            continue;
        }

        if (b < 0x80) {
            c->i++;
            continue;
        }

        if (lpg_json_utf8_next(c->s, c->len, &c->i, &cp) != LPG_OK) {
            return false;
        }
    }

    return false;
}


/* at the backslash; a high surrogate takes its low one with it */
static bool
lpg_json_check_escape(lpg_json_cur_t *c)
{
    int v, low;

    if (c->i + 1 >= c->len) {
        return false;
    }

    switch (c->s[c->i + 1]) {
    case '"':
    case '\\':
    case '/':
    case 'b':
    case 'f':
    case 'n':
    case 'r':
    case 't':
        c->i += 2;
        return true;

    case 'u':
        break;

    default:
        return false;
    }

    v = lpg_json_check_hex4(c, c->i + 2);
    if (v <= 0 || (v >= 0xdc00 && v <= 0xdfff)) {
        /* not hex, \u0000 (a NUL), or a low surrogate alone */
        return false;
    }

    c->i += 6;

    if (v < 0xd800 || v > 0xdbff) {
        return true;
    }

    if (c->i + 1 >= c->len || c->s[c->i] != '\\' || c->s[c->i + 1] != 'u') {
        return false;
    }

    low = lpg_json_check_hex4(c, c->i + 2);
    if (low < 0xdc00 || low > 0xdfff) {
        return false;
    }

    c->i += 6;

    return true;
}


/* the four hex digits at c->s[at], or -1 */
static int
lpg_json_check_hex4(const lpg_json_cur_t *c, size_t at)
{
    int           v = 0, k;
    unsigned char h;

    if (at + 4 > c->len) {
        return -1;
    }

    for (k = 0; k < 4; k++) {
        h = c->s[at + k];
        v <<= 4;

        if (h >= '0' && h <= '9') {
            v += h - '0';
        } else if (h >= 'a' && h <= 'f') {
            v += h - 'a' + 10;
        } else if (h >= 'A' && h <= 'F') {
            v += h - 'A' + 10;
        } else {
            return -1;
        }
    }

    return v;
}


static bool
lpg_json_check_number(lpg_json_cur_t *c)
{
    size_t start = c->i;
    bool   integer = true;

    if (c->s[c->i] == '-') {
        c->i++;
    }

    if (c->i == c->len) {
        return false;
    }

    if (c->s[c->i] == '0') {
        c->i++;
        if (c->i < c->len && c->s[c->i] >= '0' && c->s[c->i] <= '9') {
            return false;
        }

    } else if (c->s[c->i] >= '1' && c->s[c->i] <= '9') {
        while (c->i < c->len && c->s[c->i] >= '0' && c->s[c->i] <= '9') {
            c->i++;
        }

    } else {
        return false;
    }

    if (c->i < c->len && c->s[c->i] == '.') {
        integer = false;
        c->i++;
        if (c->i == c->len || c->s[c->i] < '0' || c->s[c->i] > '9') {
            return false;
        }
        while (c->i < c->len && c->s[c->i] >= '0' && c->s[c->i] <= '9') {
            c->i++;
        }
    }

    if (c->i < c->len && (c->s[c->i] == 'e' || c->s[c->i] == 'E')) {
        integer = false;
        c->i++;
        if (c->i < c->len && (c->s[c->i] == '+' || c->s[c->i] == '-')) {
            c->i++;
        }
        if (c->i == c->len || c->s[c->i] < '0' || c->s[c->i] > '9') {
            return false;
        }
        while (c->i < c->len && c->s[c->i] >= '0' && c->s[c->i] <= '9') {
            c->i++;
        }
    }

    return lpg_json_check_range(c->s + start, c->i - start, integer);
}


/*
 * jansson refuses an integer outside long long and a real that overflows
 * a double; short integers (the usual case) need no conversion at all
 */
static bool
lpg_json_check_range(const unsigned char *t, size_t n, bool integer)
{
    char   small[LPG_JSON_CHECK_NUM], *copy;
    bool   ok;
    double d;
    size_t digits = n - (t[0] == '-');

    if (integer) {
        if (digits < 19) {
            return true;
        }
        if (digits > 19) {
            /* no leading zeros: at least 10^19 */
            return false;
        }
    }

    copy = n < sizeof(small) ? small : malloc(n + 1);
    if (copy == NULL) {
        return false;
    }

    memcpy(copy, t, n);
    copy[n] = '\0';

    errno = 0;
    if (integer) {
        (void) strtoll(copy, NULL, 10);
        ok = errno != ERANGE;
    } else {
        d = strtod(copy, NULL);
        ok = !(errno == ERANGE && (d == HUGE_VAL || d == -HUGE_VAL));
    }

    if (copy != small) {
        free(copy);
    }

    return ok;
}


/* true, false or null; jansson reads a run of letters as one word */
static bool
lpg_json_check_word(lpg_json_cur_t *c)
{
    size_t n = 0;

    while (c->i + n < c->len
           && ((c->s[c->i + n] >= 'a' && c->s[c->i + n] <= 'z')
               || (c->s[c->i + n] >= 'A' && c->s[c->i + n] <= 'Z')))
    {
        n++;
    }

    if (!((n == 4 && memcmp(c->s + c->i, "true", 4) == 0)
          || (n == 5 && memcmp(c->s + c->i, "false", 5) == 0)
          || (n == 4 && memcmp(c->s + c->i, "null", 4) == 0)))
    {
        return false;
    }

    c->i += n;

    return true;
}
