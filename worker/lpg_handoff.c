/*
 * SPDX-License-Identifier: MIT
 *
 * lpg_handoff.c: connections passed between workers (lpg_handoff.h).
 *
 * One message per connection on the receiving slot's SOCK_SEQPACKET
 * socket: the bytes read so far as the data, the socket as SCM_RIGHTS.
 * Sends never block: a full socket (a worker that does not read) is a
 * 503 for that request.  The receiver adopts the socket into its HTTP
 * layer, which parses the bytes as if it had read them.
 */

#include "lpg_handoff.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>


static void lpg_handoff_read_cb(struct ev_loop *loop, ev_io *w, int revents);


static const char lpg_handoff_503[] = "HTTP/1.1 503 Service Unavailable\r\n"
                                      "Retry-After: 1\r\n"
                                      "Content-Length: 0\r\n"
                                      "Connection: close\r\n\r\n";

static struct {
    struct ev_loop *loop;
    ev_io           io;
    int             slot;
    int             rx;
    const int      *tx;
    int             n;
    char           *buf; /* LPG_HANDOFF_MAX bytes, while receiving */
} lpg_handoff;


void
lpg_handoff_init(struct ev_loop *loop, int slot, int rx, const int *tx, int n)
{
    lpg_handoff.loop = loop;
    lpg_handoff.slot = slot;
    lpg_handoff.rx = rx;
    lpg_handoff.tx = tx;
    lpg_handoff.n = n;

    if (rx == -1) {
        return;
    }

    lpg_handoff.buf = malloc(LPG_HANDOFF_MAX);
    if (lpg_handoff.buf == NULL) {
        lpg_log(LPG_LOG_ERR, ENOMEM,
                "no buffer for connections of other workers");
        return;
    }

    ev_io_init(&lpg_handoff.io, lpg_handoff_read_cb, rx, EV_READ);
    ev_io_start(loop, &lpg_handoff.io);
}


void
lpg_handoff_stop(void)
{
    if (lpg_handoff.buf != NULL) {
        ev_io_stop(lpg_handoff.loop, &lpg_handoff.io);
    }
}


int
lpg_handoff_pass(lpg_http_conn_t *c, int slot)
{
    int             fd;
    char           *bytes;
    size_t          len;
    ssize_t         n;
    struct iovec    iov;
    struct msghdr   msg;
    struct cmsghdr *cm;
    union {
        char           buf[CMSG_SPACE(sizeof(int))];
        struct cmsghdr align;
    } ctl;

    if (slot < 0 || slot >= lpg_handoff.n || lpg_handoff.tx == NULL
        || lpg_handoff.tx[slot] == -1)
    {
        lpg_log(LPG_LOG_WARN, 0, "handoff: no way to worker#%d", slot);
        return LPG_ERROR;
    }

    fd = lpg_http_take(c, &bytes, &len);
    if (fd == -1) {
        return LPG_ERROR;
    }

    if (len > LPG_HANDOFF_MAX || len == 0) {
        lpg_log(LPG_LOG_INFO, 0,
                "handoff: a request of %zu bytes cannot go to worker#%d", len,
                slot);
        goto failed;
    }

    memset(&msg, 0, sizeof(msg));
    memset(&ctl, 0, sizeof(ctl));
    iov.iov_base = bytes;
    iov.iov_len = len;
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = ctl.buf;
    msg.msg_controllen = sizeof(ctl.buf);

    cm = CMSG_FIRSTHDR(&msg);
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_RIGHTS;
    cm->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(cm), &fd, sizeof(int));

    n = sendmsg(lpg_handoff.tx[slot], &msg, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n != (ssize_t) len) {
        lpg_log(LPG_LOG_WARN, errno, "handoff: sendmsg() to worker#%d failed",
                slot);
        goto failed;
    }

    lpg_log(LPG_LOG_DEBUG, 0, "handoff: a connection went to worker#%d", slot);

    close(fd);
    free(bytes);

    return LPG_OK;

failed:

    /* c is gone already: the 503 is written raw, then the socket closed */
    (void) !send(fd, lpg_handoff_503, sizeof(lpg_handoff_503) - 1,
                 MSG_DONTWAIT | MSG_NOSIGNAL);
    close(fd);
    free(bytes);

    return LPG_OK;
}


static void
lpg_handoff_read_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    int             fd, i;
    ssize_t         n;
    struct iovec    iov;
    struct msghdr   msg;
    struct cmsghdr *cm;
    union {
        char           buf[CMSG_SPACE(sizeof(int))];
        struct cmsghdr align;
    } ctl;

    for (i = 0; i < 64; i++) {
        memset(&msg, 0, sizeof(msg));
        iov.iov_base = lpg_handoff.buf;
        iov.iov_len = LPG_HANDOFF_MAX;
        msg.msg_iov = &iov;
        msg.msg_iovlen = 1;
        msg.msg_control = ctl.buf;
        msg.msg_controllen = sizeof(ctl.buf);

        n = recvmsg(lpg_handoff.rx, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
        if (n == -1) {
            if (errno != EAGAIN && errno != EINTR) {
                lpg_log(LPG_LOG_ERR, errno, "handoff: recvmsg() failed");
            }

            return;
        }

        fd = -1;
        cm = CMSG_FIRSTHDR(&msg);
        if (cm != NULL && cm->cmsg_level == SOL_SOCKET
            && cm->cmsg_type == SCM_RIGHTS
            && cm->cmsg_len == CMSG_LEN(sizeof(int)))
        {
            memcpy(&fd, CMSG_DATA(cm), sizeof(int));
        }

        if (fd == -1 || (msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC))) {
            lpg_log(LPG_LOG_WARN, 0, "handoff: a bad message dropped");
            if (fd != -1) {
                close(fd);
            }
            continue;
        }

        lpg_http_adopt(fd, lpg_handoff.buf, (size_t) n);
    }
}
