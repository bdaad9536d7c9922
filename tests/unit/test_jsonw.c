/* The audit records' JSON writer: numbers and timestamps written by hand (proxy/base/jsonw.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "jsonw.h"

static const char *one(char *buf, size_t n, const char *k, uint64_t v, bool time)
{
	struct jsonw w;
	jsonw_init(&w, buf, n);
	jsonw_obj(&w, NULL);
	if (time)
		jsonw_kv_time(&w, k, v);
	else
		jsonw_kv_u64(&w, k, v);
	jsonw_obj_end(&w);
	return jsonw_end(&w) > 0 ? buf : NULL;
}

static void test_numbers(void **state)
{
	(void)state;
	char b[128];
	static const struct {
		uint64_t v;
		const char *want;
	} cases[] = {
	    {0, "{\"n\":0}"},
	    {7, "{\"n\":7}"},
	    {10, "{\"n\":10}"},
	    {1234567890, "{\"n\":1234567890}"},
	    {9223372036854775807ULL, "{\"n\":9223372036854775807}"},
	    /* above INT64_MAX: clamped, so every JSON reader keeps it exact enough to compare */
	    {9223372036854775808ULL, "{\"n\":9223372036854775807}"},
	    {UINT64_MAX, "{\"n\":9223372036854775807}"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const char *got = one(b, sizeof(b), "n", cases[i].v, false);
		assert_non_null(got);
		assert_string_equal(got, cases[i].want);
	}
	/* a buffer one byte short: nothing, not a cut number */
	assert_null(one(b, strlen("{\"n\":1234567890}"), "n", 1234567890, false));
}

static void test_times(void **state)
{
	(void)state;
	char b[128];
	static const struct {
		uint64_t ns;
		const char *want;
	} cases[] = {
	    {0, "{\"t\":\"1970-01-01T00:00:00.000000Z\"}"},
	    {999, "{\"t\":\"1970-01-01T00:00:00.000000Z\"}"}, /* below a microsecond */
	    {1000, "{\"t\":\"1970-01-01T00:00:00.000001Z\"}"},
	    {1796636400123456789ULL, "{\"t\":\"2026-12-07T09:40:00.123456Z\"}"},
	    {951782400000000000ULL, "{\"t\":\"2000-02-29T00:00:00.000000Z\"}"}, /* a leap day */
	    /* the last nanosecond a uint64_t holds */
	    {UINT64_MAX, "{\"t\":\"2554-07-21T23:34:33.709551Z\"}"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const char *got = one(b, sizeof(b), "t", cases[i].ns, true);
		assert_non_null(got);
		assert_string_equal(got, cases[i].want);
	}
	/* the same time twice in a record is formatted once and written twice */
	struct jsonw w;
	jsonw_init(&w, b, sizeof(b));
	jsonw_obj(&w, NULL);
	jsonw_kv_time(&w, "a", 1000);
	jsonw_kv_time(&w, "b", 1000);
	jsonw_kv_time(&w, "c", 2000);
	jsonw_obj_end(&w);
	assert_true(jsonw_end(&w) > 0);
	assert_string_equal(b, "{\"a\":\"1970-01-01T00:00:00.000001Z\",\"b\":\"1970-01-01T00:00:00."
	                       "000001Z\",\"c\":\"1970-01-01T00:00:00.000002Z\"}");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_numbers),
	    cmocka_unit_test(test_times),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
