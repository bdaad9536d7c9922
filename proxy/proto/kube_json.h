/*
 * Kubernetes pod list pages and watch events, parsed from JSON with libyaml's
 * event parser (JSON is a YAML subset).  Pure: bytes in, values out, no I/O,
 * no globals.  Only the fields portcullis needs are kept; every other field is
 * skipped whatever its shape.  Hostile input is expected: every string and
 * count has a limit, and a document over a limit is refused, not truncated,
 * except where a field says otherwise.
 */
#ifndef PORTCULLIS_KUBE_JSON_H
#define PORTCULLIS_KUBE_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "addr.h"

#define KUBE_MAX_DEPTH 64         /* nesting of the whole document */
#define KUBE_MAX_POD_IPS 4        /* status.podIP + status.podIPs[].ip, deduplicated */
#define KUBE_MAX_LABELS 64        /* metadata.labels entries kept per pod */
#define KUBE_MAX_LABEL_BYTES 8192 /* sum of key+value bytes kept per pod */
#define KUBE_UID_MAX 64
#define KUBE_NS_MAX 64      /* namespace: DNS-1123 label, 63 chars */
#define KUBE_NAME_MAX 254   /* pod name: DNS-1123 subdomain, 253 chars */
#define KUBE_RV_MAX 64      /* resourceVersion */
#define KUBE_CONTINUE_MAX 2048
#define KUBE_TIME_MAX 40    /* RFC 3339 timestamp */

enum kube_phase {
	KUBE_PHASE_UNSET = 0,
	KUBE_PHASE_PENDING,
	KUBE_PHASE_RUNNING,
	KUBE_PHASE_SUCCEEDED,
	KUBE_PHASE_FAILED,
	KUBE_PHASE_UNKNOWN,
	KUBE_PHASE_OTHER, /* any other string */
};

/*
 * One pod, as far as portcullis cares.  Strings are NUL-terminated.  Labels
 * live in one owned blob: labels[i].key / .value point into it.
 */
struct kube_label {
	const char *key;
	const char *value;
};

struct kube_pod {
	char uid[KUBE_UID_MAX];
	char ns[KUBE_NS_MAX];
	char name[KUBE_NAME_MAX];
	char resource_version[KUBE_RV_MAX];
	char created[KUBE_TIME_MAX]; /* metadata.creationTimestamp, "" if absent */
	bool terminating;            /* metadata.deletionTimestamp is present and not null */
	bool host_network;           /* spec.hostNetwork: true */
	enum kube_phase phase;       /* status.phase */
	struct pc_addr ips[KUBE_MAX_POD_IPS];
	size_t n_ips;
	/* A pod whose labels exceed KUBE_MAX_LABELS or KUBE_MAX_LABEL_BYTES keeps
	 * none of them and sets labels_overflow: a tier must never come from a
	 * partial label set. */
	struct kube_label labels[KUBE_MAX_LABELS];
	size_t n_labels;
	bool labels_overflow;
	char label_blob[KUBE_MAX_LABEL_BYTES + 2 * KUBE_MAX_LABELS];
};

/* Look up a label; NULL when absent (or when labels_overflow). */
const char *kube_pod_label(const struct kube_pod *pod, const char *key);

enum kube_json_status {
	KUBE_JSON_OK = 0,
	KUBE_JSON_ERR_SYNTAX = -1, /* not well-formed JSON/YAML */
	KUBE_JSON_ERR_SHAPE = -2,  /* a field has the wrong type, or a required field is missing */
	KUBE_JSON_ERR_LIMIT = -3,  /* a string, count or depth over its limit */
	KUBE_JSON_ERR_ABORT = -4,  /* the on_pod callback returned non-zero */
	KUBE_JSON_ERR_NOMEM = -5,  /* out of memory */
};

/* List metadata of one page of GET /api/v1/.../pods. */
struct kube_list_meta {
	char resource_version[KUBE_RV_MAX]; /* metadata.resourceVersion (required) */
	char cont[KUBE_CONTINUE_MAX];       /* metadata.continue, "" when last page */
	size_t n_items;
};

/*
 * Parse a PodList page.  kind must be "PodList"; metadata.resourceVersion is
 * required.  on_pod is called once per item, in order, with a pod valid only
 * during the call; a non-zero return aborts with KUBE_JSON_ERR_ABORT.  An
 * item that is not a Pod object (missing metadata.uid, metadata.name or
 * metadata.namespace) fails the whole page with KUBE_JSON_ERR_SHAPE.
 * err (may be NULL) receives a short reason on failure.
 */
int kube_parse_list(const char *buf, size_t len,
		    int (*on_pod)(void *arg, const struct kube_pod *pod), void *arg,
		    struct kube_list_meta *meta, char *err, size_t errlen)
	__attribute__((warn_unused_result));

/*
 * One Pod object (a list item on its own, as kube_stream hands them over):
 * the same rules as an item of kube_parse_list.
 */
int kube_parse_pod(const char *buf, size_t len, struct kube_pod *pod, char *err, size_t errlen)
	__attribute__((warn_unused_result));

enum kube_event_type {
	KUBE_EV_ADDED = 1,
	KUBE_EV_MODIFIED,
	KUBE_EV_DELETED,
	KUBE_EV_BOOKMARK,
	KUBE_EV_ERROR,
};

/*
 * One watch event: {"type": ..., "object": {...}}, one JSON object (a line of
 * the watch stream without its newline).
 *   ADDED / MODIFIED / DELETED: object is a Pod, parsed into pod (same rules
 *     as a list item); resource_version = object.metadata.resourceVersion.
 *   BOOKMARK: object carries only metadata.resourceVersion (required).
 *   ERROR: object is a Status; code = object.code (e.g. 410), reason =
 *     object.reason (e.g. "Expired"/"Gone"), both optional.
 * Any other type is KUBE_JSON_ERR_SHAPE.  Keys may come in any order
 * ("object" before "type" included).
 */
struct kube_event {
	enum kube_event_type type;
	char resource_version[KUBE_RV_MAX];
	int code;        /* ERROR: Status.code, 0 if absent */
	char reason[64]; /* ERROR: Status.reason, "" if absent (truncated, never refused) */
	struct kube_pod pod;
};

int kube_parse_event(const char *buf, size_t len, struct kube_event *ev, char *err, size_t errlen)
	__attribute__((warn_unused_result));

#endif
