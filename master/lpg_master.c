/*
 * SPDX-License-Identifier: MIT
 *
 * lpg_master.c: worker supervision on the master's default libev loop.
 *
 * A process table holds every live worker (during a reload an old and a new
 * generation overlap); a slot table holds what survives a respawn: the
 * listening socket, the stats slot and the backoff.  A worker that dies is
 * respawned into its slot (at once the first time, then with a doubling
 * delay while it keeps dying within LPG_MASTER_QUICK_DEATH); exit status 2
 * is never respawned.  Workers learn of the master's death from EOF on the
 * death pipe, whose write end only the master holds.
 */

#include "lpg_master.h"
#include "lpg_fetch.h"
#include "lpg_pgconn.h"
#include "lpg_pglisten.h"
#include "lpg_ring.h"
#include "lpg_shm.h"
#include "lpg_worker.h"

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


#define LPG_MASTER_MAX_PROCS   (2 * LPG_MAX_WORKERS)
#define LPG_MASTER_QUICK_DEATH 2000 /* ms */
#define LPG_MASTER_BACKOFF_MAX 10.0 /* s */
#define LPG_MASTER_KILL_DELAY  3.0  /* s after SIGTERM before SIGKILL */


typedef enum {
    LPG_MASTER_RUNNING = 0,
    LPG_MASTER_QUITTING,
    LPG_MASTER_TERMINATING
} lpg_master_state_e;


typedef struct {
    pid_t    pid;
    int      slot;
    unsigned generation;
    bool     exiting;
} lpg_master_proc_t;


typedef struct {
    int      fd;
    int      fails;
    int64_t  started;
    bool     fatal;
    ev_timer respawn;
} lpg_master_slot_t;


static int  lpg_master_open_sockets(const lpg_conf_t *conf, int *fds, int n,
                                    const int *reuse) LPG_MUSTCHECK;
static int  lpg_master_open_socket(const struct addrinfo *ai);
static int  lpg_master_probe_port(const struct addrinfo *ai);
static int  lpg_master_open_admin(const lpg_conf_t *conf);
static int  lpg_master_inherit(int *fds, int n) LPG_MUSTCHECK;
static void lpg_master_upgrade(void);
static void lpg_master_retire(void);
static void lpg_master_spawn(int slot);
static void lpg_master_atfork_child(int slot);
static void lpg_master_signal_workers(int signo, bool all);
static void lpg_master_stop(lpg_master_state_e how);
static void lpg_master_reload(void);
static int  lpg_master_live_procs(void);
static void lpg_master_signal_cb(struct ev_loop *loop, ev_signal *w,
                                 int revents);
static void lpg_master_child_cb(struct ev_loop *loop, ev_child *w, int revents);
static void lpg_master_respawn_cb(struct ev_loop *loop, ev_timer *w,
                                  int revents);
static void lpg_master_heartbeat_cb(struct ev_loop *loop, ev_timer *w,
                                    int revents);
static void lpg_master_kill_cb(struct ev_loop *loop, ev_timer *w, int revents);
static void lpg_master_budget_failed(void *data, const char *msg);
static void lpg_master_notify(void *data, const char *payload);
static void lpg_master_connected(void *data);
static void lpg_master_kick_cb(struct ev_loop *loop, ev_io *w, int revents);
static int  lpg_master_doorbells(int n) LPG_MUSTCHECK;


static struct {
    struct ev_loop        *loop;
    lpg_conf_t             conf;
    const lpg_conf_args_t *args;
    lpg_shm_t              shm;
    lpg_ring_t            *ring;
    int                    doorbells[LPG_MAX_WORKERS];
    int                    kick_fd;
    int                    admin_fd;
    pid_t                  upgrade_pid; /* the new master after USR2 */
    ev_io                  kick;
    lpg_master_state_e     state;
    unsigned               generation;
    int                    status;
    int                    death_pipe[2];

    lpg_master_proc_t procs[LPG_MASTER_MAX_PROCS];
    lpg_master_slot_t slots[LPG_MAX_WORKERS];

    ev_signal sigs[7];
    ev_child  child;
    ev_timer  heartbeat;
    ev_timer  kill;
} lpg_master;


static const int lpg_master_signals[] = { SIGTERM, SIGINT,  SIGQUIT, SIGHUP,
                                          SIGUSR1, SIGUSR2, SIGWINCH };


int
lpg_master_run(lpg_conf_t *conf, const lpg_conf_args_t *args, bool check_budget)
{
    int                     i, fds[LPG_MAX_WORKERS];
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
    }

    loop = ev_default_loop(EVFLAG_AUTO);
    if (loop == NULL) {
        lpg_log(LPG_LOG_EMERG, 0, "ev_default_loop() failed");
        goto failed;
    }

    lpg_master.loop = loop;

    if (lpg_master_inherit(fds, conf->workers) != LPG_OK
        || lpg_master_open_sockets(&lpg_master.conf, fds, conf->workers, fds)
            != LPG_OK)
    {
        goto failed;
    }

    for (i = 0; i < conf->workers; i++) {
        lpg_master.slots[i].fd = fds[i];
    }

    if (conf->admin_port != 0 && lpg_master.admin_fd == -1) {
        lpg_master.admin_fd = lpg_master_open_admin(conf);
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
        lpg_master_spawn(i);
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


/*
 * Opens n listening sockets in fds.  reuse, when not NULL, holds sockets
 * already bound to the same address to keep (-1 where none).  On failure
 * nothing stays open that this call opened.
 */
static int
lpg_master_open_sockets(const lpg_conf_t *conf, int *fds, int n,
                        const int *reuse)
{
    int             i, rc;
    char            port[16];
    struct addrinfo hints, *ai;

    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;

    snprintf(port, sizeof(port), "%d", conf->port);

    rc = getaddrinfo(conf->interface, port, &hints, &ai);
    if (rc != 0) {
        lpg_log(LPG_LOG_EMERG, 0, "getaddrinfo(\"%s\") failed: %s",
                conf->interface, gai_strerror(rc));
        return LPG_ERROR;
    }

    if ((reuse == NULL || reuse[0] == -1)
        && lpg_master_probe_port(ai) != LPG_OK) {
        freeaddrinfo(ai);
        return LPG_ERROR;
    }

    for (i = 0; i < n; i++) {
        if (reuse != NULL && reuse[i] != -1) {
            fds[i] = reuse[i];
            continue;
        }

        fds[i] = lpg_master_open_socket(ai);
        if (fds[i] == -1) {
            while (--i >= 0) {
                if (reuse == NULL || reuse[i] == -1) {
                    close(fds[i]);
                }
            }

            freeaddrinfo(ai);
            return LPG_ERROR;
        }
    }

    freeaddrinfo(ai);

    return LPG_OK;
}


/*
 * SO_REUSEPORT lets any process of the same user join the port silently:
 * a bind without it first tells whether somebody already listens there.
 */
static int
lpg_master_probe_port(const struct addrinfo *ai)
{
    int fd, one = 1;

    fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd == -1) {
        lpg_log(LPG_LOG_EMERG, errno, "socket() failed");
        return LPG_ERROR;
    }

    (void) setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));

    if (bind(fd, ai->ai_addr, ai->ai_addrlen) == -1) {
        lpg_log(LPG_LOG_EMERG, errno, "bind() to %s:%d failed",
                lpg_master.conf.interface, lpg_master.conf.port);
        close(fd);
        return LPG_ERROR;
    }

    close(fd);

    return LPG_OK;
}


/* the admin listener: one socket every worker accepts on (low traffic) */
static int
lpg_master_open_admin(const lpg_conf_t *conf)
{
    int             fd, rc, one = 1;
    char            port[16];
    struct addrinfo hints, *ai;

    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    snprintf(port, sizeof(port), "%d", conf->admin_port);

    rc = getaddrinfo(conf->admin_interface, port, &hints, &ai);
    if (rc != 0) {
        lpg_log(LPG_LOG_EMERG, 0, "getaddrinfo(\"%s\") failed: %s",
                conf->admin_interface, gai_strerror(rc));
        return -1;
    }

    fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd == -1) {
        lpg_log(LPG_LOG_EMERG, errno, "socket() failed");
        freeaddrinfo(ai);
        return -1;
    }

    (void) setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));

    if (bind(fd, ai->ai_addr, ai->ai_addrlen) == -1 || listen(fd, 128) == -1) {
        lpg_log(LPG_LOG_EMERG, errno,
                "admin listener on %s:%d failed (admin_port = 0 turns it "
                "off)",
                conf->admin_interface, conf->admin_port);
        close(fd);
        freeaddrinfo(ai);
        return -1;
    }

    freeaddrinfo(ai);

    return fd;
}


static int
lpg_master_open_socket(const struct addrinfo *ai)
{
    int fd, one = 1;

    fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd == -1) {
        lpg_log(LPG_LOG_EMERG, errno, "socket() failed");
        return -1;
    }

    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) == -1
        || setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) == -1)
    {
        lpg_log(LPG_LOG_EMERG, errno, "setsockopt(SO_REUSEPORT) failed");
        close(fd);
        return -1;
    }

    if (bind(fd, ai->ai_addr, ai->ai_addrlen) == -1) {
        lpg_log(LPG_LOG_EMERG, errno, "bind() to %s:%d failed",
                lpg_master.conf.interface, lpg_master.conf.port);
        close(fd);
        return -1;
    }

    if (listen(fd, 4096) == -1) {
        lpg_log(LPG_LOG_EMERG, errno, "listen() failed");
        close(fd);
        return -1;
    }

    return fd;
}


static void
lpg_master_spawn(int slot)
{
    int               free_proc;
    pid_t             pid;
    sigset_t          all, old;
    lpg_worker_args_t args;
    lpg_shm_worker_t *w;

    for (free_proc = 0; free_proc < LPG_MASTER_MAX_PROCS; free_proc++) {
        if (lpg_master.procs[free_proc].pid == 0) {
            break;
        }
    }

    if (free_proc == LPG_MASTER_MAX_PROCS) {
        lpg_log(LPG_LOG_ALERT, 0, "no free process entry for worker#%d", slot);
        return;
    }

    /* the child installs its own handlers before any signal reaches it */
    sigfillset(&all);
    sigprocmask(SIG_BLOCK, &all, &old);

    pid = fork();

    if (pid == -1) {
        lpg_log(LPG_LOG_ALERT, errno, "fork() failed for worker#%d", slot);
        sigprocmask(SIG_SETMASK, &old, NULL);

        /* try again later, as if it had died at once */
        lpg_master.slots[slot].fails++;
        ev_timer_set(&lpg_master.slots[slot].respawn, 1., 0.);
        ev_timer_start(lpg_master.loop, &lpg_master.slots[slot].respawn);
        return;
    }

    if (pid == 0) {
        lpg_log_set_role("worker", slot);
        lpg_master_atfork_child(slot);
        ev_loop_fork(lpg_master.loop);

        args.slot = slot;
        args.generation = lpg_master.generation;
        args.lsock = lpg_master.slots[slot].fd;
        args.death_fd = lpg_master.death_pipe[0];
        args.doorbell = lpg_master.doorbells[slot];
        args.kick_fd = lpg_master.kick_fd;
        args.admin_fd = lpg_master.admin_fd;
        args.ring = lpg_master.ring;
        args.conf = &lpg_master.conf;
        args.shm = &lpg_master.shm;

        /* lpg_worker_main unblocks signals once its watchers are set */
        lpg_worker_main(lpg_master.loop, &args);
    }

    sigprocmask(SIG_SETMASK, &old, NULL);

    lpg_master.procs[free_proc].pid = pid;
    lpg_master.procs[free_proc].slot = slot;
    lpg_master.procs[free_proc].generation = lpg_master.generation;
    lpg_master.procs[free_proc].exiting = false;

    lpg_master.slots[slot].started = lpg_time_mono_ms();

    w = &lpg_master.shm.workers[slot];
    atomic_store(&w->heartbeat, lpg_time_mono_ms());
    atomic_store(&w->started, lpg_time_mono_ms());
    atomic_store(&w->generation, lpg_master.generation);
    atomic_store(&w->pid, (int32_t) pid);

    lpg_log(LPG_LOG_INFO, 0, "worker#%d started, pid %d", slot, (int) pid);
}


/* in the child: drop everything that belongs to the master */
static void
lpg_master_atfork_child(int slot)
{
    int i;

    for (i = 0; i < (int) LPG_NELEMS(lpg_master_signals); i++) {
        ev_signal_stop(lpg_master.loop, &lpg_master.sigs[i]);
    }

    ev_child_stop(lpg_master.loop, &lpg_master.child);
    ev_timer_stop(lpg_master.loop, &lpg_master.heartbeat);
    ev_timer_stop(lpg_master.loop, &lpg_master.kill);
    ev_io_stop(lpg_master.loop, &lpg_master.kick);

    for (i = 0; i < LPG_MAX_WORKERS; i++) {
        ev_timer_stop(lpg_master.loop, &lpg_master.slots[i].respawn);

        if (i != slot && lpg_master.slots[i].fd != -1) {
            close(lpg_master.slots[i].fd);
            lpg_master.slots[i].fd = -1;
        }

        if (i != slot && lpg_master.doorbells[i] != -1) {
            close(lpg_master.doorbells[i]);
            lpg_master.doorbells[i] = -1;
        }
    }

    close(lpg_master.death_pipe[1]);
    lpg_master.death_pipe[1] = -1;

    lpg_pglisten_atfork_child();
    lpg_fetch_atfork_child();
}


static void
lpg_master_signal_workers(int signo, bool all)
{
    int i;

    for (i = 0; i < LPG_MASTER_MAX_PROCS; i++) {
        if (lpg_master.procs[i].pid == 0) {
            continue;
        }

        if (!all && lpg_master.procs[i].exiting) {
            continue;
        }

        if (kill(lpg_master.procs[i].pid, signo) == -1 && errno != ESRCH) {
            lpg_log(LPG_LOG_ALERT, errno, "kill(%d, %d) failed",
                    (int) lpg_master.procs[i].pid, signo);
        }
    }
}


static int
lpg_master_live_procs(void)
{
    int i, n = 0;

    for (i = 0; i < LPG_MASTER_MAX_PROCS; i++) {
        if (lpg_master.procs[i].pid != 0) {
            n++;
        }
    }

    return n;
}


static void
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

    if (lpg_master_open_sockets(&conf, fds, n, reuse) != LPG_OK) {
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
    atomic_store(&lpg_master.shm.header->nworkers, n);

    for (i = 0; i < n; i++) {
        lpg_master_spawn(i);
    }

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
        lpg_log(LPG_LOG_NOTICE, 0, "SIGQUIT received, stopping gracefully");
        lpg_master_stop(LPG_MASTER_QUITTING);
        break;

    case SIGHUP:
        if (lpg_master.state == LPG_MASTER_RUNNING) {
            lpg_master_reload();
        }
        break;

    case SIGUSR1:
        (void) lpg_log_reopen();
        lpg_master_signal_workers(SIGUSR1, false);
        break;

    case SIGUSR2:
        if (lpg_master.state == LPG_MASTER_RUNNING) {
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
lpg_master_child_cb(struct ev_loop *loop, ev_child *w, int revents)
{
    int                i, slot, status;
    bool               exiting;
    double             delay;
    int64_t            lived;
    lpg_shm_worker_t  *sw;
    lpg_master_slot_t *s;

    status = w->rstatus;

    for (i = 0; i < LPG_MASTER_MAX_PROCS; i++) {
        if (lpg_master.procs[i].pid == w->rpid) {
            break;
        }
    }

    if (i == LPG_MASTER_MAX_PROCS) {
        if (w->rpid == lpg_master.upgrade_pid) {
            char old[4096];

            lpg_log(LPG_LOG_ALERT, 0,
                    "the new master (pid %d) exited with status %d; this "
                    "one goes on",
                    (int) w->rpid, WEXITSTATUS(status));
            lpg_master.upgrade_pid = 0;

            if (lpg_master.conf.pidfile[0] != '\0') {
                snprintf(old, sizeof(old), "%s.oldbin",
                         lpg_master.conf.pidfile);
                (void) rename(old, lpg_master.conf.pidfile);
            }
        }

        return;
    }

    slot = lpg_master.procs[i].slot;
    exiting = lpg_master.procs[i].exiting;
    lpg_master.procs[i].pid = 0;

    sw = &lpg_master.shm.workers[slot];
    if (atomic_load(&sw->pid) == w->rpid) {
        atomic_store(&sw->pid, 0);
    }

    /* a presence flush that died with its worker frees its cron slot */
    lpg_shm_cron_reap(&lpg_master.shm, (int32_t) w->rpid);

    if (WIFSIGNALED(status)) {
        lpg_log(exiting ? LPG_LOG_NOTICE : LPG_LOG_ALERT, 0,
                "worker#%d (pid %d) killed by signal %d%s", slot, (int) w->rpid,
                WTERMSIG(status), WCOREDUMP(status) ? " (core dumped)" : "");

    } else {
        lpg_log(exiting || WEXITSTATUS(status) == 0 ? LPG_LOG_NOTICE
                                                    : LPG_LOG_ALERT,
                0, "worker#%d (pid %d) exited with status %d", slot,
                (int) w->rpid, WEXITSTATUS(status));
    }

    if (lpg_master.state != LPG_MASTER_RUNNING) {
        if (lpg_master_live_procs() == 0) {
            ev_break(loop, EVBREAK_ALL);
        }

        return;
    }

    if (exiting) {
        return;
    }

    s = &lpg_master.slots[slot];

    if (WIFEXITED(status) && WEXITSTATUS(status) == LPG_EXIT_FATAL) {
        s->fatal = true;
        lpg_log(LPG_LOG_ALERT, 0,
                "worker#%d failed fatally, it will not be respawned", slot);

        for (i = 0; i < lpg_master.conf.workers; i++) {
            if (!lpg_master.slots[i].fatal) {
                return;
            }
        }

        lpg_log(LPG_LOG_EMERG, 0, "every worker failed fatally, stopping");
        lpg_master.status = LPG_EXIT_FATAL;
        lpg_master_stop(LPG_MASTER_TERMINATING);
        return;
    }

    lived = lpg_time_mono_ms() - s->started;
    s->fails = lived < LPG_MASTER_QUICK_DEATH ? s->fails + 1 : 0;

    delay = 0.;
    if (s->fails > 0) {
        delay = 0.1 * (double) (1 << (s->fails < 8 ? s->fails - 1 : 7));
        if (delay > LPG_MASTER_BACKOFF_MAX) {
            delay = LPG_MASTER_BACKOFF_MAX;
        }
    }

    if (delay > 0.) {
        lpg_log(LPG_LOG_WARN, 0,
                "worker#%d died %d time(s) in a row within %d ms of its "
                "start, respawning in %.1f s",
                slot, s->fails, LPG_MASTER_QUICK_DEATH, delay);
    }

    ev_timer_stop(loop, &s->respawn);
    ev_timer_set(&s->respawn, delay, 0.);
    ev_timer_start(loop, &s->respawn);
}


static void
lpg_master_respawn_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    int slot = (int) (intptr_t) w->data;

    if (lpg_master.state == LPG_MASTER_RUNNING
        && slot < lpg_master.conf.workers) {
        lpg_master_spawn(slot);
    }
}


static void
lpg_master_heartbeat_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    atomic_store_explicit(&lpg_master.shm.header->master_heartbeat,
                          lpg_time_mono_ms(), memory_order_release);
}


/* one eventfd per worker slot, kept across respawns and reloads */
static int
lpg_master_doorbells(int n)
{
    int i;

    for (i = 0; i < n; i++) {
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
    lpg_fetch_all();
}


static void
lpg_master_budget_failed(void *data, const char *msg)
{
    lpg_log(LPG_LOG_EMERG, 0, "%s", msg);

    lpg_master.status = LPG_EXIT_FATAL;
    lpg_master_stop(LPG_MASTER_TERMINATING);
}


/* every live worker retires (SIGWINCH) and will not be respawned */
static void
lpg_master_retire(void)
{
    int i;

    for (i = 0; i < LPG_MASTER_MAX_PROCS; i++) {
        if (lpg_master.procs[i].pid != 0) {
            lpg_master.procs[i].exiting = true;
        }
    }

    for (i = 0; i < LPG_MAX_WORKERS; i++) {
        ev_timer_stop(lpg_master.loop, &lpg_master.slots[i].respawn);
    }

    lpg_master_signal_workers(SIGWINCH, true);
}


/*
 * Sockets handed over by the master we replace (SIGUSR2), in
 * LPGATE_INHERITED="admin;fd,fd,...".  fds[i] gets slot i's socket or -1;
 * the admin socket goes to lpg_master.admin_fd.  Extra sockets are closed.
 */
static int
lpg_master_inherit(int *fds, int n)
{
    int         i, fd;
    char       *end;
    const char *p;

    for (i = 0; i < n; i++) {
        fds[i] = -1;
    }

    p = getenv("LPGATE_INHERITED");
    if (p == NULL || *p == '\0') {
        return LPG_OK;
    }

    fd = (int) strtol(p, &end, 10);
    if (end == p || *end != ';') {
        lpg_log(LPG_LOG_EMERG, 0, "LPGATE_INHERITED=\"%s\" is malformed", p);
        return LPG_ERROR;
    }

    if (fd >= 0) {
        lpg_master.admin_fd = fd;
        (void) fcntl(fd, F_SETFD, FD_CLOEXEC);
    }

    for (i = 0, p = end + 1; *p != '\0'; i++) {
        fd = (int) strtol(p, &end, 10);
        if (end == p) {
            break;
        }

        (void) fcntl(fd, F_SETFD, FD_CLOEXEC);

        if (i < n) {
            fds[i] = fd;

        } else {
            close(fd);
        }

        p = *end == ',' ? end + 1 : end;
    }

    lpg_log(LPG_LOG_NOTICE, 0,
            "took over %d listening socket(s) from the "
            "previous master",
            i);

    unsetenv("LPGATE_INHERITED");

    return LPG_OK;
}


/*
 * SIGUSR2: start the binary now installed at our path, handing it our
 * listening sockets.  Both masters serve until the operator retires the
 * old one's workers (SIGWINCH) and stops it (SIGQUIT).  The pidfile is
 * renamed to .oldbin and the new master writes its own.
 */
static void
lpg_master_upgrade(void)
{
    int   i, len;
    char  env[4096], old[4096];
    pid_t pid;

    if (lpg_master.upgrade_pid != 0) {
        lpg_log(LPG_LOG_WARN, 0,
                "SIGUSR2 ignored: a new master (pid %d) is "
                "already running",
                (int) lpg_master.upgrade_pid);
        return;
    }

    if (lpg_master.args->exe == NULL || lpg_master.args->exe[0] == '\0') {
        lpg_log(LPG_LOG_ERR, 0, "SIGUSR2: the binary's path is unknown");
        return;
    }

    len =
        snprintf(env, sizeof(env), "LPGATE_INHERITED=%d;", lpg_master.admin_fd);
    for (i = 0; i < lpg_master.conf.workers && len < (int) sizeof(env) - 16;
         i++) {
        len += snprintf(env + len, sizeof(env) - len, "%s%d", i ? "," : "",
                        lpg_master.slots[i].fd);
    }

    if (lpg_master.conf.pidfile[0] != '\0') {
        snprintf(old, sizeof(old), "%s.oldbin", lpg_master.conf.pidfile);
        if (rename(lpg_master.conf.pidfile, old) == -1) {
            lpg_log(LPG_LOG_ERR, errno, "rename(\"%s\") failed",
                    lpg_master.conf.pidfile);
        }
    }

    pid = fork();

    if (pid == -1) {
        lpg_log(LPG_LOG_ALERT, errno, "fork() failed for the upgrade");
        return;
    }

    if (pid == 0) {
        sigset_t none;

        /* the sockets survive exec; nothing else of ours does (CLOEXEC) */
        if (lpg_master.admin_fd != -1) {
            (void) fcntl(lpg_master.admin_fd, F_SETFD, 0);
        }

        for (i = 0; i < lpg_master.conf.workers; i++) {
            (void) fcntl(lpg_master.slots[i].fd, F_SETFD, 0);
        }

        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        putenv(env);
        execv(lpg_master.args->exe, lpg_master.args->argv);
        lpg_log(LPG_LOG_EMERG, errno, "execv(\"%s\") failed",
                lpg_master.args->exe);
        _exit(LPG_EXIT_FATAL);
    }

    lpg_master.upgrade_pid = pid;
    lpg_log(LPG_LOG_NOTICE, 0,
            "binary upgrade: new master %s started, pid %d; send SIGWINCH "
            "then SIGQUIT to this one (pid %d) when it serves",
            lpg_master.args->exe, (int) pid, (int) getpid());
}
