/* Cache-Control max-age and Age into the JWKS cache's freshness (proxy/proto/cachectl.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "cachectl.h"

static int64_t fresh(const char *headers)
{
	char head[4096];
	snprintf(head, sizeof(head), "HTTP/1.1 200 OK\r\n%s\r\n", headers);
	struct http_resp r;
	struct http_limits lim;
	http_limits_default(&lim);
	int rc = http_parse_response(head, strlen(head), &lim, &r);
	if (rc <= 0)
		fail_msg("head did not parse (%d): %s", rc, headers);
	return cachectl_freshness(&r);
}

static void test_table(void **state)
{
	(void)state;
	static const struct {
		const char *headers;
		int64_t want;
	} cases[] = {
	    {"", -1},
	    {"Content-Type: application/json\r\n", -1},
	    {"Cache-Control: max-age=300\r\n", 300},
	    {"cache-control: public, max-age=3600, must-revalidate\r\n", 3600},
	    {"Cache-Control: MAX-AGE=60\r\n", 60},
	    {"Cache-Control: max-age=\"120\"\r\n", 120},
	    {"Cache-Control: max-age = 90 \r\n", 90},
	    {"Cache-Control: max-age=300\r\nAge: 100\r\n", 200},
	    {"Cache-Control: max-age=300\r\nAge: 400\r\n", 0},
	    {"Age: 10\r\n", -1},
	    {"Cache-Control: no-store\r\n", 0},
	    {"Cache-Control: max-age=600, no-cache\r\n", 0},
	    {"Cache-Control: public\r\nCache-Control: max-age=30\r\n", 30},
	    /* RFC 9111 §4.2.1: invalid or conflicting max-age makes it stale */
	    {"Cache-Control: max-age=abc\r\n", 0},
	    {"Cache-Control: max-age=-5\r\n", 0},
	    {"Cache-Control: max-age=\r\n", 0},
	    {"Cache-Control: max-age\r\n", 0},
	    {"Cache-Control: max-age=10, max-age=20\r\n", 0},
	    {"Cache-Control: max-age=10\r\nCache-Control: max-age=10\r\n", 10},
	    /* s-maxage is for shared caches; an unknown directive is ignored */
	    {"Cache-Control: s-maxage=999\r\n", -1},
	    {"Cache-Control: x-max-age=5, max-age=7\r\n", 7},
	    /* §1.2.2: at most 2^31 */
	    {"Cache-Control: max-age=99999999999999999999999\r\n", 2147483648LL},
	    {"Cache-Control: max-age=3600\r\nAge: 99999999999999999999\r\n", 0},
	    {"Cache-Control: ,,, max-age=5 ,\r\n", 5},
	    /* a directive inside another's quoted string is text, escaped quote or not */
	    {"Cache-Control: ext=\"\\\", max-age=999999, x=\"\r\n", -1},
	    {"Cache-Control: ext=\"a, max-age=999\", max-age=60\r\n", 60},
	    /* an unterminated quoted max-age is invalid: stale */
	    {"Cache-Control: max-age=\"60\r\n", 0},
	    /* Age must be one delta-seconds: a list is ignored */
	    {"Cache-Control: max-age=100\r\nAge: 30, 40\r\n", 100},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int64_t got = fresh(cases[i].headers);
		if (got != cases[i].want)
			fail_msg("%s: got %lld, want %lld", cases[i].headers, (long long)got,
			         (long long)cases[i].want);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_table),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
