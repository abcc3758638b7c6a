/*
 * SPDX-License-Identifier: MIT
 *
 * lpg_strlist.h: a small set of byte strings in one allocation.
 *
 * A socket that holds a few channel names for hours should not pay a json
 * array's few hundred bytes for them: the strings sit one after the other
 * in one buffer, each as its 32-bit length, its bytes and a NUL (the
 * bytes may hold NULs themselves; the trailing one lets callers use
 * short, plain strings directly).  Insertion order is kept; lookups are
 * linear, for lists of tens of strings.  The list owns its buffer; the
 * zeroed struct is the empty list.
 */

#ifndef LPG_STRLIST_H
#define LPG_STRLIST_H


#include "lpg_core.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>


typedef struct {
    char    *data; /* owned; NULL when empty */
    uint32_t size; /* bytes used in data */
    uint32_t n;    /* strings */
} lpg_strlist_t;


/* one string of a list: the cursor for lpg_strlist_next */
typedef struct {
    const char *str; /* NUL-terminated, but may hold NULs: use len */
    size_t      len;
    uint32_t    off; /* of the next one */
} lpg_strlist_iter_t;


/* appends s unless the list has it; LPG_ERROR: no memory, list unchanged */
int lpg_strlist_add(lpg_strlist_t *l, const char *s, size_t len) LPG_MUSTCHECK;

bool lpg_strlist_has(const lpg_strlist_t *l, const char *s, size_t len);

/* true when s was there */
bool lpg_strlist_remove(lpg_strlist_t *l, const char *s, size_t len);

/* *dst (freed first) becomes a copy of src; LPG_ERROR: no memory, *dst
 * unchanged */
int lpg_strlist_copy(lpg_strlist_t       *dst,
                     const lpg_strlist_t *src) LPG_MUSTCHECK;

void lpg_strlist_free(lpg_strlist_t *l);

/* it zeroed first: each string in turn, false after the last */
bool lpg_strlist_next(const lpg_strlist_t *l, lpg_strlist_iter_t *it);


#endif /* LPG_STRLIST_H */
