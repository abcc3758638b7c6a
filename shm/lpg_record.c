/*
 * SPDX-License-Identifier: MIT
 *
 * lpg_record.c: msgpack encoding of ring records (msgpack-c).
 *
 * The packer writes straight into the caller's buffer through a write
 * callback that refuses to overflow; the decoder uses msgpack_unpack_next
 * on a stack msgpack_unpacked, whose strings reference the input buffer,
 * and checks every type and the exact length.
 */

#include "lpg_record.h"

#include <msgpack.h>
#include <string.h>


typedef struct {
    char  *buf;
    size_t cap;
    size_t len;
    bool   overflow;
} lpg_record_out_t;


static int lpg_record_write(void *data, const char *buf, size_t len);
static int lpg_record_str(const msgpack_object *o, const char **s, size_t *len);


int
lpg_record_encode(const lpg_record_t *rec, char *buf, size_t cap, size_t *len)
{
    msgpack_packer   pk;
    lpg_record_out_t out;

    out.buf = buf;
    out.cap = cap;
    out.len = 0;
    out.overflow = false;

    msgpack_packer_init(&pk, &out, lpg_record_write);

    if (msgpack_pack_array(&pk, 6) != 0 || msgpack_pack_int64(&pk, rec->id) != 0
        || msgpack_pack_str_with_body(&pk, rec->database, rec->database_len)
            != 0
        || msgpack_pack_str_with_body(&pk, rec->channel, rec->channel_len) != 0
        || msgpack_pack_str_with_body(&pk, rec->message, rec->message_len) != 0
        || msgpack_pack_int64(&pk, rec->create_us) != 0
        || msgpack_pack_int64(&pk, rec->notify_us) != 0 || out.overflow)
    {
        return LPG_ERROR;
    }

    *len = out.len;

    return LPG_OK;
}


int
lpg_record_decode(const char *buf, size_t len, lpg_record_t *rec)
{
    int              rc;
    size_t           off;
    msgpack_object  *a;
    msgpack_unpacked u;

    msgpack_unpacked_init(&u);

    off = 0;
    rc = LPG_ERROR;

    if (msgpack_unpack_next(&u, buf, len, &off) != MSGPACK_UNPACK_SUCCESS
        || off != len || u.data.type != MSGPACK_OBJECT_ARRAY
        || u.data.via.array.size != 6)
    {
        goto done;
    }

    a = u.data.via.array.ptr;

    if ((a[0].type != MSGPACK_OBJECT_POSITIVE_INTEGER
         && a[0].type != MSGPACK_OBJECT_NEGATIVE_INTEGER)
        || (a[4].type != MSGPACK_OBJECT_POSITIVE_INTEGER
            && a[4].type != MSGPACK_OBJECT_NEGATIVE_INTEGER))
    {
        goto done;
    }

    if (a[5].type != MSGPACK_OBJECT_POSITIVE_INTEGER
        && a[5].type != MSGPACK_OBJECT_NEGATIVE_INTEGER)
    {
        goto done;
    }

    if ((a[0].type == MSGPACK_OBJECT_POSITIVE_INTEGER
         && a[0].via.u64 > INT64_MAX)
        || (a[5].type == MSGPACK_OBJECT_POSITIVE_INTEGER
            && a[5].via.u64 > INT64_MAX))
    {
        goto done;
    }

    if (a[4].type == MSGPACK_OBJECT_POSITIVE_INTEGER
        && a[4].via.u64 > INT64_MAX) {
        goto done;
    }

    if (lpg_record_str(&a[1], &rec->database, &rec->database_len) != LPG_OK
        || lpg_record_str(&a[2], &rec->channel, &rec->channel_len) != LPG_OK
        || lpg_record_str(&a[3], &rec->message, &rec->message_len) != LPG_OK)
    {
        goto done;
    }

    rec->id = a[0].via.i64;
    rec->create_us = a[4].via.i64;
    rec->notify_us = a[5].via.i64;
    rc = LPG_OK;

done:

    msgpack_unpacked_destroy(&u);

    return rc;
}


static int
lpg_record_str(const msgpack_object *o, const char **s, size_t *len)
{
    if (o->type != MSGPACK_OBJECT_STR) {
        return LPG_ERROR;
    }

    *s = o->via.str.ptr;
    *len = o->via.str.size;

    return LPG_OK;
}


static int
lpg_record_write(void *data, const char *buf, size_t len)
{
    lpg_record_out_t *out = data;

    if (out->overflow || out->cap - out->len < len) {
        out->overflow = true;
        return -1;
    }

    memcpy(out->buf + out->len, buf, len);
    out->len += len;

    return 0;
}
