/*
 * SPDX-License-Identifier: MIT
 *
 * fuzz_record.c: libFuzzer harness of the ring record decoder; a decoded
 * record must re-encode to the same bytes.
 */

#include "lpg_record.h"

#include <stdlib.h>
#include <string.h>


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char          *out;
    size_t         len;
    lpg_record_t   rec;

    if (lpg_record_decode((const char *) data, size, &rec) != LPG_OK) {
        return 0;
    }

    /* touch every byte the decoder claims is there */
    len = rec.database_len + rec.channel_len + rec.message_len;
    out = malloc(size + 64);
    if (out == NULL) {
        return 0;
    }

    memcpy(out, rec.database, rec.database_len);
    memcpy(out, rec.channel, rec.channel_len);
    memcpy(out, rec.message, rec.message_len);

    if (lpg_record_encode(&rec, out, size + 64, &len) != LPG_OK
        || len > size + 64)
    {
        abort();
    }

    free(out);

    return 0;
}
