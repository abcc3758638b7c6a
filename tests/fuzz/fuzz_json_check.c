/*
 * SPDX-License-Identifier: MIT
 *
 * fuzz_json_check.c: libFuzzer harness of lpg_json_check(), with jansson
 * as the oracle: any input the two judge differently aborts.  A NUL byte
 * is refused by lpg_json_check wherever it is; jansson's buffer reader
 * skips one that follows a number or a word ("1\0" loads), a quirk not
 * copied: PostgreSQL text never holds a NUL.
 */

#include "lpg_json.h"

#include <stdlib.h>
#include <string.h>


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    bool    ok;
    json_t *v;

    ok = lpg_json_check((const char *) data, size);

    if (memchr(data, '\0', size) != NULL) {
        if (ok) {
            abort();
        }
        return 0;
    }

    v = json_loadb((const char *) data, size, JSON_DECODE_ANY, NULL);

    if (ok != (v != NULL)) {
        abort();
    }

    json_decref(v);

    return 0;
}
