/*
 * SPDX-License-Identifier: MIT
 *
 * lpg_log.h: levelled, one-line-per-event logging.
 *
 * Every line carries the time, the role ("master", "worker#2") and the pid,
 * and is written with one write(2) on an O_APPEND descriptor, so lines from
 * the master and the workers never interleave inside a line.  The level is
 * checked before the message is formatted.  Nothing here is safe to call
 * from a raw signal handler.
 */

#ifndef LPG_LOG_H
#define LPG_LOG_H


#include <stdarg.h>


typedef enum {
    LPG_LOG_EMERG = 0,
    LPG_LOG_ALERT,
    LPG_LOG_ERR,
    LPG_LOG_WARN,
    LPG_LOG_NOTICE,
    LPG_LOG_INFO,
    LPG_LOG_DEBUG
} lpg_log_level_e;


extern int lpg_log_level;


#define lpg_log(level, err, ...)                                               \
    do {                                                                       \
        if ((int) (level) <= lpg_log_level) {                                  \
            lpg_log_write(level, err, __VA_ARGS__);                            \
        }                                                                      \
    } while (0)


void lpg_log_write(int level, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void        lpg_log_set_role(const char *role, int index);
int         lpg_log_open(const char *path) __attribute__((warn_unused_result));
int         lpg_log_reopen(void);
int         lpg_log_level_parse(const char *name);
const char *lpg_log_level_name(int level);


#endif /* LPG_LOG_H */
