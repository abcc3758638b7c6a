/*
 * SPDX-License-Identifier: MIT
 *
 * lpg_master.h: the master process: sockets, shared memory, workers.
 *
 * The master opens one SO_REUSEPORT listening socket per worker slot,
 * creates the shared segment, forks the workers and supervises them from
 * the default libev loop: respawn into the same slot with a backoff, no
 * respawn after exit status 2, signals for stop, graceful stop, reload and
 * log reopening.  It also owns the LISTEN connection (lpg_pglisten).
 */

#ifndef LPG_MASTER_H
#define LPG_MASTER_H


#include "lpg_conf.h"


/*
 * Runs until the gateway stops; returns the process exit status.  conf is
 * taken over (freed by the master); args stays borrowed for reloads.
 * check_budget asks for the budget check on the first database connection,
 * when it could not be done before the start.
 */
int lpg_master_run(lpg_conf_t *conf, const lpg_conf_args_t *args,
                   bool check_budget);


#endif /* LPG_MASTER_H */
