/*
 * SPDX-License-Identifier: MIT
 *
 * lpg_metrics.c: the Prometheus text exposition of lpgate's counters.
 *
 * Counters are read with relaxed atomic loads: a scrape is a snapshot, not
 * a transaction.  Per-worker series carry a worker="N" label; gauges that
 * belong to the master have none.
 */

#include "lpg_metrics.h"
#include "lpg_json.h"
#include "lpg_ring.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>


typedef uint64_t (*lpg_metrics_get_pt)(const lpg_shm_worker_t *w);


static void lpg_metrics_printf(lpg_buf_t *b, bool *failed, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void lpg_metrics_family(lpg_buf_t *b, bool *failed, const char *name,
                               const char *type, const char *help);
static void lpg_metrics_per_worker(lpg_buf_t *b, bool *failed, const char *name,
                                   const char *labels, const char *type,
                                   const char *help, size_t offset);


static void lpg_metrics_transports(lpg_buf_t *b, bool *failed);


static lpg_http_ctx_t lpg_metrics_ctx;


void
lpg_metrics_init(const lpg_http_ctx_t *ctx)
{
    lpg_metrics_ctx = *ctx;
}


#define LPG_W(field) offsetof(lpg_shm_worker_t, field)


void
lpg_metrics_request(lpg_http_conn_t *c, const lpg_http_request_t *r)
{
    int                 i, k, n;
    bool                failed = false;
    uint64_t            cum, head;
    lpg_buf_t           b;
    lpg_shm_t          *shm = lpg_metrics_ctx.shm;
    lpg_shm_header_t   *h = shm->header;
    lpg_shm_worker_t   *w;
    static const double bounds[] = LPG_SHM_LAT_BOUNDS;

    memset(&b, 0, sizeof(b));
    n = atomic_load(&h->nworkers);

    lpg_metrics_family(&b, &failed, "lpgate_workers", "gauge",
                       "worker processes configured");
    lpg_metrics_printf(&b, &failed, "lpgate_workers %d\n", n);

    lpg_metrics_family(&b, &failed, "lpgate_database_up", "gauge",
                       "1 while the master's LISTEN connection is up");
    lpg_metrics_printf(&b, &failed, "lpgate_database_up %d\n",
                       (int) atomic_load(&h->db_up));

    lpg_metrics_per_worker(&b, &failed, "lpgate_parked_polls", NULL, "gauge",
                           "polls parked, waiting for a notification",
                           LPG_W(parked));
    lpg_metrics_per_worker(&b, &failed, "lpgate_connections_open", NULL,
                           "gauge", "client connections open", LPG_W(active));
    lpg_metrics_per_worker(&b, &failed, "lpgate_connections_accepted_total",
                           NULL, "counter", "client connections accepted",
                           LPG_W(connections));

    lpg_metrics_family(&b, &failed, "lpgate_polls_answered_total", "counter",
                       "polls answered, by outcome");
    for (i = 0; i < n; i++) {
        w = &shm->workers[i];
        lpg_metrics_printf(
            &b, &failed,
            "lpgate_polls_answered_total{worker=\"%d\",outcome=\"message\"} "
            "%llu\n"
            "lpgate_polls_answered_total{worker=\"%d\",outcome=\"timeout\"} "
            "%llu\n"
            "lpgate_polls_answered_total{worker=\"%d\",outcome=\"error\"} "
            "%llu\n"
            "lpgate_polls_answered_total{worker=\"%d\",outcome=\"refused\"} "
            "%llu\n",
            i, (unsigned long long) atomic_load(&w->answered_message), i,
            (unsigned long long) atomic_load(&w->answered_timeout), i,
            (unsigned long long) atomic_load(&w->answered_error), i,
            (unsigned long long) atomic_load(&w->answered_refused));
    }

    lpg_metrics_family(&b, &failed, "lpgate_notifications_total", "counter",
                       "NOTIFYs received by the master");
    lpg_metrics_printf(&b, &failed, "lpgate_notifications_total %llu\n",
                       (unsigned long long) atomic_load(&h->notifies));
    lpg_metrics_family(&b, &failed, "lpgate_bad_payloads_total", "counter",
                       "NOTIFY payloads that were not a JSON array");
    lpg_metrics_printf(&b, &failed, "lpgate_bad_payloads_total %llu\n",
                       (unsigned long long) atomic_load(&h->bad_payloads));
    lpg_metrics_family(&b, &failed, "lpgate_fetches_total", "counter",
                       "bus_bus fetches by the master");
    lpg_metrics_printf(&b, &failed, "lpgate_fetches_total %llu\n",
                       (unsigned long long) atomic_load(&h->fetches));
    lpg_metrics_family(&b, &failed, "lpgate_doorbells_total", "counter",
                       "times the master told the workers that records are "
                       "in the ring (a big batch: every 256 records while it "
                       "streams in)");
    lpg_metrics_printf(&b, &failed, "lpgate_doorbells_total %llu\n",
                       (unsigned long long) atomic_load(&h->doorbells));

    lpg_metrics_family(&b, &failed, "lpgate_ring_records_total", "counter",
                       "records appended to the shared ring");
    lpg_metrics_printf(&b, &failed, "lpgate_ring_records_total %llu\n",
                       (unsigned long long) atomic_load(&h->records));
    lpg_metrics_family(&b, &failed, "lpgate_ring_bytes_total", "counter",
                       "bytes of records appended to the shared ring");
    lpg_metrics_printf(&b, &failed, "lpgate_ring_bytes_total %llu\n",
                       (unsigned long long) atomic_load(&h->ring_bytes));
    lpg_metrics_family(&b, &failed, "lpgate_ring_size_bytes", "gauge",
                       "size of the shared ring");
    lpg_metrics_printf(&b, &failed, "lpgate_ring_size_bytes %zu\n",
                       shm->ring_size);

    head = atomic_load(&h->records);
    lpg_metrics_family(&b, &failed, "lpgate_worker_ring_lag", "gauge",
                       "records a worker has not read yet");
    for (i = 0; i < n; i++) {
        uint64_t seq = atomic_load(&shm->workers[i].ring_seq);

        lpg_metrics_printf(&b, &failed,
                           "lpgate_worker_ring_lag{worker=\"%d\"} %llu\n", i,
                           (unsigned long long) (head > seq ? head - seq : 0));
    }

    lpg_metrics_per_worker(&b, &failed, "lpgate_backfill_queries_total", NULL,
                           "counter", "history queries run by workers",
                           LPG_W(backfills));
    lpg_metrics_per_worker(&b, &failed, "lpgate_session_lookups_total", NULL,
                           "counter", "sessions a worker asked Odoo about",
                           LPG_W(session_lookups));
    lpg_metrics_per_worker(&b, &failed, "lpgate_presence_writes_total", NULL,
                           "counter", "bus_presence statements a worker ran",
                           LPG_W(presence_flushes));
    lpg_metrics_per_worker(&b, &failed, "lpgate_websockets_open", NULL, "gauge",
                           "websockets open (/websocket)", LPG_W(ws_open));
    lpg_metrics_per_worker(
        &b, &failed, "lpgate_websocket_messages_in_total", NULL, "counter",
        "websocket messages and PONGs received", LPG_W(ws_in));
    lpg_metrics_per_worker(&b, &failed, "lpgate_websocket_frames_out_total",
                           NULL, "counter",
                           "websocket frames queued: notification batches, "
                           "PINGs, CLOSEs",
                           LPG_W(ws_out));
    lpg_metrics_per_worker(&b, &failed, "lpgate_batched_sends_total", NULL,
                           "counter", "HTTP answers sent in io_uring batches",
                           LPG_W(batched_sends));
    lpg_metrics_per_worker(
        &b, &failed, "lpgate_batch_submits_total", NULL, "counter",
        "io_uring_enter calls that sent those batches", LPG_W(batch_submits));

    lpg_metrics_family(&b, &failed, "lpgate_websocket_closes_total", "counter",
                       "websockets closed, by the code lpgate sent (1006: "
                       "the connection ended without a close frame)");
    for (i = 0; i < n; i++) {
        static const unsigned codes[] = LPG_SHM_WS_CODES;

        w = &shm->workers[i];
        for (k = 0; k < LPG_SHM_WS_NCODES; k++) {
            char code[16];

            if (k < (int) LPG_NELEMS(codes)) {
                snprintf(code, sizeof(code), "%u", codes[k]);

            } else {
                snprintf(code, sizeof(code), "other");
            }

            lpg_metrics_printf(
                &b, &failed,
                "lpgate_websocket_closes_total{worker=\"%d\",code=\"%s\"} "
                "%llu\n",
                i, code, (unsigned long long) atomic_load(&w->ws_closes[k]));
        }
    }

    lpg_metrics_transports(&b, &failed);
    lpg_metrics_per_worker(&b, &failed, "lpgate_socketio_websockets_open", NULL,
                           "gauge",
                           "Socket.IO sessions' websockets open (probes "
                           "included)",
                           LPG_W(sio_ws_open));

    lpg_metrics_per_worker(&b, &failed, "lpgate_db_connections", NULL, "gauge",
                           "a worker's database connections up",
                           LPG_W(db_conns));
    lpg_metrics_per_worker(&b, &failed, "lpgate_db_waiters", NULL, "gauge",
                           "requests waiting for a database connection",
                           LPG_W(db_waiters));

    lpg_metrics_family(&b, &failed, "lpgate_listen_reconnects_total", "counter",
                       "times the LISTEN connection was lost");
    lpg_metrics_printf(&b, &failed, "lpgate_listen_reconnects_total %llu\n",
                       (unsigned long long) atomic_load(&h->listen_reconnects));
    lpg_metrics_family(&b, &failed, "lpgate_gaps_held", "gauge",
                       "databases holding rows back behind a missing id");
    lpg_metrics_printf(&b, &failed, "lpgate_gaps_held %llu\n",
                       (unsigned long long) atomic_load(&h->gaps_held));
    lpg_metrics_family(&b, &failed, "lpgate_gaps_closed_total", "counter",
                       "missing ids given up, by reason");
    lpg_metrics_printf(&b, &failed,
                       "lpgate_gaps_closed_total{reason=\"rolled_back\"} "
                       "%llu\n"
                       "lpgate_gaps_closed_total{reason=\"timeout\"} %llu\n",
                       (unsigned long long) atomic_load(&h->gaps_final),
                       (unsigned long long) atomic_load(&h->gaps_forced));
    lpg_metrics_family(&b, &failed, "lpgate_bus_resets_total", "counter",
                       "re-syncs after bus_bus ids went backwards");
    lpg_metrics_printf(&b, &failed, "lpgate_bus_resets_total %llu\n",
                       (unsigned long long) atomic_load(&h->bus_resets));

    lpg_metrics_family(&b, &failed, "lpgate_delivery_seconds", "histogram",
                       "NOTIFY receipt by the master to the reply written");
    for (i = 0; i < n; i++) {
        w = &shm->workers[i];
        cum = 0;

        for (k = 0; k < LPG_SHM_LAT_BUCKETS; k++) {
            cum += atomic_load(&w->lat[k]);

            if (k < LPG_SHM_LAT_BUCKETS - 1) {
                lpg_metrics_printf(&b, &failed,
                                   "lpgate_delivery_seconds_bucket{worker=\"%d"
                                   "\",le=\"%g\"} %llu\n",
                                   i, bounds[k], (unsigned long long) cum);

            } else {
                lpg_metrics_printf(&b, &failed,
                                   "lpgate_delivery_seconds_bucket{worker=\"%d"
                                   "\",le=\"+Inf\"} %llu\n",
                                   i, (unsigned long long) cum);
            }
        }

        lpg_metrics_printf(&b, &failed,
                           "lpgate_delivery_seconds_sum{worker=\"%d\"} %.6f\n"
                           "lpgate_delivery_seconds_count{worker=\"%d\"} "
                           "%llu\n",
                           i, (double) atomic_load(&w->lat_sum_us) / 1e6, i,
                           (unsigned long long) atomic_load(&w->lat_count));
    }

    if (failed) {
        lpg_http_respond(c, 503, NULL, "Retry-After: 5\r\n", "busy\n", 5);

    } else {
        lpg_http_respond(c, 200, "text/plain; version=0.0.4; charset=utf-8",
                         "Cache-Control: no-store\r\n", b.data, b.len);
    }

    lpg_buf_free(&b);
}


static void
lpg_metrics_printf(lpg_buf_t *b, bool *failed, const char *fmt, ...)
{
    int     n;
    char    line[1024];
    va_list args;

    va_start(args, fmt);
    n = vsnprintf(line, sizeof(line), fmt, args);
    va_end(args);

    if (n < 0 || (size_t) n >= sizeof(line)
        || lpg_buf_append(b, line, n) != LPG_OK) {
        *failed = true;
    }
}


static void
lpg_metrics_family(lpg_buf_t *b, bool *failed, const char *name,
                   const char *type, const char *help)
{
    lpg_metrics_printf(b, failed, "# HELP %s %s\n# TYPE %s %s\n", name, help,
                       name, type);
}


/* one series per worker slot of the uint64 counter at offset */
static void
lpg_metrics_per_worker(lpg_buf_t *b, bool *failed, const char *name,
                       const char *labels, const char *type, const char *help,
                       size_t offset)
{
    int               i, n;
    lpg_shm_t        *shm = lpg_metrics_ctx.shm;
    _Atomic uint64_t *v;

    lpg_metrics_family(b, failed, name, type, help);

    n = atomic_load(&shm->header->nworkers);
    for (i = 0; i < n; i++) {
        v = (_Atomic uint64_t *) ((char *) &shm->workers[i] + offset);
        lpg_metrics_printf(b, failed, "%s{worker=\"%d\"%s%s} %llu\n", name, i,
                           labels ? "," : "", labels ? labels : "",
                           (unsigned long long) atomic_load(v));
    }
}


/*
 * The families by transport label: one row per transport (its open
 * connections gauge and its records-sent counter in lpg_shm_worker_t).
 */
static void
lpg_metrics_transports(lpg_buf_t *b, bool *failed)
{
    int         i, n;
    size_t      k, off;
    const char *name;
    lpg_shm_t  *shm = lpg_metrics_ctx.shm;
    static const struct {
        const char *transport;
        size_t      open;
        size_t      delivered;
    } t[] = {
        { "ws", LPG_W(wsapi_open), LPG_W(wsapi_delivered) },
        { "socketio", LPG_W(sio_sessions), LPG_W(sio_delivered) },
        { "sse", LPG_W(sse_open), LPG_W(sse_delivered) },
    };

    n = atomic_load(&shm->header->nworkers);

    for (k = 0; k < 2; k++) {
        name = k == 0 ? "lpgate_transport_connections_open"
                      : "lpgate_transport_deliveries_total";
        lpg_metrics_family(b, failed, name, k == 0 ? "gauge" : "counter",
                           k == 0 ? "connections open, by transport"
                                  : "records sent to clients, by transport");

        for (size_t j = 0; j < LPG_NELEMS(t); j++) {
            off = k == 0 ? t[j].open : t[j].delivered;

            for (i = 0; i < n; i++) {
                lpg_metrics_printf(
                    b, failed, "%s{worker=\"%d\",transport=\"%s\"} %llu\n",
                    name, i, t[j].transport,
                    (unsigned long long) atomic_load((
                        _Atomic uint64_t *) ((char *) &shm->workers[i] + off)));
            }
        }
    }
}


void
lpg_metrics_delivered(lpg_shm_worker_t *st, int64_t notify_us)
{
    int                 i;
    int64_t             us;
    static const double bounds[] = LPG_SHM_LAT_BOUNDS;

    if (notify_us == 0) {
        return;
    }

    us = lpg_time_mono_us() - notify_us;
    if (us < 0) {
        us = 0;
    }

    for (i = 0; i < LPG_SHM_LAT_BUCKETS - 1; i++) {
        if ((double) us / 1e6 <= bounds[i]) {
            break;
        }
    }

    atomic_fetch_add_explicit(&st->lat[i], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&st->lat_count, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&st->lat_sum_us, (uint64_t) us,
                              memory_order_relaxed);
}
