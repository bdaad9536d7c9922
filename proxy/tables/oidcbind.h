/* OIDC job bindings: a verified CI job's token bound to the source address that first presented it.
 */
#ifndef PORTCULLIS_OIDCBIND_H
#define PORTCULLIS_OIDCBIND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "addr.h"

/*
 * One table per process, shared by every worker (a mutex: it is touched once
 * per request that carries a token, after an RSA/ECDSA verification that
 * costs far more).  Pure but for the lock: callers pass now (seconds).
 *
 * A job is a key the caller makes from the verified token (issuer and jti,
 * else job_id, else run_id and run_attempt).  Its entry holds the source
 * address that presented it first, a hash of the token, and until: the
 * token's exp plus the provider's lease or leeway, whichever is longer (as
 * long as the token passes: a binding that ended while the token still
 * verified would let a copy from another address bind afresh).
 *  - oidcbind_check on a token that verified: the job is bound to src now
 *    (a new entry, or the same source again: until is raised to the new
 *    token's), or OIDCBIND_OTHER_SOURCE when it is bound to another address
 *    (a copied token: replay).
 *  - oidcbind_lease on a token that verified except for exp: OIDCBIND_OK only
 *    when this job is bound to this source, with this very token, and now is
 *    before until.
 * Bounded: set-associative, OIDCBIND_WAYS entries per bucket; a full bucket
 * first reuses an entry past its until, else evicts the one that ends
 * soonest (counted in evictions).  An evicted job binds afresh on its next
 * use while its token is valid; after exp it has lost its lease.
 *
 * With the pod map on, a binding also names the pod that presented the token
 * (pod: a 32-byte key of its uid; all zero without a pod).  It ends when that
 * pod has gone: pod_alive(ctx, src, pod) is asked, under the table's lock,
 * whether the pod is still the one at its address.  A token from another
 * address whose bound pod has gone binds afresh (a job retried on a new pod);
 * the lease needs the same pod at the same address.
 */
#define OIDCBIND_WAYS 4

/* Is the pod with this key still the pod at src?  (It may take a read lock.) */
typedef bool (*oidcbind_alive_fn)(void *ctx, const struct pc_addr *src, const uint8_t pod[32]);

struct oidcbind_pod {
	uint8_t key[32];         /* the presenting pod's, or all zero */
	oidcbind_alive_fn alive; /* NULL: bindings never end early */
	void *ctx;
};

enum oidcbind_status {
	OIDCBIND_OK = 0,
	OIDCBIND_OTHER_SOURCE = -1, /* the job is bound to another source address */
	OIDCBIND_NO_LEASE = -2,     /* no binding of this token from this source, or it ran out */
	OIDCBIND_NOMEM = -3,
};

struct oidcbind;

struct oidcbind_stats {
	uint64_t entries;   /* live bindings */
	uint64_t evictions; /* bindings pushed out by a full bucket before their end */
	uint64_t replays;   /* OIDCBIND_OTHER_SOURCE answers */
};

/* A table for about max_entries jobs (rounded up to whole buckets); NULL when out of memory. */
struct oidcbind *oidcbind_create(size_t max_entries);
void oidcbind_destroy(struct oidcbind *t);

/* pod may be NULL (no pod map). */
int oidcbind_check(struct oidcbind *t, const uint8_t job[32], const uint8_t token[32],
                   const struct pc_addr *src, const struct oidcbind_pod *pod, int64_t until,
                   int64_t now) __attribute__((warn_unused_result));
int oidcbind_lease(struct oidcbind *t, const uint8_t job[32], const uint8_t token[32],
                   const struct pc_addr *src, const struct oidcbind_pod *pod, int64_t now)
    __attribute__((warn_unused_result));

void oidcbind_stats(struct oidcbind *t, int64_t now, struct oidcbind_stats *out);

#endif
