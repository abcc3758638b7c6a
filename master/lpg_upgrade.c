/*
 * SPDX-License-Identifier: MIT
 *
 * lpg_upgrade.c: binary upgrade, nginx's way.
 *
 * SIGUSR2 starts the binary now installed at our path with our listening
 * sockets (LPGATE_INHERITED="admin;fd,fd,..." in its environment); the new
 * master takes them over instead of binding.  Both serve until the
 * operator retires the old one's workers (SIGWINCH) and stops it
 * (SIGQUIT).
 */

#include "lpg_master_int.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>


/*
 * Sockets handed over by the master we replace (SIGUSR2), in
 * LPGATE_INHERITED="admin;fd,fd,...".  fds[i] gets slot i's socket or -1;
 * the admin socket goes to lpg_master.admin_fd.  Extra sockets are closed.
 */
int
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
void
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
