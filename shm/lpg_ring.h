/*
 * SPDX-License-Identifier: MIT
 *
 * lpg_ring.h: one writer, many readers, variable-length records in shared
 * memory.
 *
 * The master is the only writer; every worker reads.  Positions are 64-bit
 * byte offsets that only grow; each record carries a sequence number, so a
 * reader that the writer lapped learns exactly how many records it lost.
 * Readers never write the ring: they copy a record out, then check that
 * the writer had not started overwriting it (seqlock style) and discard
 * the copy when it had.
 */

#ifndef LPG_RING_H
#define LPG_RING_H


#include "lpg_core.h"


typedef struct lpg_ring_s lpg_ring_t;


/* a reader's cursor; private to one reader */
typedef struct {
    uint64_t pos;
    uint64_t seq; /* sequence number of the record expected next */
} lpg_ring_reader_t;


/* formats mem (size bytes, 64-byte aligned) as an empty ring; NULL when
 * size is too small (under 4 KiB) */
lpg_ring_t *lpg_ring_init(void *mem, size_t size);

/* the largest payload lpg_ring_push accepts: a quarter of the data area */
size_t lpg_ring_max_record(const lpg_ring_t *r);

/* writer only: LPG_ERROR when len exceeds lpg_ring_max_record() */
int lpg_ring_push(lpg_ring_t *r, const void *data, size_t len) LPG_MUSTCHECK;

/* sequence number the next pushed record will get (= records pushed) */
uint64_t lpg_ring_head_seq(const lpg_ring_t *r);

/* a reader that sees only records pushed from now on, or (oldest) every
 * record still in the ring */
void lpg_ring_reader_init(lpg_ring_reader_t *rd, const lpg_ring_t *r,
                          bool oldest);

/*
 * Copies the next record into buf.  LPG_OK: *len bytes copied, and *lost
 * tells how many records the writer overwrote before this reader got to
 * them (0 normally).  LPG_AGAIN: nothing new.  LPG_ERROR: the record is
 * bigger than cap (it is skipped, counted in *lost).
 */
int lpg_ring_read(const lpg_ring_t *r, lpg_ring_reader_t *rd, void *buf,
                  size_t cap, size_t *len, uint64_t *lost) LPG_MUSTCHECK;


#endif /* LPG_RING_H */
