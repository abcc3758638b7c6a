/*
 * SPDX-License-Identifier: MIT
 *
 * lpg_ring.c: the ring's memory layout and its seqlock-style protocol.
 *
 * Layout: a header of three cache lines (read-only geometry; the writer's
 * head; the writer's tail) and a data area of data_size bytes, a multiple
 * of 16 but not necessarily a power of two.  A record is a 16-byte header
 * {len, flags, seq} and its payload, padded to 16 bytes; it never straddles
 * the end of the data area: the writer leaves a PAD marker and starts over
 * at the beginning.  Before overwriting old bytes the writer moves tail
 * past them and fences; a reader copies, fences, and re-reads tail: if tail
 * passed its position, the copy may be torn and is dropped.  head and
 * head_seq are published together under a generation counter (a seqlock of
 * their own), so that a new reader gets a position and a sequence number
 * that agree.
 */

#include "lpg_ring.h"

#include <sched.h>
#include <stdatomic.h>
#include <string.h>


#define LPG_RING_MAGIC    0x4c505247u /* "LPRG" */
#define LPG_RING_ALIGN    16
#define LPG_RING_MIN_DATA 4096
#define LPG_RING_PAD      1u
#define LPG_RING_ANY_SEQ  UINT64_MAX

#define LPG_RING_SPAN(n)                                                       \
    (((uint64_t) sizeof(lpg_ring_rec_t) + (n) + LPG_RING_ALIGN - 1)            \
     & ~(uint64_t) (LPG_RING_ALIGN - 1))


typedef struct {
    uint32_t len;
    uint32_t flags;
    uint64_t seq;
} lpg_ring_rec_t;


struct lpg_ring_s {
    /* set once by lpg_ring_init */
    uint32_t magic;
    uint32_t pad0;
    uint64_t data_size;
    uint64_t max_record;
    char     pad1[LPG_CACHELINE - 24];

    /* the writer's side: end of the last published record, and the
     * sequence number of the next one; hgen is odd while they change */
    _Atomic uint64_t head;
    _Atomic uint64_t head_seq;
    _Atomic uint64_t hgen;
    char             pad2[LPG_CACHELINE - 24];

    /* start of the oldest valid record (or of a PAD before it), and that
     * record's sequence number */
    _Atomic uint64_t tail;
    _Atomic uint64_t tail_seq;
    char             pad3[LPG_CACHELINE - 16];

    unsigned char data[];
};


static void     lpg_ring_head_snapshot(const lpg_ring_t *r, uint64_t *pos,
                                       uint64_t *seq);
static bool     lpg_ring_overwritten(const lpg_ring_t *r, uint64_t pos);
static uint64_t lpg_ring_lost(const lpg_ring_reader_t *rd, uint64_t seq);


lpg_ring_t *
lpg_ring_init(void *mem, size_t size)
{
    uint64_t    max;
    lpg_ring_t *r = mem;

    if (mem == NULL || (uintptr_t) mem % _Alignof(lpg_ring_t) != 0
        || size < lpg_ring_min_size())
    {
        return NULL;
    }

    memset(r, 0, sizeof(*r));
    r->magic = LPG_RING_MAGIC;
    r->data_size =
        (size - sizeof(lpg_ring_t)) & ~(uint64_t) (LPG_RING_ALIGN - 1);

    /* a quarter of the area, so that a record never evicts more than a
     * small part of the ring; len is stored in 32 bits */
    max = r->data_size / 4 - sizeof(lpg_ring_rec_t);
    r->max_record =
        max < UINT32_MAX - LPG_RING_ALIGN ? max : UINT32_MAX - LPG_RING_ALIGN;

    return r;
}


size_t
lpg_ring_min_size(void)
{
    return sizeof(lpg_ring_t) + LPG_RING_MIN_DATA;
}


size_t
lpg_ring_max_record(const lpg_ring_t *r)
{
    return (size_t) r->max_record;
}


uint64_t
lpg_ring_head_seq(const lpg_ring_t *r)
{
    return atomic_load_explicit(&r->head_seq, memory_order_acquire);
}


uint64_t
lpg_ring_oldest_seq(const lpg_ring_t *r)
{
    return atomic_load_explicit(&r->tail_seq, memory_order_acquire);
}


int
lpg_ring_push(lpg_ring_t *r, const void *data, size_t len)
{
    uint64_t       head, tail, tseq, gen, off, pad, span, end;
    lpg_ring_rec_t rec, old;

    LPG_ASSERT(r->magic == LPG_RING_MAGIC);

    if (len > r->max_record) {
        return LPG_ERROR;
    }

    /* the writer's own variables: relaxed loads see its last stores */
    head = atomic_load_explicit(&r->head, memory_order_relaxed);
    tail = atomic_load_explicit(&r->tail, memory_order_relaxed);
    tseq = atomic_load_explicit(&r->tail_seq, memory_order_relaxed);

    span = LPG_RING_SPAN(len);
    off = head % r->data_size;
    pad = off + span > r->data_size ? r->data_size - off : 0;
    end = head + pad + span;

    /*
     * [head, end) will be written, over the bytes that were at
     * [head - data_size, end - data_size): drop the oldest records until
     * tail is past them.  A record spans at most a quarter of the area, so
     * the loop stops long before the ring empties.
     */
    while (tail < head && end - tail > r->data_size) {
        memcpy(&old, r->data + tail % r->data_size, sizeof(old));

        if (old.flags & LPG_RING_PAD) {
            tail += r->data_size - tail % r->data_size;

        } else {
            tail += LPG_RING_SPAN(old.len);
            tseq++;
        }
    }

    atomic_store_explicit(&r->tail_seq, tseq, memory_order_relaxed);
    atomic_store_explicit(&r->tail, tail, memory_order_relaxed);

    /* readers must see the new tail before any overwritten byte: a reader
     * that copies one of the bytes below and then fences sees this tail */
    atomic_thread_fence(memory_order_seq_cst);

    if (pad > 0) {
        memset(&rec, 0, sizeof(rec));
        rec.flags = LPG_RING_PAD;
        memcpy(r->data + off, &rec, sizeof(rec));
        off = 0;
    }

    rec.len = (uint32_t) len;
    rec.flags = 0;
    rec.seq = atomic_load_explicit(&r->head_seq, memory_order_relaxed);
    memcpy(r->data + off, &rec, sizeof(rec));

    if (len > 0) {
        memcpy(r->data + off + sizeof(rec), data, len);
    }

    /* publish: the release stores make the record visible with head */
    gen = atomic_load_explicit(&r->hgen, memory_order_relaxed);
    atomic_store_explicit(&r->hgen, gen + 1, memory_order_relaxed);
    atomic_thread_fence(memory_order_release);

    atomic_store_explicit(&r->head_seq, rec.seq + 1, memory_order_release);
    atomic_store_explicit(&r->head, end, memory_order_release);

    atomic_store_explicit(&r->hgen, gen + 2, memory_order_release);

    return LPG_OK;
}


void
lpg_ring_reader_init(lpg_ring_reader_t *rd, const lpg_ring_t *r, bool oldest)
{
    LPG_ASSERT(r->magic == LPG_RING_MAGIC);

    if (oldest) {
        /* the first read resynchronises on tail; no record before it was
         * expected, so none counts as lost */
        rd->pos = 0;
        rd->seq = LPG_RING_ANY_SEQ;
        return;
    }

    lpg_ring_head_snapshot(r, &rd->pos, &rd->seq);
}


int
lpg_ring_read(const lpg_ring_t *r, lpg_ring_reader_t *rd, void *buf, size_t cap,
              size_t *len, uint64_t *lost)
{
    uint64_t       head, tail, off, seq;
    lpg_ring_rec_t rec;

    LPG_ASSERT(r->magic == LPG_RING_MAGIC);

    *lost = 0;

    for (;;) {
        head = atomic_load_explicit(&r->head, memory_order_acquire);
        if (rd->pos >= head) {
            if (rd->seq == LPG_RING_ANY_SEQ) {
                /* a reader from the oldest record that found the ring
                 * empty (or read all of it without a record): whatever
                 * is pushed from now on is expected, and a lap counts */
                lpg_ring_head_snapshot(r, &head, &seq);
                if (head != rd->pos) {
                    continue;
                }

                rd->seq = seq;
            }

            return LPG_AGAIN;
        }

        tail = atomic_load_explicit(&r->tail, memory_order_acquire);
        if (rd->pos < tail) {
            /* lapped: go on from the oldest record still there; the
             * sequence numbers tell how many were lost */
            rd->pos = tail;
            continue;
        }

        off = rd->pos % r->data_size;
        memcpy(&rec, r->data + off, sizeof(rec));

        if (lpg_ring_overwritten(r, rd->pos)) {
            continue;
        }

        /* from here on rec is what the writer published */

        if (rec.flags & LPG_RING_PAD) {
            rd->pos += r->data_size - off;
            continue;
        }

        if (rec.flags != 0 || rec.len > r->max_record
            || off + sizeof(rec) + rec.len > r->data_size
            || (rd->seq != LPG_RING_ANY_SEQ && rec.seq < rd->seq))
        {
            /* only a writer bug (or a stray write into the master's
             * mapping) gets here: trust nothing in the ring up to head */
            lpg_log(LPG_LOG_ALERT, 0,
                    "ring record at %llu is corrupt (len %u, flags %u), "
                    "skipping to the head",
                    (unsigned long long) rd->pos, (unsigned) rec.len,
                    (unsigned) rec.flags);

            if (rd->seq == LPG_RING_ANY_SEQ) {
                rd->seq = lpg_ring_oldest_seq(r);
            }

            lpg_ring_head_snapshot(r, &rd->pos, &seq);
            *lost = lpg_ring_lost(rd, seq);
            rd->seq = seq;

            return LPG_ERROR;
        }

        if (rec.len > cap) {
            /* cannot copy it: skip it, and count it as lost */
            *lost = lpg_ring_lost(rd, rec.seq) + 1;
            rd->pos += LPG_RING_SPAN(rec.len);
            rd->seq = rec.seq + 1;

            return LPG_ERROR;
        }

        if (rec.len > 0) {
            memcpy(buf, r->data + off + sizeof(rec), rec.len);
        }

        if (lpg_ring_overwritten(r, rd->pos)) {
            /* the writer came round while we copied */
            continue;
        }

        *lost = lpg_ring_lost(rd, rec.seq);
        *len = rec.len;
        rd->pos += LPG_RING_SPAN(rec.len);
        rd->seq = rec.seq + 1;

        return LPG_OK;
    }
}


/* a head position and the sequence number of the record that will start
 * there, read consistently */
static void
lpg_ring_head_snapshot(const lpg_ring_t *r, uint64_t *pos, uint64_t *seq)
{
    uint64_t g1, g2;

    for (;;) {
        g1 = atomic_load_explicit(&r->hgen, memory_order_acquire);

        if (g1 & 1) {
            /* the writer is between two stores */
            sched_yield();
            continue;
        }

        *seq = atomic_load_explicit(&r->head_seq, memory_order_relaxed);
        *pos = atomic_load_explicit(&r->head, memory_order_relaxed);

        atomic_thread_fence(memory_order_acquire);
        g2 = atomic_load_explicit(&r->hgen, memory_order_relaxed);

        if (g1 == g2) {
            return;
        }
    }
}


/* whether the writer may have overwritten bytes at pos (or after it, in
 * the same record) since the caller last loaded head: call after copying */
static bool
lpg_ring_overwritten(const lpg_ring_t *r, uint64_t pos)
{
    atomic_thread_fence(memory_order_acquire);

    return atomic_load_explicit(&r->tail, memory_order_relaxed) > pos;
}


/* how many records before seq the reader missed */
static uint64_t
lpg_ring_lost(const lpg_ring_reader_t *rd, uint64_t seq)
{
    if (rd->seq == LPG_RING_ANY_SEQ || seq <= rd->seq) {
        return 0;
    }

    return seq - rd->seq;
}
