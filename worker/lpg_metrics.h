/*
 * SPDX-License-Identifier: MIT
 *
 * lpg_metrics.h: GET /metrics on the admin listener, Prometheus text format.
 *
 * Whichever worker accepts the scrape renders the whole gateway from the
 * shared segment: the master's counters and every worker's stats slot.
 */

#ifndef LPG_METRICS_H
#define LPG_METRICS_H


#include "lpg_http.h"


void lpg_metrics_init(const lpg_http_ctx_t *ctx);
void lpg_metrics_request(lpg_http_conn_t *c, const lpg_http_request_t *r);

/* one delivery of any transport into the latency histogram: from the
 * master's NOTIFY receipt (notify_us, monotonic; 0: unknown) to now */
void lpg_metrics_delivered(lpg_shm_worker_t *st, int64_t notify_us);


#endif /* LPG_METRICS_H */
