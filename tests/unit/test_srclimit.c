/* Unit tests for proxy/srclimit.c: connection limits, windowed upload budgets, GC, threads. */
#include "srclimit.h"

#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#define SEC    1000000000ull
#define T0     (1000 * SEC) /* an arbitrary monotonic start */
#define WINDOW (10 * SEC)

static struct pc_addr v4(uint8_t a, uint8_t b, uint8_t c, uint8_t d)
{
	struct pc_addr x;
	memset(&x, 0, sizeof x);
	x.family = ADDR_V4;
	x.b[0] = a;
	x.b[1] = b;
	x.b[2] = c;
	x.b[3] = d;
	return x;
}

static struct pc_addr v6(const char *s)
{
	struct pc_addr x;
	assert_int_equal(addr_parse_ipv6(s, strlen(s), &x), ADDR_OK);
	return x;
}

/* Acquire that must succeed. */
static struct src_slot *take(struct srclimit *t, const struct pc_addr *a, uint32_t max,
                             uint64_t budget, uint64_t now)
{
	struct src_slot *s = NULL;
	uint32_t retry = 99;
	assert_int_equal(srclimit_acquire(t, a, max, budget, WINDOW, now, &s, &retry), SRCLIMIT_OK);
	assert_non_null(s);
	assert_int_equal(retry, 0);
	return s;
}

/* Acquire that must fail with rc; returns retry_after_s. */
static uint32_t refused(struct srclimit *t, const struct pc_addr *a, uint32_t max, uint64_t budget,
                        uint64_t now, int rc)
{
	struct src_slot *s = (struct src_slot *)(uintptr_t)1; /* must be overwritten with NULL */
	uint32_t retry = 0;
	assert_int_equal(srclimit_acquire(t, a, max, budget, WINDOW, now, &s, &retry), rc);
	assert_null(s);
	return retry;
}

static void test_conns_limit_exact(void **state)
{
	struct srclimit *t = srclimit_create(1000000);
	struct pc_addr a = v4(10, 42, 0, 7);
	struct src_slot *s[3];

	for (int i = 0; i < 3; i++)
		s[i] = take(t, &a, 3, 0, T0);
	assert_ptr_equal(s[0], s[1]); /* one entry per source, the hold is counted */
	assert_int_equal(refused(t, &a, 3, 0, T0, SRCLIMIT_CONNS), 1);
	assert_int_equal(srclimit_entries(t), 1);
	srclimit_release(t, s[1]);
	s[1] = take(t, &a, 3, 0, T0);
	refused(t, &a, 3, 0, T0, SRCLIMIT_CONNS);
	/* A lower limit after a reload applies to the next acquire. */
	refused(t, &a, 2, 0, T0, SRCLIMIT_CONNS);
	for (int i = 0; i < 3; i++)
		srclimit_release(t, s[i]);
	assert_int_equal(srclimit_entries(t), 0); /* never charged: gone at the last release */
	srclimit_release(t, NULL);
	srclimit_destroy(t);
	srclimit_destroy(NULL);
}

static void test_conns_unlimited(void **state)
{
	struct srclimit *t = srclimit_create(1000000);
	struct pc_addr a = v6("2001:db8::1");
	struct src_slot *s = NULL;

	for (int i = 0; i < 5000; i++)
		s = take(t, &a, 0, 0, T0);
	for (int i = 0; i < 5000; i++)
		srclimit_release(t, s);
	assert_int_equal(srclimit_entries(t), 0);
	/* retry_after_s may be NULL */
	assert_int_equal(srclimit_acquire(t, &a, 1, 0, WINDOW, T0, &s, NULL), SRCLIMIT_OK);
	assert_int_equal(srclimit_acquire(t, &a, 1, 0, WINDOW, T0, &s, NULL), SRCLIMIT_CONNS);
	srclimit_destroy(t); /* with a live entry: must not leak */
}

static void test_per_source_independence(void **state)
{
	struct srclimit *t = srclimit_create(1000000);
	struct pc_addr a = v4(10, 0, 0, 1), b = v4(10, 0, 0, 2), c = v6("2001:db8::a00:1"),
	               d = v6("::a00:1"); /* IPv4-compatible: an IPv6 source of its own */
	struct src_slot *sa = take(t, &a, 1, 100, T0);

	refused(t, &a, 1, 100, T0, SRCLIMIT_CONNS);
	struct src_slot *sb = take(t, &b, 1, 100, T0);
	struct src_slot *sc = take(t, &c, 1, 100, T0);
	struct src_slot *sd = take(t, &d, 1, 100, T0);
	assert_int_equal(srclimit_entries(t), 4);

	assert_int_equal(srclimit_charge(sa, 500, 100, WINDOW, T0), 100);
	assert_int_equal(srclimit_charge(sa, 1, 100, WINDOW, T0), 0);
	/* a's spent budget touches nobody else */
	assert_int_equal(srclimit_charge(sb, 100, 100, WINDOW, T0), 100);
	assert_int_equal(srclimit_charge(sc, 60, 100, WINDOW, T0), 60);
	assert_int_equal(srclimit_charge(sd, 99, 100, WINDOW, T0), 99);
	srclimit_release(t, sa);
	srclimit_release(t, sb);
	srclimit_release(t, sc);
	srclimit_release(t, sd);
	srclimit_destroy(t);
}

static void test_budget_exact_and_refill(void **state)
{
	struct srclimit *t = srclimit_create(1000000);
	struct pc_addr a = v4(192, 0, 2, 1);
	const uint64_t B = 1000;
	struct src_slot *s = take(t, &a, 0, B, T0);

	assert_int_equal(srclimit_charge(s, 0, B, WINDOW, T0), 0);
	assert_int_equal(srclimit_charge(s, 400, B, WINDOW, T0), 400);
	assert_int_equal(srclimit_charge(s, 400, B, WINDOW, T0 + SEC), 400);
	assert_int_equal(srclimit_charge(s, 400, B, WINDOW, T0 + SEC),
	                 200); /* partial at the edge */
	assert_int_equal(srclimit_charge(s, 1, B, WINDOW, T0 + SEC), 0);
	assert_int_equal(srclimit_charge(s, 400, B, WINDOW, T0 + 2 * SEC), 0);
	/* no budget: everything passes */
	assert_int_equal(srclimit_charge(s, 12345, 0, WINDOW, T0 + 2 * SEC), 12345);

	/* new connections refused until the window ends; Retry-After rounds up */
	assert_int_equal(refused(t, &a, 0, B, T0 + SEC, SRCLIMIT_BUDGET), 9);
	assert_int_equal(refused(t, &a, 0, B, T0 + 3 * SEC + SEC / 2, SRCLIMIT_BUDGET), 7);
	assert_int_equal(refused(t, &a, 0, B, T0 + WINDOW - 1, SRCLIMIT_BUDGET), 1);
	/* budget beats the connection limit: it is the longer wait */
	assert_int_equal(refused(t, &a, 1, B, T0 + SEC, SRCLIMIT_BUDGET), 9);
	/* a clock a little behind the window's start (another worker) is inside the window */
	assert_int_equal(refused(t, &a, 0, B, T0 - SEC, SRCLIMIT_BUDGET), 11);
	/* without a budget in this call's policy, no budget refusal */
	struct src_slot *s2 = take(t, &a, 0, 0, T0 + SEC);
	srclimit_release(t, s2);

	/* refill at start + window exactly; the next window starts at that byte */
	struct src_slot *s3 = take(t, &a, 0, B, T0 + WINDOW);
	assert_int_equal(srclimit_charge(s, 1000, B, WINDOW, T0 + WINDOW + 5 * SEC), 1000);
	assert_int_equal(srclimit_charge(s3, 1, B, WINDOW, T0 + WINDOW + 6 * SEC), 0);
	assert_int_equal(refused(t, &a, 0, B, T0 + WINDOW + 6 * SEC, SRCLIMIT_BUDGET), 9);
	assert_int_equal(srclimit_charge(s3, 7, B, WINDOW, T0 + 2 * WINDOW + 5 * SEC), 7);

	/* a lower budget after a reload: already over it */
	assert_int_equal(srclimit_charge(s3, 3, 5, WINDOW, T0 + 2 * WINDOW + 6 * SEC), 0);
	assert_int_equal(refused(t, &a, 0, 5, T0 + 2 * WINDOW + 6 * SEC, SRCLIMIT_BUDGET), 9);
	/* an absurd n cannot wrap the counter */
	assert_int_equal(srclimit_charge(s3, UINT64_MAX, B, WINDOW, T0 + 2 * WINDOW + 6 * SEC),
	                 B - 7);
	assert_int_equal(srclimit_charge(s3, UINT64_MAX, B, WINDOW, T0 + 2 * WINDOW + 6 * SEC), 0);
	srclimit_release(t, s);
	srclimit_release(t, s3);
	srclimit_destroy(t);
}

/*
 * The per-request budget check of a held slot (the slot is taken at accept
 * with no budget check; every request asks srclimit_budget_check).
 */
static void test_budget_check_of_a_held_slot(void **state)
{
	struct srclimit *t = srclimit_create(1000000);
	struct pc_addr a = v4(10, 0, 0, 1);
	uint32_t retry = 99;
	(void)state;
	struct src_slot *s = take(t, &a, 0, 0, T0);
	/* Never charged: nothing is spent, whatever the budget. */
	assert_int_equal(srclimit_budget_check(s, 100, T0, &retry), SRCLIMIT_OK);
	assert_int_equal(retry, 0);
	/* Part spent: still OK; all spent: BUDGET until the window ends (rounded up). */
	assert_int_equal(srclimit_charge(s, 60, 100, WINDOW, T0), 60);
	assert_int_equal(srclimit_budget_check(s, 100, T0 + 1, &retry), SRCLIMIT_OK);
	assert_int_equal(srclimit_charge(s, 60, 100, WINDOW, T0 + 1), 40);
	assert_int_equal(srclimit_budget_check(s, 100, T0 + SEC / 2, &retry), SRCLIMIT_BUDGET);
	assert_int_equal(retry, 10); /* 9.5 s left, rounded up */
	assert_int_equal(srclimit_budget_check(s, 100, T0 + WINDOW - 1, &retry), SRCLIMIT_BUDGET);
	assert_int_equal(retry, 1);
	/* No budget (0) is never spent; a larger budget (a reload) is not spent yet. */
	assert_int_equal(srclimit_budget_check(s, 0, T0 + 1, &retry), SRCLIMIT_OK);
	assert_int_equal(srclimit_budget_check(s, 101, T0 + 1, &retry), SRCLIMIT_OK);
	/* The window ended: the budget is back. */
	assert_int_equal(srclimit_budget_check(s, 100, T0 + WINDOW, &retry), SRCLIMIT_OK);
	assert_int_equal(retry, 0);
	assert_int_equal(srclimit_budget_check(s, 100, T0 + WINDOW, NULL), SRCLIMIT_OK);
	srclimit_release(t, s);
	srclimit_destroy(t);
}

static void test_window_starts_at_first_charged_byte(void **state)
{
	struct srclimit *t = srclimit_create(1000000);
	struct pc_addr a = v4(192, 0, 2, 2);
	struct src_slot *s = take(t, &a, 0, 100, T0);

	/* idle connection: no window yet */
	assert_int_equal(srclimit_charge(s, 100, 100, WINDOW, T0 + 5 * SEC), 100);
	assert_int_equal(srclimit_charge(s, 1, 100, WINDOW, T0 + 12 * SEC), 0);
	assert_int_equal(refused(t, &a, 0, 100, T0 + 12 * SEC, SRCLIMIT_BUDGET), 3);
	assert_int_equal(srclimit_charge(s, 1, 100, WINDOW, T0 + 15 * SEC), 1);
	srclimit_release(t, s);
	srclimit_destroy(t);
}

static void test_window_zero_never_refills(void **state)
{
	struct srclimit *t = srclimit_create(1000000);
	struct pc_addr a = v4(192, 0, 2, 3);
	struct src_slot *s = NULL;
	uint32_t retry = 0;

	assert_int_equal(srclimit_acquire(t, &a, 0, 10, 0, T0, &s, &retry), SRCLIMIT_OK);
	assert_int_equal(srclimit_charge(s, 20, 10, 0, T0), 10);
	assert_int_equal(srclimit_charge(s, 20, 10, 0, UINT64_MAX - 1), 0);
	srclimit_release(t, s);
	assert_int_equal(srclimit_acquire(t, &a, 0, 10, 0, UINT64_MAX - 1, &s, &retry),
	                 SRCLIMIT_BUDGET);
	assert_int_equal(retry, UINT32_MAX);
	srclimit_destroy(t);
}

/* Acquire and release another source until the table holds at most `left` entries. */
static int churn_until(struct srclimit *t, size_t left, uint64_t budget, uint64_t now, int max)
{
	struct pc_addr other = v6("2001:db8:ffff::1");
	for (int i = 0; i < max; i++) {
		if (srclimit_entries(t) <= left)
			return i;
		struct src_slot *s = take(t, &other, 0, budget, now);
		srclimit_release(t, s);
	}
	return -1;
}

static void test_budget_survives_release_then_gc(void **state)
{
	struct srclimit *t = srclimit_create(1000000);
	struct pc_addr a = v4(198, 51, 100, 9);
	struct src_slot *s1 = take(t, &a, 0, 100, T0);
	struct src_slot *s2 = take(t, &a, 0, 100, T0);

	assert_int_equal(srclimit_charge(s1, 60, 100, WINDOW, T0), 60);
	assert_int_equal(srclimit_charge(s2, 60, 100, WINDOW, T0), 40);
	srclimit_release(t, s1);
	srclimit_release(t, s2);
	/* closing every tunnel does not reset the budget */
	assert_int_equal(srclimit_entries(t), 1);
	assert_int_equal(refused(t, &a, 0, 100, T0 + 2 * SEC, SRCLIMIT_BUDGET), 8);
	/* GC inside the window keeps it, however much churn */
	assert_int_equal(churn_until(t, 0, 100, T0 + 9 * SEC, 2000), -1);
	assert_int_equal(srclimit_entries(t), 1);
	refused(t, &a, 0, 100, T0 + 9 * SEC, SRCLIMIT_BUDGET);
	/* after the window it is collected by bounded sweeps of other acquires */
	assert_in_range(churn_until(t, 0, 100, T0 + WINDOW, 100000), 0, 100000);
	assert_int_equal(srclimit_entries(t), 0);
	/* and the source starts afresh */
	s1 = take(t, &a, 0, 100, T0 + WINDOW);
	assert_int_equal(srclimit_charge(s1, 100, 100, WINDOW, T0 + WINDOW), 100);
	srclimit_release(t, s1);
	srclimit_destroy(t);
}

/* Sweeps run by a tier without a budget, or with a shorter window, keep another tier's window. */
static void test_gc_ignores_the_callers_tier(void **state)
{
	struct srclimit *t = srclimit_create(1000000);
	struct pc_addr a = v4(198, 51, 100, 10), other = v6("2001:db8:ffff::1");
	struct src_slot *s = take(t, &a, 0, 100, T0);
	const uint64_t hour = 3600 * SEC;

	assert_int_equal(srclimit_charge(s, 100, 100, hour, T0), 100);
	srclimit_release(t, s);
	for (int i = 0; i < 20000; i++) {
		struct src_slot *o = NULL;
		assert_int_equal(
		    srclimit_acquire(t, &other, 0, i % 2 ? 0 : 100, SEC, T0 + 60 * SEC, &o, NULL),
		    SRCLIMIT_OK);
		srclimit_release(t, o);
	}
	assert_int_equal(srclimit_entries(t), 1);
	assert_int_equal(refused(t, &a, 0, 100, T0 + 60 * SEC, SRCLIMIT_BUDGET), 3540);
	/* a reload to a shorter window applies from the next window, not to the running one */
	s = take(t, &a, 0, 0, T0 + 60 * SEC);
	assert_int_equal(srclimit_charge(s, 1, 100, SEC, T0 + 60 * SEC), 0);
	assert_int_equal(srclimit_charge(s, 1, 100, SEC, T0 + hour), 1);
	assert_int_equal(srclimit_charge(s, 100, 100, SEC, T0 + hour + SEC / 2), 99);
	assert_int_equal(srclimit_charge(s, 1, 100, SEC, T0 + hour + SEC), 1);
	srclimit_release(t, s);
	srclimit_destroy(t);
}

static void test_mapped_v4_is_v4(void **state)
{
	struct srclimit *t = srclimit_create(1000000);
	struct pc_addr a = v4(10, 1, 2, 3), m = v6("::ffff:10.1.2.3"), dirty = a;

	memset(dirty.b + 4, 0xa5, 12); /* bytes an IPv4 address does not use */
	struct src_slot *s = take(t, &m, 1, 50, T0);
	refused(t, &a, 1, 50, T0, SRCLIMIT_CONNS);
	refused(t, &dirty, 1, 50, T0, SRCLIMIT_CONNS);
	struct src_slot *s2 = take(t, &dirty, 2, 50, T0);
	assert_ptr_equal(s, s2);
	assert_int_equal(srclimit_entries(t), 1);
	/* the budget is shared too */
	assert_int_equal(srclimit_charge(s, 30, 50, WINDOW, T0), 30);
	assert_int_equal(srclimit_charge(s2, 30, 50, WINDOW, T0), 20);
	assert_int_equal(refused(t, &a, 0, 50, T0, SRCLIMIT_BUDGET), 10);
	/* other IPv4-carrying IPv6 forms are sources of their own */
	struct pc_addr nat64 = v6("64:ff9b::10.1.2.3"), sixto4 = v6("2002:a01:203::1");
	srclimit_release(t, take(t, &nat64, 1, 50, T0));
	srclimit_release(t, take(t, &sixto4, 1, 50, T0));
	srclimit_release(t, s);
	srclimit_release(t, s2);
	srclimit_destroy(t);
}

/* ---- threads ---- */

#define N_THREADS 4

struct worker {
	struct srclimit *t;
	struct src_slot *slot;
	atomic_uint *arrived; /* spin start: all threads hit the window edge at once */
	uint64_t budget;
	int rounds;
	int charges;
	uint64_t *passed; /* per round */
	unsigned seed;
};

static void *charger(void *arg)
{
	struct worker *w = arg;
	for (int r = 0; r < w->rounds; r++) {
		uint64_t now = T0 + (uint64_t)r * WINDOW; /* every round is a fresh window */
		unsigned want = N_THREADS * (unsigned)(r + 1);
		atomic_fetch_add(w->arrived, 1);
		while (atomic_load(w->arrived) < want)
			sched_yield();
		for (int i = 0; i < w->charges; i++) {
			uint64_t n = 1 + (uint64_t)(rand_r(&w->seed) % 997);
			uint64_t got = srclimit_charge(w->slot, n, w->budget, WINDOW, now);
			if (got > n)
				abort();
			w->passed[r] += got;
		}
	}
	return NULL;
}

static void run_chargers(uint64_t budget, int rounds, int charges)
{
	struct srclimit *t = srclimit_create(1000000);
	struct pc_addr a = v4(10, 9, 8, 7);
	struct worker w[N_THREADS];
	pthread_t th[N_THREADS];
	atomic_uint arrived = 0;

	for (int i = 0; i < N_THREADS; i++) {
		w[i] = (struct worker){.t = t,
		                       .arrived = &arrived,
		                       .budget = budget,
		                       .rounds = rounds,
		                       .charges = charges,
		                       .seed = 1234u + (unsigned)i,
		                       .passed = calloc((size_t)rounds, sizeof(uint64_t))};
		assert_non_null(w[i].passed);
		w[i].slot = take(t, &a, N_THREADS, budget, T0);
	}
	for (int i = 0; i < N_THREADS; i++)
		assert_int_equal(pthread_create(&th[i], NULL, charger, &w[i]), 0);
	for (int i = 0; i < N_THREADS; i++)
		assert_int_equal(pthread_join(th[i], NULL), 0);
	for (int r = 0; r < rounds; r++) {
		uint64_t sum = 0;
		for (int i = 0; i < N_THREADS; i++)
			sum += w[i].passed[r];
		/* demand (N_THREADS * charges * ~499) is well above the budget in every round */
		assert_int_equal(sum, budget);
	}
	for (int i = 0; i < N_THREADS; i++) {
		srclimit_release(t, w[i].slot);
		free(w[i].passed);
	}
	srclimit_destroy(t);
}

static void test_threads_never_exceed_budget(void **state)
{
	/* most of the 4 x 20000 charges (~499 bytes each) race below the budget */
	run_chargers(20000003, 1, 20000);
}

/* All threads cross into the next window together: exactly one refill per window. */
static void test_threads_refill_once_per_window(void **state)
{
	run_chargers(20011, 4000, 100);
}

struct acq_worker {
	struct srclimit *t;
	int n;
};

/* Many sources per thread, each acquired twice and released twice, sharing stripes. */
static void *acquirer(void *arg)
{
	struct acq_worker *w = arg;
	for (int i = 0; i < w->n; i++) {
		struct pc_addr a = v4(10, (uint8_t)(i >> 8), (uint8_t)i, 0);
		struct src_slot *s1 = NULL, *s2 = NULL;
		if (srclimit_acquire(w->t, &a, 0, 1000, WINDOW, T0, &s1, NULL) != SRCLIMIT_OK ||
		    srclimit_acquire(w->t, &a, 0, 1000, WINDOW, T0, &s2, NULL) != SRCLIMIT_OK)
			abort();
		if (i % 3 == 0 && srclimit_charge(s1, 1, 1000, WINDOW, T0) > 1)
			abort();
		srclimit_release(w->t, s2);
		srclimit_release(w->t, s1);
	}
	return NULL;
}

static void test_threads_acquire_release(void **state)
{
	struct srclimit *t = srclimit_create(1000000);
	struct acq_worker w[N_THREADS];
	pthread_t th[N_THREADS];

	for (int i = 0; i < N_THREADS; i++) {
		w[i] = (struct acq_worker){.t = t, .n = 3000};
		assert_int_equal(pthread_create(&th[i], NULL, acquirer, &w[i]), 0);
	}
	for (int i = 0; i < N_THREADS; i++)
		assert_int_equal(pthread_join(th[i], NULL), 0);
	/* the same 3000 sources from every thread; those charged (i % 3 == 0) stay for the window
	 */
	assert_int_equal(srclimit_entries(t), 1000);
	assert_in_range(churn_until(t, 0, 1000, T0 + WINDOW, 100000), 0, 100000);
	srclimit_destroy(t);
}

/* ---- many sources, the entry cap ---- */

static struct pc_addr nth_source(uint32_t i)
{
	/* alternate IPv4 and IPv6 sources */
	if (i % 2 == 0)
		return v4(10, (uint8_t)(i >> 16), (uint8_t)(i >> 8), (uint8_t)i);
	struct pc_addr x = v6("2001:db8::");
	x.b[12] = (uint8_t)(i >> 24);
	x.b[13] = (uint8_t)(i >> 16);
	x.b[14] = (uint8_t)(i >> 8);
	x.b[15] = (uint8_t)i;
	return x;
}

static void test_many_sources_collected(void **state)
{
	enum { N = 100000 };
	struct srclimit *t = srclimit_create(1000000);
	struct src_slot **s = calloc(N, sizeof *s);

	assert_non_null(s);
	for (uint32_t i = 0; i < N; i++) {
		struct pc_addr a = nth_source(i);
		s[i] = take(t, &a, 1, 0, T0);
	}
	assert_int_equal(srclimit_entries(t), N);
	for (uint32_t i = 0; i < N; i++) {
		struct pc_addr a = nth_source(i);
		refused(t, &a, 1, 0, T0, SRCLIMIT_CONNS);
	}
	for (uint32_t i = 0; i < N; i++)
		srclimit_release(t, s[i]);
	assert_int_equal(srclimit_entries(t), 0);

	/* with budgets charged: kept through the window, then swept by ordinary acquires */
	for (uint32_t i = 0; i < N; i++) {
		struct pc_addr a = nth_source(i);
		s[i] = take(t, &a, 1, 10, T0);
		assert_int_equal(srclimit_charge(s[i], 1, 10, WINDOW, T0), 1);
		srclimit_release(t, s[i]);
	}
	assert_int_equal(srclimit_entries(t), N);
	assert_int_equal(churn_until(t, 0, 10, T0 + WINDOW - 1, 5000), -1);
	assert_int_equal(srclimit_entries(t), N);
	int steps = churn_until(t, 0, 10, T0 + WINDOW, 4 * N);
	assert_in_range(steps, 1, 4 * N);
	print_message("swept %d entries in %d acquires\n", N, steps);
	free(s);
	srclimit_destroy(t);
}

/* A table full of sources that hold connections refuses new ones; known ones go on. */
static void test_full_of_held_entries_refuses_new_sources(void **state)
{
	enum { CAP = 1000 };
	struct srclimit *t = srclimit_create(CAP);
	struct src_slot *first = NULL, *s;
	struct pc_addr a;

	for (uint32_t i = 0; i < CAP; i++) {
		a = nth_source(i);
		s = take(t, &a, 0, 0, T0);
		if (i == 0)
			first = s;
	}
	assert_int_equal(srclimit_entries(t), CAP);
	a = nth_source(CAP);
	assert_int_equal(refused(t, &a, 0, 0, T0, SRCLIMIT_FULL), 1);
	assert_int_equal(srclimit_evictions(t), 0);
	/* known sources still get slots */
	a = nth_source(7);
	srclimit_release(t, take(t, &a, 0, 0, T0));
	/* one freed entry makes room for one new source */
	srclimit_release(t, first);
	a = nth_source(CAP);
	s = take(t, &a, 0, 0, T0);
	a = nth_source(CAP + 1);
	refused(t, &a, 0, 0, T0, SRCLIMIT_FULL);
	assert_int_equal(srclimit_entries(t), CAP);
	srclimit_destroy(t);
}

/* Idle sources (no connection, a budget window running) make room, least used first. */
static void test_full_table_evicts_the_least_used_idle_source(void **state)
{
	enum { CAP = 8, BUDGET = 1000 };
	struct srclimit *t = srclimit_create(CAP);
	struct pc_addr a;

	/* source i spent 100 * (8 - i) bytes: source 7 the least, source 0 the most */
	for (uint32_t i = 0; i < CAP; i++) {
		a = nth_source(i);
		struct src_slot *s = take(t, &a, 0, BUDGET, T0);
		assert_int_equal(srclimit_charge(s, 100 * (CAP - i), BUDGET, WINDOW, T0),
		                 100 * (CAP - i));
		srclimit_release(t, s);
	}
	assert_int_equal(srclimit_entries(t), CAP);
	a = nth_source(CAP);
	struct src_slot *n = take(t, &a, 0, BUDGET, T0 + 1);
	assert_int_equal(srclimit_evictions(t), 1);
	assert_int_equal(srclimit_entries(t), CAP);
	/* source 7 lost its record and starts afresh; source 0 (nearest its budget) kept it */
	a = nth_source(CAP - 1);
	srclimit_release(t, n);
	struct src_slot *s7 = take(t, &a, 0, BUDGET, T0 + 2);
	assert_int_equal(srclimit_charge(s7, BUDGET, BUDGET, WINDOW, T0 + 2), BUDGET);
	srclimit_release(t, s7);
	a = nth_source(0);
	struct src_slot *s0 = take(t, &a, 0, BUDGET, T0 + 3);
	assert_int_equal(srclimit_charge(s0, BUDGET, BUDGET, WINDOW, T0 + 3), BUDGET - 800);
	srclimit_release(t, s0);
	srclimit_destroy(t);
}

/* Sources of different budgets compare by the share they spent, not by bytes. */
static void test_full_table_evicts_by_share_of_budget(void **state)
{
	enum { CAP = 2 };
	struct srclimit *t = srclimit_create(CAP);
	struct pc_addr a = nth_source(0), b = nth_source(1), c = nth_source(2);
	struct src_slot *s = take(t, &a, 0, 1000, T0); /* small budget, 90% spent */
	assert_int_equal(srclimit_charge(s, 900, 1000, WINDOW, T0), 900);
	srclimit_release(t, s);
	s = take(t, &b, 0, 1000000, T0); /* big budget, 0.5% spent, more bytes */
	assert_int_equal(srclimit_charge(s, 5000, 1000000, WINDOW, T0), 5000);
	srclimit_release(t, s);
	srclimit_release(t, take(t, &c, 0, 1000, T0 + 1)); /* evicts b */
	assert_int_equal(srclimit_evictions(t), 1);
	s = take(t, &a, 0, 1000, T0 + 2); /* a kept its record: 100 bytes left */
	assert_int_equal(srclimit_charge(s, 1000, 1000, WINDOW, T0 + 2), 100);
	srclimit_release(t, s);
	srclimit_destroy(t);
}

/* Dead entries not yet collected go before any idle one is evicted. */
static void test_full_table_takes_dead_entries_first(void **state)
{
	enum { CAP = 4, BUDGET = 1000 };
	struct srclimit *t = srclimit_create(CAP);
	struct pc_addr a;

	for (uint32_t i = 0; i < CAP; i++) {
		a = nth_source(i);
		struct src_slot *s = take(t, &a, 0, BUDGET, T0);
		assert_int_equal(srclimit_charge(s, 1, BUDGET, WINDOW, T0), 1);
		srclimit_release(t, s);
	}
	/* every window ended: all four are dead, none needs evicting */
	for (uint32_t i = 0; i < CAP; i++) {
		a = nth_source(CAP + i);
		srclimit_release(t, take(t, &a, 0, BUDGET, T0 + WINDOW));
	}
	assert_int_equal(srclimit_evictions(t), 0);
	srclimit_destroy(t);
}

/* Held entries are never evicted, however little they used. */
static void test_full_table_never_evicts_a_held_source(void **state)
{
	enum { CAP = 4, BUDGET = 1000 };
	struct srclimit *t = srclimit_create(CAP);
	struct src_slot *held[CAP - 1];
	struct pc_addr a;

	for (uint32_t i = 0; i < CAP - 1; i++) {
		a = nth_source(i);
		held[i] = take(t, &a, 0, BUDGET, T0);
	}
	a = nth_source(CAP - 1);
	struct src_slot *s = take(t, &a, 0, BUDGET, T0);
	assert_int_equal(srclimit_charge(s, 999, BUDGET, WINDOW, T0), 999);
	srclimit_release(t, s);
	/* the only idle source goes, though it used the most */
	a = nth_source(CAP);
	struct src_slot *n = take(t, &a, 0, BUDGET, T0);
	assert_int_equal(srclimit_evictions(t), 1);
	a = nth_source(CAP + 1);
	refused(t, &a, 0, 0, T0, SRCLIMIT_FULL);
	srclimit_release(t, n);
	for (uint32_t i = 0; i < CAP - 1; i++)
		srclimit_release(t, held[i]);
	srclimit_destroy(t);
}

struct churn_arg {
	struct srclimit *t;
	uint32_t seed;
	int full;
};

static void *churn_full_table(void *p)
{
	struct churn_arg *c = p;
	uint32_t x = c->seed;
	for (int i = 0; i < 20000; i++) {
		x = x * 1664525u + 1013904223u;
		struct pc_addr a = nth_source(x % 4096);
		struct src_slot *s = NULL;
		uint32_t retry;
		int rc = srclimit_acquire(c->t, &a, 0, 1000, WINDOW, T0, &s, &retry);
		if (rc == SRCLIMIT_FULL) {
			c->full++;
			continue;
		}
		assert_int_equal(rc, SRCLIMIT_OK);
		srclimit_charge(s, 1 + x % 7, 1000, WINDOW, T0);
		srclimit_release(c->t, s);
	}
	return NULL;
}

/* Threads churning many sources through a small table: never over the cap, no races (ASan/TSan). */
static void test_threads_churn_a_full_table(void **state)
{
	enum { CAP = 64, THREADS = 8 };
	struct srclimit *t = srclimit_create(CAP);
	pthread_t th[THREADS];
	struct churn_arg arg[THREADS];

	for (int i = 0; i < THREADS; i++) {
		arg[i] = (struct churn_arg){t, (uint32_t)i * 7919u + 1, 0};
		assert_int_equal(pthread_create(&th[i], NULL, churn_full_table, &arg[i]), 0);
	}
	int full = 0;
	for (int i = 0; i < THREADS; i++) {
		pthread_join(th[i], NULL);
		full += arg[i].full;
	}
	assert_true(srclimit_entries(t) <= CAP);
	assert_true(srclimit_evictions(t) > 0);
	print_message("evictions %llu, refused full %d of %d\n",
	              (unsigned long long)srclimit_evictions(t), full, THREADS * 20000);
	srclimit_destroy(t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_conns_limit_exact),
	    cmocka_unit_test(test_conns_unlimited),
	    cmocka_unit_test(test_per_source_independence),
	    cmocka_unit_test(test_budget_exact_and_refill),
	    cmocka_unit_test(test_budget_check_of_a_held_slot),
	    cmocka_unit_test(test_window_starts_at_first_charged_byte),
	    cmocka_unit_test(test_window_zero_never_refills),
	    cmocka_unit_test(test_budget_survives_release_then_gc),
	    cmocka_unit_test(test_gc_ignores_the_callers_tier),
	    cmocka_unit_test(test_mapped_v4_is_v4),
	    cmocka_unit_test(test_threads_never_exceed_budget),
	    cmocka_unit_test(test_threads_refill_once_per_window),
	    cmocka_unit_test(test_threads_acquire_release),
	    cmocka_unit_test(test_many_sources_collected),
	    cmocka_unit_test(test_full_of_held_entries_refuses_new_sources),
	    cmocka_unit_test(test_full_table_evicts_the_least_used_idle_source),
	    cmocka_unit_test(test_full_table_takes_dead_entries_first),
	    cmocka_unit_test(test_full_table_evicts_by_share_of_budget),
	    cmocka_unit_test(test_full_table_never_evicts_a_held_source),
	    cmocka_unit_test(test_threads_churn_a_full_table),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
