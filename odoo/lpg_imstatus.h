/*
 * SPDX-License-Identifier: MIT
 *
 * lpg_imstatus.h: Odoo 13-15's POST <path>/im_status, served by lpgate.
 *
 * The browser asks it next to its polls, and the proxy's /longpolling
 * location sends it here.  Like Odoo's route (type json, auth user) it
 * answers only a session Odoo vouches for (lpg_session.h), else Odoo's
 * "Odoo Session Expired" error; the statuses come from the database with
 * Odoo's own rules: offline without a poll for 55 s, away after 1800 s
 * of inactivity, online, im_partner for a partner without a user, bot for
 * OdooBot.
 */

#ifndef LPG_IMSTATUS_H
#define LPG_IMSTATUS_H


#include "lpg_http.h"


void lpg_imstatus_request(lpg_http_conn_t *c, const lpg_http_request_t *r);


#endif /* LPG_IMSTATUS_H */
