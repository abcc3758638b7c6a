/*
 * SPDX-License-Identifier: MIT
 *
 * lpg_sockets.h: the master's listening sockets (client port, admin port).
 */

#ifndef LPG_SOCKETS_H
#define LPG_SOCKETS_H


#include "lpg_conf.h"


/*
 * Opens n listening sockets on conf's interface:port in fds.  reuse, when
 * not NULL, holds sockets already bound to the same address to keep (-1
 * where none).  On failure nothing stays open that this call opened.
 */
int lpg_sockets_open(const lpg_conf_t *conf, int *fds, int n,
                     const int *reuse) LPG_MUSTCHECK;

/* the admin listener on admin_interface:admin_port; -1 on failure */
int lpg_sockets_open_admin(const lpg_conf_t *conf);


#endif /* LPG_SOCKETS_H */
