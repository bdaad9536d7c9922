/* What the admin listener sees of the proxy: one snapshot per scrape or probe. */
#ifndef PORTCULLIS_STATS_H
#define PORTCULLIS_STATS_H

#include <stdbool.h>
#include <stddef.h>

#include "metrics.h"

#define STATS_MAX_WORKERS 64

struct proxy_stats {
	bool draining;        /* SIGTERM/SIGINT received */
	bool workers_alive;   /* every worker loop ticked recently */
	bool audit_available; /* the audit queue takes records */
	bool kube_overflowed; /* identity.kubernetes: pods were left out of the map */
	bool jwks_unready;    /* a jwks_url never fetched: jwks_why says which */
	char jwks_why[512];
	struct metrics_process proc;
	struct metrics_jwks jwks[16]; /* proc.jwks points here */
	struct worker_metrics *workers[STATS_MAX_WORKERS]; /* live for the process lifetime */
	size_t n_workers;
	const struct metrics_tiers *tiers;
};

/* Fill a snapshot (called on the admin thread; thread-safe). */
typedef void (*proxy_stats_fn)(void *arg, struct proxy_stats *out);

#endif
