/*
 * SPDX-License-Identifier: MIT
 *
 * lpg_ring.h: one writer, many readers, variable-length records in shared
 * memory.
 *
 * The master is the only writer; every worker reads.  Positions are 64-bit
 * byte offsets that only grow; each record carries a sequence number, so a
 * reader that the writer lapped learns exactly how many records it lost.
 * Readers never write the ring (workers map it read-only): they copy a
 * record out, then check that the writer had not started overwriting it
 * (seqlock style) and discard the copy when it had.  The ring knows nothing
 * of what a record holds (see lpg_record) and does no locking or waking up
 * (the master rings each worker's eventfd).
 */

#ifndef LPG_RING_H
#define LPG_RING_H


#include "lpg_core.h"


typedef struct lpg_ring_s lpg_ring_t;


/* a reader's cursor; private to one reader, in its own memory */
typedef struct {
    uint64_t pos; /* byte position of the next record */
    uint64_t seq; /* its sequence number; UINT64_MAX: not known yet */
} lpg_ring_reader_t;


/*
 * Writer side: formats mem (size bytes) as an empty ring and returns it at
 * the same address.  mem must be 8-byte aligned (a page from mmap is; a
 * cache line is best).  NULL when mem is NULL, misaligned, or size is under
 * lpg_ring_min_size().
 */
lpg_ring_t *lpg_ring_init(void *mem, size_t size);

/* the smallest size lpg_ring_init accepts: a 384-byte header + 4 KiB */
size_t lpg_ring_min_size(void);

/* the largest payload lpg_ring_push accepts: a quarter of the data area
 * minus the 16-byte record header (16,272 bytes in a 64 KiB ring) */
size_t lpg_ring_max_record(const lpg_ring_t *r);

/*
 * Writer only: copies data[0..len) in as the newest record, overwriting
 * the oldest records as needed.  LPG_ERROR (nothing written) when len
 * exceeds lpg_ring_max_record().
 */
int lpg_ring_push(lpg_ring_t *r, const void *data, size_t len) LPG_MUSTCHECK;

/* sequence number the next pushed record will get (= records pushed) */
uint64_t lpg_ring_head_seq(const lpg_ring_t *r);

/* sequence number of the oldest record still in the ring; equals
 * lpg_ring_head_seq() when the ring is empty */
uint64_t lpg_ring_oldest_seq(const lpg_ring_t *r);

/*
 * A reader that sees only records pushed from now on (oldest false), or
 * every record still in the ring (oldest true: records overwritten before
 * its first read are not counted as lost, since it never expected them).
 */
void lpg_ring_reader_init(lpg_ring_reader_t *rd, const lpg_ring_t *r,
                          bool oldest);

/*
 * Copies the next record into buf (cap bytes; borrowed for the call only).
 *
 * LPG_OK: *len bytes copied.  *lost is the number of records the writer
 * overwrote before this reader got to them (0 normally): being lapped is
 * not an error, the reader has already moved on to the oldest record still
 * there, which is the one returned.
 * LPG_AGAIN: nothing new; *lost is 0.
 * LPG_ERROR: the record is bigger than cap (or, only if the master wrote
 * garbage, its header is impossible): it is skipped and counted in *lost,
 * and the next call goes on after it.
 *
 * A copy the writer tore is never returned: it is dropped and the read
 * starts over.
 */
int lpg_ring_read(const lpg_ring_t *r, lpg_ring_reader_t *rd, void *buf,
                  size_t cap, size_t *len, uint64_t *lost) LPG_MUSTCHECK;


#endif /* LPG_RING_H */
