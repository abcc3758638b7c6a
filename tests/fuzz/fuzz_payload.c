/*
 * SPDX-License-Identifier: MIT
 *
 * fuzz_payload.c: libFuzzer harness of the NOTIFY payload parser.
 */

#include "lpg_rpc.h"


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    bool               mask[3] = { false, false, false };
    static const char *dbs[] = { "db1", "mydb", "" };

    (void) lpg_rpc_payload_dbs((const char *) data, size, dbs, 3, mask);

    return 0;
}
