/*
 * SPDX-License-Identifier: MIT
 *
 * lpg_core.h: the umbrella header every lpgate module includes first.
 *
 * It holds the return codes, exit statuses and small macros shared by core,
 * shm, dispatcher, master and worker.  It never pulls in ev.h or
 * libpq-fe.h: those belong to master/ and worker/ only.
 */

#ifndef LPG_CORE_H
#define LPG_CORE_H


#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>


#define LPG_OK    0
#define LPG_ERROR -1
#define LPG_AGAIN -2
#define LPG_DONE  -4

/* exit statuses: 2 means "fatal, do not respawn, do not retry" */
#define LPG_EXIT_OK    0
#define LPG_EXIT_ERROR 1
#define LPG_EXIT_FATAL 2

#define LPG_MUSTCHECK    __attribute__((warn_unused_result))
#define LPG_PRINTF(f, a) __attribute__((format(printf, f, a)))
#define LPG_UNUSED(x)    (void) (x)

#define LPG_NELEMS(a) (sizeof(a) / sizeof((a)[0]))
#define LPG_CACHELINE 128

#ifdef LPG_ENABLE_ASSERTS
#include <stdio.h>
#include <stdlib.h>
#define LPG_ASSERT(e)                                                          \
    do {                                                                       \
        if (!(e)) {                                                            \
            fprintf(stderr, "%s:%d: assertion \"%s\" failed\n", __FILE__,      \
                    __LINE__, #e);                                             \
            abort();                                                           \
        }                                                                      \
    } while (0)
#else
#define LPG_ASSERT(e) ((void) 0)
#endif

/* the most worker slots the shared segment and the master can hold */
#define LPG_MAX_WORKERS 256


#include "lpg_log.h"
#include "lpg_time.h"


#endif /* LPG_CORE_H */
