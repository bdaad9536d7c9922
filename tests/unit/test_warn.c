/* Unit tests for policy/warn.c: each warning, one policy that triggers it and one that does not. */
#include "warn.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "policy.h"

#define HEAD "version: 1\nresolver: {servers: [\"10.96.0.10\"]}\n"

struct warn_case {
	const char *name;
	const char *yaml;
	int code;          /* the warning expected, or -1: none at all */
	unsigned line, col; /* where (0: not checked) */
};

#define OIDC_HEAD(rule)                                                                            \
	HEAD "listen:\n  proxy:\n    - {address: \"127.0.0.1:3128\", auth: required}\n"             \
	     "identity:\n  oidc:\n    providers:\n      - name: gl\n        kind: gitlab\n"           \
	     "        issuer: \"https://gitlab.com\"\n        audiences: portcullis\n"                \
	     "        jwks_file: /etc/portcullis/gl.json\n        rules:\n" rule "tiers:\n  t: {}\n"

/* Triggers: each yields exactly this one warning at this place. */
static const struct warn_case triggers[] = {
    {"allow_ranges 0.0.0.0/0",
     HEAD "tiers:\n  t:\n    allow_ranges: [10.0.0.0/8, 0.0.0.0/0]\n",
     PW_ALLOW_RANGE_EVERYTHING, 5, 32},
    {"allow_ranges ::/0", HEAD "tiers:\n  t:\n    allow_ranges: [\"::/0\"]\n",
     PW_ALLOW_RANGE_EVERYTHING, 5, 20},
    {"allow_ranges link-local /16", HEAD "tiers:\n  t:\n    allow_ranges:\n      - 169.254.0.0/16\n",
     PW_ALLOW_RANGE_METADATA, 6, 9},
    {"allow_ranges exactly the metadata address",
     HEAD "tiers:\n  t:\n    allow_ranges: [169.254.169.254/32]\n", PW_ALLOW_RANGE_METADATA, 5, 20},
    {"allow_ranges Azure wireserver", HEAD "tiers:\n  t:\n    allow_ranges: [168.63.0.0/16]\n",
     PW_ALLOW_RANGE_METADATA, 5, 20},
    {"allow_ranges fc00::/7 holds fd00:ec2::254",
     HEAD "tiers:\n  t:\n    allow_ranges: [\"fc00::/7\"]\n", PW_ALLOW_RANGE_METADATA, 5, 20},
    {"allow_ranges inside loopback", HEAD "tiers:\n  t:\n    allow_ranges: [127.0.0.1/32]\n",
     PW_ALLOW_RANGE_LOOPBACK, 5, 20},
    {"allow_ranges over loopback", HEAD "tiers:\n  t:\n    allow_ranges: [126.0.0.0/7]\n",
     PW_ALLOW_RANGE_LOOPBACK, 5, 20},
    {"allow_ranges ::1", HEAD "tiers:\n  t:\n    allow_ranges: [\"::1/128\"]\n",
     PW_ALLOW_RANGE_LOOPBACK, 5, 20},
    {"sources 0.0.0.0/0", HEAD "tiers:\n  t:\n    sources: [0.0.0.0/0]\n", PW_SOURCES_EVERYTHING, 5, 15},
    {"sources ::/0", HEAD "tiers:\n  t:\n    sources: [\"::/0\"]\n", PW_SOURCES_EVERYTHING, 5, 15},
    {"unknown_source mapped to a tier",
     HEAD "identity: {unknown_source: t}\ntiers:\n  t: {}\n", PW_UNKNOWN_SOURCE_TIER, 3, 28},
    {"rule naming a public IPv4 address",
     HEAD "tiers:\n  t:\n    allow:\n      - host: 203.0.113.7\n", PW_RULE_IP_LITERAL, 6, 9},
    {"rule naming an IPv6 address lifted by allow_ranges",
     HEAD "tiers:\n  t:\n    allow_ranges: [\"fd00:1::/64\"]\n    allow:\n"
          "      - host: \"fd00:1::5\"\n",
     PW_RULE_IP_LITERAL, 7, 9},
    {"rule naming a blocked address",
     HEAD "tiers:\n  t:\n    allow:\n      - host: 10.96.5.10\n", PW_RULE_BLOCKED_ADDRESS, 6, 9},
    {"rule naming an address of blocked_ranges",
     HEAD "blocked_ranges: [198.51.100.0/24]\ntiers:\n  t:\n    allow:\n"
          "      - host: 198.51.100.9\n",
     PW_RULE_BLOCKED_ADDRESS, 7, 9},
    {"*.co.uk", HEAD "tiers:\n  t:\n    allow:\n      - host: \"*.co.uk\"\n",
     PW_RULE_PUBLIC_SUFFIX, 6, 9},
    {"*.githubusercontent.com (private section)",
     HEAD "tiers:\n  t:\n    allow:\n      - host: \"*.githubusercontent.com\"\n",
     PW_RULE_PUBLIC_SUFFIX, 6, 9},
    {"*.github.io", HEAD "tiers:\n  t:\n    allow:\n      - host: \"*.github.io\"\n",
     PW_RULE_PUBLIC_SUFFIX, 6, 9},
    {"the same rule twice",
     HEAD "tiers:\n  t:\n    allow:\n      - host: a.example\n      - host: A.example.\n",
     PW_RULE_DUPLICATE, 7, 9},
    {"the same pattern, ports already allowed by two earlier rules",
     HEAD "tiers:\n  t:\n    allow:\n      - host: a.example\n        ports: [80]\n"
          "      - host: a.example\n      - host: a.example\n        ports: [443, 80]\n",
     PW_RULE_DUPLICATE, 9, 9},
    {"a name under an earlier wildcard",
     HEAD "tiers:\n  t:\n    allow:\n      - host: \"*.example.org\"\n"
          "      - host: deep.api.example.org\n",
     PW_RULE_SHADOWED, 7, 9},
    {"a wildcard under an earlier wildcard",
     HEAD "tiers:\n  t:\n    allow:\n      - host: \"*.example.org\"\n        ports: [443, 80]\n"
          "      - host: \"*.api.example.org\"\n        ports: [80]\n",
     PW_RULE_SHADOWED, 8, 9},
    {"an audit tier", HEAD "tiers:\n  t:\n    mode: audit\n", PW_TIER_AUDIT_MODE, 5, 11},
    {"443 allowed, TLS checks off",
     HEAD "tiers:\n  t:\n    tls: {require_tls_ports: []}\n    allow:\n      - host: a.example\n",
     PW_TLS_PORT_UNCHECKED, 7, 9},
    {"a top-level TLS port dropped by the tier",
     HEAD "tls: {require_tls_ports: [443, 8443]}\ntiers:\n  t:\n    tls: {require_tls_ports: [443]}\n"
          "    allow:\n      - host: a.example\n        ports: [8443]\n",
     PW_TLS_PORT_UNCHECKED, 8, 9},
    {"audit.queue_size below 2 KiB x max_connections",
     HEAD "limits: {max_connections: 10000}\naudit: {queue_size: 16MiB}\ntiers:\n  t: {}\n",
     PW_AUDIT_QUEUE_SMALL, 4, 21},
    {"proxy_protocol.trusted 0.0.0.0/0",
     HEAD "listen:\n  proxy:\n    - address: \"0.0.0.0:3129\"\n      proxy_protocol:\n"
          "        mode: v2\n        trusted: [0.0.0.0/0]\ntiers:\n  t: {}\n",
     PW_PROXY_TRUSTED_BROAD, 8, 19},
    {"proxy_protocol.trusted covering the runners",
     HEAD "listen:\n  proxy:\n    - address: \"0.0.0.0:3129\"\n      proxy_protocol:\n"
          "        mode: either\n        trusted: [10.42.0.0/16]\n"
          "tiers:\n  t: {sources: [10.42.7.0/24]}\n",
     PW_PROXY_TRUSTED_BROAD, 8, 19},
    {"an OIDC rule that names only a ref: any project on gitlab.com can match it",
     OIDC_HEAD("          - {match: {ref: main, ref_protected: \"true\"}, tier: t}\n"),
     PW_OIDC_RULE_UNSCOPED, 15, 13},
    {"an OIDC rule whose project glob starts with '*' (it spans '/': any owner's app)",
     OIDC_HEAD("          - {match: {project_path: \"*-app\"}, tier: t}\n"), PW_OIDC_RULE_UNSCOPED,
     15, 13},
    {"an OIDC rule whose namespace glob has no '/' before its '*'",
     OIDC_HEAD("          - {match: {namespace_path: \"platform*\"}, tier: t}\n"),
     PW_OIDC_RULE_UNSCOPED, 15, 13},
};

/* Near misses: none of these warns. */
static const struct warn_case quiet[] = {
    {"an OIDC rule scoped to a group's projects",
     OIDC_HEAD("          - {match: {project_path: \"platform/*\", ref: main}, tier: t}\n"), -1,
     0, 0},
    {"an OIDC rule scoped to a namespace, exactly",
     OIDC_HEAD("          - {match: {namespace_path: platform}, tier: t}\n"), -1, 0, 0},
    {"allow_ranges of an internal mirror",
     HEAD "tiers:\n  t:\n    allow_ranges: [10.96.5.0/24, \"fd00:1::/64\"]\n", -1, 0, 0},
    {"allow_ranges next to metadata and loopback",
     HEAD "tiers:\n  t:\n    allow_ranges: [169.254.0.0/17, 128.0.0.0/8, 168.63.128.0/24]\n", -1,
     0, 0},
    {"sources of runners", HEAD "tiers:\n  t:\n    sources: [10.42.0.0/16, \"fd00:42::/48\"]\n", -1,
     0, 0},
    {"unknown_source: deny",
     HEAD "identity: {unknown_source: deny}\ntiers:\n  t: {sources: [10.0.0.0/8]}\n", -1, 0, 0},
    {"wildcards below the public suffix",
     HEAD "tiers:\n  t:\n    allow:\n      - host: \"*.example.co.uk\"\n"
          "      - host: \"*.debian.org\"\n      - host: raw.githubusercontent.com\n"
          "      - host: \"*.corp.internal\"\n",
     -1, 0, 0},
    {"the same host on other ports, and the apex after a wildcard",
     HEAD "tiers:\n  t:\n    allow:\n      - host: a.example\n        ports: [80]\n"
          "      - host: a.example\n      - host: \"*.b.example\"\n      - host: b.example\n"
          "      - host: x.b.example\n        ports: [8080]\n",
     -1, 0, 0},
    {"a wildcard before a wider wildcard",
     HEAD "tiers:\n  t:\n    allow:\n      - host: \"*.api.example.org\"\n"
          "      - host: \"*.example.org\"\n      - host: \"*.xample.org\"\n",
     -1, 0, 0},
    {"the same rule in two tiers",
     HEAD "tiers:\n  a:\n    allow:\n      - host: a.example\n  b:\n    allow:\n"
          "      - host: a.example\n",
     -1, 0, 0},
    {"mode: enforce", HEAD "tiers:\n  t:\n    mode: enforce\n", -1, 0, 0},
    {"plain HTTP on 80, TLS on 443",
     HEAD "tiers:\n  t:\n    allow:\n      - host: a.example\n        ports: [80, 443, 8080]\n", -1,
     0, 0},
    {"audit.queue_size big enough",
     HEAD "limits: {max_connections: 1000}\naudit: {queue_size: 2000KiB}\ntiers:\n  t: {}\n", -1,
     0, 0},
    {"audit.queue_size unset with many connections",
     HEAD "limits: {max_connections: 100000}\ntiers:\n  t: {}\n", -1, 0, 0},
    {"proxy_protocol.trusted: the balancers only",
     HEAD "listen:\n  proxy:\n    - address: \"0.0.0.0:3129\"\n      proxy_protocol:\n"
          "        mode: v2\n        trusted: [10.0.16.5/32, 10.0.17.5/32]\n"
          "tiers:\n  t: {sources: [10.42.0.0/16]}\n",
     -1, 0, 0},
};

static void load(const char *yaml, struct policy **p)
{
	struct policy_diags d;
	policy_diags_init(&d);
	int rc = policy_load_buffer(yaml, strlen(yaml), p, &d);
	for (size_t i = 0; i < d.n; i++)
		print_message("%u:%u: %s\n", d.v[i].line, d.v[i].col, d.v[i].msg);
	policy_diags_fini(&d);
	assert_int_equal(rc, POLICY_OK);
}

static void run(const struct warn_case *c)
{
	struct policy *p = NULL;
	static struct policy_warnings w;
	print_message("case: %s\n", c->name);
	load(c->yaml, &p);
	assert_int_equal(policy_warn(p, &w), POLICY_OK);
	for (size_t i = 0; i < w.n; i++)
		print_message("  %u:%u: %s: %s\n", w.v[i].line, w.v[i].col,
		              policy_warn_name(w.v[i].code), w.v[i].msg);
	if (c->code < 0) {
		assert_int_equal(w.n, 0);
	} else {
		assert_int_equal(w.n, 1);
		assert_int_equal(w.v[0].code, c->code);
		if (c->line != 0) {
			assert_int_equal(w.v[0].line, c->line);
			assert_int_equal(w.v[0].col, c->col);
		}
		assert_true(strlen(w.v[0].msg) > 20);
	}
	policy_unref(p);
}

static void test_triggers(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(triggers) / sizeof(triggers[0]); i++)
		run(&triggers[i]);
}

static void test_quiet(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(quiet) / sizeof(quiet[0]); i++)
		run(&quiet[i]);
}

/* Every code has a trigger case above, so none is untested. */
static void test_every_code_triggered(void **state)
{
	(void)state;
	for (int code = 0; code < PW__COUNT; code++) {
		size_t i;
		for (i = 0; i < sizeof(triggers) / sizeof(triggers[0]); i++)
			if (triggers[i].code == code)
				break;
		if (i == sizeof(triggers) / sizeof(triggers[0]))
			fail_msg("no trigger case for %s", policy_warn_name((enum policy_warn)code));
	}
}

/* The bundled examples pass --strict. */
static void test_examples_quiet(void **state)
{
	struct policy *p = NULL;
	struct policy_diags d;
	static struct policy_warnings w;
	(void)state;
	policy_diags_init(&d);
	assert_int_equal(policy_load_file(TEST_DATA_DIR "/../../../policy/examples/default.yaml", &p,
	                                  &d, NULL),
	                 POLICY_OK);
	assert_int_equal(policy_warn(p, &w), POLICY_OK);
	for (size_t i = 0; i < w.n; i++)
		print_message("%u:%u: %s\n", w.v[i].line, w.v[i].col, w.v[i].msg);
	assert_int_equal(w.n, 0);
	policy_unref(p);
	policy_diags_fini(&d);
}

/* Names are unique snake_case and each is documented in docs/policy-tools.md. */
static void test_names_documented(void **state)
{
	(void)state;
	FILE *f = fopen(TEST_DATA_DIR "/../../../docs/policy-tools.md", "r");
	assert_non_null(f);
	static char buf[1 << 20];
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	for (int i = 0; i < PW__COUNT; i++) {
		const char *name = policy_warn_name((enum policy_warn)i);
		for (const char *c = name; *c; c++)
			assert_true((*c >= 'a' && *c <= 'z') || *c == '_');
		for (int j = 0; j < i; j++)
			assert_string_not_equal(name, policy_warn_name((enum policy_warn)j));
		char row[96];
		snprintf(row, sizeof(row), "| `%s` |", name);
		if (strstr(buf, row) == NULL)
			fail_msg("docs/policy-tools.md has no row for %s", name);
	}
}

/* Shadowing is found by hashing: 4096 distinct rules and 4096 repeats stay fast and exact. */
static void test_many_rules(void **state)
{
	(void)state;
	size_t cap = 400000, len = 0;
	char *y = malloc(cap);
	assert_non_null(y);
	len += (size_t)snprintf(y + len, cap - len, HEAD "tiers:\n  a:\n    allow:\n");
	for (int i = 0; i < 2048; i++)
		len += (size_t)snprintf(y + len, cap - len, "      - host: h%d.example\n", i);
	for (int i = 0; i < 2048; i++)
		len += (size_t)snprintf(y + len, cap - len, "      - host: \"*.s%d.example\"\n", i);
	len += (size_t)snprintf(y + len, cap - len, "  b:\n    allow:\n");
	for (int i = 0; i < 4096; i++)
		len += (size_t)snprintf(y + len, cap - len, "      - host: x.s%d.example\n", i % 2048);
	struct policy *p = NULL;
	static struct policy_warnings w;
	load(y, &p);
	assert_int_equal(policy_warn(p, &w), POLICY_OK);
	/* Tier b repeats each of its 2048 names once: 2048 duplicates, capped at the maximum. */
	assert_int_equal(w.n, POLICY_MAX_WARNINGS);
	assert_true(w.truncated);
	for (size_t i = 0; i < w.n; i++)
		assert_int_equal(w.v[i].code, PW_RULE_DUPLICATE);
	policy_unref(p);
	free(y);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_triggers),
	    cmocka_unit_test(test_quiet),
	    cmocka_unit_test(test_every_code_triggered),
	    cmocka_unit_test(test_examples_quiet),
	    cmocka_unit_test(test_names_documented),
	    cmocka_unit_test(test_many_rules),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
