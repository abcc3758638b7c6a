/*
 * SPDX-License-Identifier: MIT
 *
 * lpg_ring.c: the ring's memory layout and its seqlock-style protocol.
 *
 * Layout: a header (writer-owned atomics head and tail, each on its own
 * cache line) and a data area of data_size bytes.  A record is a 16-byte
 * header {len, flags, seq} and its payload, padded to 16 bytes; it never
 * straddles the end of the data area: the writer leaves a PAD marker and
 * starts over at the beginning.  Before overwriting old bytes the writer
 * moves tail past them and fences; a reader copies, fences, and re-reads
 * tail: if tail passed its position, the copy may be torn and is dropped.
 */

#include "lpg_ring.h"

#include <stdatomic.h>
#include <string.h>


#define LPG_RING_MAGIC   0x4c505247u /* "LPRG" */
#define LPG_RING_ALIGN   16
#define LPG_RING_PAD     1u
#define LPG_RING_ANY_SEQ UINT64_MAX


typedef struct {
    uint32_t len;
    uint32_t flags;
    uint64_t seq;
} lpg_ring_rec_t;


struct lpg_ring_s {
    uint32_t magic;
    uint32_t pad0;
    uint64_t data_size;
    char     pad1[LPG_CACHELINE - 16];

    _Atomic uint64_t head; /* end of the last published record */
    _Atomic uint64_t head_seq;
    char             pad2[LPG_CACHELINE - 16];

    _Atomic uint64_t tail; /* start of the oldest valid record */
    _Atomic uint64_t tail_seq;
    char             pad3[LPG_CACHELINE - 16];

    unsigned char data[];
};


#define LPG_RING_SPAN(n)                                                       \
    (((sizeof(lpg_ring_rec_t) + (n)) + LPG_RING_ALIGN - 1)                     \
     & ~(uint64_t) (LPG_RING_ALIGN - 1))


lpg_ring_t *
lpg_ring_init(void *mem, size_t size)
{
    lpg_ring_t *r = mem;

    if (size < sizeof(lpg_ring_t) + 4096) {
        return NULL;
    }

    memset(r, 0, sizeof(*r));
    r->magic = LPG_RING_MAGIC;
    r->data_size =
        (size - sizeof(lpg_ring_t)) & ~(uint64_t) (LPG_RING_ALIGN - 1);

    return r;
}


size_t
lpg_ring_max_record(const lpg_ring_t *r)
{
    return r->data_size / 4 - sizeof(lpg_ring_rec_t);
}


uint64_t
lpg_ring_head_seq(const lpg_ring_t *r)
{
    return atomic_load_explicit(&r->head_seq, memory_order_acquire);
}


int
lpg_ring_push(lpg_ring_t *r, const void *data, size_t len)
{
    uint64_t       head, tail, tseq, off, pad, span, end;
    lpg_ring_rec_t rec, old;

    if (len > lpg_ring_max_record(r)) {
        return LPG_ERROR;
    }

    head = atomic_load_explicit(&r->head, memory_order_relaxed);
    tail = atomic_load_explicit(&r->tail, memory_order_relaxed);
    tseq = atomic_load_explicit(&r->tail_seq, memory_order_relaxed);

    span = LPG_RING_SPAN(len);
    off = head % r->data_size;
    pad = off + span > r->data_size ? r->data_size - off : 0;
    end = head + pad + span;

    /* free [head, end): drop the oldest records it would overwrite */
    while (tail < head && end - tail > r->data_size) {
        memcpy(&old, r->data + tail % r->data_size, sizeof(old));

        if (old.flags & LPG_RING_PAD) {
            tail += r->data_size - tail % r->data_size;

        } else {
            tail += LPG_RING_SPAN(old.len);
            tseq++;
        }
    }

    if (tail == head) {
        /* empty: the new record is the oldest one */
        tail = head + pad;
    }

    atomic_store_explicit(&r->tail_seq, tseq, memory_order_relaxed);
    atomic_store_explicit(&r->tail, tail, memory_order_relaxed);

    /* readers must see the new tail before any overwritten byte */
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
    memcpy(r->data + off + sizeof(rec), data, len);

    atomic_store_explicit(&r->head_seq, rec.seq + 1, memory_order_release);
    atomic_store_explicit(&r->head, end, memory_order_release);

    return LPG_OK;
}


void
lpg_ring_reader_init(lpg_ring_reader_t *rd, const lpg_ring_t *r, bool oldest)
{
    uint64_t h1, h2, seq;

    /* head and head_seq move together: read them until they agree */
    do {
        h1 = atomic_load_explicit(&r->head, memory_order_acquire);
        seq = atomic_load_explicit(&r->head_seq, memory_order_acquire);
        h2 = atomic_load_explicit(&r->head, memory_order_acquire);
    } while (h1 != h2);

    rd->pos = h1;
    rd->seq = seq;

    if (oldest) {
        /* the first read resynchronises on tail; no record before it was
         * expected, so none counts as lost */
        rd->pos = 0;
        rd->seq = LPG_RING_ANY_SEQ;
    }
}


int
lpg_ring_read(const lpg_ring_t *r, lpg_ring_reader_t *rd, void *buf, size_t cap,
              size_t *len, uint64_t *lost)
{
    uint64_t       head, tail, off;
    lpg_ring_rec_t rec;

    *lost = 0;

    for (;;) {
        head = atomic_load_explicit(&r->head, memory_order_acquire);
        if (rd->pos >= head) {
            return LPG_AGAIN;
        }

        tail = atomic_load_explicit(&r->tail, memory_order_acquire);
        if (rd->pos < tail) {
            /* lapped: start again at the oldest record still there */
            rd->pos = tail;
            continue;
        }

        off = rd->pos % r->data_size;
        memcpy(&rec, r->data + off, sizeof(rec));

        atomic_thread_fence(memory_order_acquire);
        if (atomic_load_explicit(&r->tail, memory_order_relaxed) > rd->pos) {
            continue;
        }

        if (rec.flags & LPG_RING_PAD) {
            rd->pos += r->data_size - off;
            continue;
        }

        if (rec.len > cap) {
            /* cannot copy it: skip, and count it as lost */
            if (rec.len > lpg_ring_max_record(r)) {
                /* a torn header that passed the check cannot happen;
                 * resynchronise on head rather than trust it */
                rd->pos = head;
                return LPG_ERROR;
            }

            rd->pos += LPG_RING_SPAN(rec.len);
            *lost +=
                (rd->seq == LPG_RING_ANY_SEQ ? rec.seq : rd->seq) <= rec.seq
                ? rec.seq + 1
                    - (rd->seq == LPG_RING_ANY_SEQ ? rec.seq : rd->seq)
                : 0;
            rd->seq = rec.seq + 1;
            return LPG_ERROR;
        }

        memcpy(buf, r->data + off + sizeof(rec), rec.len);

        atomic_thread_fence(memory_order_acquire);
        if (atomic_load_explicit(&r->tail, memory_order_relaxed) > rd->pos) {
            /* overwritten while we copied */
            continue;
        }

        if (rd->seq != LPG_RING_ANY_SEQ && rec.seq > rd->seq) {
            *lost += rec.seq - rd->seq;
        }

        *len = rec.len;
        rd->pos += LPG_RING_SPAN(rec.len);
        rd->seq = rec.seq + 1;

        return LPG_OK;
    }
}
