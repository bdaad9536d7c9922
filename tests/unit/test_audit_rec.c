/* Unit tests for proxy/proto/audit_rec.c: the audit record reader of `portcullis learn`. */
#include "audit_rec.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

static int parse(const char *s, struct audit_rec *r)
{
	char err[160];
	int rc = audit_rec_parse(s, strlen(s), r, err, sizeof(err));
	if (rc != 0)
		print_message("rc %d: %s\n", rc, err);
	return rc;
}

/* A tunnel record of an audit-mode tier as the daemon writes it. */
static void test_real_record(void **state)
{
	(void)state;
	static const char rec[] =
	    "{\"@timestamp\":\"2026-12-07T05:46:10.989073Z\",\"ecs\":{\"version\":\"9.4.0\"},"
	    "\"event\":{\"kind\":\"event\",\"category\":[\"network\",\"web\"],\"type\":[\"connection\","
	    "\"allowed\",\"end\"],\"action\":\"tunnel\",\"outcome\":\"success\",\"reason\":"
	    "\"client_closed\",\"duration\":1017872},\"source\":{\"ip\":\"10.42.0.7\",\"port\":11030,"
	    "\"bytes\":89},\"destination\":{\"domain\":\"pypi.org\",\"ip\":\"198.51.100.10\",\"port\":443,"
	    "\"bytes\":155},\"network\":{\"transport\":\"tcp\"},\"rule\":{\"ruleset\":\"build\"},"
	    "\"labels\":{\"would_deny\":\"host_not_allowed\"},\"orchestrator\":{\"namespace\":\"ci\","
	    "\"resource\":{\"name\":\"runner-abc\",\"type\":\"pod\"}},\"observer\":{\"hostname\":\"vm\"}}";
	struct audit_rec r;
	assert_int_equal(parse(rec, &r), AUDIT_REC_OK);
	assert_string_equal(r.timestamp, "2026-12-07T05:46:10.989073Z");
	assert_true(r.allowed);
	assert_false(r.denied);
	assert_string_equal(r.action, "tunnel");
	assert_string_equal(r.reason, "client_closed");
	assert_string_equal(r.would_deny, "host_not_allowed");
	assert_string_equal(r.tier, "build");
	assert_string_equal(r.source_ip, "10.42.0.7");
	assert_string_equal(r.domain, "pypi.org");
	assert_string_equal(r.dest_ip, "198.51.100.10");
	assert_int_equal(r.port, 443);
	assert_string_equal(r.pod_ns, "ci");
	assert_string_equal(r.pod_name, "runner-abc");
}

/* A plain-HTTP record: url.* when destination.* lacks them; destination.port wins. */
static void test_url_fallback(void **state)
{
	(void)state;
	struct audit_rec r;
	assert_int_equal(parse("{\"url\":{\"domain\":\"deb.debian.org\",\"port\":80,\"path\":\"/x\"},"
	                       "\"event\":{\"type\":[\"denied\"],\"reason\":\"host_not_allowed\"}}",
	                       &r),
	                 AUDIT_REC_OK);
	assert_string_equal(r.domain, "deb.debian.org");
	assert_int_equal(r.port, 80);
	assert_true(r.denied);
	assert_int_equal(parse("{\"url\":{\"port\":80},\"destination\":{\"port\":8080}}", &r), 0);
	assert_int_equal(r.port, 8080);
	assert_int_equal(parse("{\"destination\":{\"port\":8080},\"url\":{\"port\":80}}", &r), 0);
	assert_int_equal(r.port, 8080);
	/* Absent and null fields are empty; unknown ones of any shape are skipped. */
	assert_int_equal(parse("{\"rule\":null,\"x\":[{\"a\":[1,2,{\"b\":null}]}],\"labels\":{}}", &r),
	                 AUDIT_REC_OK);
	assert_string_equal(r.tier, "");
	assert_int_equal(r.port, 0);
}

struct bad {
	const char *json;
	int rc;
};

static void test_hostile(void **state)
{
	(void)state;
	static const struct bad cases[] = {
	    {"", AUDIT_REC_ERR_SYNTAX},
	    {"{", AUDIT_REC_ERR_SYNTAX},
	    {"{}{}", AUDIT_REC_ERR_SYNTAX},
	    {"{} x", AUDIT_REC_ERR_SYNTAX},
	    {"{\"a\":1,}", AUDIT_REC_ERR_SYNTAX},
	    {"{'a':1}", AUDIT_REC_ERR_SYNTAX},
	    {"{a: 1}", AUDIT_REC_ERR_SYNTAX},
	    {"{\"a\":&x 1}", AUDIT_REC_ERR_SYNTAX},
	    {"[1]", AUDIT_REC_ERR_SHAPE},
	    {"\"str\"", AUDIT_REC_ERR_SHAPE},
	    /* a kept key twice: two readers would disagree */
	    {"{\"rule\":{\"ruleset\":\"a\",\"ruleset\":\"b\"}}", AUDIT_REC_ERR_SHAPE},
	    {"{\"rule\":{},\"rule\":{}}", AUDIT_REC_ERR_SHAPE},
	    {"{\"destination\":{\"port\":\"443\"}}", AUDIT_REC_ERR_SHAPE},
	    {"{\"destination\":{\"port\":0}}", AUDIT_REC_ERR_SHAPE},
	    {"{\"destination\":{\"port\":65536}}", AUDIT_REC_ERR_SHAPE},
	    {"{\"destination\":{\"port\":99999999999999999999}}", AUDIT_REC_ERR_SHAPE},
	    {"{\"destination\":{\"port\":-1}}", AUDIT_REC_ERR_SHAPE},
	    {"{\"destination\":{\"port\":4.43e2}}", AUDIT_REC_ERR_SHAPE},
	    {"{\"destination\":{\"port\":true}}", AUDIT_REC_ERR_SHAPE},
	    {"{\"destination\":{\"domain\":5}}", AUDIT_REC_ERR_SHAPE},
	    {"{\"destination\":[]}", AUDIT_REC_ERR_SHAPE},
	    {"{\"event\":{\"type\":\"allowed\"}}", AUDIT_REC_ERR_SHAPE},
	    {"{\"event\":{\"type\":[1]}}", AUDIT_REC_ERR_SHAPE},
	    {"{\"destination\":{\"domain\":\"a\\u0000b\"}}", AUDIT_REC_ERR_SHAPE},
	    {"{\"a\":[[[[[[[[[[1]]]]]]]]]]}", AUDIT_REC_ERR_LIMIT},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct audit_rec r;
		print_message("case %zu: %s\n", i, cases[i].json);
		assert_int_equal(parse(cases[i].json, &r), cases[i].rc);
		assert_string_equal(r.domain, ""); /* nothing half-read survives a refusal */
	}
}

static void test_limits(void **state)
{
	(void)state;
	struct audit_rec r;
	char *big = malloc(AUDIT_REC_MAX_LINE + 64);
	assert_non_null(big);
	/* A domain longer than the field: refused, not cut. */
	int n = snprintf(big, 600, "{\"destination\":{\"domain\":\"");
	memset(big + n, 'a', 300);
	strcpy(big + n + 300, "\"}}");
	assert_int_equal(parse(big, &r), AUDIT_REC_ERR_LIMIT);
	/* A line over the limit is refused before parsing. */
	memset(big, ' ', AUDIT_REC_MAX_LINE + 10);
	big[0] = '{';
	big[AUDIT_REC_MAX_LINE + 8] = '}';
	big[AUDIT_REC_MAX_LINE + 9] = '\0';
	assert_int_equal(parse(big, &r), AUDIT_REC_ERR_LIMIT);
	free(big);
	/* Not NUL-terminated: nothing past len is read. */
	static const char rec[] = "{\"rule\":{\"ruleset\":\"a\"}}GARBAGE";
	assert_int_equal(audit_rec_parse(rec, 24, &r, NULL, 0), AUDIT_REC_OK);
	assert_string_equal(r.tier, "a");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_real_record),
	    cmocka_unit_test(test_url_fallback),
	    cmocka_unit_test(test_hostile),
	    cmocka_unit_test(test_limits),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
