/* SPIFFE IDs and the policy's ID patterns: the spec's rules, nasty cases, limits. */
#include "spiffe.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

struct id_case {
	const char *s;
	int want;
};

/* SPIFFE-ID §2: every rule has a case on each side. */
static const struct id_case ids[] = {
    {"spiffe://example.org", SPIFFE_OK},
    {"spiffe://example.org/", SPIFFE_ERR_PATH}, /* trailing slash */
    {"spiffe://example.org/ns/ci/sa/runner", SPIFFE_OK},
    {"spiffe://td.with-dash_and.dots/p.a-t_h/Seg9", SPIFFE_OK},
    {"spiffe://Example.org/x", SPIFFE_ERR_TRUST_DOMAIN}, /* uppercase trust domain */
    {"SPIFFE://example.org/x", SPIFFE_ERR_SCHEME},
    {"spiffe:/example.org/x", SPIFFE_ERR_SCHEME},
    {"https://example.org/x", SPIFFE_ERR_SCHEME},
    {"spiffe://", SPIFFE_ERR_TRUST_DOMAIN},
    {"spiffe:///path", SPIFFE_ERR_TRUST_DOMAIN},
    {"spiffe://example.org:8443/x", SPIFFE_ERR_TRUST_DOMAIN}, /* no port */
    {"spiffe://user@example.org/x", SPIFFE_ERR_TRUST_DOMAIN}, /* no userinfo */
    {"spiffe://example.org//x", SPIFFE_ERR_PATH},             /* empty segment */
    {"spiffe://example.org/./x", SPIFFE_ERR_PATH},
    {"spiffe://example.org/x/..", SPIFFE_ERR_PATH},
    {"spiffe://example.org/.../x", SPIFFE_OK}, /* three dots are a name */
    {"spiffe://example.org/x?q=1", SPIFFE_ERR_PATH},
    {"spiffe://example.org/x#f", SPIFFE_ERR_PATH},
    {"spiffe://example.org/x%2fy", SPIFFE_ERR_PATH}, /* no percent-encoding */
    {"spiffe://example.org/x y", SPIFFE_ERR_PATH},
    {"spiffe://exa mple.org/x", SPIFFE_ERR_TRUST_DOMAIN},
    {"spiffe://example.org/x*", SPIFFE_ERR_PATH},
};

static void test_ids(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); i++) {
		struct spiffe_id id;
		int st = spiffe_id_parse(ids[i].s, strlen(ids[i].s), &id);
		if (st != ids[i].want)
			fail_msg("%s: got %d (%s), want %d", ids[i].s, st, spiffe_status_str(st),
			         ids[i].want);
	}
}

static void test_views(void **state)
{
	(void)state;
	struct spiffe_id id;
	const char *s = "spiffe://ci.example.org/runner/build";
	assert_int_equal(spiffe_id_parse(s, strlen(s), &id), SPIFFE_OK);
	assert_int_equal(id.td_len, strlen("ci.example.org"));
	assert_memory_equal(id.td, "ci.example.org", id.td_len);
	assert_int_equal(id.path_len, strlen("/runner/build"));
	assert_memory_equal(id.path, "/runner/build", id.path_len);
}

/* A NUL inside the length is a stray byte, not the end of the ID. */
static void test_embedded_nul(void **state)
{
	(void)state;
	struct spiffe_id id;
	static const char s[] = "spiffe://example.org/a\0/b";
	assert_int_equal(spiffe_id_parse(s, sizeof(s) - 1, &id), SPIFFE_ERR_PATH);
	static const char t[] = "spiffe://exam\0ple.org/a";
	assert_int_equal(spiffe_id_parse(t, sizeof(t) - 1, &id), SPIFFE_ERR_TRUST_DOMAIN);
}

static void test_limits(void **state)
{
	(void)state;
	struct spiffe_id id;
	char *buf = malloc(SPIFFE_ID_MAX + 2);
	assert_non_null(buf);
	/* 2048 bytes exactly: accepted; one more: refused. */
	memcpy(buf, "spiffe://example.org/", 21);
	for (size_t i = 21; i < SPIFFE_ID_MAX + 1; i++)
		buf[i] = 'a';
	assert_int_equal(spiffe_id_parse(buf, SPIFFE_ID_MAX, &id), SPIFFE_OK);
	assert_int_equal(spiffe_id_parse(buf, SPIFFE_ID_MAX + 1, &id), SPIFFE_ERR_TOO_LONG);
	/* A trust domain of 255 bytes is the most. */
	memcpy(buf, "spiffe://", 9);
	memset(buf + 9, 'a', 256);
	assert_int_equal(spiffe_id_parse(buf, 9 + 255, &id), SPIFFE_OK);
	assert_int_equal(spiffe_id_parse(buf, 9 + 256, &id), SPIFFE_ERR_TRUST_DOMAIN);
	free(buf);
}

struct match_case {
	const char *pat, *id;
	bool want;
};

static const struct match_case matches[] = {
    {"spiffe://ci.example.org/runner/build", "spiffe://ci.example.org/runner/build", true},
    {"spiffe://ci.example.org/runner/build", "spiffe://ci.example.org/runner/build2", false},
    {"spiffe://ci.example.org/runner/build", "spiffe://ci.example.org/Runner/build", false},
    {"spiffe://ci.example.org/runner/*", "spiffe://ci.example.org/runner/build", true},
    {"spiffe://ci.example.org/runner/*", "spiffe://ci.example.org/runner/a/b/c", true},
    {"spiffe://ci.example.org/runner/*", "spiffe://ci.example.org/runner",
     false}, /* strictly below */
    {"spiffe://ci.example.org/runner/*", "spiffe://ci.example.org/runners/x", false}, /* boundary */
    {"spiffe://ci.example.org/*", "spiffe://ci.example.org/x", true},
    {"spiffe://ci.example.org/*", "spiffe://ci.example.org", false},
    {"spiffe://ci.example.org/*", "spiffe://ci.example.org.evil/x", false},
    {"spiffe://ci.example.org", "spiffe://ci.example.org", true},
    {"spiffe://ci.example.org", "spiffe://ci.example.org/x", false},
};

static void test_patterns(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(matches) / sizeof(matches[0]); i++) {
		const struct match_case *m = &matches[i];
		assert_int_equal(spiffe_pattern_check(m->pat, strlen(m->pat)), SPIFFE_OK);
		bool got = spiffe_pattern_match(m->pat, strlen(m->pat), m->id, strlen(m->id));
		if (got != m->want)
			fail_msg("%s vs %s: got %d", m->pat, m->id, got);
	}
	static const char *const bad[] = {
	    "spiffe://ci.example.org/*/x",
	    "spiffe://ci.example.org/run*",
	    "spiffe://*.example.org/x",
	    "spiffe://ci.example.org/**",
	    "*",
	    "spiffe://CI.example.org/*",
	    "spiffe://ci.example.org//*",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (spiffe_pattern_check(bad[i], strlen(bad[i])) == SPIFFE_OK)
			fail_msg("pattern %s accepted", bad[i]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_ids),          cmocka_unit_test(test_views),
	    cmocka_unit_test(test_embedded_nul), cmocka_unit_test(test_limits),
	    cmocka_unit_test(test_patterns),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
