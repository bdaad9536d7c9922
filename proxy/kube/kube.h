/*
 * Pod identity from the Kubernetes API: list and watch pods over TLS on a
 * thread of its own, feeding the pod map (podmap.h) the workers read.
 *
 * One list+watch per scope: each namespace of identity.kubernetes.namespaces,
 * or the whole cluster with the label selector in tier_label mode.  A scope
 * lists (paginated), sweeps pods the list no longer has, then watches from the
 * list's resourceVersion with bookmarks.  410 Gone, a malformed event or an
 * ERROR event relists; a dropped stream re-watches from the last
 * resourceVersion seen; HTTP errors and failed connections back off
 * exponentially with jitter up to backoff_max.
 */
#ifndef PORTCULLIS_KUBE_H
#define PORTCULLIS_KUBE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "policy.h"

struct kube_client;
struct podmap;

struct kube_stats {
	bool synced;           /* every scope has completed a list */
	uint64_t pods;         /* pods in the map */
	uint64_t relists;      /* lists after a scope's first (410, bad event, ...) */
	uint64_t watch_errors; /* streams and requests that ended in an error */
	uint64_t skipped;      /* pod objects or watch events over the size bound, left out */
};

/*
 * Copy what the client needs from cfg (it does not keep the snapshot), resolve
 * the API server (cfg->api_server, else KUBERNETES_SERVICE_HOST and
 * KUBERNETES_SERVICE_PORT, which must be an IP literal and a port) and start
 * the thread.  Token and CA files are read for every connection, so a rotated
 * token or CA is picked up, and a missing file is a retried error, not a
 * start-up failure.  NULL with errmsg on a start-up failure.
 */
struct kube_client *kube_client_start(const struct policy_kube *cfg, struct podmap *map,
				      char *errmsg, size_t errlen);
/* Stop the thread and free the client (the map is the caller's).  NULL is a no-op. */
void kube_client_stop(struct kube_client *k);

/* Every scope has completed a list and none is out of date (no list or watch progress for
 * max(2 x backoff_max, 60 s)).  Any thread. */
bool kube_client_synced(const struct kube_client *k);
/* Pods were left out of the map (max_pods): a source the map does not hold must get
 * unknown_source, not a static tier.  Cleared by a list that fits.  Any thread. */
bool kube_client_overflowed(const struct kube_client *k);
void kube_client_stats(const struct kube_client *k, struct kube_stats *out);

#endif
