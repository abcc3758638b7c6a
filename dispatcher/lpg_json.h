/*
 * SPDX-License-Identifier: MIT
 *
 * lpg_json.h: Odoo's json_dump text form, byte for byte.
 *
 * Odoo stores bus_bus.channel as json.dumps(v, separators=(',', ':')) with
 * ensure_ascii: compact, no sorted keys, non-ASCII as lowercase \uXXXX
 * (surrogate pairs above the BMP), '/' not escaped.  Channel matching
 * compares that text, so lpgate must produce exactly the same bytes.
 * jansson's own dump differs (uppercase hex), hence this file.
 */

#ifndef LPG_JSON_H
#define LPG_JSON_H


#include "lpg_core.h"

#include <jansson.h>


typedef struct {
    char  *data;
    size_t len;
    size_t cap;
} lpg_buf_t;


int  lpg_buf_append(lpg_buf_t *b, const char *data, size_t len) LPG_MUSTCHECK;
void lpg_buf_free(lpg_buf_t *b);

/* appends a NUL-terminated string */
int lpg_buf_append_str(lpg_buf_t *b, const char *s) LPG_MUSTCHECK;

/*
 * Appends the json_dump form of v (strings, integers, booleans, null and
 * arrays/objects of them; reals as %.17g) to b.  LPG_ERROR on invalid
 * UTF-8 or out of memory.
 */
int lpg_json_dump(lpg_buf_t *b, const json_t *v) LPG_MUSTCHECK;

/* the json_dump form of one UTF-8 string (with its quotes) */
int lpg_json_dump_string(lpg_buf_t *b, const char *s, size_t len) LPG_MUSTCHECK;

/*
 * Decodes the UTF-8 sequence at s[*i] into *cp and moves *i past it;
 * LPG_ERROR on a truncated, overlong or surrogate sequence.
 */
int lpg_json_utf8_next(const unsigned char *s, size_t len, size_t *i,
                       uint32_t *cp) LPG_MUSTCHECK;

/*
 * Whether text is exactly one JSON value, as json_loadb() with
 * JSON_DECODE_ANY would accept it, without allocating (lpg_json_check.c).
 */
bool lpg_json_check(const char *text, size_t len);


#endif /* LPG_JSON_H */
