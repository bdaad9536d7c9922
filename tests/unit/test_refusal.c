/* Unit tests for proxy/proto/refusal.c: the refusal a client reads, for every reason code. */
#include "refusal.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

/* The value of header `name` in a formatted response ("" when absent). */
static void header(const char *resp, const char *name, char *out, size_t n)
{
	char key[64];
	snprintf(key, sizeof(key), "\r\n%s: ", name);
	const char *p = strstr(resp, key);
	out[0] = '\0';
	if (p == NULL)
		return;
	p += strlen(key);
	size_t k = strcspn(p, "\r");
	snprintf(out, n, "%.*s", (int)(k < n - 1 ? k : n - 1), p);
}

static void test_every_reason_formats(void **state)
{
	(void)state;
	char buf[512], v[128], want[128];
	for (int r = 0; r < R__COUNT; r++) {
		int status = reason_http_status((enum reason)r);
		size_t n = refusal_format((enum reason)r, status, 0, false, buf, sizeof(buf));
		assert_true(n > 0 && n < sizeof(buf));
		assert_int_equal(strlen(buf), n);
		snprintf(want, sizeof(want), "HTTP/1.1 %d ", status);
		assert_memory_equal(buf, want, strlen(want));
		header(buf, "Proxy-Status", v, sizeof(v));
		snprintf(want, sizeof(want), "portcullis; error=%s; details=\"%s\"",
			 reason_proxy_status((enum reason)r), reason_name((enum reason)r));
		assert_string_equal(v, want);
		header(buf, "Connection", v, sizeof(v));
		assert_string_equal(v, "close");
		header(buf, "Retry-After", v, sizeof(v));
		assert_string_equal(v, "");
		/* Content-Length is the body's length, and the body names the reason. */
		const char *body = strstr(buf, "\r\n\r\n") + 4;
		header(buf, "Content-Length", v, sizeof(v));
		assert_int_equal(atoi(v), (int)strlen(body));
		assert_non_null(strstr(body, reason_name((enum reason)r)));
	}
}

static void test_retry_after_and_head(void **state)
{
	(void)state;
	char buf[512], v[64], full[512];
	size_t n = refusal_format(R_SOURCE_UPLOAD_BUDGET, 429, 3600, false, full, sizeof(full));
	assert_true(n > 0);
	header(full, "Retry-After", v, sizeof(v));
	assert_string_equal(v, "3600");
	assert_memory_equal(full, "HTTP/1.1 429 Too Many Requests\r\n", 32);
	/* RFC 9110 §9.3.2: HEAD gets the same head, no content. */
	n = refusal_format(R_SOURCE_UPLOAD_BUDGET, 429, 3600, true, buf, sizeof(buf));
	assert_true(n > 0);
	const char *end = strstr(buf, "\r\n\r\n");
	assert_non_null(end);
	assert_int_equal((size_t)(end + 4 - buf), n);
	assert_memory_equal(buf, full, n);
}

static void test_too_small(void **state)
{
	(void)state;
	char buf[512];
	size_t n = refusal_format(R_HOST_NOT_ALLOWED, 403, 0, false, buf, sizeof(buf));
	assert_int_equal(refusal_format(R_HOST_NOT_ALLOWED, 403, 0, false, buf, n), 0);
	assert_int_equal(refusal_format(R_HOST_NOT_ALLOWED, 403, 0, false, buf, n + 1), n);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_every_reason_formats),
	    cmocka_unit_test(test_retry_after_and_head),
	    cmocka_unit_test(test_too_small),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
