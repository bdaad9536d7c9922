/* Kubernetes pod lists and watch events: JSON through a gate, then walked as libyaml events. */
#include "kube_json.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "json_gate.h"
#include "json_walk.h"

/*
 * How it works.  json_gate() checks the bytes are one RFC 8259 JSON text no
 * deeper than KUBE_MAX_DEPTH and gives libyaml a text it reads as the same
 * JSON (see json_gate.h for libyaml 0.2.5's corners).  The libyaml events
 * are then walked with a depth counter of our own; the walker checks again
 * what it relies on (flow style only, no anchors, tags or aliases, strings
 * double-quoted, other scalars JSON literals, one document), so neither layer
 * depends on the other's corners.  Unknown fields are skipped whatever their
 * shape, by depth.
 *
 * Valid JSON that stays refused (SYNTAX) because libyaml cannot read it: a
 * key longer than 1024 characters, and a line break between a key and its
 * colon (YAML 1.1 §7.4.2 implicit keys).  The API server writes compact JSON
 * and Kubernetes keys are at most 317 bytes.
 *
 * Field rules (the API server's own Go decoder is the model):
 *   - kept strings must be JSON strings, or null for absent; a kept string
 *     holding U+0000 is refused (SHAPE);
 *   - spec.hostNetwork must be a bare true, false or null; "true" quoted is
 *     refused (SHAPE), as Go refuses a string for a bool;
 *   - a key this parser keeps (metadata.uid, a label, status.podIPs ...) must
 *     not repeat in its object (SHAPE): a duplicate is where two readers of
 *     one document disagree.  Repeats of ignored keys are not looked for;
 *   - status.podIP "" is absent; podIPs[] entries must be objects with "ip";
 *     an IPv4-mapped IPv6 address is kept as IPv4;
 *   - metadata.deletionTimestamp: any string means terminating, null not.
 *
 * A list page is walked twice when there is an on_pod callback: first to
 * check all of it, then to hand the pods over, so a page refused anywhere
 * (an item past the first, or kind after items and not "PodList") never
 * reaches the callback.  An event whose "object" precedes "type" is walked
 * twice too, the first time only checked.
 */

/* The walker's statuses pass through as ours. */
_Static_assert((int)KUBE_JSON_ERR_SYNTAX == (int)JSON_WALK_ERR_SYNTAX &&
		   (int)KUBE_JSON_ERR_SHAPE == (int)JSON_WALK_ERR_SHAPE &&
		   (int)KUBE_JSON_ERR_LIMIT == (int)JSON_WALK_ERR_LIMIT &&
		   (int)KUBE_JSON_ERR_NOMEM == (int)JSON_WALK_ERR_NOMEM,
	       "json_walk and kube_json statuses agree");

/* json_gate() with its statuses as ours. */
static int gate(const char *buf, size_t len, const char **src, size_t *srclen, char **copy,
                char *err, size_t errlen)
{
	int rc = json_gate(buf, len, KUBE_MAX_DEPTH, src, srclen, copy, err, errlen);
	switch (rc) {
	case JSON_GATE_OK:
		return KUBE_JSON_OK;
	case JSON_GATE_ERR_DEPTH:
		return KUBE_JSON_ERR_LIMIT;
	case JSON_GATE_ERR_NOMEM:
		return KUBE_JSON_ERR_NOMEM;
	default:
		return KUBE_JSON_ERR_SYNTAX;
	}
}

/* ---- pods ------------------------------------------------------------------ */

struct pod_acc {
	struct kube_pod *pod;
	struct pc_addr pod_ip; /* status.podIP */
	bool has_pod_ip;
	struct pc_addr ips[KUBE_MAX_POD_IPS]; /* status.podIPs[].ip, deduplicated */
	size_t n_ips;
};

/* ::ffff:a.b.c.d is a.b.c.d (RFC 4291 §2.5.5.2). */
static void unmap_v4(struct pc_addr *a)
{
	static const uint8_t prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
	if (a->family != ADDR_V6 || memcmp(a->b, prefix, 12) != 0)
		return;
	memmove(a->b, a->b + 12, 4);
	memset(a->b + 4, 0, 12);
	a->family = ADDR_V4;
}

/* An IP string value; 1 with *out, 0 when null or "", SHAPE when not an address. */
static int take_ip(struct jp *jp, struct pc_addr *out, const char *what)
{
	const yaml_event_t *e = &jp->ev;
	if (jw_plain_lit(e) == JSON_LIT_NULL)
		return 0;
	if (!jw_is_string(e))
		return jw_fail(jp, KUBE_JSON_ERR_SHAPE, "%s: expected a string", what);
	const char *s = (const char *)e->data.scalar.value;
	size_t n = e->data.scalar.length;
	if (n == 0)
		return 0;
	memset(out, 0, sizeof(*out));
	int rc = memchr(s, ':', n) != NULL ? addr_parse_ipv6(s, n, out)
	                                   : addr_parse_ipv4_strict(s, n, out);
	if (rc != ADDR_OK)
		return jw_fail(jp, KUBE_JSON_ERR_SHAPE, "%s: not an IP address", what);
	unmap_v4(out);
	return 1;
}

static bool has_ip(const struct pc_addr *ips, size_t n, const struct pc_addr *a)
{
	for (size_t i = 0; i < n; i++)
		if (addr_equal(&ips[i], a))
			return true;
	return false;
}

/* status.podIPs: [{"ip": "..."}, ...] */
static int parse_pod_ips(struct jp *jp, struct pod_acc *acc)
{
	static const char *const keys[] = {"ip"};
	int rc = jw_open_seq(jp, "status.podIPs");
	if (rc <= 0)
		return rc;
	for (;;) {
		if ((rc = jw_next(jp)) != 0)
			return rc;
		if (jp->ev.type == YAML_SEQUENCE_END_EVENT)
			return 0;
		if (jp->ev.type != YAML_MAPPING_START_EVENT)
			return jw_fail(jp, KUBE_JSON_ERR_SHAPE, "status.podIPs[]: expected an object");
		uint32_t seen = 0;
		int which = -1;
		struct pc_addr a;
		bool got = false;
		while ((rc = jw_next_key(jp, keys, 1, &seen, &which, "status.podIPs[]")) > 0) {
			if (which == 0) {
				rc = take_ip(jp, &a, "status.podIPs[].ip");
				got = rc > 0;
			} else {
				rc = jw_skip(jp);
			}
			if (rc < 0)
				return rc;
		}
		if (rc < 0)
			return rc;
		if (!got)
			return jw_fail(jp, KUBE_JSON_ERR_SHAPE, "status.podIPs[]: no ip");
		if (has_ip(acc->ips, acc->n_ips, &a))
			continue;
		if (acc->n_ips == KUBE_MAX_POD_IPS)
			return jw_fail(jp, KUBE_JSON_ERR_LIMIT, "more than %d pod IPs",
			            KUBE_MAX_POD_IPS);
		acc->ips[acc->n_ips++] = a;
	}
}

static enum kube_phase phase_of(const yaml_event_t *e)
{
	static const struct {
		const char *s;
		enum kube_phase p;
	} names[] = {
	    {"Pending", KUBE_PHASE_PENDING},     {"Running", KUBE_PHASE_RUNNING},
	    {"Succeeded", KUBE_PHASE_SUCCEEDED}, {"Failed", KUBE_PHASE_FAILED},
	    {"Unknown", KUBE_PHASE_UNKNOWN},
	};
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (e->data.scalar.length == strlen(names[i].s) &&
		    memcmp(e->data.scalar.value, names[i].s, e->data.scalar.length) == 0)
			return names[i].p;
	return KUBE_PHASE_OTHER;
}

static int parse_status(struct jp *jp, struct pod_acc *acc)
{
	static const char *const keys[] = {"phase", "podIP", "podIPs"};
	uint32_t seen = 0;
	int which = -1, rc = jw_open_map(jp, "status");
	if (rc <= 0)
		return rc;
	while ((rc = jw_next_key(jp, keys, 3, &seen, &which, "status")) > 0) {
		if (which == 0) {
			rc = jw_str_is(jp, "", "status.phase");
			if (rc >= 0 && jw_is_string(&jp->ev))
				acc->pod->phase = phase_of(&jp->ev);
		} else if (which == 1) {
			rc = take_ip(jp, &acc->pod_ip, "status.podIP");
			acc->has_pod_ip = rc > 0;
		} else if (which == 2) {
			rc = parse_pod_ips(jp, acc);
		} else {
			rc = jw_skip(jp);
		}
		if (rc < 0)
			return rc;
	}
	return rc;
}

static int parse_spec(struct jp *jp, struct kube_pod *pod)
{
	static const char *const keys[] = {"hostNetwork"};
	uint32_t seen = 0;
	int which = -1, rc = jw_open_map(jp, "spec");
	if (rc <= 0)
		return rc;
	while ((rc = jw_next_key(jp, keys, 1, &seen, &which, "spec")) > 0) {
		if (which != 0) {
			rc = jw_skip(jp);
		} else {
			enum json_lit l = jw_plain_lit(&jp->ev);
			if (l != JSON_LIT_TRUE && l != JSON_LIT_FALSE && l != JSON_LIT_NULL)
				return jw_fail(jp, KUBE_JSON_ERR_SHAPE,
				            "spec.hostNetwork: expected true or false");
			pod->host_network = l == JSON_LIT_TRUE;
		}
		if (rc < 0)
			return rc;
	}
	return rc;
}

/* One label value (or key) into the blob; false when the kept set would overflow. */
static bool blob_put(struct kube_pod *pod, size_t *used, size_t *bytes, const yaml_event_t *e,
                     const char **at)
{
	size_t n = e->data.scalar.length;
	if (n > KUBE_MAX_LABEL_BYTES - *bytes)
		return false;
	char *p = pod->label_blob + *used;
	memcpy(p, e->data.scalar.value, n);
	p[n] = '\0';
	*at = p;
	*used += n + 1;
	*bytes += n;
	return true;
}

/* metadata.labels: every value a string; over the bounds, none kept (labels_overflow). */
static int parse_labels(struct jp *jp, struct kube_pod *pod)
{
	size_t used = 0, bytes = 0;
	const char *key = NULL;
	int rc = jw_open_map(jp, "metadata.labels");
	if (rc <= 0)
		return rc;
	for (;;) {
		if ((rc = jw_next(jp)) != 0)
			return rc;
		if (jp->ev.type == YAML_MAPPING_END_EVENT)
			break;
		if (!jw_is_string(&jp->ev))
			return jw_fail(jp, KUBE_JSON_ERR_SYNTAX,
			            "metadata.labels: a key is not a string");
		if (memchr(jp->ev.data.scalar.value, 0, jp->ev.data.scalar.length) != NULL)
			return jw_fail(jp, KUBE_JSON_ERR_SHAPE, "metadata.labels: a key holds U+0000");
		if (!pod->labels_overflow && (pod->n_labels == KUBE_MAX_LABELS ||
		                              !blob_put(pod, &used, &bytes, &jp->ev, &key)))
			pod->labels_overflow = true;
		if ((rc = jw_next(jp)) != 0)
			return rc;
		if (!jw_is_string(&jp->ev))
			return jw_fail(jp, KUBE_JSON_ERR_SHAPE,
			            "metadata.labels: a value is not a string");
		if (memchr(jp->ev.data.scalar.value, 0, jp->ev.data.scalar.length) != NULL)
			return jw_fail(jp, KUBE_JSON_ERR_SHAPE,
			            "metadata.labels: a value holds U+0000");
		if (pod->labels_overflow)
			continue;
		struct kube_label *l = &pod->labels[pod->n_labels];
		if (kube_pod_label(pod, key) != NULL)
			return jw_fail(jp, KUBE_JSON_ERR_SHAPE, "metadata.labels: duplicate key");
		l->key = key;
		if (!blob_put(pod, &used, &bytes, &jp->ev, &l->value))
			pod->labels_overflow = true;
		else
			pod->n_labels++;
	}
	if (pod->labels_overflow) {
		pod->n_labels = 0;
		memset(pod->labels, 0, sizeof(pod->labels));
	}
	return 0;
}

static int parse_meta(struct jp *jp, struct kube_pod *pod)
{
	static const char *const keys[] = {"uid",
	                                   "name",
	                                   "namespace",
	                                   "resourceVersion",
	                                   "creationTimestamp",
	                                   "deletionTimestamp",
	                                   "labels"};
	static const char *const what[] = {"metadata.uid", "metadata.name", "metadata.namespace",
	                                   "metadata.resourceVersion",
	                                   "metadata.creationTimestamp"};
	struct {
		char *dst;
		size_t cap;
	} str[] = {{pod->uid, sizeof(pod->uid)},
	           {pod->name, sizeof(pod->name)},
	           {pod->ns, sizeof(pod->ns)},
	           {pod->resource_version, sizeof(pod->resource_version)},
	           {pod->created, sizeof(pod->created)}};
	uint32_t seen = 0;
	int which = -1, rc = jw_open_map(jp, "metadata");
	if (rc <= 0)
		return rc;
	while ((rc = jw_next_key(jp, keys, 7, &seen, &which, "metadata")) > 0) {
		if (which >= 0 && which < 5) {
			rc = jw_take_str(jp, str[which].dst, str[which].cap, what[which]);
		} else if (which == 5) {
			rc = jw_str_is(jp, "", "metadata.deletionTimestamp");
			pod->terminating = rc >= 0 && jw_is_string(&jp->ev);
		} else {
			rc = which == 6 ? parse_labels(jp, pod) : jw_skip(jp);
		}
		if (rc < 0)
			return rc;
	}
	return rc;
}

/* A Pod object (current event: its mapping start) into pod. */
static int parse_pod(struct jp *jp, struct kube_pod *pod)
{
	static const char *const keys[] = {"kind", "metadata", "spec", "status"};
	struct pod_acc acc = {.pod = pod};
	uint32_t seen = 0;
	int which = -1, rc;

	memset(pod, 0, sizeof(*pod));
	while ((rc = jw_next_key(jp, keys, 4, &seen, &which, "")) > 0) {
		switch (which) {
		case 0:
			rc = jw_str_is(jp, "Pod", "kind");
			if (rc == 0 && jw_is_string(&jp->ev))
				return jw_fail(jp, KUBE_JSON_ERR_SHAPE, "kind: not a Pod");
			break;
		case 1:
			rc = parse_meta(jp, pod);
			break;
		case 2:
			rc = parse_spec(jp, pod);
			break;
		case 3:
			rc = parse_status(jp, &acc);
			break;
		default:
			rc = jw_skip(jp);
			break;
		}
		if (rc < 0)
			return rc;
	}
	if (rc < 0)
		return rc;
	if (pod->uid[0] == '\0' || pod->name[0] == '\0' || pod->ns[0] == '\0')
		return jw_fail(jp, KUBE_JSON_ERR_SHAPE, "not a Pod: no metadata.%s",
		            pod->uid[0] == '\0'    ? "uid"
		            : pod->name[0] == '\0' ? "name"
		                                   : "namespace");
	if (acc.has_pod_ip)
		pod->ips[pod->n_ips++] = acc.pod_ip;
	for (size_t i = 0; i < acc.n_ips; i++) {
		if (has_ip(pod->ips, pod->n_ips, &acc.ips[i]))
			continue;
		if (pod->n_ips == KUBE_MAX_POD_IPS)
			return jw_fail(jp, KUBE_JSON_ERR_LIMIT, "more than %d pod IPs",
			            KUBE_MAX_POD_IPS);
		pod->ips[pod->n_ips++] = acc.ips[i];
	}
	return 0;
}

const char *kube_pod_label(const struct kube_pod *pod, const char *key)
{
	if (pod == NULL || key == NULL || pod->labels_overflow)
		return NULL;
	for (size_t i = 0; i < pod->n_labels && i < KUBE_MAX_LABELS; i++)
		if (strcmp(pod->labels[i].key, key) == 0)
			return pod->labels[i].value;
	return NULL;
}

int kube_parse_pod(const char *buf, size_t len, struct kube_pod *pod, char *err, size_t errlen)
{
	const char *src;
	size_t srclen;
	char *copy;
	struct jp jp;

	if (err != NULL && errlen > 0)
		err[0] = '\0';
	int rc = gate(buf, len, &src, &srclen, &copy, err, errlen);
	if (rc == 0) {
		rc = jw_open(&jp, src, srclen, KUBE_MAX_DEPTH, err, errlen);
		if (rc == 0)
			rc = jw_begin(&jp);
		if (rc == 0)
			rc = parse_pod(&jp, pod);
		if (rc == 0)
			rc = jw_end(&jp);
		jw_close(&jp);
	}
	free(copy);
	if (rc != 0)
		memset(pod, 0, sizeof(*pod));
	return rc;
}

/* ---- lists ----------------------------------------------------------------- */

/* A list's (or a bookmark's) metadata: resourceVersion and, when cont is set, continue. */
static int parse_list_meta(struct jp *jp, char *rv, char *cont)
{
	static const char *const keys[] = {"resourceVersion", "continue"};
	uint32_t seen = 0;
	int which = -1, rc = jw_open_map(jp, "metadata");
	if (rc <= 0)
		return rc;
	while ((rc = jw_next_key(jp, keys, cont != NULL ? 2 : 1, &seen, &which, "metadata")) > 0) {
		if (which == 0)
			rc = jw_take_str(jp, rv, KUBE_RV_MAX, "metadata.resourceVersion");
		else if (which == 1)
			rc = jw_take_str(jp, cont, KUBE_CONTINUE_MAX, "metadata.continue");
		else
			rc = jw_skip(jp);
		if (rc < 0)
			return rc;
	}
	return rc;
}

struct list_run {
	int (*on_pod)(void *arg, const struct kube_pod *pod); /* NULL: check only */
	void *arg;
	struct kube_list_meta *meta;
	struct kube_pod *pod;
};

static int parse_items(struct jp *jp, struct list_run *r)
{
	int rc = jw_open_seq(jp, "items");
	if (rc <= 0)
		return rc;
	for (;;) {
		if ((rc = jw_next(jp)) != 0)
			return rc;
		if (jp->ev.type == YAML_SEQUENCE_END_EVENT)
			break;
		jp->item = r->meta->n_items;
		if (jp->ev.type != YAML_MAPPING_START_EVENT)
			return jw_fail(jp, KUBE_JSON_ERR_SHAPE, "not a Pod object");
		if ((rc = parse_pod(jp, r->pod)) != 0)
			return rc;
		if (r->on_pod != NULL && r->on_pod(r->arg, r->pod) != 0)
			return jw_fail(jp, KUBE_JSON_ERR_ABORT, "stopped by the caller");
		r->meta->n_items++;
	}
	jp->item = SIZE_MAX;
	return 0;
}

static int list_walk(const char *src, size_t len, struct list_run *r, char *err, size_t errlen)
{
	static const char *const keys[] = {"kind", "metadata", "items"};
	struct jp jp;
	uint32_t seen = 0;
	int which = -1, rc = jw_open(&jp, src, len, KUBE_MAX_DEPTH, err, errlen);
	bool is_list = false;

	memset(r->meta, 0, sizeof(*r->meta));
	if (rc == 0)
		rc = jw_begin(&jp);
	while (rc == 0 && (rc = jw_next_key(&jp, keys, 3, &seen, &which, "")) > 0) {
		if (which == 0)
			rc = jw_str_is(&jp, "PodList", "kind");
		else if (which == 1)
			rc = parse_list_meta(&jp, r->meta->resource_version, r->meta->cont);
		else if (which == 2)
			rc = parse_items(&jp, r);
		else
			rc = jw_skip(&jp);
		if (which == 0 && rc > 0)
			is_list = true;
		if (rc > 0)
			rc = 0;
	}
	if (rc == 0)
		rc = jw_end(&jp);
	if (rc == 0 && !is_list)
		rc = jw_fail(&jp, KUBE_JSON_ERR_SHAPE, "kind is not PodList");
	if (rc == 0 && r->meta->resource_version[0] == '\0')
		rc = jw_fail(&jp, KUBE_JSON_ERR_SHAPE, "no metadata.resourceVersion");
	jw_close(&jp);
	return rc;
}

int kube_parse_list(const char *buf, size_t len,
                    int (*on_pod)(void *arg, const struct kube_pod *pod), void *arg,
                    struct kube_list_meta *meta, char *err, size_t errlen)
{
	const char *src;
	size_t srclen;
	char *copy;
	struct kube_pod pod;
	struct list_run r = {.on_pod = NULL, .arg = arg, .meta = meta, .pod = &pod};

	if (err != NULL && errlen > 0)
		err[0] = '\0';
	int rc = gate(buf, len, &src, &srclen, &copy, err, errlen);
	if (rc == 0)
		rc = list_walk(src, srclen, &r, err, errlen);
	if (rc == 0 && on_pod != NULL) {
		r.on_pod = on_pod;
		rc = list_walk(src, srclen, &r, err, errlen);
	}
	free(copy);
	if (rc != 0)
		memset(meta, 0, sizeof(*meta));
	return rc;
}

/* ---- watch events ---------------------------------------------------------- */

static int parse_status_object(struct jp *jp, struct kube_event *ev)
{
	static const char *const keys[] = {"code", "reason"};
	uint32_t seen = 0;
	int which = -1, rc;

	while ((rc = jw_next_key(jp, keys, 2, &seen, &which, "object")) > 0) {
		const yaml_event_t *e = &jp->ev;
		if (which == 0) {
			enum json_lit l = jw_plain_lit(e);
			long v = 0;
			if (l == JSON_LIT_NUMBER) {
				char num[16];
				size_t n = e->data.scalar.length;
				char *end;
				if (n >= sizeof(num))
					return jw_fail(jp, KUBE_JSON_ERR_SHAPE,
					            "object.code: out of range");
				memcpy(num, e->data.scalar.value, n);
				num[n] = '\0';
				v = strtol(num, &end, 10);
				if (*end != '\0' || v < -2147483647L || v > 2147483647L)
					return jw_fail(jp, KUBE_JSON_ERR_SHAPE,
					            "object.code: not an integer");
			} else if (l != JSON_LIT_NULL) {
				return jw_fail(jp, KUBE_JSON_ERR_SHAPE, "object.code: not an integer");
			}
			ev->code = (int)v;
		} else if (which == 1) {
			rc = jw_str_is(jp, "", "object.reason");
			if (rc >= 0 && jw_is_string(e)) {
				/* truncated at a UTF-8 character boundary, never refused */
				size_t n = e->data.scalar.length;
				if (n >= sizeof(ev->reason)) {
					n = sizeof(ev->reason) - 1;
					while (n > 0 && (e->data.scalar.value[n] & 0xc0) == 0x80)
						n--;
				}
				memcpy(ev->reason, e->data.scalar.value, n);
				ev->reason[n] = '\0';
			}
		} else {
			rc = jw_skip(jp);
		}
		if (rc < 0)
			return rc;
	}
	return rc;
}

static int parse_object(struct jp *jp, struct kube_event *ev)
{
	static const char *const keys[] = {"metadata"};
	uint32_t seen = 0;
	int which = -1, rc;

	if (jp->ev.type != YAML_MAPPING_START_EVENT)
		return jw_fail(jp, KUBE_JSON_ERR_SHAPE, "object: expected an object");
	switch (ev->type) {
	case KUBE_EV_ADDED:
	case KUBE_EV_MODIFIED:
	case KUBE_EV_DELETED:
		rc = parse_pod(jp, &ev->pod);
		memcpy(ev->resource_version, ev->pod.resource_version, KUBE_RV_MAX);
		return rc;
	case KUBE_EV_ERROR:
		return parse_status_object(jp, ev);
	case KUBE_EV_BOOKMARK:
		while ((rc = jw_next_key(jp, keys, 1, &seen, &which, "object")) > 0) {
			rc = which == 0 ? parse_list_meta(jp, ev->resource_version, NULL)
			                : jw_skip(jp);
			if (rc < 0)
				return rc;
		}
		if (rc == 0 && ev->resource_version[0] == '\0')
			rc = jw_fail(jp, KUBE_JSON_ERR_SHAPE, "BOOKMARK: no metadata.resourceVersion");
		return rc;
	}
	return jw_fail(jp, KUBE_JSON_ERR_SHAPE, "unknown event type");
}

static int event_type(struct jp *jp, enum kube_event_type *t)
{
	static const char *const names[] = {"ADDED", "MODIFIED", "DELETED", "BOOKMARK", "ERROR"};
	if (!jw_is_string(&jp->ev))
		return jw_fail(jp, KUBE_JSON_ERR_SHAPE, "type: expected a string");
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		if (jp->ev.data.scalar.length == strlen(names[i]) &&
		    memcmp(jp->ev.data.scalar.value, names[i], strlen(names[i])) == 0) {
			*t = (enum kube_event_type)(KUBE_EV_ADDED + (int)i);
			return 0;
		}
	}
	return jw_fail(jp, KUBE_JSON_ERR_SHAPE, "type: unknown event type");
}

/* One walk.  *again is set when "object" came before "type" and was only checked. */
static int event_walk(const char *src, size_t len, struct kube_event *ev, bool *again, char *err,
                      size_t errlen)
{
	static const char *const keys[] = {"type", "object"};
	enum kube_event_type known = ev->type;
	struct jp jp;
	uint32_t seen = 0;
	int which = -1, rc = jw_open(&jp, src, len, KUBE_MAX_DEPTH, err, errlen);

	memset(ev, 0, sizeof(*ev));
	*again = false;
	if (rc == 0)
		rc = jw_begin(&jp);
	while (rc == 0 && (rc = jw_next_key(&jp, keys, 2, &seen, &which, "")) > 0) {
		if (which == 0)
			rc = event_type(&jp, &ev->type);
		else if (which == 1 && ev->type == 0 && known == 0)
			*again = true;
		if (which == 1 && (ev->type != 0 || known != 0)) {
			ev->type = ev->type != 0 ? ev->type : known;
			rc = parse_object(&jp, ev);
		} else if (which != 0) {
			rc = jw_skip(&jp);
		}
		if (rc > 0)
			rc = 0;
	}
	if (rc == 0)
		rc = jw_end(&jp);
	if (rc == 0 && !(seen & 1))
		rc = jw_fail(&jp, KUBE_JSON_ERR_SHAPE, "no type");
	if (rc == 0 && !(seen & 2))
		rc = jw_fail(&jp, KUBE_JSON_ERR_SHAPE, "no object");
	jw_close(&jp);
	return rc;
}

int kube_parse_event(const char *buf, size_t len, struct kube_event *ev, char *err, size_t errlen)
{
	const char *src;
	size_t srclen;
	char *copy;
	bool again;

	if (err != NULL && errlen > 0)
		err[0] = '\0';
	ev->type = 0;
	int rc = gate(buf, len, &src, &srclen, &copy, err, errlen);
	if (rc == 0)
		rc = event_walk(src, srclen, ev, &again, err, errlen);
	if (rc == 0 && again)
		rc = event_walk(src, srclen, ev, &again, err, errlen);
	free(copy);
	if (rc != 0)
		memset(ev, 0, sizeof(*ev));
	return rc;
}
