/* One worker's refusal aggregation: a source's refusals folded into counted records under pressure.
 */
#ifndef PORTCULLIS_AUDIT_AGG_H
#define PORTCULLIS_AUDIT_AGG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "addr.h"
#include "reason.h"

/*
 * While the audit queue is under pressure, one source must not be able to
 * fill it with refusals and so turn every tenant's next request into
 * audit_unavailable. Each worker keeps one of these tables; for every refusal
 * it asks audit_agg_note() whether to queue the record in full. Per interval
 * (the caller flushes about once a second) the first refusal of each key
 * (source group, reason, tier name) is written in full; the rest are counted, and
 * audit_agg_flush() hands out one counted record per key. Nothing goes
 * silently missing: every refusal is either its own record or counted in an
 * aggregate one.
 *
 * Bounded: at most `slots` keys. Refusals of keys that find no room are
 * counted per reason in an overflow entry, which stands for many sources and
 * tiers: it names no tier, and its source (the first of them) only so that
 * the record has one.
 *
 * Single-threaded (one per worker). Pure: no clock (callers pass the wall
 * time), no I/O.
 */

struct audit_agg;

struct audit_agg_entry {
	struct pc_addr src; /* the first refusal counted: its source address and port */
	uint16_t src_port;
	bool overflow; /* the overflow entry of this reason: the table was full */
	enum reason reason;
	unsigned tier_slot;         /* the caller's metrics slot of the tier (0: none) */
	char tier[64];              /* rule.ruleset ("" none) */
	uint64_t count;             /* refusals counted, not written on their own */
	uint64_t first_ns, last_ns; /* wall time of the first and last of them */
};

/* NULL when out of memory. slots is rounded up to a power of two. */
struct audit_agg *audit_agg_create(size_t slots);
void audit_agg_destroy(struct audit_agg *a); /* NULL ok */

/*
 * A refusal while the queue is under pressure. group is the source's group
 * (addr_source_group), src its address. True: write this record in full (the
 * first of its key this interval); false: it was counted.
 */
bool audit_agg_note(struct audit_agg *a, const struct pc_addr *group, const struct pc_addr *src,
                    uint16_t src_port, enum reason why, unsigned tier_slot, const char *tier,
                    uint64_t now_ns);

/* Keys with counted refusals (a cheap test before a flush). */
bool audit_agg_pending(const struct audit_agg *a);

/* Hand every entry with a count to fn, then forget every key: a new interval starts. */
typedef void (*audit_agg_fn)(void *arg, const struct audit_agg_entry *e);
void audit_agg_flush(struct audit_agg *a, audit_agg_fn fn, void *arg);

#endif
