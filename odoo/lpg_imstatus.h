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
 *
 * Odoo 16+ has no such route: its websocket's update_presence (and the
 * /websocket/update_bus_presence route) answers with a bus notification
 * on the caller's own channel, lpg_imstatus_notify().
 */

#ifndef LPG_IMSTATUS_H
#define LPG_IMSTATUS_H


#include "lpg_http.h"

#include <jansson.h>


void lpg_imstatus_request(lpg_http_conn_t *c, const lpg_http_request_t *r);

/*
 * Odoo 16+'s answer to update_presence: the statuses of ids_by_model
 * ({"res.partner": [ids], "mail.guest": [ids]}, borrowed for the call) as
 * one bus notification on the caller's own channel (uid's partner, else
 * the mail.guest guest) in the shape of db's version (16: bus/im_status
 * {"partners", "guests"}; 17+: mail.record/insert {"Persona": [{"id",
 * "im_status", "type"}]}), sent as Odoo's _sendone does: INSERT INTO
 * bus_bus, then NOTIFY listen_channel in db, so every tab of the user gets
 * it on whichever lpgate node it is.  The caller's own status is online
 * (away past 1800 s of inactivity_ms) whatever its batched bus_presence
 * row says yet.  Fire and forget: nothing is sent when no id matches or
 * the caller is nobody; a database failure is logged.  LPG_ERROR: bad
 * input (*why says what) or out of memory, nothing queued.
 */
int lpg_imstatus_notify(int db, int version, int64_t uid, int64_t guest,
                        const json_t *ids_by_model, int64_t inactivity_ms,
                        const char **why) LPG_MUSTCHECK;


#endif /* LPG_IMSTATUS_H */
