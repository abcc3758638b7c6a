/*
 * SPDX-License-Identifier: MIT
 *
 * lpg_record.c: msgpack encoding of ring records (msgpack-c).
 *
 * The packer (msgpack-c) writes straight into the caller's buffer through
 * a write callback that refuses to overflow; the decoder reads the same
 * msgpack format by hand for the one schema it knows, strings referencing
 * the input buffer and the exact length checked.  It does not use
 * msgpack_unpack_next: see lpg_record_decode.
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
static int lpg_record_be(const unsigned char *p, size_t len, size_t *off,
                         size_t n, uint64_t *v);
static int lpg_record_int(const unsigned char *p, size_t len, size_t *off,
                          int64_t *out);
static int lpg_record_str(const unsigned char *p, size_t len, size_t *off,
                          const char **s, size_t *n);


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


/*
 * The decoder reads the fixed schema by hand instead of calling
 * msgpack_unpack_next: msgpack-c allocates for an array header before it
 * looks at the elements, so a corrupt length would ask for gigabytes (the
 * fuzzer found it).  This one allocates nothing and never reads past len.
 */
int
lpg_record_decode(const char *buf, size_t len, lpg_record_t *rec)
{
    size_t               off;
    const unsigned char *p = (const unsigned char *) buf;

    if (len < 1 || p[0] != 0x96) {
        return LPG_ERROR;
    }

    off = 1;

    if (lpg_record_int(p, len, &off, &rec->id) != LPG_OK
        || lpg_record_str(p, len, &off, &rec->database, &rec->database_len)
            != LPG_OK
        || lpg_record_str(p, len, &off, &rec->channel, &rec->channel_len)
            != LPG_OK
        || lpg_record_str(p, len, &off, &rec->message, &rec->message_len)
            != LPG_OK
        || lpg_record_int(p, len, &off, &rec->create_us) != LPG_OK
        || lpg_record_int(p, len, &off, &rec->notify_us) != LPG_OK
        || off != len)
    {
        return LPG_ERROR;
    }

    return LPG_OK;
}


/* big-endian unsigned of n bytes at p[*off]; LPG_ERROR past len */
static int
lpg_record_be(const unsigned char *p, size_t len, size_t *off, size_t n,
              uint64_t *v)
{
    size_t i;

    if (len - *off < n) {
        return LPG_ERROR;
    }

    *v = 0;
    for (i = 0; i < n; i++) {
        *v = (*v << 8) | p[*off + i];
    }

    *off += n;

    return LPG_OK;
}


static int
lpg_record_int(const unsigned char *p, size_t len, size_t *off, int64_t *out)
{
    unsigned t;
    uint64_t v;

    if (*off >= len) {
        return LPG_ERROR;
    }

    t = p[(*off)++];

    if (t <= 0x7f) {
        *out = t;
        return LPG_OK;
    }

    if (t >= 0xe0) {
        *out = (int8_t) t;
        return LPG_OK;
    }

    if (t >= 0xcc && t <= 0xcf) {
        /* uint 8, 16, 32, 64 */
        if (lpg_record_be(p, len, off, (size_t) 1 << (t - 0xcc), &v) != LPG_OK
            || v > INT64_MAX)
        {
            return LPG_ERROR;
        }

        *out = (int64_t) v;
        return LPG_OK;
    }

    if (t >= 0xd0 && t <= 0xd3) {
        /* int 8, 16, 32, 64 */
        if (lpg_record_be(p, len, off, (size_t) 1 << (t - 0xd0), &v) != LPG_OK)
        {
            return LPG_ERROR;
        }

        *out = t == 0xd0 ? (int8_t) v
            : t == 0xd1  ? (int16_t) v
            : t == 0xd2  ? (int32_t) v
                         : (int64_t) v;
        return LPG_OK;
    }

    return LPG_ERROR;
}


static int
lpg_record_str(const unsigned char *p, size_t len, size_t *off, const char **s,
               size_t *n)
{
    unsigned t;
    uint64_t v;

    if (*off >= len) {
        return LPG_ERROR;
    }

    t = p[(*off)++];

    if (t >= 0xa0 && t <= 0xbf) {
        v = t & 0x1f;

    } else if (t >= 0xd9 && t <= 0xdb) {
        if (lpg_record_be(p, len, off, (size_t) 1 << (t - 0xd9), &v) != LPG_OK)
        {
            return LPG_ERROR;
        }

    } else {
        return LPG_ERROR;
    }

    if (len - *off < v) {
        return LPG_ERROR;
    }

    *s = (const char *) p + *off;
    *n = (size_t) v;
    *off += (size_t) v;

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

    if (len > 0) {
        /* msgpack-c hands over (NULL, 0) for an empty string */
        memcpy(out->buf + out->len, buf, len);
        out->len += len;
    }

    return 0;
}
