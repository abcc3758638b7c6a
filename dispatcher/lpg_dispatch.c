/*
 * SPDX-License-Identifier: MIT
 *
 * lpg_dispatch.c: an open hash of channel entries, each heading a doubly
 * linked list of subscriptions.
 *
 * Chained buckets (a power of two, doubled at load 1) keep removal O(1)
 * per subscription and lookups O(1) per ring record.  Entries are freed
 * when their list empties, so memory follows the parked polls.
 */

#include "lpg_dispatch.h"

#include <stdlib.h>
#include <string.h>


struct lpg_dispatch_chan_s {
    lpg_dispatch_chan_t *next; /* bucket chain */
    lpg_dispatch_sub_t  *subs;
    uint64_t             hash;
    size_t               nsubs;
    size_t               len;
    char                 key[];
};


struct lpg_dispatch_s {
    lpg_dispatch_chan_t **buckets;
    size_t                nbuckets;
    size_t                nchans;
    size_t                nsubs;
};


static lpg_dispatch_chan_t *
lpg_dispatch_find(lpg_dispatch_t *d, const char *key, size_t len, uint64_t h);
static int lpg_dispatch_grow(lpg_dispatch_t *d);


lpg_dispatch_t *
lpg_dispatch_create(void)
{
    lpg_dispatch_t *d;

    d = calloc(1, sizeof(*d));
    if (d == NULL) {
        return NULL;
    }

    d->nbuckets = 64;
    d->buckets = calloc(d->nbuckets, sizeof(*d->buckets));
    if (d->buckets == NULL) {
        free(d);
        return NULL;
    }

    return d;
}


void
lpg_dispatch_destroy(lpg_dispatch_t *d)
{
    size_t               i;
    lpg_dispatch_chan_t *c, *next;

    if (d == NULL) {
        return;
    }

    for (i = 0; i < d->nbuckets; i++) {
        for (c = d->buckets[i]; c != NULL; c = next) {
            next = c->next;
            free(c);
        }
    }

    free(d->buckets);
    free(d);
}


int
lpg_dispatch_add(lpg_dispatch_t *d, lpg_dispatch_sub_t *sub, const char *key,
                 size_t len, void *owner)
{
    uint64_t             h;
    lpg_dispatch_chan_t *c, **bucket;

    h = lpg_dispatch_hash(key, len);
    c = lpg_dispatch_find(d, key, len, h);

    if (c == NULL) {
        if (d->nchans >= d->nbuckets && lpg_dispatch_grow(d) != LPG_OK) {
            return LPG_ERROR;
        }

        c = malloc(sizeof(*c) + len);
        if (c == NULL) {
            return LPG_ERROR;
        }

        c->subs = NULL;
        c->hash = h;
        c->nsubs = 0;
        c->len = len;
        memcpy(c->key, key, len);

        bucket = &d->buckets[h & (d->nbuckets - 1)];
        c->next = *bucket;
        *bucket = c;
        d->nchans++;
    }

    sub->owner = owner;
    sub->chan = c;
    sub->prev = NULL;
    sub->next = c->subs;
    if (c->subs != NULL) {
        c->subs->prev = sub;
    }

    c->subs = sub;
    c->nsubs++;
    d->nsubs++;

    return LPG_OK;
}


void
lpg_dispatch_remove(lpg_dispatch_t *d, lpg_dispatch_sub_t *sub)
{
    lpg_dispatch_chan_t *c = sub->chan, **pp;

    if (c == NULL) {
        return;
    }

    if (sub->prev != NULL) {
        sub->prev->next = sub->next;

    } else {
        c->subs = sub->next;
    }

    if (sub->next != NULL) {
        sub->next->prev = sub->prev;
    }

    sub->chan = NULL;
    sub->next = NULL;
    sub->prev = NULL;
    c->nsubs--;
    d->nsubs--;

    if (c->subs != NULL) {
        return;
    }

    for (pp = &d->buckets[c->hash & (d->nbuckets - 1)]; *pp != NULL;
         pp = &(*pp)->next)
    {
        if (*pp == c) {
            *pp = c->next;
            break;
        }
    }

    d->nchans--;
    free(c);
}


size_t
lpg_dispatch_match(lpg_dispatch_t *d, const char *key, size_t len,
                   lpg_dispatch_cb_pt cb, void *arg)
{
    size_t               n;
    uint64_t             h;
    lpg_dispatch_sub_t  *s, *next;
    lpg_dispatch_chan_t *c;

    h = lpg_dispatch_hash(key, len);
    c = lpg_dispatch_find(d, key, len, h);
    if (c == NULL) {
        return 0;
    }

    /*
     * The callback may remove this subscription and, with it, free the
     * channel when it was the last one: count what is left and stop when
     * nothing is, before touching c again.
     */
    n = 0;
    for (s = c->subs; s != NULL; s = next) {
        size_t left = c->nsubs;

        next = s->next;
        cb(s->owner, arg);
        n++;

        if (left == 1 && s->chan == NULL) {
            break;
        }
    }

    return n;
}


size_t
lpg_dispatch_channels(const lpg_dispatch_t *d)
{
    return d->nchans;
}


size_t
lpg_dispatch_subs(const lpg_dispatch_t *d)
{
    return d->nsubs;
}


size_t
lpg_dispatch_key(char *buf, size_t cap, const char *db, size_t db_len,
                 const char *channel, size_t channel_len)
{
    if (db_len + 1 + channel_len > cap) {
        return 0;
    }

    memcpy(buf, db, db_len);
    buf[db_len] = '\0';
    memcpy(buf + db_len + 1, channel, channel_len);

    return db_len + 1 + channel_len;
}


/* FNV-1a, 64 bit: keys are short and not attacker-chosen in bulk */
uint64_t
lpg_dispatch_hash(const char *key, size_t len)
{
    size_t   i;
    uint64_t h = 14695981039346656037ull;

    for (i = 0; i < len; i++) {
        h ^= (unsigned char) key[i];
        h *= 1099511628211ull;
    }

    return h;
}


static lpg_dispatch_chan_t *
lpg_dispatch_find(lpg_dispatch_t *d, const char *key, size_t len, uint64_t h)
{
    lpg_dispatch_chan_t *c;

    for (c = d->buckets[h & (d->nbuckets - 1)]; c != NULL; c = c->next) {
        if (c->hash == h && c->len == len && memcmp(c->key, key, len) == 0) {
            return c;
        }
    }

    return NULL;
}


static int
lpg_dispatch_grow(lpg_dispatch_t *d)
{
    size_t               i, n;
    lpg_dispatch_chan_t *c, *next, **b;

    n = d->nbuckets * 2;
    b = calloc(n, sizeof(*b));
    if (b == NULL) {
        return LPG_ERROR;
    }

    for (i = 0; i < d->nbuckets; i++) {
        for (c = d->buckets[i]; c != NULL; c = next) {
            next = c->next;
            c->next = b[c->hash & (n - 1)];
            b[c->hash & (n - 1)] = c;
        }
    }

    free(d->buckets);
    d->buckets = b;
    d->nbuckets = n;

    return LPG_OK;
}
