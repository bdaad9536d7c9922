/* Per-source limits shared by every worker: concurrent connections and a windowed upload budget. */
#ifndef PORTCULLIS_SRCLIMIT_H
#define PORTCULLIS_SRCLIMIT_H

#include <stddef.h>
#include <stdint.h>

#include "addr.h"

/*
 * One table per process, shared by all worker threads. Pure: no clock (callers
 * pass a monotonic now_ns, read once per loop iteration), no I/O, no globals.
 *
 * A source is a key the caller makes: a group of addresses (addr_source_group:
 * an IPv4 address, or an IPv6 prefix of identity.ipv6_source_prefix bits),
 * or a pod (family SRCLIMIT_KEY_POD, 16 bytes of its uid's hash).  An IPv4
 * client seen by a dual-stack listener as ::ffff:a.b.c.d is the source
 * a.b.c.d.
 *
 * caps.connections_per_source: at most max_conns slots per source at once.
 * caps.upload_bytes_per_source: budget_bytes per source over all its
 * connections, in a fixed window that starts at the source's first charged
 * byte; once now >= start + window the budget refills and the next charged
 * byte starts the next window. A source's entry outlives its connections while
 * its window runs, so closing every tunnel does not reset the budget; after
 * that it is collected lazily (bounded work inside srclimit_acquire).
 *
 * The limits are arguments, not table state, so a policy reload applies to the
 * next call, except that a window's length is fixed when it opens (the
 * window_ns of the charge that opens it); a new length applies from the next
 * window. Whether a window still runs is the entry's own state, so garbage
 * collection never depends on the caller's tier. Connections of one source
 * still under an older snapshot charge the same counter against their own
 * budget_bytes.
 *

 * The table holds at most max_entries sources (limits.max_sources). When it
 * is full, a new source takes the place of one nobody holds: a dead entry not
 * yet collected, else the idle one (no connection, a budget window running)
 * that used the smallest share of its budget among a bounded sample (a few
 * hundred entries, a different sample each time); the evicted source's
 * budget is counted afresh from its next byte. Only when every entry of the
 * samples is held by a connection is the new source refused (SRCLIMIT_FULL).
 */

/* pc_addr.family of a key that names a pod rather than addresses. */
#define SRCLIMIT_KEY_POD 0x50

struct srclimit; /* opaque, process-wide */
struct src_slot; /* one connection's hold on its source's entry */

enum srclimit_status {
	SRCLIMIT_OK = 0,
	SRCLIMIT_CONNS = -1,  /* the source already holds max_conns connections */
	SRCLIMIT_BUDGET = -2, /* the source spent its upload budget for the current window */
	SRCLIMIT_NOMEM = -3,  /* out of memory: callers refuse (fail closed) */
	SRCLIMIT_FULL = -4,   /* max_entries sources, all held by connections: refuse this one */
};

/* NULL when out of memory. */
struct srclimit *srclimit_create(size_t max_entries);
/* Frees every entry; call after all workers stopped. Outstanding slots dangle. NULL ok. */
void srclimit_destroy(struct srclimit *t);

/*
 * Take a slot for a new connection from src. Fails with SRCLIMIT_CONNS when
 * the source already holds max_conns slots (0 = unlimited); with
 * SRCLIMIT_BUDGET when budget_bytes > 0 and the current window's budget is
 * spent (checked first: it is the longer wait). *retry_after_s (may be NULL)
 * is 0 on success, the whole seconds until the window ends (>= 1, rounded up)
 * for SRCLIMIT_BUDGET, and 1 otherwise. *out is NULL on failure.
 *
 * window_ns is not used here (the running window's length was fixed when it
 * opened); it is taken for symmetry with srclimit_charge.
 *
 * Every connection of one source receives the same slot pointer; the hold is
 * counted, so each successful acquire takes exactly one srclimit_release.
 * Takes one stripe lock: setup path only.
 */
int srclimit_acquire(struct srclimit *t, const struct pc_addr *src, uint32_t max_conns,
                     uint64_t budget_bytes, uint64_t window_ns, uint64_t now_ns,
                     struct src_slot **out, uint32_t *retry_after_s)
    __attribute__((warn_unused_result));

/*
 * Charge n upload bytes against the source's budget (budget_bytes 0 = none:
 * returns n). Returns how many of the n bytes may pass (0..n); less than n
 * means the budget is spent for this window. Across all threads the bytes
 * passed in one window never exceed budget_bytes. Called per relayed chunk from
 * any worker: lock-free (one compare-and-swap loop) except when it opens a new
 * window, which takes the stripe lock at most once per window. s must be held
 * (acquired and not yet released). window_ns is the length of a window this
 * call opens; 0 is a window that never ends (fails closed; policy validation
 * keeps windows at 1 s..24 h).
 */
uint64_t srclimit_charge(struct src_slot *s, uint64_t n, uint64_t budget_bytes, uint64_t window_ns,
                         uint64_t now_ns);

/*
 * Is the source's upload budget spent for the window that runs at now_ns?
 * SRCLIMIT_BUDGET with *retry_after_s (whole seconds until the window ends,
 * >= 1) when budget_bytes > 0 and the running window's bytes reached it;
 * else SRCLIMIT_OK.  Lock-free; s must be held.  Every request on a
 * connection asks this before it is let through: the hold is taken at
 * accept, the budget is judged per request.
 */
int srclimit_budget_check(const struct src_slot *s, uint64_t budget_bytes, uint64_t now_ns,
                          uint32_t *retry_after_s) __attribute__((warn_unused_result));

/* Give back one hold taken by srclimit_acquire. NULL slot ok. */
void srclimit_release(struct srclimit *t, struct src_slot *s);

/* Idle entries evicted to make room in a full table, since creation. */
uint64_t srclimit_evictions(const struct srclimit *t);

/* Live entries: sources with a connection or an unfinished window (plus not yet collected ones). */
size_t srclimit_entries(const struct srclimit *t);

#endif
