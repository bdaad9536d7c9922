/* Clocks: monotonic and wall time in nanoseconds, one definition for every module. */
#ifndef PORTCULLIS_CLOCK_H
#define PORTCULLIS_CLOCK_H

#include <stdint.h>

/* CLOCK_MONOTONIC in ns: durations, deadlines, windows. */
uint64_t mono_ns(void);
/* CLOCK_MONOTONIC_COARSE in ns (a tick of a few ms, no syscall): per-byte activity stamps. */
uint64_t coarse_ns(void);
/* CLOCK_REALTIME in ns since the epoch: timestamps that leave the process (audit, logs). */
uint64_t wall_ns(void);

static inline uint64_t mono_ms(void)
{
	return mono_ns() / 1000000u;
}

#endif
