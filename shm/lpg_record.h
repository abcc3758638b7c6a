/*
 * SPDX-License-Identifier: MIT
 *
 * lpg_record.h: one bus notification as it travels through the ring.
 *
 * A record is a msgpack array [id, database, channel, message, create_us,
 * notify_us]:
 * the bus_bus id, the database it came from, the channel and the message as
 * the JSON text Odoo stored, and create_date in microseconds since the
 * epoch (UTC), and the master's monotonic clock when the NOTIFY arrived
 * (for the delivery latency histogram).  Decoding never copies: the strings point into the buffer.
 */

#ifndef LPG_RECORD_H
#define LPG_RECORD_H


#include "lpg_core.h"


typedef struct {
    int64_t     id;
    int64_t     create_us;
    int64_t     notify_us; /* monotonic: when the master got the NOTIFY */
    const char *database;  /* borrowed from the encoded buffer */
    size_t      database_len;
    const char *channel;
    size_t      channel_len;
    const char *message;
    size_t      message_len;
} lpg_record_t;


/* encodes rec into buf; LPG_ERROR when it does not fit in cap */
int lpg_record_encode(const lpg_record_t *rec, char *buf, size_t cap,
                      size_t *len) LPG_MUSTCHECK;

/* decodes buf[0..len); the string fields of rec borrow buf; LPG_ERROR on
 * any malformed, truncated or trailing input */
int lpg_record_decode(const char *buf, size_t len,
                      lpg_record_t *rec) LPG_MUSTCHECK;


#endif /* LPG_RECORD_H */
