/*
 * SPDX-License-Identifier: MIT
 *
 * lpg_master_procs.c: the master's process table.
 *
 * A process table holds every live worker (during a reload an old and a new
 * generation overlap); a slot table holds what survives a respawn: the
 * listening socket, the stats slot and the backoff.  A worker that dies is
 * respawned into its slot (at once the first time, then with a doubling
 * delay while it keeps dying within LPG_MASTER_QUICK_DEATH); exit status 2
 * is never respawned.  A retired generation is not respawned either.
 */

#include "lpg_master_int.h"
#include "lpg_fetch.h"
#include "lpg_pglisten.h"
#include "lpg_worker.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>


static void lpg_master_atfork_child(int slot);


void
lpg_master_spawn(int slot)
{
    int               free_proc, i;
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
        args.handoff_rx = lpg_master.handoffs[slot][0];
        for (i = 0; i < LPG_MAX_WORKERS; i++) {
            args.handoff_tx[i] = lpg_master.handoffs[i][1];
        }
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
    ev_timer_stop(lpg_master.loop, &lpg_master.drain);
    ev_timer_stop(lpg_master.loop, &lpg_master.takeover);
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

        /* only this slot's receiving end; every slot's sending end */
        if (i != slot && lpg_master.handoffs[i][0] != -1) {
            close(lpg_master.handoffs[i][0]);
            lpg_master.handoffs[i][0] = -1;
        }
    }

    close(lpg_master.death_pipe[1]);
    lpg_master.death_pipe[1] = -1;

    lpg_pglisten_atfork_child();
    lpg_fetch_atfork_child();
}


void
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


int
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


void
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


void
lpg_master_respawn_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    int slot = (int) (intptr_t) w->data;

    if (lpg_master.state == LPG_MASTER_RUNNING
        && slot < lpg_master.conf.workers) {
        lpg_master_spawn(slot);
    }
}


/* every live worker retires (SIGWINCH) and will not be respawned */
void
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
