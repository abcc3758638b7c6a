/*
 * SPDX-License-Identifier: MIT
 *
 * lpg_log.c: the log sink shared by the master and the workers.
 *
 * The sink is stderr or a file opened with O_APPEND; lpg_log_reopen()
 * reopens the file after logrotate moved it (SIGUSR1).  The role and pid are
 * captured when a process takes its role, so forked workers log as
 * themselves.  A failed write is dropped: logging never stops the gateway.
 */

#include "lpg_core.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>
#include <unistd.h>


#define LPG_LOG_LINE_MAX 2048


int lpg_log_level = LPG_LOG_NOTICE;

static int   lpg_log_fd = STDERR_FILENO;
static char *lpg_log_path;
static char  lpg_log_role[32] = "master";
static pid_t lpg_log_pid;

static const char *lpg_log_names[] = { "emerg",  "alert", "error", "warn",
                                       "notice", "info",  "debug" };


void
lpg_log_set_role(const char *role, int index)
{
    if (index >= 0) {
        snprintf(lpg_log_role, sizeof(lpg_log_role), "%s#%d", role, index);

    } else {
        snprintf(lpg_log_role, sizeof(lpg_log_role), "%s", role);
    }

    lpg_log_pid = getpid();
}


int
lpg_log_open(const char *path)
{
    int   fd;
    char *copy;

    if (path == NULL || path[0] == '\0') {
        if (lpg_log_fd != STDERR_FILENO) {
            close(lpg_log_fd);
        }

        lpg_log_fd = STDERR_FILENO;
        free(lpg_log_path);
        lpg_log_path = NULL;
        return LPG_OK;
    }

    fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd == -1) {
        lpg_log(LPG_LOG_EMERG, errno, "open(\"%s\") failed", path);
        return LPG_ERROR;
    }

    copy = strdup(path);
    if (copy == NULL) {
        close(fd);
        return LPG_ERROR;
    }

    if (lpg_log_fd != STDERR_FILENO) {
        close(lpg_log_fd);
    }

    free(lpg_log_path);
    lpg_log_path = copy;
    lpg_log_fd = fd;

    return LPG_OK;
}


int
lpg_log_reopen(void)
{
    int fd;

    if (lpg_log_path == NULL) {
        return LPG_OK;
    }

    fd = open(lpg_log_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd == -1) {
        lpg_log(LPG_LOG_ERR, errno, "open(\"%s\") failed, keeping the old log",
                lpg_log_path);
        return LPG_ERROR;
    }

    dup2(fd, lpg_log_fd);
    close(fd);

    lpg_log(LPG_LOG_NOTICE, 0, "log file \"%s\" reopened", lpg_log_path);

    return LPG_OK;
}


void
lpg_log_write(int level, int err, const char *fmt, ...)
{
    int            n, m;
    char           line[LPG_LOG_LINE_MAX];
    va_list        args;
    struct tm      tm;
    struct timeval tv;

    if (lpg_log_pid == 0) {
        lpg_log_pid = getpid();
    }

    gettimeofday(&tv, NULL);
    localtime_r(&tv.tv_sec, &tm);

    n = snprintf(line, sizeof(line),
                 "%04d-%02d-%02d %02d:%02d:%02d.%03d %s %d %s: ",
                 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
                 tm.tm_min, tm.tm_sec, (int) (tv.tv_usec / 1000), lpg_log_role,
                 (int) lpg_log_pid, lpg_log_level_name(level));

    va_start(args, fmt);
    m = vsnprintf(line + n, sizeof(line) - n, fmt, args);
    va_end(args);

    n = (m < 0 || (size_t) (n + m) >= sizeof(line)) ? (int) sizeof(line) - 1
                                                    : n + m;

    if (err != 0 && (size_t) n < sizeof(line) - 1) {
        m = snprintf(line + n, sizeof(line) - n, " (%d: %s)", err,
                     strerror(err));
        n = (m < 0 || (size_t) (n + m) >= sizeof(line)) ? (int) sizeof(line) - 1
                                                        : n + m;
    }

    if ((size_t) n >= sizeof(line) - 1) {
        n = sizeof(line) - 2;
    }

    line[n++] = '\n';

    /* one write per line; a short or failed write is dropped */
    if (write(lpg_log_fd, line, n) == -1) {
        return;
    }
}


int
lpg_log_level_parse(const char *name)
{
    size_t i;

    for (i = 0; i < LPG_NELEMS(lpg_log_names); i++) {
        if (strcasecmp(name, lpg_log_names[i]) == 0) {
            return (int) i;
        }
    }

    if (strcasecmp(name, "warning") == 0) {
        return LPG_LOG_WARN;
    }

    if (strcasecmp(name, "err") == 0) {
        return LPG_LOG_ERR;
    }

    return -1;
}


const char *
lpg_log_level_name(int level)
{
    if (level < 0 || (size_t) level >= LPG_NELEMS(lpg_log_names)) {
        return "?";
    }

    return lpg_log_names[level];
}
