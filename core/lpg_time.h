/*
 * SPDX-License-Identifier: MIT
 *
 * lpg_time.h: monotonic and wall clocks in milliseconds.
 *
 * Monotonic time is what heartbeats and backoffs compare, since it is the
 * same clock in every process of one machine; wall time is only for logs.
 */

#ifndef LPG_TIME_H
#define LPG_TIME_H


#include <stdint.h>
#include <time.h>


static inline int64_t
lpg_time_mono_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);

    return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}


static inline int64_t
lpg_time_mono_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);

    return (int64_t) ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}


#endif /* LPG_TIME_H */
