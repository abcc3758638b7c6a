/*
 * SPDX-License-Identifier: MIT
 *
 * lpg_master_int.h: the master's state, private to its three files:
 *
 *   lpg_master.c        start, signals, stop, reload, the LISTEN wiring
 *   lpg_master_procs.c  the process table: spawn, reap, respawn, retire
 *   lpg_upgrade.c       binary upgrade: sockets handed to a new master
 *
 * Everything here lives on the master's default loop; workers get a copy
 * at fork and never touch it.
 */

#ifndef LPG_MASTER_INT_H
#define LPG_MASTER_INT_H


#include "lpg_master.h"
#include "lpg_ring.h"
#include "lpg_shm.h"

#include <ev.h>
#include <sys/types.h>


#define LPG_MASTER_NSIGNALS    7
#define LPG_MASTER_MAX_PROCS   (2 * LPG_MAX_WORKERS)
#define LPG_MASTER_QUICK_DEATH 2000 /* ms */
#define LPG_MASTER_BACKOFF_MAX 10.0 /* s */
#define LPG_MASTER_KILL_DELAY  3.0  /* s after SIGTERM before SIGKILL */
#define LPG_MASTER_TAKEOVER                                                    \
    10.0 /* s a new master's workers wait for
                                     * its LISTEN after a binary upgrade */


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


typedef struct {
    struct ev_loop        *loop;
    lpg_conf_t             conf;
    const lpg_conf_args_t *args;
    lpg_shm_t              shm;
    lpg_ring_t            *ring;
    int                    doorbells[LPG_MAX_WORKERS];
    int                    handoffs[LPG_MAX_WORKERS][2]; /* rx, tx */
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

    ev_signal sigs[LPG_MASTER_NSIGNALS];
    ev_child  child;
    ev_timer  heartbeat;
    ev_timer  kill;
    ev_timer  drain; /* SIGQUIT: drain_delay, then the graceful stop */
    bool      draining;
    ev_timer  takeover; /* binary upgrade: the workers wait for LISTEN */
    bool      takeover_wait;
} lpg_master_state_t;


extern lpg_master_state_t lpg_master;

/* the signals the master handles (and a new worker resets) */
extern const int lpg_master_signals[LPG_MASTER_NSIGNALS];


/* lpg_master.c */
void lpg_master_stop(lpg_master_state_e how);

/* lpg_master_procs.c */
void lpg_master_spawn(int slot);
void lpg_master_signal_workers(int signo, bool all);
int  lpg_master_live_procs(void);
void lpg_master_retire(void);
void lpg_master_child_cb(struct ev_loop *loop, ev_child *w, int revents);
void lpg_master_respawn_cb(struct ev_loop *loop, ev_timer *w, int revents);

/* lpg_upgrade.c */
int  lpg_master_inherit(int *fds, int n) LPG_MUSTCHECK;
void lpg_master_upgrade(void);


#endif /* LPG_MASTER_INT_H */
