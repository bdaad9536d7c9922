/* Unit tests for proxy/tables/audit_agg.c: one full record per key per interval, the rest counted.
 */
#include "audit_agg.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

static struct pc_addr v4(uint8_t d)
{
	struct pc_addr a = {ADDR_V4, {10, 0, 0, d}};
	return a;
}

struct seen {
	struct audit_agg_entry e[64];
	size_t n;
	uint64_t total;
};

static void collect(void *arg, const struct audit_agg_entry *e)
{
	struct seen *s = arg;
	assert_true(s->n < 64);
	s->e[s->n++] = *e;
	s->total += e->count;
}

static bool note(struct audit_agg *a, uint8_t src, uint16_t port, enum reason why, uint64_t now)
{
	struct pc_addr g = v4(src);
	return audit_agg_note(a, &g, &g, port, why, 1, "ci", now);
}

static void test_first_full_then_counted(void **state)
{
	struct audit_agg *a = audit_agg_create(64);
	assert_non_null(a);
	assert_true(note(a, 1, 1000, R_HOST_NOT_ALLOWED, 10)); /* first of its key: in full */
	assert_false(audit_agg_pending(a));
	assert_false(note(a, 1, 1001, R_HOST_NOT_ALLOWED, 20)); /* counted */
	assert_false(note(a, 1, 1002, R_HOST_NOT_ALLOWED, 30));
	assert_true(note(a, 1, 1003, R_PORT_NOT_ALLOWED, 40)); /* another reason: another key */
	assert_true(note(a, 2, 1004, R_HOST_NOT_ALLOWED, 50)); /* another source */
	assert_true(audit_agg_pending(a));
	struct seen s = {0};
	audit_agg_flush(a, collect, &s);
	assert_int_equal(s.n, 1);
	assert_int_equal(s.e[0].count, 2);
	assert_int_equal(s.e[0].reason, R_HOST_NOT_ALLOWED);
	assert_int_equal(s.e[0].src_port, 1001); /* the first counted */
	assert_int_equal(s.e[0].first_ns, 20);
	assert_int_equal(s.e[0].last_ns, 30);
	assert_string_equal(s.e[0].tier, "ci");
	assert_false(s.e[0].overflow);
	/* a new interval: the first is in full again */
	assert_false(audit_agg_pending(a));
	assert_true(note(a, 1, 1005, R_HOST_NOT_ALLOWED, 60));
	s = (struct seen){0};
	audit_agg_flush(a, collect, &s);
	assert_int_equal(s.n, 0);
	audit_agg_destroy(a);
}

/* Beyond its slots, refusals are counted per reason in an overflow entry: none is lost. */
static void test_overflow_counts_everything(void **state)
{
	struct audit_agg *a = audit_agg_create(16); /* 12 keys at most */
	uint64_t full = 0, counted_calls = 0;
	for (int round = 0; round < 3; round++)
		for (uint8_t src = 1; src <= 40; src++) {
			if (note(a, src, (uint16_t)(src * 10 + round), R_UNKNOWN_SOURCE, 100 + src))
				full++;
			else
				counted_calls++;
		}
	assert_true(full <= 12);
	struct seen s = {0};
	audit_agg_flush(a, collect, &s);
	assert_int_equal(s.total, counted_calls);
	assert_int_equal(full + s.total, 120);
	size_t overflow = 0;
	for (size_t i = 0; i < s.n; i++)
		if (s.e[i].overflow) {
			overflow++;
			assert_string_equal(s.e[i].tier, ""); /* of many tiers: names none */
		}
	assert_int_equal(overflow, 1);
	audit_agg_destroy(a);
}

/* Tiers are told apart by name (metrics slots may be shared by many tiers). */
static void test_tier_name_is_the_key(void **state)
{
	struct audit_agg *a = audit_agg_create(64);
	struct pc_addr g = v4(9);
	assert_true(audit_agg_note(a, &g, &g, 1, R_HOST_NOT_ALLOWED, 255, "tier-a", 1));
	assert_true(audit_agg_note(a, &g, &g, 2, R_HOST_NOT_ALLOWED, 255, "tier-b", 2));
	assert_false(audit_agg_note(a, &g, &g, 3, R_HOST_NOT_ALLOWED, 255, "tier-a", 3));
	struct seen s = {0};
	audit_agg_flush(a, collect, &s);
	assert_int_equal(s.n, 1);
	assert_string_equal(s.e[0].tier, "tier-a");
	audit_agg_destroy(a);
}

/* Groups are compared whole: two addresses of one group share a key. */
static void test_group_is_the_key(void **state)
{
	struct audit_agg *a = audit_agg_create(64);
	struct pc_addr g = {ADDR_V6, {0x20, 0x01, 0x0d, 0xb8, 0, 1}};
	struct pc_addr s1 = g, s2 = g;
	s1.b[15] = 1;
	s2.b[15] = 2;
	assert_true(audit_agg_note(a, &g, &s1, 1, R_HOST_NOT_ALLOWED, 1, "ci", 1));
	assert_false(audit_agg_note(a, &g, &s2, 2, R_HOST_NOT_ALLOWED, 1, "ci", 2));
	struct seen s = {0};
	audit_agg_flush(a, collect, &s);
	assert_int_equal(s.n, 1);
	assert_memory_equal(s.e[0].src.b, s2.b, 16); /* the first counted address */
	audit_agg_destroy(a);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_first_full_then_counted),
	    cmocka_unit_test(test_overflow_counts_everything),
	    cmocka_unit_test(test_group_is_the_key),
	    cmocka_unit_test(test_tier_name_is_the_key),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
