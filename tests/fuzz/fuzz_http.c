/*
 * SPDX-License-Identifier: MIT
 *
 * fuzz_http.c: libFuzzer harness of HTTP request parsing as a worker
 * drives it: http-parser with the worker's header limit, paused at the end
 * of every message and resumed on the rest (pipelining), the URL split as
 * the router does, and the callbacks' spans checked against the input.
 */

#include <http_parser.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>


typedef struct {
    const char  *base;
    size_t       size;
    const char  *url;
    size_t       url_len;
    int          messages;
} fuzz_state_t;


static int
fuzz_span(http_parser *p, const char *at, size_t len)
{
    fuzz_state_t  *st = p->data;

    if (at < st->base || at + len > st->base + st->size) {
        abort();
    }

    return 0;
}


static int
fuzz_url(http_parser *p, const char *at, size_t len)
{
    fuzz_state_t  *st = p->data;

    fuzz_span(p, at, len);

    if (st->url == NULL) {
        st->url = at;
    }

    st->url_len = at + len - st->url;

    return 0;
}


static int
fuzz_complete(http_parser *p)
{
    fuzz_state_t             *st = p->data;
    struct http_parser_url    u;

    st->messages++;

    if (st->url != NULL) {
        http_parser_url_init(&u);
        (void) http_parser_parse_url(st->url, st->url_len,
                                     p->method == HTTP_CONNECT, &u);
    }

    st->url = NULL;
    http_parser_pause(p, 1);

    return 0;
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t                 off, n;
    http_parser            p;
    fuzz_state_t           st;
    http_parser_settings   s;

    memset(&s, 0, sizeof(s));
    s.on_url = fuzz_url;
    s.on_header_field = fuzz_span;
    s.on_header_value = fuzz_span;
    s.on_body = fuzz_span;
    s.on_message_complete = fuzz_complete;

    http_parser_set_max_header_size(8192);

    memset(&st, 0, sizeof(st));
    st.base = (const char *) data;
    st.size = size;

    http_parser_init(&p, HTTP_REQUEST);
    p.data = &st;

    for (off = 0; off < size;) {
        n = http_parser_execute(&p, &s, (const char *) data + off,
                                size - off);
        off += n;

        if (HTTP_PARSER_ERRNO(&p) == HPE_PAUSED) {
            http_parser_pause(&p, 0);
            continue;
        }

        break;
    }

    return 0;
}
