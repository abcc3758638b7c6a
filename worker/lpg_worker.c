/*
 * SPDX-License-Identifier: MIT
 *
 * lpg_worker.c: a worker's life: accept, serve, heartbeat, stop.
 *
 * The worker accepts on its slot's SO_REUSEPORT socket (non-blocking, a
 * bounded batch per wake-up), keeps a spare descriptor for EMFILE as libev's
 * manual suggests, and heartbeats its stats slot every second.  SIGTERM and
 * SIGINT stop at once; SIGQUIT, and EOF on the death pipe (the master is
 * gone), stop gracefully: no new connections, answer what is in flight,
 * exit when nothing is left or the shutdown timeout passes.
 */

#include "lpg_worker.h"
#include "lpg_budget.h"
#include "lpg_handoff.h"
#include "lpg_http.h"
#include "lpg_http_batch.h"
#include "lpg_odoo.h"
#include "lpg_bus.h"
#include "lpg_poll.h"
#include "lpg_route.h"
#include "lpg_socketio.h"
#include "lpg_sub.h"
#include "lpg_sse.h"
#include "lpg_websocket.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>


#define LPG_WORKER_ACCEPT_BATCH 64


static void lpg_worker_accept_cb(struct ev_loop *loop, ev_io *w, int revents);
static void lpg_worker_death_cb(struct ev_loop *loop, ev_io *w, int revents);
static void lpg_worker_signal_cb(struct ev_loop *loop, ev_signal *w,
                                 int revents);
static void lpg_worker_heartbeat_cb(struct ev_loop *loop, ev_timer *w,
                                    int revents);
static void lpg_worker_drain_cb(struct ev_loop *loop, ev_timer *w, int revents);
static void lpg_worker_quit(double timeout, bool retire);


static struct {
    struct ev_loop   *loop;
    lpg_worker_args_t args;
    lpg_shm_worker_t *stats;
    int               spare_fd;
    bool              quitting;
    bool              retiring;
    int64_t           shed_logged;
    int64_t           deadline;
    ev_io             accept;
    ev_io             admin;
    ev_io             death;
    ev_signal         sigs[6];
    ev_timer          heartbeat;
    ev_timer          drain;
} lpg_worker;


static const int lpg_worker_signals[] = { SIGTERM, SIGINT, SIGQUIT,
                                          SIGUSR1, SIGHUP, SIGWINCH };


void
lpg_worker_main(struct ev_loop *loop, const lpg_worker_args_t *args)
{
    int            i;
    sigset_t       none;
    lpg_http_ctx_t ctx;

    lpg_worker.loop = loop;
    lpg_worker.args = *args;
    lpg_worker.stats = &args->shm->workers[args->slot];

    if (!lpg_shm_valid(args->shm)) {
        lpg_log(LPG_LOG_EMERG, 0, "shared memory segment is not valid");
        exit(LPG_EXIT_FATAL);
    }

    lpg_shm_prefault(args->shm, false);

    lpg_worker.spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);

    for (i = 0; i < (int) LPG_NELEMS(lpg_worker_signals); i++) {
        ev_signal_init(&lpg_worker.sigs[i], lpg_worker_signal_cb,
                       lpg_worker_signals[i]);
        ev_signal_start(loop, &lpg_worker.sigs[i]);
    }

    ev_io_init(&lpg_worker.accept, lpg_worker_accept_cb, args->lsock, EV_READ);
    ev_io_start(loop, &lpg_worker.accept);

    if (args->admin_fd != -1) {
        /* data marks the admin listener's connections */
        ev_io_init(&lpg_worker.admin, lpg_worker_accept_cb, args->admin_fd,
                   EV_READ);
        lpg_worker.admin.data = &lpg_worker.admin;
        ev_io_start(loop, &lpg_worker.admin);
    }

    ev_io_init(&lpg_worker.death, lpg_worker_death_cb, args->death_fd, EV_READ);
    ev_io_start(loop, &lpg_worker.death);

    ev_timer_init(&lpg_worker.heartbeat, lpg_worker_heartbeat_cb, 0., 1.);
    ev_timer_start(loop, &lpg_worker.heartbeat);

    ev_init(&lpg_worker.drain, lpg_worker_drain_cb);

    ctx.loop = loop;
    ctx.conf = args->conf;
    ctx.shm = args->shm;
    ctx.stats = lpg_worker.stats;
    ctx.slot = args->slot;
    ctx.kick_fd = args->kick_fd;
    ctx.route = lpg_route_request;

    /* what the fd limit leaves for clients, after our own descriptors */
    {
        struct rlimit rl;
        long          n = 1024;

        if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
        {
            n = (long) rl.rlim_cur;
        }

        n -= LPG_BUDGET_FD_RESERVE + args->conf->db_maxconn;
        ctx.max_conns = n > 1 ? (size_t) n : 1;
    }
    lpg_http_init(&ctx);
    lpg_route_init(&ctx);
    lpg_handoff_init(loop, args->slot, args->handoff_rx, args->handoff_tx,
                     args->conf->workers);

    if (lpg_sub_init(loop, args->conf, args->shm, lpg_worker.stats, args->ring,
                     args->doorbell)
            != LPG_OK
        || lpg_poll_init(&ctx) != LPG_OK || lpg_websocket_init(&ctx) != LPG_OK)
    {
        exit(LPG_EXIT_FATAL);
    }

    /* a ring batch's long-poll answers go out in one io_uring_enter */
    lpg_sub_batch_hooks(lpg_http_batch_begin, lpg_http_batch_end);

    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);

    lpg_log(LPG_LOG_DEBUG, 0, "worker ready (generation %u)", args->generation);

    ev_run(loop, 0);

    lpg_log(LPG_LOG_INFO, 0, "worker exiting");
    lpg_odoo_exit();
    lpg_http_batch_stop();

    exit(LPG_EXIT_OK);
}


static void
lpg_worker_accept_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    int i, fd;

    for (i = 0; i < LPG_WORKER_ACCEPT_BATCH; i++) {
        fd = accept4(w->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

        if (fd >= 0) {
            lpg_http_accept(fd, w->data != NULL);
            continue;
        }

        switch (errno) {

        case EAGAIN:
        case EINTR:
        case ECONNABORTED:
            return;

        case EMFILE:
        case ENFILE:
            /*
             * Out of descriptors: accept with the spare one and close at
             * once, so the peer learns and the loop does not spin.
             */
            /* said at most once a second: this is the flood case */
            if (lpg_time_mono_ms() - lpg_worker.shed_logged >= 1000) {
                lpg_log(LPG_LOG_WARN, errno,
                        "accept4() failed, shedding connections");
                lpg_worker.shed_logged = lpg_time_mono_ms();
            }

            if (lpg_worker.spare_fd != -1) {
                close(lpg_worker.spare_fd);
                fd = accept(w->fd, NULL, NULL);
                if (fd != -1) {
                    close(fd);
                }

                lpg_worker.spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
            }

            return;

        default:
            lpg_log(LPG_LOG_ERR, errno, "accept4() failed");
            return;
        }
    }
}


static void
lpg_worker_death_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    char    buf[16];
    ssize_t n;

    n = read(w->fd, buf, sizeof(buf));
    if (n == -1 && (errno == EAGAIN || errno == EINTR)) {
        return;
    }

    /* EOF: the master is gone; nothing will reach us any more */
    ev_io_stop(loop, w);

    lpg_log(LPG_LOG_ALERT, 0, "the master process is gone, stopping");

    lpg_worker_quit(1., false);
}


static void
lpg_worker_signal_cb(struct ev_loop *loop, ev_signal *w, int revents)
{
    switch (w->signum) {

    case SIGTERM:
    case SIGINT:
        lpg_log(LPG_LOG_INFO, 0, "signal %d received, exiting now", w->signum);
        ev_break(loop, EVBREAK_ALL);
        break;

    case SIGQUIT:
        lpg_worker_quit(lpg_worker.args.conf->shutdown_timeout, false);
        break;

    case SIGWINCH:
        /* replaced by a new generation: parked polls run their course */
        lpg_worker_quit(lpg_worker.args.conf->timeout + 10., true);
        break;

    case SIGUSR1:
        (void) lpg_log_reopen();
        break;

    default:
        /* SIGHUP: the master reloads; workers are replaced, not reloaded */
        break;
    }
}


static void
lpg_worker_quit(double timeout, bool retire)
{
    int64_t deadline;

    deadline = lpg_time_mono_ms() + (int64_t) (timeout * 1000);

    if (lpg_worker.quitting && lpg_worker.retiring && !retire) {
        /* a real stop while retiring: parked polls get [] now */
        lpg_worker.retiring = false;
        lpg_poll_shutdown();
        lpg_socketio_shutdown();
        lpg_websocket_shutdown(false, 0);
        lpg_sse_shutdown(false, 0);
    }

    if (lpg_worker.quitting) {
        /* only ever shorten the deadline */
        if (deadline < lpg_worker.deadline) {
            lpg_worker.deadline = deadline;
        }

        return;
    }

    lpg_worker.quitting = true;
    lpg_worker.retiring = retire;
    lpg_worker.deadline = deadline;

    ev_io_stop(lpg_worker.loop, &lpg_worker.accept);
    ev_io_stop(lpg_worker.loop, &lpg_worker.admin);
    close(lpg_worker.args.lsock);
    lpg_handoff_stop();

    lpg_log(LPG_LOG_INFO, 0, "%s, %zu connection(s) open",
            retire ? "retiring: parked polls are answered as usual"
                   : "stopping gracefully",
            lpg_http_open());

    if (retire) {
        /* the new worker of this slot owns the doorbell now: read the
         * ring on a short timer instead (lpg_worker_drain_cb) */
        lpg_bus_retire();

        /* Socket.IO sessions end now: the new worker of this slot gets
         * the clients' next handshakes; websockets: 4002 as a trickle,
         * well within the deadline */
        lpg_socketio_shutdown();
        lpg_websocket_shutdown(true, (int64_t) (timeout * 1000) - 2000);
        lpg_sse_shutdown(true, (int64_t) (timeout * 1000) - 2000);

    } else {
        /* parked polls get [] now: their clients re-poll another worker;
         * websockets get 1001 */
        lpg_poll_shutdown();
        lpg_socketio_shutdown();
        lpg_websocket_shutdown(false, 0);
        lpg_sse_shutdown(false, 0);
    }

    if (lpg_http_shutdown() == 0) {
        ev_break(lpg_worker.loop, EVBREAK_ALL);
        return;
    }

    ev_timer_set(&lpg_worker.drain, 0.05, 0.05);
    ev_timer_start(lpg_worker.loop, &lpg_worker.drain);
}


static void
lpg_worker_drain_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    if (lpg_worker.retiring) {
        lpg_bus_poll();
    }

    /* again: connections idle since, or accepted just before the stop
     * and still silent, are closed */
    if (lpg_http_shutdown() == 0) {
        ev_break(loop, EVBREAK_ALL);
        return;
    }

    if (lpg_time_mono_ms() >= lpg_worker.deadline) {
        lpg_log(LPG_LOG_WARN, 0,
                "shutdown timeout: closing %zu connection(s) unanswered",
                lpg_http_open());
        ev_break(loop, EVBREAK_ALL);
    }
}


static void
lpg_worker_heartbeat_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    lpg_shm_worker_t *s = lpg_worker.stats;

    /* a successor owns the slot once the master re-assigned it */
    if (atomic_load_explicit(&s->pid, memory_order_acquire)
        != (int32_t) getpid()) {
        return;
    }

    atomic_store_explicit(&s->heartbeat, lpg_time_mono_ms(),
                          memory_order_release);
}
