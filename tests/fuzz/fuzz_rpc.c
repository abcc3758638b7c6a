/*
 * SPDX-License-Identifier: MIT
 *
 * fuzz_rpc.c: libFuzzer harness of the JSON-RPC poll decoder and of the
 * json_dump text form of whatever channels it accepts.
 */

#include "lpg_json.h"
#include "lpg_rpc.h"

#include <stdlib.h>


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t          i;
    json_t         *ch;
    lpg_buf_t       b = { 0 };
    const char     *why;
    lpg_rpc_poll_t  rp;

    if (lpg_rpc_poll_parse((const char *) data, size, 1000, &rp, &why)
        == LPG_OK)
    {
        json_array_foreach(rp.channels, i, ch)
        {
            if (lpg_json_dump(&b, ch) != LPG_OK) {
                break;
            }
        }
    }

    lpg_buf_free(&b);
    lpg_rpc_poll_free(&rp);

    return 0;
}
