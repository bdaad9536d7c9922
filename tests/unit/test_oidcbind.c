/* Unit tests for proxy/tables/oidcbind.c: binding, replay, lease, bounds and eviction. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "oidcbind.h"

static void key(uint8_t k[32], unsigned v)
{
	memset(k, 0, 32);
	memcpy(k, &v, sizeof(v));
	k[31] = (uint8_t)v;
}

static struct pc_addr ip4(uint8_t last)
{
	struct pc_addr a;
	memset(&a, 0, sizeof(a));
	a.family = ADDR_V4;
	a.b[0] = 10;
	a.b[3] = last;
	return a;
}

static void test_bind_replay_lease(void **state)
{
	(void)state;
	struct oidcbind *t = oidcbind_create(64);
	assert_non_null(t);
	uint8_t job[32], tok[32], tok2[32];
	key(job, 1);
	key(tok, 100);
	key(tok2, 101);
	struct pc_addr a = ip4(1), b = ip4(2);
	/* first use binds; the same source again is fine; another source is a replay */
	assert_int_equal(oidcbind_check(t, job, tok, &a, NULL, 2000, 1000), OIDCBIND_OK);
	assert_int_equal(oidcbind_check(t, job, tok, &a, NULL, 2000, 1001), OIDCBIND_OK);
	assert_int_equal(oidcbind_check(t, job, tok, &b, NULL, 2000, 1002), OIDCBIND_OTHER_SOURCE);
	/* another token of the same job from another source: still the job's replay */
	assert_int_equal(oidcbind_check(t, job, tok2, &b, NULL, 2000, 1003), OIDCBIND_OTHER_SOURCE);
	/* the lease: only this token, only from a, only until 2000 */
	assert_int_equal(oidcbind_lease(t, job, tok, &a, NULL, 1500), OIDCBIND_OK);
	assert_int_equal(oidcbind_lease(t, job, tok2, &a, NULL, 1500), OIDCBIND_NO_LEASE);
	assert_int_equal(oidcbind_lease(t, job, tok, &b, NULL, 1500), OIDCBIND_OTHER_SOURCE);
	assert_int_equal(oidcbind_lease(t, job, tok, &a, NULL, 2001), OIDCBIND_NO_LEASE);
	uint8_t unknown[32];
	key(unknown, 2);
	assert_int_equal(oidcbind_lease(t, unknown, tok, &a, NULL, 1500), OIDCBIND_NO_LEASE);
	/* after its end the job may bind anew (a re-run on another runner) */
	assert_int_equal(oidcbind_check(t, job, tok2, &b, NULL, 4000, 2001), OIDCBIND_OK);
	struct oidcbind_stats st;
	oidcbind_stats(t, 2001, &st);
	assert_int_equal(st.entries, 1);
	assert_int_equal(st.replays, 3);
	oidcbind_destroy(t);
}

static void test_bounded(void **state)
{
	(void)state;
	struct oidcbind *t = oidcbind_create(16);
	struct pc_addr a = ip4(1);
	uint8_t job[32], tok[32];
	key(tok, 7);
	for (unsigned i = 0; i < 1000; i++) {
		key(job, 1000 + i);
		assert_int_equal(oidcbind_check(t, job, tok, &a, NULL, 5000 + i, 1000),
		                 OIDCBIND_OK);
	}
	struct oidcbind_stats st;
	oidcbind_stats(t, 1000, &st);
	assert_true(st.entries <= 16);
	assert_true(st.evictions >= 1000 - 16);
	/* ended entries are reused before anything live is evicted */
	uint64_t ev = st.evictions;
	key(job, 5);
	assert_int_equal(oidcbind_check(t, job, tok, &a, NULL, 99999, 7000), OIDCBIND_OK);
	oidcbind_stats(t, 7000, &st);
	assert_int_equal(st.evictions, ev);
	assert_int_equal(st.entries, 1);
	oidcbind_destroy(t);
	oidcbind_destroy(NULL);
}

/* A stand-in pod map: which pod key sits at 10.0.0.1 and 10.0.0.2 now. */
static uint8_t pod_at_1[32], pod_at_2[32];
static bool alive(void *ctx, const struct pc_addr *src, const uint8_t pod[32])
{
	(void)ctx;
	return memcmp(pod, src->b[3] == 1 ? pod_at_1 : pod_at_2, 32) == 0;
}

static void test_pod_ends_binding(void **state)
{
	(void)state;
	struct oidcbind *t = oidcbind_create(64);
	uint8_t job[32], tok[32];
	key(job, 1);
	key(tok, 2);
	struct pc_addr a = ip4(1), b = ip4(2);
	struct oidcbind_pod pa = {.alive = alive}, pb = {.alive = alive};
	key(pa.key, 50);
	key(pb.key, 51);
	memcpy(pod_at_1, pa.key, 32);
	memcpy(pod_at_2, pb.key, 32);
	assert_int_equal(oidcbind_check(t, job, tok, &a, &pa, 5000, 1000), OIDCBIND_OK);
	/* while the pod lives: another address is a replay, the lease holds for it */
	assert_int_equal(oidcbind_check(t, job, tok, &b, &pb, 5000, 1001), OIDCBIND_OTHER_SOURCE);
	assert_int_equal(oidcbind_lease(t, job, tok, &a, &pa, 4000), OIDCBIND_OK);
	/* another pod at the same address (the first one went, its IP was reused): no lease */
	struct oidcbind_pod pc = {.alive = alive};
	key(pc.key, 52);
	memcpy(pod_at_1, pc.key, 32);
	assert_int_equal(oidcbind_lease(t, job, tok, &a, &pc, 4001), OIDCBIND_NO_LEASE);
	/* the job retried on a new pod elsewhere binds afresh, and is then that pod's */
	assert_int_equal(oidcbind_check(t, job, tok, &a, &pa, 5000, 1000), OIDCBIND_OK);
	memset(pod_at_1, 0, 32); /* pod a gone */
	assert_int_equal(oidcbind_check(t, job, tok, &b, &pb, 6000, 1002), OIDCBIND_OK);
	assert_int_equal(oidcbind_check(t, job, tok, &a, &pa, 6000, 1003), OIDCBIND_OTHER_SOURCE);
	oidcbind_destroy(t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_bind_replay_lease),
	    cmocka_unit_test(test_bounded),
	    cmocka_unit_test(test_pod_ends_binding),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
