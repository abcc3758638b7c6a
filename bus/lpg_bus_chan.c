/*
 * SPDX-License-Identifier: MIT
 *
 * lpg_bus_chan.c: the history's channel index.
 *
 * For each (database, channel) with a record in the history, the index
 * holds the history position (seq) of its newest record, and each record
 * holds the position of the one before it on the same channel
 * (lpg_bus_rec_t.prev).  So the records a subscription wants, those of
 * its channels with an id above its last, are found by walking each
 * channel's chain back from the newest record to the last, in time
 * proportional to what is found, instead of by looking at every record
 * of the database after the last (which, with a batch of 10,000 private
 * messages, made every re-poll look at thousands of other clients'
 * records).
 *
 * An open-addressing table with linear probing and backward-shift
 * deletion, twice the history's size so it is at most half full; an
 * entry is seq + 1 (0: empty), the key and its hash are read from the
 * record it names.  A record leaves the index when it is evicted while
 * still the newest of its channel, or when its database is reset; the
 * chains need no unlinking, as lpg_bus_at() of an evicted position is
 * NULL.  The table is allocated and written once at start, like the
 * history, so it is part of the worker's base RSS.
 */

#include "lpg_bus_chan.h"
#include "lpg_dispatch.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>


#define LPG_BUS_CHAN_SLOTS (2 * LPG_BUS_HISTORY)
#define LPG_BUS_CHAN_MASK  (LPG_BUS_CHAN_SLOTS - 1)


static uint64_t *lpg_bus_chan; /* owned: LPG_BUS_CHAN_SLOTS entries */


int
lpg_bus_chan_init(void)
{
    /* calloc may hand back pages never written: memset makes them the
     * worker's own now, not one by one as channels come */
    lpg_bus_chan = malloc(LPG_BUS_CHAN_SLOTS * sizeof(uint64_t));
    if (lpg_bus_chan == NULL) {
        lpg_log(LPG_LOG_EMERG, ENOMEM, "channel index allocation failed");
        return LPG_ERROR;
    }

    memset(lpg_bus_chan, 0, LPG_BUS_CHAN_SLOTS * sizeof(uint64_t));

    return LPG_OK;
}


void
lpg_bus_chan_free(void)
{
    free(lpg_bus_chan);
    lpg_bus_chan = NULL;
}


uint32_t
lpg_bus_chan_hash(int db, const char *channel, size_t len)
{
    uint64_t h;

    h = lpg_dispatch_hash(channel, len)
        ^ ((uint64_t) db * 0x9e3779b97f4a7c15ull);

    return (uint32_t) (h ^ (h >> 32));
}


static const lpg_bus_rec_t *
lpg_bus_chan_rec(size_t slot)
{
    return lpg_bus_chan[slot] == 0 ? NULL : lpg_bus_at(lpg_bus_chan[slot] - 1);
}


/* the slot of (db, channel): its entry, or the empty slot that ends its
 * probe sequence */
static size_t
lpg_bus_chan_find(int db, const char *channel, size_t len, uint32_t hash)
{
    size_t               slot;
    const lpg_bus_rec_t *r;

    for (slot = hash & LPG_BUS_CHAN_MASK;;
         slot = (slot + 1) & LPG_BUS_CHAN_MASK) {
        r = lpg_bus_chan_rec(slot);
        if (r == NULL
            || (r->chash == hash && r->db == db && r->channel_len == len
                && memcmp(r->channel, channel, len) == 0))
        {
            return slot;
        }
    }
}


void
lpg_bus_chan_add(lpg_bus_rec_t *r)
{
    size_t               slot;
    const lpg_bus_rec_t *newest;

    slot = lpg_bus_chan_find(r->db, r->channel, r->channel_len, r->chash);
    newest = lpg_bus_chan_rec(slot);

    r->prev = newest != NULL ? newest->seq : LPG_BUS_NONE;
    lpg_bus_chan[slot] = r->seq + 1;
}


void
lpg_bus_chan_remove(const lpg_bus_rec_t *r)
{
    size_t               hole, slot, home;
    const lpg_bus_rec_t *e;

    hole = lpg_bus_chan_find(r->db, r->channel, r->channel_len, r->chash);
    if (lpg_bus_chan[hole] != r->seq + 1) {
        /* a newer record of the channel is the one indexed */
        return;
    }

    /* backward shift: an entry after the hole moves into it unless its
     * home slot lies cyclically in (hole, slot] */
    for (slot = (hole + 1) & LPG_BUS_CHAN_MASK;;
         slot = (slot + 1) & LPG_BUS_CHAN_MASK)
    {
        e = lpg_bus_chan_rec(slot);
        if (e == NULL) {
            break;
        }

        home = e->chash & LPG_BUS_CHAN_MASK;
        if (((slot - home) & LPG_BUS_CHAN_MASK)
            >= ((slot - hole) & LPG_BUS_CHAN_MASK)) {
            lpg_bus_chan[hole] = lpg_bus_chan[slot];
            hole = slot;
        }
    }

    lpg_bus_chan[hole] = 0;
}


const lpg_bus_rec_t *
lpg_bus_chan_newest(int db, const char *channel, size_t len)
{
    uint32_t hash = lpg_bus_chan_hash(db, channel, len);

    return lpg_bus_chan_rec(lpg_bus_chan_find(db, channel, len, hash));
}
