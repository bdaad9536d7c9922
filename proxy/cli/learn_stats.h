/* What portcullis learn counts while it streams records: destinations, sources, runs, per tier. */
#ifndef PORTCULLIS_LEARN_STATS_H
#define PORTCULLIS_LEARN_STATS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "audit_rec.h"

#define LEARN_MAX_TIERS 256
#define LEARN_EXACT_SRCS 8 /* distinct sources counted exactly, then estimated */
#define LEARN_HLL_REGS 64  /* HyperLogLog registers: about 13% standard error */

/* Distinct sources of one destination: exact up to 8, then a 64-register HyperLogLog. */
struct learn_srcs {
	uint8_t n;
	bool hll;
	union {
		uint64_t exact[LEARN_EXACT_SRCS];
		uint8_t reg[LEARN_HLL_REGS];
	} u;
};

/* One (tier, host, port) and what its records said. */
struct learn_dest {
	char *host;
	uint16_t port;
	uint16_t tier;          /* index into learn_stats.tiers */
	uint64_t count;         /* records let through (would-deny included) */
	uint64_t would_deny;    /* of them, audit-mode would-deny for the allowlist */
	uint64_t blocked;       /* refused for a blocked range (literal or resolved) */
	uint64_t refused;       /* refused by the allowlist (enforce) */
	char first[40], last[40];
	struct learn_srcs srcs;
};

struct learn_tier {
	char name[64];
	uint64_t records, dests;
	uint64_t runs;           /* distinct runs seen */
	uint64_t runs_since_new; /* distinct runs first seen after the last new destination */
	char last_new[40];       /* @timestamp of the last new destination */
	uint64_t *run_set;       /* open addressing of run hashes (0 = empty) */
	size_t run_cap, run_n;
};

struct learn_stats {
	struct learn_dest **tab; /* open addressing; NULL = empty */
	size_t cap, n;
	struct learn_tier tiers[LEARN_MAX_TIERS];
	size_t n_tiers;
	uint64_t used, skipped; /* records counted; records without tier/destination, filtered */
	char first[40], last[40];
	uint64_t seed;
};

int learn_stats_init(struct learn_stats *s) __attribute__((warn_unused_result));
void learn_stats_fini(struct learn_stats *s);

/* Count one parsed record.  0, or -1 when out of memory. */
int learn_stats_add(struct learn_stats *s, const struct audit_rec *r)
	__attribute__((warn_unused_result));

/* Distinct sources, estimated beyond LEARN_EXACT_SRCS. */
uint64_t learn_srcs_count(const struct learn_srcs *set);

#endif
