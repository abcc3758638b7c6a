/*
 * SPDX-License-Identifier: MIT
 *
 * fuzz_rpc.c: libFuzzer harness of the JSON-RPC poll decoder and of the
 * json_dump text form of whatever channels it accepts.  Whatever body the
 * fast reader (lpg_rpc_fast.c) takes, jansson's reader must take too and
 * decode the same way: the harness aborts on any difference.
 */

#include "lpg_json.h"
#include "lpg_rpc.h"

#include <stdlib.h>
#include <string.h>


static void fuzz_rpc_same(const char *buf, size_t len, size_t max);


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t         i;
    json_t        *ch;
    lpg_buf_t      b = { 0 };
    const char    *why;
    lpg_rpc_poll_t rp;

    if (lpg_rpc_poll_parse((const char *) data, size, 1000, &rp, &why)
        == LPG_OK) {
        json_array_foreach(rp.channels, i, ch)
        {
            if (lpg_json_dump(&b, ch) != LPG_OK) {
                break;
            }
        }
    }

    lpg_buf_free(&b);
    lpg_rpc_poll_free(&rp);

    fuzz_rpc_same((const char *) data, size, 1000);
    fuzz_rpc_same((const char *) data, size, 2);

    return 0;
}


static void
fuzz_rpc_same(const char *buf, size_t len, size_t max)
{
    size_t         i;
    json_t        *ch;
    const char    *why;
    lpg_rpc_poll_t f, j;

    if (!lpg_rpc_poll_fast(buf, len, max, &f)) {
        return;
    }

    if (f.body != NULL || f.nfast > max
        || lpg_rpc_poll_parse_json(buf, len, max, &j, &why) != LPG_OK
        || f.last != j.last || f.peek != j.peek || f.inactivity != j.inactivity
        || (f.id == NULL) != (j.id == NULL)
        || (f.id != NULL && strcmp(f.id, j.id) != 0)
        || f.nfast != json_array_size(j.channels))
    {
        abort();
    }

    json_array_foreach(j.channels, i, ch)
    {
        if (f.fast[i].len != json_string_length(ch)
            || memcmp(f.fast[i].p, json_string_value(ch), f.fast[i].len) != 0)
        {
            abort();
        }
    }

    lpg_rpc_poll_free(&f);
    lpg_rpc_poll_free(&j);
}
