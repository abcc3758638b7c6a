/*
 * SPDX-License-Identifier: MIT
 *
 * lpg_record.h: one bus notification as it travels through the ring.
 *
 * A record is the msgpack array [id, database, channel, message, create_us,
 * notify_us]: the bus_bus id, the database it came from, the channel and
 * the message as the JSON text Odoo stored (the channel in Odoo's json_dump
 * form, e.g. ["db","res.partner",3]), create_date in microseconds since the
 * epoch (UTC), and the master's monotonic clock when the NOTIFY arrived
 * (for the delivery latency histogram).  Decoding never copies nor
 * allocates: the strings point into the buffer.  The JSON is not checked
 * here (the master checks it before encoding).
 *
 * A record with an empty channel is not a notification but a reset
 * marker (lpg_record_is_reset): the database's bus ids went backwards, id
 * is the master's new cursor, and every later record of that database
 * belongs to the new table.  A real record never has an empty channel:
 * the master publishes only channels that are JSON text.
 */

#ifndef LPG_RECORD_H
#define LPG_RECORD_H


#include "lpg_core.h"


typedef struct {
    int64_t     id;
    int64_t     create_us; /* wall clock, microseconds since the epoch */
    int64_t     notify_us; /* monotonic: when the master got the NOTIFY */
    const char *database;  /* not NUL-terminated; borrowed (see below) */
    size_t      database_len;
    const char *channel;
    size_t      channel_len;
    const char *message;
    size_t      message_len;
} lpg_record_t;


#define lpg_record_is_reset(rec) ((rec)->channel_len == 0)


/*
 * Encodes rec into buf[0..cap) and sets *len; the strings are copied, rec
 * is only read.  LPG_ERROR when it does not fit in cap (buf then holds
 * garbage).
 */
int lpg_record_encode(const lpg_record_t *rec, char *buf, size_t cap,
                      size_t *len) LPG_MUSTCHECK;

/*
 * Decodes buf[0..len) into rec.  The string fields of rec point into buf
 * and are valid only while buf is (the caller copies what must outlive
 * it).  LPG_ERROR (rec partly filled, never read past len, nothing
 * allocated) on any malformed, truncated or trailing input, on any other
 * array length, and on non-canonical container headers (only a fixarray
 * of 6 is accepted; strings may be fixstr, str8, str16 or str32; integers
 * any msgpack int that fits int64).
 */
int lpg_record_decode(const char *buf, size_t len,
                      lpg_record_t *rec) LPG_MUSTCHECK;


#endif /* LPG_RECORD_H */
