/*
 * SPDX-License-Identifier: MIT
 *
 * lpg_check.h: the command line's blocking checks against the outside
 * world: the connection budget read from the server (start-up, --sizing)
 * and lpgate --check (databases, odoo_url, budget, LISTEN).  Never called
 * from an event loop.
 */

#ifndef LPG_CHECK_H
#define LPG_CHECK_H


#include "lpg_budget.h"
#include "lpg_conf.h"

#include <stdio.h>


/*
 * Fills b from conf, the machine's limits and the server's max_connections
 * and superuser_reserved_connections (read over the LISTEN connection: the
 * real server, even when queries go through PgBouncer).  b is filled in
 * every case; LPG_ERROR with why when the server could not be asked.
 */
int lpg_check_budget(const lpg_conf_t *conf, lpg_budget_t *b, char *why,
                     size_t len);

/*
 * lpgate --check: one block per database (connection, Odoo's tables and
 * version, session source, LISTEN) after the LISTEN connection, the budget
 * and odoo_url, then "check: ok" or "check: FAILED: <reasons>", all on
 * out.  Returns LPG_EXIT_OK, or LPG_EXIT_FATAL when something would not
 * work.
 */
int lpg_check_run(const lpg_conf_t *conf, FILE *out);


#endif /* LPG_CHECK_H */
