/* Unit tests for proxy/cli/learn_stats.c: destinations, distinct sources, runs and stability. */
#include "learn_stats.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

static struct audit_rec rec(const char *tier, const char *host, uint16_t port, const char *pod,
                            const char *src, const char *ts)
{
	struct audit_rec r;
	memset(&r, 0, sizeof(r));
	snprintf(r.tier, sizeof(r.tier), "%s", tier);
	snprintf(r.domain, sizeof(r.domain), "%s", host);
	r.port = port;
	snprintf(r.pod_ns, sizeof(r.pod_ns), "%s", pod ? "ci" : "");
	snprintf(r.pod_name, sizeof(r.pod_name), "%s", pod ? pod : "");
	snprintf(r.source_ip, sizeof(r.source_ip), "%s", src);
	snprintf(r.timestamp, sizeof(r.timestamp), "%s", ts);
	r.allowed = true;
	return r;
}

static const struct learn_dest *find(const struct learn_stats *s, const char *host, uint16_t port)
{
	for (size_t i = 0; i < s->cap; i++)
		if (s->tab[i] != NULL && s->tab[i]->port == port && strcmp(s->tab[i]->host, host) == 0)
			return s->tab[i];
	return NULL;
}

/* One entry per (tier, host, port); counts, would-deny, blocked, first and last seen. */
static void test_destinations(void **state)
{
	static struct learn_stats s;
	(void)state;
	assert_int_equal(learn_stats_init(&s), 0);
	struct audit_rec r = rec("build", "pypi.org", 443, "p1", "10.0.0.1", "2026-12-06T10:00:00Z");
	strcpy(r.would_deny, "host_not_allowed");
	assert_int_equal(learn_stats_add(&s, &r), 0);
	r = rec("build", "pypi.org", 443, "p2", "10.0.0.2", "2026-12-06T09:00:00Z");
	assert_int_equal(learn_stats_add(&s, &r), 0);
	r = rec("build", "meta.example", 443, "p2", "10.0.0.2", "2026-12-06T09:00:01Z");
	r.allowed = false;
	r.denied = true;
	strcpy(r.reason, "resolved_to_blocked_range");
	assert_int_equal(learn_stats_add(&s, &r), 0);
	r = rec("deploy", "pypi.org", 443, NULL, "10.1.0.1", "2026-12-06T11:00:00Z");
	assert_int_equal(learn_stats_add(&s, &r), 0);
	/* No tier, no domain or no port: skipped, never a destination. */
	r = rec("", "x.example", 443, NULL, "10.9.0.1", "2026-12-06T11:00:00Z");
	assert_int_equal(learn_stats_add(&s, &r), 0);
	r = rec("build", "", 443, NULL, "10.9.0.1", "2026-12-06T11:00:00Z");
	assert_int_equal(learn_stats_add(&s, &r), 0);
	assert_int_equal(s.n, 3);
	assert_int_equal(s.n_tiers, 2);
	assert_int_equal(s.used, 4);
	assert_int_equal(s.skipped, 2);
	const struct learn_dest *d = find(&s, "pypi.org", 443);
	assert_non_null(d);
	if (strcmp(s.tiers[d->tier].name, "build") != 0)
		d = NULL; /* the deploy entry: look again below */
	for (size_t i = 0; d == NULL && i < s.cap; i++)
		if (s.tab[i] && strcmp(s.tab[i]->host, "pypi.org") == 0 &&
		    strcmp(s.tiers[s.tab[i]->tier].name, "build") == 0)
			d = s.tab[i];
	assert_non_null(d);
	assert_int_equal(d->count, 2);
	assert_int_equal(d->would_deny, 1);
	assert_int_equal(learn_srcs_count(&d->srcs), 2);
	assert_string_equal(d->first, "2026-12-06T09:00:00Z");
	assert_string_equal(d->last, "2026-12-06T10:00:00Z");
	d = find(&s, "meta.example", 443);
	assert_non_null(d);
	assert_int_equal(d->count, 0);
	assert_int_equal(d->blocked, 1);
	learn_stats_fini(&s);
}

/* Many destinations: the table grows and finds each again. */
static void test_growth(void **state)
{
	static struct learn_stats s;
	char host[64];
	(void)state;
	assert_int_equal(learn_stats_init(&s), 0);
	for (int round = 0; round < 2; round++) {
		for (int i = 0; i < 5000; i++) {
			snprintf(host, sizeof(host), "h%d.example", i);
			struct audit_rec r = rec("t", host, 443, "p", "10.0.0.1", "2026-12-06T10:00:00Z");
			assert_int_equal(learn_stats_add(&s, &r), 0);
		}
	}
	assert_int_equal(s.n, 5000);
	for (int i = 0; i < 5000; i += 499) {
		snprintf(host, sizeof(host), "h%d.example", i);
		const struct learn_dest *d = find(&s, host, 443);
		assert_non_null(d);
		assert_int_equal(d->count, 2);
	}
	learn_stats_fini(&s);
}

/* Distinct sources: exact to 8, then an estimate within 30% (64 registers: ~13% error). */
static void test_distinct_sources(void **state)
{
	static const unsigned counts[] = {1, 8, 9, 100, 1000, 20000};
	char pod[32];
	(void)state;
	for (size_t k = 0; k < sizeof(counts) / sizeof(counts[0]); k++) {
		static struct learn_stats s;
		assert_int_equal(learn_stats_init(&s), 0);
		for (unsigned i = 0; i < counts[k]; i++) {
			snprintf(pod, sizeof(pod), "runner-%u", i);
			for (int rep = 0; rep < 2; rep++) {
				struct audit_rec r = rec("t", "a.example", 443, pod, "10.0.0.1",
				                         "2026-12-06T10:00:00Z");
				assert_int_equal(learn_stats_add(&s, &r), 0);
			}
		}
		uint64_t est = learn_srcs_count(&find(&s, "a.example", 443)->srcs);
		print_message("%u sources: %llu\n", counts[k], (unsigned long long)est);
		if (counts[k] <= LEARN_EXACT_SRCS)
			assert_int_equal(est, counts[k]);
		else
			assert_true(est * 10 >= counts[k] * 7 && est * 10 <= counts[k] * 13);
		learn_stats_fini(&s);
	}
}

/*
 * Stability: runs (pods, or a source within an hour) first seen after the
 * last new destination.  A new destination resets the count; repeats do not.
 */
static void test_stability(void **state)
{
	static struct learn_stats s;
	char pod[32];
	(void)state;
	assert_int_equal(learn_stats_init(&s), 0);
	for (int i = 0; i < 150; i++) {
		snprintf(pod, sizeof(pod), "runner-%d", i);
		struct audit_rec r = rec("t", i == 40 ? "new.example" : "a.example", 443, pod,
		                         "10.0.0.1", "2026-12-06T10:00:00Z");
		assert_int_equal(learn_stats_add(&s, &r), 0);
		r = rec("t", "b.example", 443, pod, "10.0.0.1", "2026-12-06T10:00:00Z");
		assert_int_equal(learn_stats_add(&s, &r), 0); /* same run, nothing new after run 0 */
	}
	assert_int_equal(s.tiers[0].runs, 150);
	assert_int_equal(s.tiers[0].dests, 3);
	assert_int_equal(s.tiers[0].runs_since_new, 150 - 41);
	/* Without pods: one source within one hour is one run. */
	struct audit_rec r = rec("u", "a.example", 443, NULL, "10.0.0.1", "2026-12-06T10:00:00Z");
	assert_int_equal(learn_stats_add(&s, &r), 0);
	r = rec("u", "a.example", 443, NULL, "10.0.0.1", "2026-12-06T10:59:59Z");
	assert_int_equal(learn_stats_add(&s, &r), 0);
	r = rec("u", "a.example", 443, NULL, "10.0.0.1", "2026-12-06T11:00:00Z");
	assert_int_equal(learn_stats_add(&s, &r), 0);
	r = rec("u", "a.example", 443, NULL, "10.0.0.2", "2026-12-06T11:00:00Z");
	assert_int_equal(learn_stats_add(&s, &r), 0);
	assert_int_equal(s.tiers[1].runs, 3);
	assert_int_equal(s.tiers[1].runs_since_new, 2);
	learn_stats_fini(&s);
}

/*
 * A tier or domain that would break learn's YAML out of the comment or the key it is
 * printed in (a line break: control bytes, and NEL, U+2028, U+2029, which YAML 1.1 and
 * libyaml also break lines at) is skipped: a forged audit line cannot write policy.
 */
static void test_hostile_text(void **state)
{
	static struct learn_stats s;
	(void)state;
	static const char *const bad[] = {"x\n  evil:", "x\r", "x\x01", "x\xc2\x85y",
	                                  "x\xe2\x80\xa8y", "x\xe2\x80\xa9y"};
	assert_int_equal(learn_stats_init(&s), 0);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct audit_rec r = rec(bad[i], "pypi.org", 443, "p1", "10.0.0.1", "2026-12-06T10:00:00Z");
		assert_int_equal(learn_stats_add(&s, &r), 0);
		r = rec("build", bad[i], 443, "p1", "10.0.0.1", "2026-12-06T10:00:00Z");
		assert_int_equal(learn_stats_add(&s, &r), 0);
	}
	assert_int_equal(s.used, 0);
	assert_int_equal(s.n, 0);
	assert_int_equal(s.skipped, 12);
	/* Other UTF-8 in a tier name is kept. */
	struct audit_rec r = rec("\xc3\xa9quipe", "pypi.org", 443, "p1", "10.0.0.1", "2026-12-06T10:00:00Z");
	assert_int_equal(learn_stats_add(&s, &r), 0);
	assert_int_equal(s.used, 1);
	learn_stats_fini(&s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_destinations),
	    cmocka_unit_test(test_growth),
	    cmocka_unit_test(test_distinct_sources),
	    cmocka_unit_test(test_stability),
	    cmocka_unit_test(test_hostile_text),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
