/* libFuzzer target for the Kubernetes JSON parser and the pod map it feeds, with invariants. */
#include "json_gate.h"
#include "kube_json.h"
#include "podmap.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/*
 * Invariants checked on every input (abort() on a breach):
 *  1. a known status; on failure the output is all zero and err a short
 *     NUL-terminated string;
 *  2. an accepted pod is well-formed: strings NUL-terminated in their arrays,
 *     uid/name/namespace non-empty, at most KUBE_MAX_POD_IPS distinct valid
 *     addresses none of them IPv4-mapped, labels inside label_blob, unique,
 *     within the bounds, none at all when labels_overflow;
 *  3. the same bytes give the same answer; the callback sees exactly n_items
 *     pods, and none at all when the page is refused; stopping at the first
 *     pod is ABORT;
 *  4. an accepted document stops being one when its last byte (before
 *     trailing whitespace) goes;
 *  5. the gate's rewrite needs no second rewrite;
 *  6. the pod map agrees: a mapped pod's addresses have an owner whose
 *     pod_info lists the address (unless the map refused a pod this run), a
 *     removed pod owns nothing, ::ffff:a.b.c.d finds what a.b.c.d finds, the
 *     count stays within max_pods.
 */

#define MAP_MAX   6
#define MAX_LINES 32

static char err[128];

static void check(bool ok, const char *what)
{
	if (!ok) {
		fprintf(stderr, "kube_json invariant broken: %s\n", what);
		abort();
	}
}

static bool terminated(const char *s, size_t cap)
{
	return memchr(s, '\0', cap) != NULL;
}

/* One memcmp, not a traced byte loop: a kube_event is tens of KiB, checked on every input. */
static bool all_zero(const void *p, size_t n)
{
	static const unsigned char zero[1 << 16];
	const unsigned char *b = p;
	for (size_t off = 0; off < n; off += sizeof(zero)) {
		size_t k = n - off < sizeof(zero) ? n - off : sizeof(zero);
		if (memcmp(b + off, zero, k) != 0)
			return false;
	}
	return true;
}

static void check_err(int rc)
{
	check(rc >= KUBE_JSON_ERR_NOMEM && rc <= KUBE_JSON_OK, "unknown status");
	check(terminated(err, sizeof(err)), "err not terminated");
	check(rc == KUBE_JSON_OK || err[0] != '\0', "failure without a reason");
}

static bool in_blob(const struct kube_pod *p, const char *s)
{
	const char *end = p->label_blob + sizeof(p->label_blob);
	return s >= p->label_blob && s < end && memchr(s, '\0', (size_t)(end - s)) != NULL;
}

static void check_pod(const struct kube_pod *p)
{
	check(terminated(p->uid, sizeof(p->uid)) && terminated(p->ns, sizeof(p->ns)) &&
	          terminated(p->name, sizeof(p->name)) &&
	          terminated(p->resource_version, sizeof(p->resource_version)) &&
	          terminated(p->created, sizeof(p->created)),
	      "pod string not terminated");
	check(p->uid[0] && p->ns[0] && p->name[0], "pod without uid, name or namespace");
	check(p->phase >= KUBE_PHASE_UNSET && p->phase <= KUBE_PHASE_OTHER, "phase");
	check(p->n_ips <= KUBE_MAX_POD_IPS, "n_ips");
	for (size_t i = 0; i < p->n_ips; i++) {
		const struct pc_addr *a = &p->ips[i];
		check(a->family == ADDR_V4 || a->family == ADDR_V6, "address family");
		static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
		check(a->family == ADDR_V4 || memcmp(a->b, mapped, 12) != 0, "IPv4-mapped kept");
		for (size_t j = 0; j < i; j++)
			check(!addr_equal(&p->ips[j], a), "duplicate address");
	}
	check(p->n_labels <= KUBE_MAX_LABELS, "n_labels");
	check(!p->labels_overflow || p->n_labels == 0, "labels kept on overflow");
	size_t bytes = 0;
	for (size_t i = 0; i < p->n_labels; i++) {
		const struct kube_label *l = &p->labels[i];
		check(in_blob(p, l->key) && in_blob(p, l->value), "label outside its blob");
		bytes += strlen(l->key) + strlen(l->value);
		check(kube_pod_label(p, l->key) == l->value, "label lookup (duplicate key?)");
	}
	check(bytes <= KUBE_MAX_LABEL_BYTES, "label bytes");
	if (p->labels_overflow && p->n_labels == 0)
		check(kube_pod_label(p, "") == NULL, "label found on overflow");
}

static bool same_pod(const struct kube_pod *a, const struct kube_pod *b)
{
	if (strcmp(a->uid, b->uid) || strcmp(a->ns, b->ns) || strcmp(a->name, b->name) ||
	    strcmp(a->resource_version, b->resource_version) || strcmp(a->created, b->created) ||
	    a->terminating != b->terminating || a->host_network != b->host_network ||
	    a->phase != b->phase || a->n_ips != b->n_ips || a->n_labels != b->n_labels ||
	    a->labels_overflow != b->labels_overflow)
		return false;
	for (size_t i = 0; i < a->n_ips; i++)
		if (!addr_equal(&a->ips[i], &b->ips[i]))
			return false;
	for (size_t i = 0; i < a->n_labels; i++)
		if (strcmp(a->labels[i].key, b->labels[i].key) ||
		    strcmp(a->labels[i].value, b->labels[i].value))
			return false;
	return true;
}

/* ---- the pod map ---------------------------------------------------------------- */

struct run {
	struct podmap *m;
	bool refused; /* the map answered FULL or NOMEM this run */
	uint64_t gen;
	size_t calls, stop_at;
	struct kube_pod first;
};

static bool lists(const struct pod_info *p, const struct pc_addr *a)
{
	for (size_t i = 0; i < p->n_ips; i++)
		if (addr_equal(&p->ips[i], a))
			return true;
	return false;
}

static void feed(struct run *r, const struct kube_pod *pod, bool remove)
{
	int rc = PODMAP_REMOVED;
	if (remove)
		podmap_remove(r->m, pod->uid);
	else
		rc = podmap_apply(r->m, pod, r->gen);
	check(rc >= PODMAP_NOMEM && rc <= PODMAP_REMOVED, "podmap status");
	r->refused |= rc == PODMAP_FULL || rc == PODMAP_NOMEM;
	check(podmap_count(r->m) <= MAP_MAX, "count over max_pods");
	for (size_t i = 0; i < pod->n_ips; i++) {
		struct pc_addr a = pod->ips[i], m6 = {.family = ADDR_V6};
		struct pod_info *p = podmap_lookup(r->m, &a);
		if (rc == PODMAP_MAPPED && !r->refused)
			check(p != NULL, "a mapped pod's address has no owner");
		if (p != NULL) {
			check(lists(p, &a), "owner does not list the address");
			check(rc == PODMAP_MAPPED || strcmp(p->uid, pod->uid) != 0,
			      "a removed pod still owns an address");
			check(!p->labels_overflow || p->n_labels == 0,
			      "pod_info labels on overflow");
		}
		if (a.family == ADDR_V4) {
			m6.b[10] = m6.b[11] = 0xff;
			memcpy(m6.b + 12, a.b, 4);
			struct pod_info *q = podmap_lookup(r->m, &m6);
			check(q == p, "mapped lookup differs");
			pod_info_unref(q);
		}
		pod_info_unref(p);
	}
}

static int on_pod(void *arg, const struct kube_pod *pod)
{
	struct run *r = arg;
	check_pod(pod);
	if (r->calls == 0)
		memcpy(&r->first, pod, sizeof(r->first));
	r->calls++;
	if (r->stop_at != 0)
		return r->calls == r->stop_at;
	feed(r, pod, false);
	return 0;
}

/* ---- one document ---------------------------------------------------------------- */

static size_t trimmed(const uint8_t *d, size_t n)
{
	while (n > 0 &&
	       (d[n - 1] == ' ' || d[n - 1] == '\t' || d[n - 1] == '\r' || d[n - 1] == '\n'))
		n--;
	return n;
}

static void gate_idempotent(const char *buf, size_t n)
{
	const char *out, *out2;
	size_t outlen, outlen2;
	char *copy, *copy2;
	int rc = json_gate(buf, n, KUBE_MAX_DEPTH, &out, &outlen, &copy, NULL, 0);
	if (rc != JSON_GATE_OK || copy == NULL)
		return;
	rc = json_gate(out, outlen, KUBE_MAX_DEPTH, &out2, &outlen2, &copy2, NULL, 0);
	check(rc == JSON_GATE_OK && copy2 == NULL, "gate rewrite is not final");
	free(copy);
}

static void run_list(struct run *r, const char *buf, size_t n)
{
	static struct kube_list_meta meta, meta2;
	r->calls = r->stop_at = 0;
	int rc = kube_parse_list(buf, n, on_pod, r, &meta, err, sizeof(err));
	check_err(rc);
	check(rc != KUBE_JSON_ERR_ABORT, "abort without a stop");
	if (rc != KUBE_JSON_OK) {
		check(all_zero(&meta, sizeof(meta)), "meta not zeroed");
		check(r->calls == 0, "callback on a refused page");
		return;
	}
	check(meta.n_items == r->calls, "n_items != callbacks");
	check(meta.resource_version[0] && terminated(meta.resource_version, KUBE_RV_MAX) &&
	          terminated(meta.cont, KUBE_CONTINUE_MAX),
	      "list meta");
	/* again, stopping at the first pod (the same meta: a deterministic walk) */
	size_t calls = r->calls;
	r->calls = 0;
	r->stop_at = 1;
	rc = kube_parse_list(buf, n, on_pod, r, &meta2, NULL, 0);
	check(calls == 0 ? rc == KUBE_JSON_OK && memcmp(&meta, &meta2, sizeof(meta)) == 0
	                 : rc == KUBE_JSON_ERR_ABORT && r->calls == 1,
	      "stopping at the first pod");
	size_t t = trimmed((const uint8_t *)buf, n);
	check(kube_parse_list(buf, t - 1, NULL, NULL, &meta2, NULL, 0) != KUBE_JSON_OK,
	      "a list accepted without its last byte");
}

static void run_event(struct run *r, const char *buf, size_t n)
{
	static struct kube_event ev, ev2;
	int rc = kube_parse_event(buf, n, &ev, err, sizeof(err));
	check_err(rc);
	check(rc != KUBE_JSON_ERR_ABORT, "ABORT from an event");
	if (rc != KUBE_JSON_OK) {
		check(all_zero(&ev, sizeof(ev)), "event not zeroed");
		return;
	}
	check(ev.type >= KUBE_EV_ADDED && ev.type <= KUBE_EV_ERROR, "event type");
	check(terminated(ev.resource_version, KUBE_RV_MAX) &&
	          terminated(ev.reason, sizeof(ev.reason)),
	      "event strings");
	size_t t = trimmed((const uint8_t *)buf, n);
	check(kube_parse_event(buf, t - 1, &ev2, NULL, 0) != KUBE_JSON_OK,
	      "an event accepted without its last byte");
	switch (ev.type) {
	case KUBE_EV_ADDED:
	case KUBE_EV_MODIFIED:
	case KUBE_EV_DELETED:
		check_pod(&ev.pod);
		check(strcmp(ev.resource_version, ev.pod.resource_version) == 0, "event rv");
		check(kube_parse_event(buf, n, &ev2, NULL, 0) == KUBE_JSON_OK &&
		          same_pod(&ev.pod, &ev2.pod),
		      "pod not deterministic");
		feed(r, &ev.pod, ev.type == KUBE_EV_DELETED);
		break;
	case KUBE_EV_BOOKMARK:
		check(ev.resource_version[0] != '\0', "bookmark without resourceVersion");
		break;
	case KUBE_EV_ERROR:
		check(ev.resource_version[0] == '\0', "error with resourceVersion");
		break;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct run r = {.m = podmap_new(MAP_MAX), .gen = 1};
	const char *buf = (const char *)data;
	if (r.m == NULL)
		return 0;

	gate_idempotent(buf, size);
	run_list(&r, buf, size);
	r.gen = 2;
	run_event(&r, buf, size);
	/* a watch stream: each line an event */
	size_t lines = 0;
	for (size_t off = 0; off < size && lines < MAX_LINES; lines++) {
		const uint8_t *nl = memchr(data + off, '\n', size - off);
		size_t end = nl != NULL ? (size_t)(nl - data) : size;
		if (nl == NULL && off == 0)
			break; /* one line: done above */
		r.gen = 3 + lines;
		run_event(&r, buf + off, end - off);
		off = end + 1;
	}
	/* the first list pod again, now terminating, then a relist that keeps nothing */
	if (r.calls > 0 && r.stop_at == 1) {
		r.first.terminating = !r.first.terminating;
		r.first.n_labels = 0;
		r.first.labels_overflow = false;
		feed(&r, &r.first, false);
	}
	size_t before = podmap_count(r.m);
	size_t swept = podmap_sweep(r.m, NULL, r.gen + 1);
	check(swept == before && podmap_count(r.m) == 0, "sweep left pods behind");
	podmap_free(r.m);
	return 0;
}
