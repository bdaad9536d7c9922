/* What a thread of the daemon is: its name (ps -L, top -H, perf) and its scheduling class. */
#ifndef PORTCULLIS_THREAD_H
#define PORTCULLIS_THREAD_H

/*
 * Name the calling thread (at most 15 bytes shown).  A background thread (the
 * audit writer, the admin endpoint, key fetches, policy reloads, the
 * Kubernetes client) also becomes SCHED_BATCH: woken, it waits for the running
 * worker's time slice to end instead of preempting it, so it does not add to a
 * request's latency; over time it still gets its fair share of the CPU.
 * Failures are ignored: both are refinements, neither is needed for
 * correctness.
 */
void thread_role(const char *name, int background);

#endif
