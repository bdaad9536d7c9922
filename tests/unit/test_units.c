/* Unit tests for policy/units.c: whole numbers, sizes and durations of the policy file. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "policy.h"
#include "policy_int.h"

struct ucase {
	const char *text;
	int rc;
	uint64_t value; /* when rc == 0 */
};

static void run_cases(const struct ucase *c, size_t n, int (*fn)(const char *, size_t, uint64_t *),
                      const char *what)
{
	for (size_t i = 0; i < n; i++) {
		uint64_t v = 0xdeadbeef;
		int rc = fn(c[i].text, strlen(c[i].text), &v);
		if (rc != c[i].rc || (rc == 0 && v != c[i].value))
			fail_msg("%s(\"%s\"): rc %d value %llu, expected rc %d value %llu", what,
			         c[i].text, rc, (unsigned long long)v, c[i].rc,
			         (unsigned long long)c[i].value);
		if (rc != 0)
			assert_int_equal(v, 0xdeadbeef); /* untouched on error */
	}
}

#define KI           1024ULL
#define RUN(tbl, fn) run_cases(tbl, sizeof(tbl) / sizeof(tbl[0]), fn, #fn)

static void test_size_every_unit(void **state)
{
	static const struct ucase c[] = {
	    {"0", 0, 0},
	    {"0B", 0, 0},
	    {"0GiB", 0, 0},
	    {"512", 0, 512},
	    {"1B", 0, 1},
	    {"1KB", 0, 1000},
	    {"1MB", 0, 1000000},
	    {"1GB", 0, 1000000000},
	    {"1TB", 0, 1000000000000ULL},
	    {"1KiB", 0, KI},
	    {"1MiB", 0, KI * KI},
	    {"1GiB", 0, KI * KI * KI},
	    {"1TiB", 0, KI * KI * KI * KI},
	    {"8KiB", 0, 8192},
	    {"64KiB", 0, 65536},
	    {"100MiB", 0, 100 * KI * KI},
	    {"10GiB", 0, 10 * KI * KI * KI},
	    {"10GB", 0, 10000000000ULL},
	};
	(void)state;
	RUN(c, policy_parse_size);
}

static void test_size_boundaries_and_overflow(void **state)
{
	static const struct ucase c[] = {
	    {"18446744073709551615", 0, UINT64_MAX},
	    {"18446744073709551615B", 0, UINT64_MAX},
	    {"18446744073709551616", POLICY_UNIT_ERR_OVERFLOW, 0},
	    {"99999999999999999999999", POLICY_UNIT_ERR_OVERFLOW, 0},
	    {"17179869183GiB", 0, 17179869183ULL * KI * KI * KI},
	    {"17179869184GiB", POLICY_UNIT_ERR_OVERFLOW, 0},
	    {"16777215TiB", 0, 16777215ULL * KI * KI * KI * KI},
	    {"16777216TiB", POLICY_UNIT_ERR_OVERFLOW, 0},
	    {"18446744073709551KB", 0, 18446744073709551000ULL},
	    {"18446744073709552KB", POLICY_UNIT_ERR_OVERFLOW, 0},
	    {"18446744TB", 0, 18446744000000000000ULL},
	    {"18446745TB", POLICY_UNIT_ERR_OVERFLOW, 0},
	};
	(void)state;
	RUN(c, policy_parse_size);
}

static void test_size_junk(void **state)
{
	static const struct ucase c[] = {
	    {"", POLICY_UNIT_ERR_EMPTY, 0},
	    {"10 MiB", POLICY_UNIT_ERR_SYNTAX, 0}, /* decided: no space between number and unit */
	    {" 10MiB", POLICY_UNIT_ERR_SYNTAX, 0},
	    {"10MiB ", POLICY_UNIT_ERR_UNIT, 0},
	    {"-1", POLICY_UNIT_ERR_SYNTAX, 0},
	    {"+1", POLICY_UNIT_ERR_SYNTAX, 0},
	    {"1.5GiB", POLICY_UNIT_ERR_SYNTAX, 0},
	    {"1,5GiB", POLICY_UNIT_ERR_SYNTAX, 0},
	    {"1_000", POLICY_UNIT_ERR_SYNTAX, 0},
	    {"10Mib", POLICY_UNIT_ERR_UNIT, 0}, /* units are case-sensitive */
	    {"10mib", POLICY_UNIT_ERR_UNIT, 0},
	    {"10MIB", POLICY_UNIT_ERR_UNIT, 0},
	    {"10kb", POLICY_UNIT_ERR_UNIT, 0},
	    {"10kB", POLICY_UNIT_ERR_UNIT, 0},
	    {"10b", POLICY_UNIT_ERR_UNIT, 0},
	    {"10EiB", POLICY_UNIT_ERR_UNIT, 0},
	    {"10MiBs", POLICY_UNIT_ERR_UNIT, 0},
	    {"10s", POLICY_UNIT_ERR_UNIT, 0},
	    {"MiB", POLICY_UNIT_ERR_SYNTAX, 0},
	    {"0x10", POLICY_UNIT_ERR_UNIT, 0},
	    {"010", POLICY_UNIT_ERR_LEADING_ZERO, 0},
	    {"007KiB", POLICY_UNIT_ERR_LEADING_ZERO, 0},
	    {"1e6", POLICY_UNIT_ERR_UNIT, 0},
	};
	uint64_t v;
	(void)state;
	RUN(c, policy_parse_size);
	/* Length-bounded: the bytes after len are not read, an embedded NUL is junk. */
	assert_int_equal(policy_parse_size("10MiBxx", 5, &v), 0);
	assert_int_equal(v, 10 * KI * KI);
	assert_int_equal(policy_parse_size("10\0MiB", 6, &v), POLICY_UNIT_ERR_UNIT);
	assert_int_equal(policy_parse_size(NULL, 0, &v), POLICY_UNIT_ERR_EMPTY);
}

static void test_duration_every_unit(void **state)
{
	static const struct ucase c[] = {
	    {"0", 0, 0},       {"0ms", 0, 0},      {"0s", 0, 0},
	    {"0h", 0, 0},      {"1ms", 0, 1},      {"1500ms", 0, 1500},
	    {"1s", 0, 1000},   {"10s", 0, 10000},  {"1m", 0, 60000},
	    {"5m", 0, 300000}, {"1h", 0, 3600000}, {"168h", 0, 168ULL * 3600000},
	};
	(void)state;
	RUN(c, policy_parse_duration_ms);
}

static void test_duration_boundaries_and_junk(void **state)
{
	static const struct ucase c[] = {
	    {"18446744073709551615ms", 0, UINT64_MAX},
	    {"18446744073709551616ms", POLICY_UNIT_ERR_OVERFLOW, 0},
	    {"18446744073709551s", 0, 18446744073709551000ULL},
	    {"18446744073709552s", POLICY_UNIT_ERR_OVERFLOW, 0},
	    {"307445734561825m", 0, 307445734561825ULL * 60000},
	    {"307445734561826m", POLICY_UNIT_ERR_OVERFLOW, 0},
	    {"5124095576030h", 0, 5124095576030ULL * 3600000},
	    {"5124095576031h", POLICY_UNIT_ERR_OVERFLOW, 0},
	    {"18446744073709551616", POLICY_UNIT_ERR_OVERFLOW, 0},
	    {"", POLICY_UNIT_ERR_EMPTY, 0},
	    {"10", POLICY_UNIT_ERR_NO_UNIT, 0}, /* seconds or milliseconds? refuse */
	    {"1500", POLICY_UNIT_ERR_NO_UNIT, 0},
	    {"00", POLICY_UNIT_ERR_LEADING_ZERO, 0},
	    {"05s", POLICY_UNIT_ERR_LEADING_ZERO, 0},
	    {"10 s", POLICY_UNIT_ERR_SYNTAX, 0},
	    {"1.5s", POLICY_UNIT_ERR_SYNTAX, 0},
	    {"-5s", POLICY_UNIT_ERR_SYNTAX, 0},
	    {"s", POLICY_UNIT_ERR_SYNTAX, 0},
	    {"10S", POLICY_UNIT_ERR_UNIT, 0},
	    {"10MS", POLICY_UNIT_ERR_UNIT, 0},
	    {"1d", POLICY_UNIT_ERR_UNIT, 0},
	    {"10sec", POLICY_UNIT_ERR_UNIT, 0},
	    {"1h30m", POLICY_UNIT_ERR_UNIT, 0},
	    {"10us", POLICY_UNIT_ERR_UNIT, 0},
	    {"10KiB", POLICY_UNIT_ERR_UNIT, 0},
	};
	(void)state;
	RUN(c, policy_parse_duration_ms);
}

static void test_uint(void **state)
{
	static const struct ucase c[] = {
	    {"0", 0, 0},
	    {"1", 0, 1},
	    {"65535", 0, 65535},
	    {"18446744073709551615", 0, UINT64_MAX},
	    {"18446744073709551616", POLICY_UNIT_ERR_OVERFLOW, 0},
	    {"", POLICY_UNIT_ERR_EMPTY, 0},
	    {"01", POLICY_UNIT_ERR_LEADING_ZERO, 0},
	    {"1a", POLICY_UNIT_ERR_SYNTAX, 0},
	    {"1KiB", POLICY_UNIT_ERR_SYNTAX, 0},
	    {"-1", POLICY_UNIT_ERR_SYNTAX, 0},
	    {"+1", POLICY_UNIT_ERR_SYNTAX, 0},
	    {"0x1", POLICY_UNIT_ERR_SYNTAX, 0},
	    {" 1", POLICY_UNIT_ERR_SYNTAX, 0},
	};
	(void)state;
	RUN(c, policy_parse_uint);
}

static void test_status_text(void **state)
{
	static const int st[] = {POLICY_UNIT_ERR_EMPTY,        POLICY_UNIT_ERR_SYNTAX,
	                         POLICY_UNIT_ERR_LEADING_ZERO, POLICY_UNIT_ERR_UNIT,
	                         POLICY_UNIT_ERR_NO_UNIT,      POLICY_UNIT_ERR_OVERFLOW};
	(void)state;
	assert_string_equal(policy_unit_status_str(POLICY_UNIT_OK), "ok");
	for (size_t i = 0; i < sizeof(st) / sizeof(st[0]); i++) {
		const char *s = policy_unit_status_str(st[i]);
		assert_non_null(s);
		assert_true(strlen(s) > 3);
		assert_string_not_equal(s, "invalid value");
		for (size_t j = 0; j < i; j++)
			assert_string_not_equal(s, policy_unit_status_str(st[j]));
	}
	assert_string_equal(policy_unit_status_str(-99), "invalid value");
	assert_string_equal(policy_unit_status_str(7), "invalid value");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_size_every_unit),
	    cmocka_unit_test(test_size_boundaries_and_overflow),
	    cmocka_unit_test(test_size_junk),
	    cmocka_unit_test(test_duration_every_unit),
	    cmocka_unit_test(test_duration_boundaries_and_junk),
	    cmocka_unit_test(test_uint),
	    cmocka_unit_test(test_status_text),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
