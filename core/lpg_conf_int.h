/*
 * SPDX-License-Identifier: MIT
 *
 * lpg_conf_int.h: the key table, shared by the config's two files:
 * lpg_conf_keys.c (the table and the lookups by name) and lpg_conf.c
 * (defaults, the reader, the checks, copies).
 */

#ifndef LPG_CONF_INT_H
#define LPG_CONF_INT_H


#include "lpg_conf.h"


/* lpg_conf_keys.c: every key, lpg_conf_nkeys of them */
extern const lpg_conf_key_t lpg_conf_table[];
extern const size_t         lpg_conf_nkeys;


#endif /* LPG_CONF_INT_H */
