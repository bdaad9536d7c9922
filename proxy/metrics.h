/* Metrics: per-worker lock-free counters and histograms, summed into Prometheus text at scrape time. */
#ifndef PORTCULLIS_METRICS_H
#define PORTCULLIS_METRICS_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "reason.h"

struct evbuffer;

/* Tier label slots over the process lifetime (tiers of every policy loaded); slot 0 is "(none)". */
#define METRICS_MAX_TIERS 256
#define METRICS_HIST_BUCKETS 16

enum metrics_dns_kind { MDNS_NXDOMAIN, MDNS_NODATA, MDNS_ERROR, MDNS_TIMEOUT, MDNS__COUNT };
enum metrics_decision { MDEC_DENY = 0, MDEC_ALLOW = 1 };

struct metrics_hist {
	atomic_ullong bucket[METRICS_HIST_BUCKETS]; /* non-cumulative; +Inf = count - sum(bucket) */
	atomic_ullong count;
	atomic_ullong sum_ns;
};

/* One worker's counters: written only by that worker (relaxed atomics), read at scrape time. */
struct worker_metrics {
	atomic_ullong conns[METRICS_MAX_TIERS][R__COUNT][2]; /* [tier][reason][decision] */
	atomic_llong tunnels_active[METRICS_MAX_TIERS];
	atomic_ullong bytes[METRICS_MAX_TIERS][2]; /* [tier][0 upload, 1 download] */
	atomic_ullong dns_errors[MDNS__COUNT];
	atomic_ullong audit_aggregated; /* refusals counted in an aggregate audit record */
	struct metrics_hist dns, connect, setup;
};

/* Process-wide tier name → slot registry (touched on policy adoption, not per byte). */
struct metrics_tiers {
	pthread_mutex_t lock;
	atomic_uint n;                       /* published slots */
	char names[METRICS_MAX_TIERS][64];   /* slot 0 = "(none)", last slot = "(other)" when full */
};

void metrics_tiers_init(struct metrics_tiers *t);
void metrics_tiers_fini(struct metrics_tiers *t);
/* Slot for a tier name (registered on first use). */
unsigned metrics_tier_slot(struct metrics_tiers *t, const char *name);

static inline void metrics_add(atomic_ullong *c, uint64_t n)
{
	atomic_fetch_add_explicit(c, n, memory_order_relaxed);
}

void metrics_observe(struct metrics_hist *h, uint64_t ns);

/* Everything the exposition needs besides the per-worker blocks. */
/* One JWKS URL's fetches (jwksfetch.h). */
struct metrics_jwks {
	char url[1025];
	uint64_t fetched, not_modified, failed; /* fetches by result: 200 that parsed, 304, other */
	uint64_t kid_refreshes;                 /* fetches an unknown kid asked for */
	double last_success;                    /* unix seconds of the last 200 or 304, 0: never */
	uint64_t keys;                          /* in the set served */
};

struct metrics_process {
	const char *version;
	char policy_sha256[65];
	double policy_loaded_at;     /* unix seconds */
	uint64_t reloads_ok, reloads_failed;
	uint64_t audit_lost;
	uint64_t conns_active;
	uint64_t source_entries, source_evictions; /* the per-source table */
	uint64_t admin_evictions;                  /* admin connections cut to let a newer one in */
	double start_time;           /* unix seconds */
	bool ready;                  /* /readyz would answer 200 */
	bool kube_enabled;           /* identity.kubernetes: the four below are rendered */
	bool kube_synced;
	uint64_t kube_pods, kube_relists, kube_watch_errors, kube_skipped;
	bool tls_enabled; /* listen.https: the three below are rendered */
	uint64_t tls_reloads_ok, tls_reloads_failed;
	int64_t tls_not_after; /* the serving certificate's notAfter, unix seconds */
	bool icpt_enabled;     /* interception: the five below are rendered */
	uint64_t icpt_minted, icpt_cache_hits, icpt_reloads_ok, icpt_reloads_failed;
	int64_t icpt_ca_not_after; /* the interception CA's notAfter, unix seconds */
	uint64_t icpt_cached;
	bool oidc_enabled; /* identity.oidc: the OIDC families are rendered */
	uint64_t oidc_verified, oidc_leased, oidc_refused; /* tokens by result */
	uint64_t oidc_bindings, oidc_evictions, oidc_replays;
	struct metrics_jwks *jwks; /* one per jwks_url (jwksfetch_stats) */
	size_t n_jwks;
};

/* Append the whole text exposition (format 0.0.4) to out. */
int metrics_render(struct evbuffer *out, const struct metrics_tiers *tiers,
		   struct worker_metrics *const *workers, size_t n_workers,
		   const struct metrics_process *proc);

#endif
