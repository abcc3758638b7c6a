/*
 * SPDX-License-Identifier: MIT
 *
 * lpg_sockets.c: the master's listening sockets.
 *
 * One SO_REUSEPORT socket per worker slot on interface:port (the kernel
 * spreads the connections), after a plain bind has checked that nobody
 * else listens there; and the admin listener that every worker accepts on.
 * The master owns the descriptors; workers inherit them across fork.
 */

#include "lpg_sockets.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>


static int lpg_sockets_probe(const lpg_conf_t *conf, const struct addrinfo *ai);
static int lpg_sockets_open_one(const lpg_conf_t      *conf,
                                const struct addrinfo *ai);


/*
 * Opens n listening sockets in fds.  reuse, when not NULL, holds sockets
 * already bound to the same address to keep (-1 where none).  On failure
 * nothing stays open that this call opened.
 */
int
lpg_sockets_open(const lpg_conf_t *conf, int *fds, int n, const int *reuse)
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
        && lpg_sockets_probe(conf, ai) != LPG_OK) {
        freeaddrinfo(ai);
        return LPG_ERROR;
    }

    for (i = 0; i < n; i++) {
        if (reuse != NULL && reuse[i] != -1) {
            fds[i] = reuse[i];
            continue;
        }

        fds[i] = lpg_sockets_open_one(conf, ai);
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
lpg_sockets_probe(const lpg_conf_t *conf, const struct addrinfo *ai)
{
    int fd, one = 1;

    fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd == -1) {
        lpg_log(LPG_LOG_EMERG, errno, "socket() failed");
        return LPG_ERROR;
    }

    (void) setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));

    if (bind(fd, ai->ai_addr, ai->ai_addrlen) == -1) {
        lpg_log(LPG_LOG_EMERG, errno, "bind() to %s:%d failed", conf->interface,
                conf->port);
        close(fd);
        return LPG_ERROR;
    }

    close(fd);

    return LPG_OK;
}
/* the admin listener: one socket every worker accepts on (low traffic) */
int
lpg_sockets_open_admin(const lpg_conf_t *conf)
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
lpg_sockets_open_one(const lpg_conf_t *conf, const struct addrinfo *ai)
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
        lpg_log(LPG_LOG_EMERG, errno, "bind() to %s:%d failed", conf->interface,
                conf->port);
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
