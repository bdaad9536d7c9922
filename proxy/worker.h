/* A worker: one event loop on one thread, its listeners, resolver and connections. */
#ifndef PORTCULLIS_WORKER_H
#define PORTCULLIS_WORKER_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

struct audit_log;
struct kube_client;
struct metrics_tiers;
struct podmap;
struct policy;
struct srclimit;
struct tls_listener;
struct worker;
struct worker_metrics;

/* What every worker shares with the server (all of it outlives the workers). */
struct worker_shared {
	struct audit_log *audit;
	struct srclimit *srclimit;
	struct podmap *podmap;          /* NULL without identity.kubernetes */
	const struct kube_client *kube; /* NULL without identity.kubernetes */
	struct metrics_tiers *tiers;
	const char *hostname;
	atomic_uint *n_open;       /* open connections, all workers (limits.max_connections) */
	atomic_bool *draining;     /* the process is stopping */
	atomic_uint *workers_done; /* incremented when a worker's loop ends */
	struct tls_listener *tls;  /* listen.https's context, or NULL without TLS listeners */
	struct oidc_state *oidc;   /* OIDC job bindings and counters */
	struct icpt_ca *icpt_ca;   /* interception's CA (certs/intercept.h), or NULL without it */
};

/*
 * Set up a worker with the policy's listeners (SO_REUSEPORT: every worker
 * binds every listen.proxy address) and p as its first snapshot (a reference
 * is taken).  NULL with errmsg filled on failure.
 */
struct worker *worker_create(unsigned id, const struct worker_shared *sh, struct policy *p,
                             char *errmsg, size_t errlen);
/* Run the loop on its own thread. -1: the thread did not start. */
int worker_start(struct worker *w) __attribute__((warn_unused_result));
void worker_join(struct worker *w);
/* Close everything and free. NULL is a no-op. */
void worker_destroy(struct worker *w);

/* Hand the worker a new snapshot (takes the reference); new requests are decided under it. */
void worker_offer_policy(struct worker *w, struct policy *p);
/* Wake the worker to look at the shared draining flag (and its mailbox). */
void worker_notify(struct worker *w);

/* For the admin listener: the loop's last tick (monotonic ms), its counters. */
uint64_t worker_heartbeat_ms(const struct worker *w);
struct worker_metrics *worker_metrics(struct worker *w);
uint64_t worker_audit_lost(const struct worker *w);

#endif
