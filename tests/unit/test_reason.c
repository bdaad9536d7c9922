/* Reason codes: unique stable snake_case names, sane statuses, every code documented in docs/reasons.md. */
#include "reason.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

static void test_names_unique_snake_case(void **state)
{
	(void)state;
	for (int i = 0; i < R__COUNT; i++) {
		const char *n = reason_name((enum reason)i);
		assert_non_null(n);
		assert_true(strlen(n) > 0);
		for (const char *p = n; *p; p++)
			assert_true((*p >= 'a' && *p <= 'z') || *p == '_' || (*p >= '0' && *p <= '9'));
		for (int j = 0; j < i; j++)
			assert_string_not_equal(n, reason_name((enum reason)j));
	}
}

static void test_statuses(void **state)
{
	(void)state;
	assert_int_equal(reason_http_status(R_ALLOWED), 200);
	assert_int_equal(reason_http_status(R_HOST_NOT_ALLOWED), 403);
	assert_int_equal(reason_http_status(R_RESOLVED_TO_BLOCKED), 403);
	assert_int_equal(reason_http_status(R_DNS_TIMEOUT), 504);
	assert_int_equal(reason_http_status(R_DNS_NXDOMAIN), 502);
	assert_int_equal(reason_http_status(R_UPSTREAM_REFUSED), 502);
	assert_int_equal(reason_http_status(R_HEADERS_TOO_LARGE), 431);
	assert_int_equal(reason_http_status(R_METHOD_NOT_SUPPORTED), 501);
	/* Every refusal before a tunnel is an error status with a Proxy-Status error type. */
	for (int i = R_UNKNOWN_SOURCE; i <= R_INTERNAL_ERROR; i++) {
		int st = reason_http_status((enum reason)i);
		assert_true(st >= 400 && st <= 599);
		assert_true(strlen(reason_proxy_status((enum reason)i)) > 0);
	}
	assert_int_equal(reason_http_status(R_SOURCE_CONNECTION_LIMIT), 429);
	assert_int_equal(reason_http_status(R_SOURCE_UPLOAD_BUDGET), 429);
	assert_int_equal(reason_http_status(R_AUDIT_UNAVAILABLE), 503);
	/* Out-of-range values fail closed. */
	assert_int_equal(reason_http_status((enum reason)R__COUNT), 500);
	assert_string_equal(reason_name((enum reason)(R__COUNT + 5)), "internal_error");
}

static void test_reasons_md_documents_every_code(void **state)
{
	(void)state;
	FILE *f = fopen(TEST_DATA_DIR "/../../../docs/reasons.md", "r");
	assert_non_null(f);
	static char buf[1 << 20];
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	for (int i = 0; i < R__COUNT; i++) {
		char needle[64];
		snprintf(needle, sizeof(needle), "`%s`", reason_name((enum reason)i));
		if (strstr(buf, needle) == NULL)
			fail_msg("reason code %s is not documented in docs/reasons.md", needle);
	}
}

/* The tls_ech refusal tells the operator its likely cause (a browser's GREASE ECH) and the fix. */
static void test_hints(void **state)
{
	(void)state;
	const char *h = reason_hint(R_TLS_ECH);
	assert_non_null(h);
	assert_non_null(strstr(h, "GREASE"));
	assert_non_null(strstr(h, "EncryptedClientHelloEnabled=false"));
	assert_non_null(strstr(h, "allow_ech"));
	assert_true(strlen(h) < 400); /* it rides in every such record */
	for (int i = 0; i < R__COUNT; i++)
		if (i != R_TLS_ECH)
			assert_null(reason_hint((enum reason)i));
	assert_null(reason_hint((enum reason)(R__COUNT + 5)));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_names_unique_snake_case),
		cmocka_unit_test(test_statuses),
		cmocka_unit_test(test_reasons_md_documents_every_code),
		cmocka_unit_test(test_hints),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
