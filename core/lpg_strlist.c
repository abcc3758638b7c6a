/*
 * SPDX-License-Identifier: MIT
 *
 * lpg_strlist.c: a small set of byte strings in one allocation
 * (lpg_strlist.h).  Every change reallocates to the exact size: lists
 * change seldom (a subscribe) and live long.
 */

#include "lpg_strlist.h"

#include <stdlib.h>
#include <string.h>


#define LPG_STRLIST_HEAD sizeof(uint32_t)


static uint32_t
lpg_strlist_len_at(const lpg_strlist_t *l, uint32_t off)
{
    uint32_t len;

    memcpy(&len, l->data + off, sizeof(len));

    return len;
}


bool
lpg_strlist_next(const lpg_strlist_t *l, lpg_strlist_iter_t *it)
{
    uint32_t len;

    if (it->off >= l->size) {
        return false;
    }

    len = lpg_strlist_len_at(l, it->off);
    it->str = l->data + it->off + LPG_STRLIST_HEAD;
    it->len = len;
    it->off += LPG_STRLIST_HEAD + len + 1;

    return true;
}


/* the offset of s in l, or -1 */
static int64_t
lpg_strlist_find(const lpg_strlist_t *l, const char *s, size_t len)
{
    uint32_t           at;
    lpg_strlist_iter_t it;

    memset(&it, 0, sizeof(it));

    for (at = 0; lpg_strlist_next(l, &it); at = it.off) {
        if (it.len == len && memcmp(it.str, s, len) == 0) {
            return at;
        }
    }

    return -1;
}


bool
lpg_strlist_has(const lpg_strlist_t *l, const char *s, size_t len)
{
    return lpg_strlist_find(l, s, len) >= 0;
}


int
lpg_strlist_add(lpg_strlist_t *l, const char *s, size_t len)
{
    char    *data;
    size_t   size;
    uint32_t len32;

    if (lpg_strlist_has(l, s, len)) {
        return LPG_OK;
    }

    size = (size_t) l->size + LPG_STRLIST_HEAD + len + 1;
    if (len > UINT32_MAX || size > UINT32_MAX) {
        return LPG_ERROR;
    }

    data = realloc(l->data, size);
    if (data == NULL) {
        return LPG_ERROR;
    }

    len32 = (uint32_t) len;
    memcpy(data + l->size, &len32, sizeof(len32));
    memcpy(data + l->size + LPG_STRLIST_HEAD, s, len);
    data[size - 1] = '\0';

    l->data = data;
    l->size = (uint32_t) size;
    l->n++;

    return LPG_OK;
}


bool
lpg_strlist_remove(lpg_strlist_t *l, const char *s, size_t len)
{
    char    *data;
    int64_t  at;
    uint32_t entry;

    at = lpg_strlist_find(l, s, len);
    if (at < 0) {
        return false;
    }

    entry = (uint32_t) (LPG_STRLIST_HEAD + len + 1);
    memmove(l->data + at, l->data + at + entry, l->size - at - entry);
    l->size -= entry;
    l->n--;

    if (l->size == 0) {
        free(l->data);
        l->data = NULL;
        return true;
    }

    /* shrinking cannot fail in practice; the old buffer holds anyway */
    data = realloc(l->data, l->size);
    if (data != NULL) {
        l->data = data;
    }

    return true;
}


int
lpg_strlist_copy(lpg_strlist_t *dst, const lpg_strlist_t *src)
{
    char *data = NULL;

    if (src->size > 0) {
        data = malloc(src->size);
        if (data == NULL) {
            return LPG_ERROR;
        }

        memcpy(data, src->data, src->size);
    }

    free(dst->data);
    dst->data = data;
    dst->size = src->size;
    dst->n = src->n;

    return LPG_OK;
}


void
lpg_strlist_free(lpg_strlist_t *l)
{
    free(l->data);
    l->data = NULL;
    l->size = 0;
    l->n = 0;
}
