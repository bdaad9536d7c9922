/* Unit tests for the pod map (proxy/podmap.c): ownership rules, generations, limits, threads. */
#include "podmap.h"

#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#define T0 "2026-01-15T09:00:00Z"
#define T1 "2026-01-15T09:00:01Z"
#define T2 "2026-01-15T09:00:02Z"

static struct pc_addr ip(const char *s)
{
	struct pc_addr a;
	memset(&a, 0, sizeof(a));
	if (strchr(s, ':') != NULL)
		assert_int_equal(addr_parse_ipv6(s, strlen(s), &a), ADDR_OK);
	else
		assert_int_equal(addr_parse_ipv4_strict(s, strlen(s), &a), ADDR_OK);
	return a;
}

static void add_label(struct kube_pod *p, const char *k, const char *v)
{
	size_t used = 0;
	for (size_t i = 0; i < p->n_labels; i++)
		used += strlen(p->labels[i].key) + strlen(p->labels[i].value) + 2;
	char *s = p->label_blob + used;
	assert_true(used + strlen(k) + strlen(v) + 2 <= sizeof(p->label_blob));
	strcpy(s, k);
	strcpy(s + strlen(k) + 1, v);
	p->labels[p->n_labels].key = s;
	p->labels[p->n_labels].value = s + strlen(k) + 1;
	p->n_labels++;
}

/* A running pod in ns with comma-separated IPs; label "self" = uid. */
static void mkpod(struct kube_pod *p, const char *uid, const char *ns, const char *created,
                  const char *ips)
{
	memset(p, 0, sizeof(*p));
	snprintf(p->uid, sizeof(p->uid), "%s", uid);
	snprintf(p->ns, sizeof(p->ns), "%s", ns);
	snprintf(p->name, sizeof(p->name), "pod-%s", uid);
	snprintf(p->created, sizeof(p->created), "%s", created);
	p->phase = KUBE_PHASE_RUNNING;
	char buf[256];
	snprintf(buf, sizeof(buf), "%s", ips);
	for (char *save = NULL, *t = strtok_r(buf, ",", &save); t != NULL;
	     t = strtok_r(NULL, ",", &save)) {
		assert_true(p->n_ips < KUBE_MAX_POD_IPS);
		p->ips[p->n_ips++] = ip(t);
	}
	add_label(p, "self", uid);
}

static struct kube_pod P;

/* Apply a running pod; returns the result. */
static int put(struct podmap *m, const char *uid, const char *created, const char *ips,
               uint64_t gen)
{
	mkpod(&P, uid, "ns", created, ips);
	return podmap_apply(m, &P, gen);
}

/* The uid owning addr ("" when none), checked against the returned pod_info. */
static const char *owner(struct podmap *m, const char *addr)
{
	static char uid[KUBE_UID_MAX];
	struct pc_addr a = ip(addr);
	struct pod_info *p = podmap_lookup(m, &a);
	if (p == NULL)
		return "";
	bool has = false;
	for (size_t i = 0; i < p->n_ips; i++)
		has |= addr_equal(&p->ips[i], &a) ||
		       (a.family == ADDR_V6 && p->ips[i].family == ADDR_V4 &&
		        memcmp(a.b + 12, p->ips[i].b, 4) == 0);
	assert_true(has);
	assert_string_equal(pod_info_label(p, "self"), p->uid);
	snprintf(uid, sizeof(uid), "%s", p->uid);
	pod_info_unref(p);
	return uid;
}

/* ---- basics ------------------------------------------------------------------- */

static void test_add_modify_delete(void **state)
{
	struct podmap *m = podmap_new(0);
	assert_non_null(m);
	assert_int_equal(podmap_count(m), 0);
	mkpod(&P, "a", "ci", T0, "10.0.0.1,fd00::1");
	add_label(&P, "tier", "one");
	assert_int_equal(podmap_apply(m, &P, 1), PODMAP_MAPPED);
	assert_int_equal(podmap_count(m), 1);
	assert_string_equal(owner(m, "10.0.0.1"), "a");
	assert_string_equal(owner(m, "fd00::1"), "a");
	assert_string_equal(owner(m, "10.0.0.2"), "");

	struct pc_addr a = ip("10.0.0.1");
	struct pod_info *before = podmap_lookup(m, &a);
	assert_non_null(before);
	assert_string_equal(before->ns, "ci");
	assert_string_equal(before->name, "pod-a");
	assert_string_equal(before->created, T0);
	assert_int_equal(before->n_ips, 2);
	assert_false(before->terminating);
	assert_string_equal(pod_info_label(before, "tier"), "one");
	assert_null(pod_info_label(before, "nope"));

	/* MODIFIED: a new pod_info; the reference held keeps the old one intact */
	mkpod(&P, "a", "ci", T0, "10.0.0.1,fd00::1");
	add_label(&P, "tier", "two");
	P.terminating = true;
	assert_int_equal(podmap_apply(m, &P, 1), PODMAP_MAPPED);
	assert_int_equal(podmap_count(m), 1);
	memset(&P, 0x5a, sizeof(P)); /* the map copied what it keeps */
	struct pod_info *after = podmap_lookup(m, &a);
	assert_non_null(after);
	assert_ptr_not_equal(after, before);
	assert_string_equal(pod_info_label(after, "tier"), "two");
	assert_true(after->terminating);
	assert_string_equal(pod_info_label(before, "tier"), "one");
	assert_false(before->terminating);

	podmap_remove(m, "a");
	assert_int_equal(podmap_count(m), 0);
	assert_string_equal(owner(m, "10.0.0.1"), "");
	assert_string_equal(owner(m, "fd00::1"), "");
	podmap_remove(m, "a"); /* twice: no-op */
	podmap_remove(m, "never");
	assert_string_equal(pod_info_label(after, "tier"), "two");
	pod_info_unref(before);
	pod_info_unref(after);
	podmap_free(m);
}

static void test_null_and_trivia(void **state)
{
	podmap_free(NULL);
	pod_info_unref(NULL);
	assert_null(pod_info_ref(NULL));
	assert_null(pod_info_label(NULL, "x"));
	struct podmap *m = podmap_new(0);
	assert_non_null(m);
	assert_null(podmap_lookup(m, NULL));
	struct pc_addr bad = {.family = 5};
	assert_null(podmap_lookup(m, &bad));
	assert_int_equal(put(m, "a", T0, "10.0.0.1", 1), PODMAP_MAPPED);
	assert_null(pod_info_label(NULL, "self"));
	/* an empty uid cannot be keyed */
	assert_int_equal(put(m, "", T0, "10.0.0.2", 1), PODMAP_REMOVED);
	assert_string_equal(owner(m, "10.0.0.2"), "");
	assert_int_equal(podmap_count(m), 1);
	podmap_free(m);
}

static void test_mapped_ipv4(void **state)
{
	struct podmap *m = podmap_new(0);
	assert_int_equal(put(m, "a", T0, "10.0.0.1", 1), PODMAP_MAPPED);
	assert_string_equal(owner(m, "::ffff:10.0.0.1"), "a");
	assert_string_equal(owner(m, "::ffff:10.0.0.2"), "");
	assert_string_equal(owner(m, "::10.0.0.1"), ""); /* compat, not mapped */
	/* a pod whose IP arrives in mapped form is held as IPv4, once */
	assert_int_equal(put(m, "b", T1, "::ffff:10.0.0.9,10.0.0.9", 1), PODMAP_MAPPED);
	assert_string_equal(owner(m, "10.0.0.9"), "b");
	struct pc_addr a = ip("10.0.0.9");
	struct pod_info *p = podmap_lookup(m, &a);
	assert_int_equal(p->n_ips, 1);
	assert_int_equal(p->ips[0].family, ADDR_V4);
	pod_info_unref(p);
	podmap_free(m);
}

static void test_labels_copied(void **state)
{
	struct podmap *m = podmap_new(0);
	mkpod(&P, "a", "ci", T0, "10.0.0.1");
	for (int i = 0; i < KUBE_MAX_LABELS - 1; i++) {
		char k[16], v[16];
		snprintf(k, sizeof(k), "k%d", i);
		snprintf(v, sizeof(v), "v%d", i);
		add_label(&P, k, v);
	}
	assert_int_equal(podmap_apply(m, &P, 1), PODMAP_MAPPED);
	struct pc_addr a = ip("10.0.0.1");
	struct pod_info *p = podmap_lookup(m, &a);
	assert_int_equal(p->n_labels, KUBE_MAX_LABELS);
	assert_string_equal(pod_info_label(p, "k62"), "v62");
	assert_string_equal(pod_info_label(p, "k0"), "v0");
	pod_info_unref(p);
	/* overflow: no labels, and pod_info_label says so */
	P.labels_overflow = true;
	assert_int_equal(podmap_apply(m, &P, 1), PODMAP_MAPPED);
	p = podmap_lookup(m, &a);
	assert_true(p->labels_overflow);
	assert_int_equal(p->n_labels, 0);
	assert_null(pod_info_label(p, "self"));
	pod_info_unref(p);
	podmap_free(m);
}

/* ---- ownership ---------------------------------------------------------------- */

static void test_ip_reuse(void **state)
{
	struct podmap *m = podmap_new(0);
	assert_int_equal(put(m, "old", T0, "10.0.0.1", 1), PODMAP_MAPPED);
	/* the IP is reused before old's DELETED arrives: the newer pod wins */
	assert_int_equal(put(m, "new", T1, "10.0.0.1", 1), PODMAP_MAPPED);
	assert_string_equal(owner(m, "10.0.0.1"), "new");
	/* old's late MODIFIED does not steal it back */
	assert_int_equal(put(m, "old", T0, "10.0.0.1", 1), PODMAP_MAPPED);
	assert_string_equal(owner(m, "10.0.0.1"), "new");
	mkpod(&P, "old", "ns", T0, "10.0.0.1");
	P.terminating = true;
	assert_int_equal(podmap_apply(m, &P, 1), PODMAP_MAPPED);
	assert_string_equal(owner(m, "10.0.0.1"), "new");
	/* old's DELETED does not remove the new owner */
	podmap_remove(m, "old");
	assert_string_equal(owner(m, "10.0.0.1"), "new");
	assert_int_equal(podmap_count(m), 1);
	podmap_free(m);

	/* the same, applied in the other order: age decides, not arrival */
	m = podmap_new(0);
	assert_int_equal(put(m, "new", T1, "10.0.0.1", 1), PODMAP_MAPPED);
	assert_int_equal(put(m, "old", T0, "10.0.0.1", 1), PODMAP_MAPPED);
	assert_string_equal(owner(m, "10.0.0.1"), "new");
	/* old finishing (Succeeded) removes it, not the owner */
	mkpod(&P, "old", "ns", T0, "10.0.0.1");
	P.phase = KUBE_PHASE_SUCCEEDED;
	assert_int_equal(podmap_apply(m, &P, 1), PODMAP_REMOVED);
	assert_string_equal(owner(m, "10.0.0.1"), "new");
	podmap_free(m);
}

static void test_terminating_loses(void **state)
{
	struct podmap *m = podmap_new(0);
	assert_int_equal(put(m, "live", T0, "10.0.0.1", 1), PODMAP_MAPPED);
	mkpod(&P, "dying", "ns", T2, "10.0.0.1");
	P.terminating = true;
	assert_int_equal(podmap_apply(m, &P, 1), PODMAP_MAPPED);
	assert_string_equal(owner(m, "10.0.0.1"), "live"); /* older but not terminating */
	/* live starts terminating too: now the later creation wins */
	mkpod(&P, "live", "ns", T0, "10.0.0.1");
	P.terminating = true;
	assert_int_equal(podmap_apply(m, &P, 1), PODMAP_MAPPED);
	assert_string_equal(owner(m, "10.0.0.1"), "dying");
	/* the owner leaves: the remaining claimant, terminating or not, takes over */
	podmap_remove(m, "dying");
	assert_string_equal(owner(m, "10.0.0.1"), "live");
	podmap_remove(m, "live");
	assert_string_equal(owner(m, "10.0.0.1"), "");
	podmap_free(m);
}

static void test_fallback_chain(void **state)
{
	struct podmap *m = podmap_new(0);
	assert_int_equal(put(m, "a", T0, "10.0.0.1", 1), PODMAP_MAPPED);
	assert_int_equal(put(m, "b", T1, "10.0.0.1,10.0.0.2", 1), PODMAP_MAPPED);
	assert_int_equal(put(m, "c", T2, "10.0.0.1", 1), PODMAP_MAPPED);
	assert_string_equal(owner(m, "10.0.0.1"), "c");
	assert_string_equal(owner(m, "10.0.0.2"), "b");
	podmap_remove(m, "c");
	assert_string_equal(owner(m, "10.0.0.1"), "b");
	/* b moves off the address: it passes to a */
	assert_int_equal(put(m, "b", T1, "10.0.0.2", 1), PODMAP_MAPPED);
	assert_string_equal(owner(m, "10.0.0.1"), "a");
	/* b has no IP any more: removed */
	mkpod(&P, "b", "ns", T1, "");
	assert_int_equal(podmap_apply(m, &P, 1), PODMAP_REMOVED);
	assert_string_equal(owner(m, "10.0.0.2"), "");
	assert_int_equal(podmap_count(m), 1);
	podmap_free(m);
}

static void test_tie_break(void **state)
{
	struct podmap *m = podmap_new(0);
	/* same second: the later claim wins, and keeps winning */
	assert_int_equal(put(m, "first", T0, "10.0.0.1", 1), PODMAP_MAPPED);
	assert_int_equal(put(m, "second", T0, "10.0.0.1", 1), PODMAP_MAPPED);
	assert_string_equal(owner(m, "10.0.0.1"), "second");
	assert_int_equal(put(m, "first", T0, "10.0.0.1", 1), PODMAP_MAPPED); /* late MODIFIED */
	assert_string_equal(owner(m, "10.0.0.1"), "second");
	/* first leaves the address and claims it again: a new, later claim */
	assert_int_equal(put(m, "first", T0, "10.0.0.3", 1), PODMAP_MAPPED);
	assert_int_equal(put(m, "first", T0, "10.0.0.3,10.0.0.1", 1), PODMAP_MAPPED);
	assert_string_equal(owner(m, "10.0.0.1"), "first");
	/* reordering a pod's IPs keeps its claims */
	assert_int_equal(put(m, "second", T0, "10.0.0.9,10.0.0.1", 1), PODMAP_MAPPED);
	assert_string_equal(owner(m, "10.0.0.1"), "first");
	podmap_free(m);
}

static void test_timestamps(void **state)
{
	static const struct {
		const char *older, *newer;
	} cases[] = {
	    {"2026-01-15T09:00:00Z",
	     "2026-01-15T09:00:00.5Z"}, /* lexicographically the other way */
	    {"2026-01-15T09:00:00.1Z", "2026-01-15T09:00:00.9Z"},
	    {"2026-01-15T09:00:00.09Z", "2026-01-15T09:00:00.1Z"},
	    {"2026-01-15T09:00:00.999999999Z", "2026-01-15T09:00:01Z"},
	    {"2026-01-15T09:00:00.1234567891Z", "2026-01-15T09:00:00.1234567899Z"}, /* >ns: tie */
	    {"2026-01-15T10:00:00+02:00", "2026-01-15T09:00:00Z"},
	    {"2026-01-15T09:00:00Z", "2026-01-15t09:00:00.000001z"},
	    {"2025-12-31T23:59:60Z", "2026-01-01T00:00:00.5Z"},
	    {"1969-12-31T23:59:59Z", "1970-01-01T00:00:00Z"},
	    {"", "0001-01-01T00:00:00Z"},
	    {"garbage", "2026-01-15T09:00:00Z"},
	    {"2026-13-01T00:00:00Z", "2026-01-15T09:00:00Z"},
	    {"2026-01-15T09:00:00", "2026-01-15T09:00:00Z"},
	    {"2026-01-15T09:00:00.Z", "2026-01-15T09:00:00Z"},
	    {"2026-01-15T24:00:00Z", "2026-01-15T09:00:00Z"},
	    {"2026-01-15T09:00:00+2:00", "2026-01-15T09:00:00Z"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		/* apply the newer first, so a tie (same value) shows as "older" winning */
		struct podmap *m = podmap_new(0);
		bool tie = i == 4;
		assert_int_equal(put(m, "newer", cases[i].newer, "10.0.0.1", 1), PODMAP_MAPPED);
		assert_int_equal(put(m, "older", cases[i].older, "10.0.0.1", 1), PODMAP_MAPPED);
		if (strcmp(owner(m, "10.0.0.1"), tie ? "older" : "newer") != 0)
			fail_msg("case %zu: %s vs %s", i, cases[i].older, cases[i].newer);
		podmap_free(m);
	}
	/* both unparseable: a tie, the later claim wins */
	struct podmap *m = podmap_new(0);
	assert_int_equal(put(m, "x", "", "10.0.0.1", 1), PODMAP_MAPPED);
	assert_int_equal(put(m, "y", "nonsense", "10.0.0.1", 1), PODMAP_MAPPED);
	assert_string_equal(owner(m, "10.0.0.1"), "y");
	podmap_free(m);
}

static void test_ineligible(void **state)
{
	struct podmap *m = podmap_new(0);
	enum kube_phase gone[] = {KUBE_PHASE_SUCCEEDED, KUBE_PHASE_FAILED};
	for (size_t i = 0; i < 2; i++) {
		assert_int_equal(put(m, "a", T0, "10.0.0.1", 1), PODMAP_MAPPED);
		mkpod(&P, "a", "ns", T0, "10.0.0.1");
		P.phase = gone[i];
		assert_int_equal(podmap_apply(m, &P, 1), PODMAP_REMOVED);
		assert_string_equal(owner(m, "10.0.0.1"), "");
		assert_int_equal(podmap_count(m), 0);
	}
	assert_int_equal(put(m, "a", T0, "10.0.0.1", 1), PODMAP_MAPPED);
	mkpod(&P, "a", "ns", T0, "10.0.0.1");
	P.host_network = true;
	assert_int_equal(podmap_apply(m, &P, 1), PODMAP_REMOVED);
	assert_string_equal(owner(m, "10.0.0.1"), "");
	/* never there: still REMOVED */
	assert_int_equal(podmap_apply(m, &P, 1), PODMAP_REMOVED);
	/* Pending, Unknown, unset and other phases with an IP do map */
	enum kube_phase live[] = {KUBE_PHASE_PENDING, KUBE_PHASE_UNKNOWN, KUBE_PHASE_UNSET,
	                          KUBE_PHASE_OTHER};
	for (size_t i = 0; i < 4; i++) {
		mkpod(&P, "b", "ns", T0, "10.0.0.2");
		P.phase = live[i];
		assert_int_equal(podmap_apply(m, &P, 1), PODMAP_MAPPED);
		assert_string_equal(owner(m, "10.0.0.2"), "b");
	}
	/* no IP yet: not mapped */
	mkpod(&P, "c", "ns", T0, "");
	P.phase = KUBE_PHASE_PENDING;
	assert_int_equal(podmap_apply(m, &P, 1), PODMAP_REMOVED);
	assert_int_equal(podmap_count(m), 1);
	podmap_free(m);
}

static void test_ip_change(void **state)
{
	struct podmap *m = podmap_new(0);
	assert_int_equal(put(m, "a", T0, "10.0.0.1,fd00::1", 1), PODMAP_MAPPED);
	assert_int_equal(put(m, "a", T0, "fd00::1", 1), PODMAP_MAPPED);
	assert_string_equal(owner(m, "10.0.0.1"), "");
	assert_string_equal(owner(m, "fd00::1"), "a");
	assert_int_equal(put(m, "a", T0, "10.0.0.7,10.0.0.8,10.0.0.9,fd00::7", 1), PODMAP_MAPPED);
	assert_string_equal(owner(m, "fd00::1"), "");
	assert_string_equal(owner(m, "10.0.0.8"), "a");
	assert_string_equal(owner(m, "fd00::7"), "a");
	assert_int_equal(put(m, "a", T0, "10.0.0.1", 1), PODMAP_MAPPED);
	assert_string_equal(owner(m, "10.0.0.7"), "");
	assert_string_equal(owner(m, "fd00::7"), "");
	assert_string_equal(owner(m, "10.0.0.1"), "a");
	/* duplicates in the pod's list count once */
	mkpod(&P, "a", "ns", T0, "10.0.0.1,10.0.0.1,::ffff:10.0.0.1");
	assert_int_equal(podmap_apply(m, &P, 1), PODMAP_MAPPED);
	podmap_remove(m, "a");
	assert_string_equal(owner(m, "10.0.0.1"), "");
	podmap_free(m);
}

/* ---- generations and bounds ---------------------------------------------------- */

static void test_sweep(void **state)
{
	struct podmap *m = podmap_new(0);
	mkpod(&P, "a1", "ns-a", T0, "10.0.1.1");
	assert_int_equal(podmap_apply(m, &P, 1), PODMAP_MAPPED);
	mkpod(&P, "a2", "ns-a", T0, "10.0.1.2");
	assert_int_equal(podmap_apply(m, &P, 1), PODMAP_MAPPED);
	mkpod(&P, "b1", "ns-b", T0, "10.0.2.1");
	assert_int_equal(podmap_apply(m, &P, 1), PODMAP_MAPPED);
	/* a relist of ns-a at generation 2 sees only a2, and a3 reusing a1's address */
	mkpod(&P, "a2", "ns-a", T0, "10.0.1.2");
	assert_int_equal(podmap_apply(m, &P, 2), PODMAP_MAPPED);
	mkpod(&P, "a3", "ns-a", T0, "10.0.1.1");
	assert_int_equal(podmap_apply(m, &P, 2), PODMAP_MAPPED);
	assert_int_equal(podmap_sweep(m, "ns-a", 2), 1); /* a1 */
	assert_int_equal(podmap_count(m), 3);
	assert_string_equal(owner(m, "10.0.1.1"), "a3");
	assert_string_equal(owner(m, "10.0.2.1"), "b1"); /* other namespace untouched */
	assert_int_equal(podmap_sweep(m, "ns-a", 2), 0);
	assert_int_equal(podmap_sweep(m, "ns-c", 99), 0);
	/* cluster-wide relist at generation 3 that saw only a3 */
	mkpod(&P, "a3", "ns-a", T0, "10.0.1.1");
	assert_int_equal(podmap_apply(m, &P, 3), PODMAP_MAPPED);
	assert_int_equal(podmap_sweep(m, NULL, 3), 2);
	assert_int_equal(podmap_count(m), 1);
	assert_string_equal(owner(m, "10.0.1.2"), "");
	assert_string_equal(owner(m, "10.0.2.1"), "");
	assert_string_equal(owner(m, "10.0.1.1"), "a3");
	/* a sweep falls back to the surviving claimant */
	mkpod(&P, "z", "ns-a", T2, "10.0.1.1");
	assert_int_equal(podmap_apply(m, &P, 3), PODMAP_MAPPED);
	assert_string_equal(owner(m, "10.0.1.1"), "z");
	mkpod(&P, "a3", "ns-a", T0, "10.0.1.1");
	assert_int_equal(podmap_apply(m, &P, 4), PODMAP_MAPPED);
	assert_int_equal(podmap_sweep(m, "ns-a", 4), 1);
	assert_string_equal(owner(m, "10.0.1.1"), "a3");
	podmap_free(m);
}

static void test_max_pods(void **state)
{
	struct podmap *m = podmap_new(2);
	assert_int_equal(put(m, "a", T0, "10.0.0.1", 1), PODMAP_MAPPED);
	assert_int_equal(put(m, "b", T0, "10.0.0.2", 1), PODMAP_MAPPED);
	assert_int_equal(put(m, "c", T1, "10.0.0.3", 1), PODMAP_FULL);
	assert_int_equal(podmap_count(m), 2);
	assert_string_equal(owner(m, "10.0.0.3"), "");
	/* existing pods still update */
	assert_int_equal(put(m, "a", T0, "10.0.0.1,10.0.0.4", 1), PODMAP_MAPPED);
	assert_string_equal(owner(m, "10.0.0.4"), "a");
	/* a pod the map cannot hold takes b's address: fail closed there, never "b" */
	assert_int_equal(put(m, "d", T2, "10.0.0.2", 1), PODMAP_FULL);
	assert_string_equal(owner(m, "10.0.0.2"), "");
	assert_int_equal(put(m, "b", T0, "10.0.0.2", 1),
	                 PODMAP_MAPPED); /* b's MODIFIED: still closed */
	assert_string_equal(owner(m, "10.0.0.2"), "");
	assert_string_equal(owner(m, "10.0.0.1"), "a");
	/* room again: d arrives, and owns it */
	podmap_remove(m, "a");
	assert_int_equal(put(m, "d", T2, "10.0.0.2", 1), PODMAP_MAPPED);
	assert_string_equal(owner(m, "10.0.0.2"), "d");
	assert_int_equal(podmap_count(m), 2);
	/* the refused mark also goes when the last claimant leaves */
	assert_int_equal(put(m, "e", T2, "10.0.0.2", 1), PODMAP_FULL);
	assert_string_equal(owner(m, "10.0.0.2"), "");
	podmap_remove(m, "b");
	podmap_remove(m, "d");
	assert_int_equal(put(m, "b", T0, "10.0.0.2", 1), PODMAP_MAPPED);
	assert_string_equal(owner(m, "10.0.0.2"), "b");
	podmap_free(m);

	/* the default bound */
	m = podmap_new(0);
	for (int i = 0; i < 65536; i++) {
		char uid[16], addr[32];
		snprintf(uid, sizeof(uid), "u%d", i);
		snprintf(addr, sizeof(addr), "10.%d.%d.1", i >> 8, i & 255);
		assert_int_equal(put(m, uid, T0, addr, 1), PODMAP_MAPPED);
	}
	assert_int_equal(put(m, "one-more", T0, "10.255.255.255", 1), PODMAP_FULL);
	assert_int_equal(podmap_count(m), 65536);
	assert_string_equal(owner(m, "10.1.2.1"), "u258");
	assert_int_equal(podmap_sweep(m, NULL, 2), 65536);
	assert_int_equal(podmap_count(m), 0);
	podmap_free(m);
}

static void test_refs_outlive_map(void **state)
{
	struct podmap *m = podmap_new(0);
	struct pod_info *held[3];
	assert_int_equal(put(m, "a", T0, "10.0.0.1", 1), PODMAP_MAPPED);
	assert_int_equal(put(m, "b", T0, "10.0.0.2", 1), PODMAP_MAPPED);
	struct pc_addr a = ip("10.0.0.1"), b = ip("10.0.0.2");
	held[0] = podmap_lookup(m, &a);
	held[1] = podmap_lookup(m, &b);
	held[2] = pod_info_ref(held[1]);
	assert_ptr_equal(held[1], held[2]);
	podmap_remove(m, "a");
	podmap_free(m);
	assert_string_equal(held[0]->uid, "a");
	assert_string_equal(pod_info_label(held[0], "self"), "a");
	assert_string_equal(pod_info_label(held[1], "self"), "b");
	for (int i = 0; i < 3; i++)
		pod_info_unref(held[i]);
}

static void test_many_pods(void **state)
{
	struct podmap *m = podmap_new(0);
	char uid[16], addr[48];
	for (int i = 0; i < 20000; i++) {
		snprintf(uid, sizeof(uid), "u%d", i);
		snprintf(addr, sizeof(addr), "10.9.%d.%d,fd00::%x", i >> 8, i & 255, i);
		assert_int_equal(put(m, uid, T0, addr, (uint64_t)(i % 2)), PODMAP_MAPPED);
	}
	assert_int_equal(podmap_count(m), 20000);
	assert_int_equal(podmap_sweep(m, NULL, 1), 10000); /* the even ones */
	for (int i = 0; i < 20000; i += 7) {
		snprintf(uid, sizeof(uid), "u%d", i);
		snprintf(addr, sizeof(addr), "fd00::%x", i);
		assert_string_equal(owner(m, addr), i % 2 ? uid : "");
	}
	podmap_free(m);
}

/* ---- threads ------------------------------------------------------------------- */

#define STRESS_IPS     64
#define STRESS_WRITES  40000
#define STRESS_READERS 4

struct stress {
	struct podmap *m;
	int done; /* atomic */
	unsigned long hits[STRESS_READERS]; /* atomic */
};

struct reader_arg {
	struct stress *s;
	int id;
};

static void *reader(void *arg)
{
	struct reader_arg *r = arg;
	struct stress *s = r->s;
	uint32_t x = 2463534242u + (uint32_t)r->id;
	/* bounded: stops when the writer is done, or after this many lookups */
	for (long k = 0; k < 20000000 && !__atomic_load_n(&s->done, __ATOMIC_ACQUIRE); k++) {
		x ^= x << 13;
		x ^= x >> 17;
		x ^= x << 5;
		struct pc_addr a = {.family = ADDR_V4, .b = {10, 7, 0, (uint8_t)(x % STRESS_IPS)}};
		struct pod_info *p = podmap_lookup(s->m, &a);
		if (p == NULL)
			continue;
		/* a published pod_info is whole and never changes */
		bool has = false;
		for (size_t i = 0; i < p->n_ips; i++)
			has |= addr_equal(&p->ips[i], &a);
		const char *self = pod_info_label(p, "self");
		if (!has || self == NULL || strcmp(self, p->uid) != 0 || p->n_ips == 0 ||
		    p->n_ips > KUBE_MAX_POD_IPS)
			abort();
		__atomic_add_fetch(&s->hits[r->id], 1, __ATOMIC_RELAXED);
		pod_info_unref(p);
	}
	return NULL;
}

/* Has every reader found a pod at least once? */
static bool all_readers_hit(struct stress *s)
{
	for (int i = 0; i < STRESS_READERS; i++)
		if (__atomic_load_n(&s->hits[i], __ATOMIC_RELAXED) == 0)
			return false;
	return true;
}

static void test_threads(void **state)
{
	struct stress s = {.m = podmap_new(48)};
	struct reader_arg args[STRESS_READERS];
	pthread_t th[STRESS_READERS];
	struct kube_pod *pod = malloc(sizeof(*pod));
	assert_non_null(s.m);
	assert_non_null(pod);
	for (int i = 0; i < STRESS_READERS; i++) {
		args[i] = (struct reader_arg){&s, i};
		assert_int_equal(pthread_create(&th[i], NULL, reader, &args[i]), 0);
	}
	/* the readers must really run during the churn: one pod, then wait (<= 10 s) until each
	 * has found it */
	mkpod(pod, "p0", "ns", "2026-01-15T09:00:00Z", "10.7.0.0");
	assert_int_equal(podmap_apply(s.m, pod, 0), PODMAP_MAPPED);
	for (int t = 0; t < 10000 && !all_readers_hit(&s); t++)
		usleep(1000);
	assert_true(all_readers_hit(&s));
	/* the writer: pods come, move, reuse addresses, terminate, go, get swept */
	uint32_t x = 88172645u;
	for (int k = 0; k < STRESS_WRITES; k++) {
		x ^= x << 13;
		x ^= x >> 17;
		x ^= x << 5;
		char uid[16], addrs[64], created[32];
		snprintf(uid, sizeof(uid), "p%u", x % 80);
		snprintf(addrs, sizeof(addrs), "10.7.0.%u,10.7.0.%u", (x >> 8) % STRESS_IPS,
		         (x >> 16) % STRESS_IPS);
		snprintf(created, sizeof(created), "2026-01-15T09:%02u:%02uZ", (x >> 4) % 60,
		         (x >> 10) % 60);
		switch ((x >> 24) % 8) {
		case 0:
			podmap_remove(s.m, uid);
			break;
		case 1:
			podmap_sweep(s.m, (x >> 27) % 2 ? "ns" : NULL, (uint64_t)k / 100);
			break;
		default:
			mkpod(pod, uid, "ns", created, addrs);
			pod->terminating = (x >> 28) % 4 == 0;
			pod->phase = (x >> 29) % 8 == 0 ? KUBE_PHASE_SUCCEEDED : KUBE_PHASE_RUNNING;
			int rc = podmap_apply(s.m, pod, (uint64_t)k / 100);
			assert_true(rc == PODMAP_MAPPED || rc == PODMAP_REMOVED ||
			            rc == PODMAP_FULL);
			break;
		}
		assert_true(podmap_count(s.m) <= 48);
	}
	__atomic_store_n(&s.done, 1, __ATOMIC_RELEASE);
	unsigned long hits = 0;
	for (int i = 0; i < STRESS_READERS; i++) {
		assert_int_equal(pthread_join(th[i], NULL), 0);
		hits += s.hits[i];
	}
	print_message("stress: %d writes, %lu successful lookups\n", STRESS_WRITES, hits);
	/* after the churn: every mapped address's owner is consistent (owner() checks) */
	for (int i = 0; i < STRESS_IPS; i++) {
		char a[32];
		snprintf(a, sizeof(a), "10.7.0.%d", i);
		(void)owner(s.m, a);
	}
	podmap_free(s.m);
	free(pod);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_add_modify_delete), cmocka_unit_test(test_null_and_trivia),
	    cmocka_unit_test(test_mapped_ipv4),       cmocka_unit_test(test_labels_copied),
	    cmocka_unit_test(test_ip_reuse),          cmocka_unit_test(test_terminating_loses),
	    cmocka_unit_test(test_fallback_chain),    cmocka_unit_test(test_tie_break),
	    cmocka_unit_test(test_timestamps),        cmocka_unit_test(test_ineligible),
	    cmocka_unit_test(test_ip_change),         cmocka_unit_test(test_sweep),
	    cmocka_unit_test(test_max_pods),          cmocka_unit_test(test_refs_outlive_map),
	    cmocka_unit_test(test_many_pods),         cmocka_unit_test(test_threads),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
