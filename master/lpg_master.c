/*
 * SPDX-License-Identifier: MIT
 *
 * lpg_master.c: the master's life on its default libev loop.
 *
 * Start (sockets, shared memory, doorbells, LISTEN and fetch, the first
 * workers; after a binary upgrade, once LISTEN is up), signals, the drain
 * (SIGQUIT: /health says "draining" for drain_delay), graceful and
 * immediate stop, configuration reload
 * (a new generation of workers; the old one retires), the heartbeat.  The
 * process table is lpg_master_procs.c's, binary upgrade lpg_upgrade.c's.
 * Workers learn of the master's death from EOF on the death pipe, whose
 * write end only the master holds.
 */

#include "lpg_master_int.h"
#include "lpg_fetch.h"
#include "lpg_pgconn.h"
#include "lpg_pglisten.h"
#include "lpg_sockets.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pwd.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>


static void lpg_master_reload(void);
static void lpg_master_signal_cb(struct ev_loop *loop, ev_signal *w,
                                 int revents);
static void lpg_master_heartbeat_cb(struct ev_loop *loop, ev_timer *w,
                                    int revents);
static void lpg_master_kill_cb(struct ev_loop *loop, ev_timer *w, int revents);
static void lpg_master_drain(void);
static void lpg_master_spawn_all(void);
static void lpg_master_takeover_cb(struct ev_loop *loop, ev_timer *w,
                                   int revents);
static void lpg_master_drain_cb(struct ev_loop *loop, ev_timer *w, int revents);
static void lpg_master_budget_failed(void *data, const char *msg);
static void lpg_master_notify(void *data, const char *payload);
static void lpg_master_connected(void *data);
static void lpg_master_kick_cb(struct ev_loop *loop, ev_io *w, int revents);
static int  lpg_master_doorbells(int n) LPG_MUSTCHECK;


lpg_master_state_t lpg_master;


const int lpg_master_signals[LPG_MASTER_NSIGNALS] = { SIGTERM, SIGINT,  SIGQUIT,
                                                      SIGHUP,  SIGUSR1, SIGUSR2,
                                                      SIGWINCH };


int
lpg_master_run(lpg_conf_t *conf, const lpg_conf_args_t *args, bool check_budget)
{
    int                     i, fds[LPG_MAX_WORKERS];
    bool                    inherited;
    struct ev_loop         *loop;
    lpg_pglisten_handlers_t h;

    memset(&lpg_master, 0, sizeof(lpg_master));
    lpg_master.conf = *conf;
    lpg_master.args = args;
    lpg_master.generation = 1;
    lpg_master.death_pipe[0] = -1;
    lpg_master.admin_fd = -1;
    lpg_master.upgrade_pid = 0;
    lpg_master.death_pipe[1] = -1;

    for (i = 0; i < LPG_MAX_WORKERS; i++) {
        lpg_master.slots[i].fd = -1;
        lpg_master.doorbells[i] = -1;
        lpg_master.handoffs[i][0] = -1;
        lpg_master.handoffs[i][1] = -1;
    }

    loop = ev_default_loop(EVFLAG_AUTO);
    if (loop == NULL) {
        lpg_log(LPG_LOG_EMERG, 0, "ev_default_loop() failed");
        goto failed;
    }

    lpg_master.loop = loop;

    if (lpg_master_inherit(fds, conf->workers) != LPG_OK) {
        goto failed;
    }

    inherited = fds[0] != -1;

    if (lpg_sockets_open(&lpg_master.conf, fds, conf->workers, fds) != LPG_OK) {
        goto failed;
    }

    for (i = 0; i < conf->workers; i++) {
        lpg_master.slots[i].fd = fds[i];
    }

    if (conf->admin_port != 0 && lpg_master.admin_fd == -1) {
        lpg_master.admin_fd = lpg_sockets_open_admin(conf);
        if (lpg_master.admin_fd == -1) {
            goto failed;
        }
    }

    /* where Prometheus scrapes: the operator looks for this line */
    if (conf->admin_port != 0) {
        bool v6 = strchr(conf->admin_interface, ':') != NULL;

        lpg_log(LPG_LOG_NOTICE, 0, "metrics on http://%s%s%s:%d/metrics",
                v6 ? "[" : "", conf->admin_interface, v6 ? "]" : "",
                conf->admin_port);

    } else {
        lpg_log(LPG_LOG_NOTICE, 0,
                "admin listener off (admin_port = 0): no /metrics");
    }

    if (lpg_shm_create(&lpg_master.shm, LPG_MAX_WORKERS,
                       (size_t) conf->ring_size)
        != LPG_OK)
    {
        goto failed;
    }

    /* the ring's pages count in RSS from the start, not as it fills */
    lpg_shm_prefault(&lpg_master.shm, true);

    lpg_master.ring =
        lpg_ring_init(lpg_master.shm.ring, lpg_master.shm.ring_size);
    if (lpg_master.ring == NULL) {
        lpg_log(LPG_LOG_EMERG, 0, "ring_size %zu is too small",
                lpg_master.shm.ring_size);
        goto failed;
    }

    {
        char err[LPG_CONF_ERRLEN];

        if (lpg_shm_set_dbs(&lpg_master.shm,
                            conf->database[0] != '\0'
                                ? conf->database
                                : lpg_pgconn_default_db(conf),
                            err, sizeof(err))
            != LPG_OK)
        {
            lpg_log(LPG_LOG_EMERG, 0, "%s", err);
            goto failed;
        }
    }

    if (lpg_master.shm.header->ndbs > conf->db_maxconn - 1) {
        /* the master's share of the budget: LISTEN + one per database */
        lpg_log(LPG_LOG_EMERG, 0,
                "%d databases need %d master connections (LISTEN + one per "
                "database) but db_maxconn is %d: raise db_maxconn or serve "
                "fewer databases",
                lpg_master.shm.header->ndbs, lpg_master.shm.header->ndbs + 1,
                conf->db_maxconn);
        goto failed;
    }

    if (lpg_master_doorbells(conf->workers) != LPG_OK) {
        goto failed;
    }

    /* workers ring it after a send: fetch now */
    lpg_master.kick_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (lpg_master.kick_fd == -1) {
        lpg_log(LPG_LOG_EMERG, errno, "eventfd() failed");
        goto failed;
    }

    atomic_store(&lpg_master.shm.header->master_pid, (int32_t) getpid());
    atomic_store(&lpg_master.shm.header->master_heartbeat, lpg_time_mono_ms());
    atomic_store(&lpg_master.shm.header->nworkers, conf->workers);

    if (pipe2(lpg_master.death_pipe, O_CLOEXEC) == -1) {
        lpg_log(LPG_LOG_EMERG, errno, "pipe2() failed");
        goto failed;
    }

    for (i = 0; i < (int) LPG_NELEMS(lpg_master_signals); i++) {
        ev_signal_init(&lpg_master.sigs[i], lpg_master_signal_cb,
                       lpg_master_signals[i]);
        ev_signal_start(loop, &lpg_master.sigs[i]);
    }

    ev_child_init(&lpg_master.child, lpg_master_child_cb, 0, 0);
    ev_child_start(loop, &lpg_master.child);

    ev_timer_init(&lpg_master.heartbeat, lpg_master_heartbeat_cb, 1., 1.);
    ev_timer_start(loop, &lpg_master.heartbeat);

    ev_init(&lpg_master.kill, lpg_master_kill_cb);
    ev_init(&lpg_master.drain, lpg_master_drain_cb);
    ev_init(&lpg_master.takeover, lpg_master_takeover_cb);

    ev_io_init(&lpg_master.kick, lpg_master_kick_cb, lpg_master.kick_fd,
               EV_READ);
    ev_io_start(loop, &lpg_master.kick);

    memset(&h, 0, sizeof(h));
    h.loop = loop;
    h.shm = &lpg_master.shm;
    h.budget_failed = lpg_master_budget_failed;
    h.notify = lpg_master_notify;
    h.connected = lpg_master_connected;
    lpg_pglisten_start(&lpg_master.conf, &h, check_budget);

    if (lpg_fetch_init(loop, &lpg_master.conf, &lpg_master.shm, lpg_master.ring,
                       lpg_master.doorbells, LPG_MAX_WORKERS)
        != LPG_OK)
    {
        goto failed;
    }

    for (i = 0; i < conf->workers; i++) {
        ev_init(&lpg_master.slots[i].respawn, lpg_master_respawn_cb);
        lpg_master.slots[i].respawn.data = (void *) (intptr_t) i;
    }

    if (inherited) {
        /* a binary upgrade: the old master's workers serve until ours
         * can say healthy, else /health would answer 503 "connecting"
         * through the shared sockets while our LISTEN comes up */
        lpg_master.takeover_wait = true;
        ev_timer_set(&lpg_master.takeover, LPG_MASTER_TAKEOVER, 0.);
        ev_timer_start(loop, &lpg_master.takeover);

    } else {
        lpg_master_spawn_all();
    }

    lpg_log(LPG_LOG_NOTICE, 0,
            "lpgate " PACKAGE_VERSION " started: %d workers on http://%s:%d%s/",
            conf->workers, conf->interface, conf->port, conf->longpolling_path);

    ev_run(loop, 0);

    lpg_pglisten_stop();
    lpg_fetch_stop();

    lpg_log(LPG_LOG_NOTICE, 0, "exiting with status %d", lpg_master.status);

    lpg_shm_destroy(&lpg_master.shm);
    lpg_conf_free(&lpg_master.conf);

    return lpg_master.status;

failed:

    lpg_conf_free(&lpg_master.conf);

    return LPG_EXIT_FATAL;
}


void
lpg_master_stop(lpg_master_state_e how)
{
    int    i;
    double delay;

    if (how == LPG_MASTER_QUITTING && lpg_master.state != LPG_MASTER_RUNNING) {
        /* a second request to stop means now */
        how = LPG_MASTER_TERMINATING;
    }

    if (lpg_master.state == LPG_MASTER_TERMINATING) {
        return;
    }

    lpg_master.state = how;
    lpg_master.takeover_wait = false;
    ev_timer_stop(lpg_master.loop, &lpg_master.drain);
    ev_timer_stop(lpg_master.loop, &lpg_master.takeover);

    for (i = 0; i < LPG_MAX_WORKERS; i++) {
        ev_timer_stop(lpg_master.loop, &lpg_master.slots[i].respawn);

        if (lpg_master.slots[i].fd != -1) {
            close(lpg_master.slots[i].fd);
            lpg_master.slots[i].fd = -1;
        }
    }

    if (how == LPG_MASTER_QUITTING) {
        lpg_log(LPG_LOG_NOTICE, 0,
                "graceful stop: workers answer what is in flight, at most "
                "%d s",
                lpg_master.conf.shutdown_timeout);
        lpg_master_signal_workers(SIGQUIT, true);
        delay = lpg_master.conf.shutdown_timeout + 1.;

    } else {
        lpg_log(LPG_LOG_NOTICE, 0, "fast stop");
        lpg_master_signal_workers(SIGTERM, true);
        delay = LPG_MASTER_KILL_DELAY;
    }

    ev_timer_stop(lpg_master.loop, &lpg_master.kill);
    ev_timer_set(&lpg_master.kill, delay, 0.);
    ev_timer_start(lpg_master.loop, &lpg_master.kill);

    if (lpg_master_live_procs() == 0) {
        ev_break(lpg_master.loop, EVBREAK_ALL);
    }
}


static void
lpg_master_kill_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    lpg_log(LPG_LOG_WARN, 0, "%d worker(s) still running, sending SIGKILL",
            lpg_master_live_procs());

    lpg_master_signal_workers(SIGKILL, true);
}


/*
 * SIGQUIT: the node is going away.  /health says "draining" at once
 * (shm header), the workers go on accepting and serving for drain_delay
 * so that a checking balancer takes the node out, then the graceful stop
 * as before.  A second SIGQUIT ends the delay.  The old master of a
 * binary upgrade does not drain: the new one serves on the same sockets.
 */
static void
lpg_master_drain(void)
{
    if (lpg_master.state != LPG_MASTER_RUNNING || lpg_master.draining
        || lpg_master.conf.drain_delay == 0 || lpg_master.upgrade_pid != 0)
    {
        lpg_log(LPG_LOG_NOTICE, 0, "SIGQUIT received, stopping gracefully");
        lpg_master_stop(LPG_MASTER_QUITTING);
        return;
    }

    lpg_master.draining = true;
    atomic_store_explicit(&lpg_master.shm.header->draining, 1,
                          memory_order_release);

    lpg_log(LPG_LOG_NOTICE, 0,
            "SIGQUIT received, draining: /health answers 503 \"draining\" "
            "while this node serves on for %d s (drain_delay), then it "
            "stops gracefully",
            lpg_master.conf.drain_delay);

    ev_timer_set(&lpg_master.drain, (double) lpg_master.conf.drain_delay, 0.);
    ev_timer_start(lpg_master.loop, &lpg_master.drain);
}


static void
lpg_master_drain_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    lpg_log(LPG_LOG_NOTICE, 0, "drain_delay over, stopping gracefully");
    lpg_master_stop(LPG_MASTER_QUITTING);
}


static void
lpg_master_reload(void)
{
    int                   i, n, fds[LPG_MAX_WORKERS], reuse[LPG_MAX_WORKERS];
    bool                  same_addr;
    size_t                nkeys;
    char                  err[LPG_CONF_ERRLEN];
    lpg_conf_t            conf, old;
    const lpg_conf_key_t *keys;

    lpg_log(LPG_LOG_NOTICE, 0, "reloading the configuration");

    if (lpg_conf_build(&conf, lpg_master.args, err, sizeof(err)) != LPG_OK) {
        lpg_log(LPG_LOG_ERR, 0,
                "reload failed: %s; keeping the old configuration", err);
        return;
    }

    keys = lpg_conf_keys(&nkeys);

    for (i = 0; i < (int) nkeys; i++) {
        if (keys[i].reloadable
            || lpg_conf_equal(&conf, &lpg_master.conf, &keys[i])) {
            continue;
        }

        lpg_log(LPG_LOG_WARN, 0,
                "%s cannot change on reload, restart lpgate to apply it; "
                "keeping the old value",
                keys[i].name);

        /* swap the raw bytes: strings move with their ownership */
        {
            char   tmp[sizeof(char *) > sizeof(int64_t) ? sizeof(char *)
                                                        : sizeof(int64_t)];
            char  *a = (char *) &conf + keys[i].offset;
            char  *b = (char *) &lpg_master.conf + keys[i].offset;
            size_t sz = keys[i].type == LPG_CONF_STR ? sizeof(char *)
                : keys[i].type == LPG_CONF_SIZE      ? sizeof(int64_t)
                                                     : sizeof(int);

            memcpy(tmp, a, sz);
            memcpy(a, b, sz);
            memcpy(b, tmp, sz);
        }
    }

    same_addr = strcmp(conf.interface, lpg_master.conf.interface) == 0
        && conf.port == lpg_master.conf.port;

    n = conf.workers;
    for (i = 0; i < n; i++) {
        reuse[i] = same_addr && i < lpg_master.conf.workers
            ? lpg_master.slots[i].fd
            : -1;
    }

    if (lpg_sockets_open(&conf, fds, n, reuse) != LPG_OK) {
        lpg_log(LPG_LOG_ERR, 0,
                "reload failed: cannot listen on %s:%d; keeping the old "
                "configuration",
                conf.interface, conf.port);
        lpg_conf_free(&conf);
        return;
    }

    if (strcmp(conf.logfile, lpg_master.conf.logfile) != 0
        && lpg_log_open(conf.logfile) != LPG_OK)
    {
        lpg_log(LPG_LOG_ERR, 0, "keeping the old log file");
    }

    lpg_log_level = conf.log_level;

    /* the old workers keep their own copies of the old sockets */
    for (i = 0; i < LPG_MAX_WORKERS; i++) {
        int  fd = lpg_master.slots[i].fd;
        int  j;
        bool kept = false;

        for (j = 0; j < n; j++) {
            if (fds[j] == fd) {
                kept = true;
            }
        }

        if (fd != -1 && !kept) {
            close(fd);
        }

        ev_timer_stop(lpg_master.loop, &lpg_master.slots[i].respawn);
        lpg_master.slots[i].fd = i < n ? fds[i] : -1;
        lpg_master.slots[i].fails = 0;
        lpg_master.slots[i].fatal = false;
        ev_init(&lpg_master.slots[i].respawn, lpg_master_respawn_cb);
        lpg_master.slots[i].respawn.data = (void *) (intptr_t) i;
    }

    if (lpg_master_doorbells(n) != LPG_OK) {
        lpg_log(LPG_LOG_ERR, 0, "reload: keeping the old workers");
    }

    old = lpg_master.conf;
    lpg_master.conf = conf;
    lpg_pglisten_reconfigure(&lpg_master.conf);
    lpg_fetch_reconfigure(&lpg_master.conf);
    lpg_conf_free(&old);

    /* the old generation retires: it stops accepting but answers every
     * parked poll as usual (message or timeout) before exiting */
    lpg_master_retire();

    lpg_master.generation++;

    for (i = 0; i < n; i++) {
        lpg_master_spawn(i);
    }

    /* only now that every slot up to n holds a live worker: a /health
     * read between the forks would see the new slots empty ("1 of 2
     * workers down") while the node serves throughout */
    atomic_store(&lpg_master.shm.header->nworkers, n);

    lpg_log(LPG_LOG_NOTICE, 0,
            "configuration reloaded: generation %u, %d workers on "
            "http://%s:%d%s/",
            lpg_master.generation, n, lpg_master.conf.interface,
            lpg_master.conf.port, lpg_master.conf.longpolling_path);
}


static void
lpg_master_signal_cb(struct ev_loop *loop, ev_signal *w, int revents)
{
    switch (w->signum) {

    case SIGTERM:
    case SIGINT:
        lpg_log(LPG_LOG_NOTICE, 0, "signal %d received, stopping now",
                w->signum);
        lpg_master_stop(LPG_MASTER_TERMINATING);
        break;

    case SIGQUIT:
        lpg_master_drain();
        break;

    case SIGHUP:
        if (lpg_master.state == LPG_MASTER_RUNNING && !lpg_master.draining
            && !lpg_master.takeover_wait)
        {
            lpg_master_reload();
        }
        break;

    case SIGUSR1:
        (void) lpg_log_reopen();
        lpg_master_signal_workers(SIGUSR1, false);
        break;

    case SIGUSR2:
        if (lpg_master.state == LPG_MASTER_RUNNING && !lpg_master.draining) {
            lpg_master_upgrade();
        }
        break;

    case SIGWINCH:
        /* after a binary upgrade: our workers retire, the master stays
         * (SIGQUIT ends it) */
        lpg_log(LPG_LOG_NOTICE, 0, "SIGWINCH: retiring the workers");
        lpg_master_retire();
        break;

    default:
        lpg_log(LPG_LOG_NOTICE, 0, "signal %d ignored", w->signum);
        break;
    }
}


static void
lpg_master_heartbeat_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    atomic_store_explicit(&lpg_master.shm.header->master_heartbeat,
                          lpg_time_mono_ms(), memory_order_release);
}


/* one eventfd per worker slot, and one socketpair through which the other
 * workers hand it connections (worker/lpg_handoff.h), kept across
 * respawns and reloads */
static int
lpg_master_doorbells(int n)
{
    int i, size = 1024 * 1024;

    for (i = 0; i < n; i++) {
        if (lpg_master.handoffs[i][0] == -1) {
            if (socketpair(AF_UNIX,
                           SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0,
                           lpg_master.handoffs[i])
                == -1)
            {
                lpg_log(LPG_LOG_EMERG, errno, "socketpair() failed");
                return LPG_ERROR;
            }

            /* room for a few requests of LPG_HANDOFF_MAX bytes */
            (void) setsockopt(lpg_master.handoffs[i][1], SOL_SOCKET, SO_SNDBUF,
                              &size, sizeof(size));
            (void) setsockopt(lpg_master.handoffs[i][0], SOL_SOCKET, SO_RCVBUF,
                              &size, sizeof(size));
        }

        if (lpg_master.doorbells[i] != -1) {
            continue;
        }

        lpg_master.doorbells[i] = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        if (lpg_master.doorbells[i] == -1) {
            lpg_log(LPG_LOG_EMERG, errno, "eventfd() failed");
            return LPG_ERROR;
        }
    }

    return LPG_OK;
}


static void
lpg_master_notify(void *data, const char *payload)
{
    lpg_fetch_notify(payload);
}


static void
lpg_master_kick_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    uint64_t n;

    if (read(w->fd, &n, sizeof(n)) == -1 && errno != EAGAIN) {
        lpg_log(LPG_LOG_ERR, errno, "read(kick eventfd) failed");
    }

    lpg_fetch_all();
}


static void
lpg_master_connected(void *data)
{
    if (lpg_master.takeover_wait && lpg_master.state == LPG_MASTER_RUNNING) {
        lpg_master_spawn_all();
    }

    lpg_fetch_all();
}


static void
lpg_master_spawn_all(void)
{
    int i;

    lpg_master.takeover_wait = false;
    ev_timer_stop(lpg_master.loop, &lpg_master.takeover);

    for (i = 0; i < lpg_master.conf.workers; i++) {
        lpg_master_spawn(i);
    }
}


static void
lpg_master_takeover_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    lpg_log(LPG_LOG_WARN, 0,
            "the LISTEN connection is not up after %.0f s: starting the "
            "workers all the same",
            LPG_MASTER_TAKEOVER);

    if (lpg_master.state == LPG_MASTER_RUNNING) {
        lpg_master_spawn_all();
    }
}


static void
lpg_master_budget_failed(void *data, const char *msg)
{
    lpg_log(LPG_LOG_EMERG, 0, "%s", msg);

    lpg_master.status = LPG_EXIT_FATAL;
    lpg_master_stop(LPG_MASTER_TERMINATING);
}
