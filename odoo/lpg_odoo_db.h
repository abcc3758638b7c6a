/*
 * SPDX-License-Identifier: MIT
 *
 * lpg_odoo_db.h: database picking (?db=, dbfilter, the only one) and the
 * Odoo version whose shapes a database gets, for every Odoo route.
 */

#ifndef LPG_ODOO_DB_H
#define LPG_ODOO_DB_H


#include "lpg_conf.h"
#include "lpg_http.h"
#include "lpg_shm.h"


/* conf and shm are borrowed for the worker's life */
void lpg_odoo_db_init(const lpg_conf_t *conf, lpg_shm_t *shm);

/* the database of a request: ?db=, dbfilter on Host, or the only one;
 * -1 when none */
int lpg_odoo_pick_db(const lpg_http_request_t *r);

/* the Odoo version whose shapes database db gets (8 to 18: 15's poll
 * answers for 16+; 16+ also have /websocket) */
int lpg_odoo_version(int db);

/* the name of database db (served by lpgate: db >= 0) */
const char *lpg_odoo_db_name(int db);


#endif /* LPG_ODOO_DB_H */
