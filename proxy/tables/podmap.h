/*
 * The pod map: pod IP -> the pod that owns it, fed by the Kubernetes watch
 * (one writer thread) and read by every worker when a request is identified.
 *
 * Readers get a reference to an immutable pod_info, so a pod that changes or
 * leaves while a connection is open never changes under that connection; a
 * MODIFIED event publishes a new pod_info and the old one is freed with its
 * last reference.  A read-write lock guards the two indexes; readers hold it
 * for one hash lookup and a reference increment, once per request, never on
 * the byte path.
 *
 * Which pods map: a pod that is not hostNetwork, whose phase is not
 * Succeeded or Failed, with at least one IP.  Anything else given to
 * podmap_apply() removes that pod (by uid) from the map: a finished pod's IP
 * is free for reuse and must not keep its old identity.
 *
 * IP ownership when two live pods claim one address (an IP reused before the
 * old pod's DELETED arrives): a pod that is not terminating beats one that is
 * (metadata.deletionTimestamp set); otherwise the later creationTimestamp
 * wins; on a tie the most recently applied pod wins.  The losing claim is
 * remembered: when the owner leaves, the address passes to the best remaining
 * claimant, never to nobody while a live pod still holds it.
 */
#ifndef PORTCULLIS_PODMAP_H
#define PORTCULLIS_PODMAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "addr.h"
#include "kube_json.h"

struct pod_info {
	unsigned refs; /* atomic */
	char uid[KUBE_UID_MAX];
	char ns[KUBE_NS_MAX];
	char name[KUBE_NAME_MAX];
	char created[KUBE_TIME_MAX];
	bool terminating;
	struct pc_addr ips[KUBE_MAX_POD_IPS];
	size_t n_ips;
	bool labels_overflow;
	size_t n_labels;
	struct kube_label labels[]; /* key/value strings are stored after the array */
};

/* Look up a label; NULL when absent or when labels_overflow. */
const char *pod_info_label(const struct pod_info *p, const char *key);
struct pod_info *pod_info_ref(struct pod_info *p);
void pod_info_unref(struct pod_info *p); /* NULL is a no-op; thread-safe */

struct podmap;

/* max_pods bounds the pods held (0 = 65536). */
struct podmap *podmap_new(size_t max_pods);
void podmap_free(struct podmap *m); /* outstanding pod_info references stay valid */

enum podmap_result {
	PODMAP_MAPPED = 0,  /* the pod is in the map (it may own none of its IPs) */
	PODMAP_REMOVED = 1, /* not eligible: removed, or was never there */
	PODMAP_FULL = -1,   /* max_pods reached: not added (fail closed: unknown source) */
	PODMAP_NOMEM = -2,
};

/*
 * Writer side: one thread only.  gen tags the pod with the list/watch
 * generation that last saw it (for podmap_sweep).
 * apply: a list item or an ADDED/MODIFIED object (replaces by uid).
 * remove: a DELETED object (by uid; the rest of the pod is ignored).
 */
int podmap_apply(struct podmap *m, const struct kube_pod *pod, uint64_t gen);
void podmap_remove(struct podmap *m, const char *uid);
/* After a relist: remove every pod of namespace ns (NULL: all namespaces)
 * last applied with a generation below gen.  Returns how many were removed. */
size_t podmap_sweep(struct podmap *m, const char *ns, uint64_t gen);

/*
 * Reader side, any thread: the pod owning ip, as a new reference (release
 * with pod_info_unref), or NULL.  An IPv4-mapped IPv6 source (::ffff:a.b.c.d)
 * is looked up as its IPv4 address.
 */
struct pod_info *podmap_lookup(struct podmap *m, const struct pc_addr *ip);

size_t podmap_count(struct podmap *m); /* pods held */

#endif
