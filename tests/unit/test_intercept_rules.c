/* Unit tests for policy/intercept.c and policy/urlpath.c: interception:, intercept: blocks,
 * the verdict's intercept pointer, and the path checks and globs every request goes through. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "policy.h"
#include "urlpath.h"

/* Lines 1-12: a valid policy up to an intercept: block of github.com (cases add line 13 on). */
#define HEAD                                                                                       \
	"version: 1\nresolver:\n  servers: [\"10.96.0.10\"]\n"                                     \
	"interception:\n  ca_cert: /etc/pc/ca.pem\n  ca_key: /etc/pc/ca.key\n"                     \
	"tiers:\n  ci:\n    sources: [\"10.42.0.0/16\"]\n    allow:\n"                             \
	"      - host: github.com\n        intercept:\n"
/* The same without interception: (lines 1-9). */
#define HEAD_NO_CA                                                                                 \
	"version: 1\nresolver:\n  servers: [\"10.96.0.10\"]\n"                                     \
	"tiers:\n  ci:\n    sources: [\"10.42.0.0/16\"]\n    allow:\n"                             \
	"      - host: github.com\n        intercept:\n"

/* The spec's example (notes/intercept-spec.md), and a tier without interception. */
/* clang-format off */
static const char spec_policy[] =
    "version: 1\n"
    "resolver:\n"
    "  servers: [\"10.96.0.10\"]\n"
    "interception:\n"
    "  ca_cert: /etc/portcullis/intercept/ca.pem\n"
    "  ca_key: /etc/portcullis/intercept/ca.key\n"
    "  upstream_ca: /etc/ssl/certs/ca-certificates.crt\n"
    "  leaf_lifetime: 24h\n"
    "  cache_size: 1000\n"
    "tiers:\n"
    "  ci:\n"
    "    sources: [\"10.42.0.0/16\"]\n"
    "    allow:\n"
    "      - host: github.com\n"
    "        intercept:\n"
    "          default: deny\n"
    "          max_request_body: 100MiB\n"
    "          requests:\n"
    "            - name: clone\n"
    "              methods: [GET, POST]\n"
    "              path: \"/ORG/*.git/git-upload-pack\"\n"
    "              action: allow\n"
    "            - path: \"/ORG/*.git/info/refs\"\n"
    "              methods: [GET]\n"
    "              action: allow\n"
    "      - host: registry.npmjs.org\n"
    "        intercept:\n"
    "          default: allow\n"
    "          requests:\n"
    "            - methods: [PUT, DELETE]\n"
    "              path: \"/**\"\n"
    "              action: deny\n"
    "      - host: example.com\n"
    "      - host: github.com\n"
    "        ports: [8443]\n"
    "        intercept: {}\n"
    "      - host: \"*.githubusercontent.com\"\n"
    "        intercept: {default: allow}\n"
    "  plain:\n"
    "    sources: [\"10.43.0.0/16\"]\n"
    "    allow:\n"
    "      - host: github.com\n"
    "  watch:\n"
    "    mode: audit\n"
    "    sources: [\"10.44.0.0/16\"]\n"
    "    allow:\n"
    "      - host: github.com\n"
    "        name: gh\n"
    "        intercept: {default: deny}\n";

/* The rules the path cases run against (tier 0, host git.example). */
static const char path_policy[] =
    "version: 1\n"
    "resolver:\n"
    "  servers: [\"10.96.0.10\"]\n"
    "interception: {ca_cert: /ca.pem, ca_key: /ca.key}\n"
    "tiers:\n"
    "  ci:\n"
    "    sources: [\"10.42.0.0/16\"]\n"
    "    allow:\n"
    "      - host: git.example\n"
    "        intercept:\n"
    "          requests:\n"
    "            - name: no-push\n"
    "              path: \"/Org/*/git-receive-pack\"\n"
    "              action: deny\n"
    "            - name: org-read\n"
    "              methods: [GET, POST]\n"
    "              path: \"/org/**\"\n"
    "              action: allow\n"
    "            - name: one-seg\n"
    "              methods: [GET]\n"
    "              path: \"/pub/*.txt\"\n"
    "              action: allow\n"
    "            - name: pub-rest\n"
    "              path: \"/pub/**\"\n"
    "              action: deny\n"
    "            - name: trailing\n"
    "              path: \"/dir/\"\n"
    "              action: allow\n"
    "            - name: enc\n"
    "              path: \"/pct/a%2ab\"\n"
    "              action: allow\n"
    "            - name: tilde\n"
    "              path: \"/%7Euser/x\"\n"
    "              action: allow\n"
    "            - name: mid\n"
    "              path: \"/m/a*b*c/**/end\"\n"
    "              action: allow\n"
    "      - host: registry.npmjs.org\n"
    "        intercept:\n"
    "          default: allow\n"
    "          requests:\n"
    "            - methods: [PUT, DELETE]\n"
    "              path: \"/**\"\n"
    "              action: deny\n";

/* clang-format on */

static void dump(const struct policy_diags *d)
{
	for (size_t i = 0; i < d->n; i++)
		print_message("  %u:%u: %s\n", d->v[i].line, d->v[i].col, d->v[i].msg);
}

static bool has_diag(const struct policy_diags *d, unsigned line, unsigned col, const char *sub)
{
	for (size_t i = 0; i < d->n; i++)
		if (d->v[i].line == line && d->v[i].col == col && strstr(d->v[i].msg, sub) != NULL)
			return true;
	return false;
}

static struct policy *load_ok(const char *yaml)
{
	struct policy *p = NULL;
	struct policy_diags d;
	policy_diags_init(&d);
	int rc = policy_load_buffer(yaml, strlen(yaml), &p, &d);
	if (rc != POLICY_OK) {
		dump(&d);
		fail_msg("expected the policy to load, rc %d", rc);
	}
	assert_int_equal(d.n, 0);
	policy_diags_fini(&d);
	return p;
}

static const struct policy_intercept *rules_of(const struct policy *p, int tier, const char *host,
                                               uint16_t port)
{
	struct pc_host h;
	struct verdict v;
	assert_int_equal(host_canon(host, strlen(host), &h), HOST_OK);
	policy_decide_host(p, tier, &h, port, &v);
	return v.intercept;
}

/* ---- loading ---- */

static void test_spec_example(void **state)
{
	(void)state;
	struct policy *p = load_ok(spec_policy);
	const struct policy_interception *ic = &policy_settings(p)->interception;
	assert_true(ic->enabled);
	assert_string_equal(ic->ca_cert, "/etc/portcullis/intercept/ca.pem");
	assert_string_equal(ic->ca_key, "/etc/portcullis/intercept/ca.key");
	assert_string_equal(ic->upstream_ca, "/etc/ssl/certs/ca-certificates.crt");
	assert_int_equal(ic->leaf_lifetime_ms, 24u * 3600 * 1000);
	assert_int_equal(ic->cache_size, 1000);

	const struct policy_intercept *gh = rules_of(p, 0, "github.com", 443);
	assert_non_null(gh);
	assert_false(gh->default_allow);
	assert_int_equal(gh->max_request_body, 100ull << 20);
	assert_int_equal(policy_intercept_max_body(gh), 100ull << 20);
	assert_int_equal(gh->n_requests, 2);
	const struct policy_intercept *npm = rules_of(p, 0, "registry.npmjs.org", 443);
	assert_non_null(npm);
	assert_true(npm->default_allow);
	assert_int_equal(npm->max_request_body, 0);
	assert_int_equal(policy_intercept_max_body(npm), 0);
	assert_int_equal(policy_intercept_max_body(NULL), 0);
	assert_int_equal(npm->n_requests, 1);
	/* intercept: {} is a block: deny everything. */
	const struct policy_intercept *empty = rules_of(p, 0, "github.com", 8443);
	assert_non_null(empty);
	assert_true(empty != gh);
	assert_false(empty->default_allow);
	assert_int_equal(empty->n_requests, 0);

	const char *name = NULL;
	assert_int_equal(
	    policy_intercept_decide(gh, "POST", 4, "/org/repo.git/git-upload-pack", 29, &name),
	    R_ALLOWED);
	assert_string_equal(name, "clone");
	assert_int_equal(
	    policy_intercept_decide(gh, "GET", 3, "/Org/Repo.git/info/refs?service=x", 33, &name),
	    R_ALLOWED);
	assert_string_equal(name, "github.com[1]"); /* the default name: host pattern and index */
	assert_int_equal(
	    policy_intercept_decide(gh, "POST", 4, "/org/r.git/git-receive-pack", 27, &name),
	    R_INTERCEPT_DENIED);
	assert_string_equal(name, "default");
	assert_int_equal(policy_intercept_decide(npm, "PUT", 3, "/left-pad", 9, &name),
	                 R_INTERCEPT_DENIED);
	assert_string_equal(name, "registry.npmjs.org[0]");
	assert_int_equal(policy_intercept_decide(npm, "GET", 3, "/left-pad", 9, &name), R_ALLOWED);
	assert_string_equal(name, "default");
	assert_int_equal(policy_intercept_decide(empty, "GET", 3, "/", 1, &name),
	                 R_INTERCEPT_DENIED);
	policy_unref(p);
}

static void test_settings(void **state)
{
	(void)state;
	/* No section: off, the defaults. */
	struct policy *p = load_ok("version: 1\nresolver: {servers: [\"10.96.0.10\"]}\n"
	                           "tiers:\n  ci:\n    allow: [{host: github.com}]\n");
	const struct policy_interception *ic = &policy_settings(p)->interception;
	assert_false(ic->enabled);
	assert_null(ic->ca_cert);
	assert_null(ic->ca_key);
	assert_null(ic->upstream_ca);
	assert_int_equal(ic->leaf_lifetime_ms, 24u * 3600 * 1000);
	assert_int_equal(ic->cache_size, 1000);
	assert_int_equal(policy_tier_intercepts(p, 0, NULL, 0), 0);
	policy_unref(p);

	/* A section without any rule that intercepts is fine; the bounds are accepted. */
	p = load_ok("version: 1\nresolver: {servers: [\"10.96.0.10\"]}\n"
	            "interception: {ca_cert: a.pem, ca_key: a.key, leaf_lifetime: 1h, "
	            "cache_size: 1}\n"
	            "tiers:\n  ci:\n    allow: [{host: github.com}]\n");
	ic = &policy_settings(p)->interception;
	assert_true(ic->enabled);
	assert_null(ic->upstream_ca);
	assert_int_equal(ic->leaf_lifetime_ms, 3600u * 1000);
	assert_int_equal(ic->cache_size, 1);
	assert_null(rules_of(p, 0, "github.com", 443));
	policy_unref(p);

	p = load_ok("version: 1\nresolver: {servers: [\"10.96.0.10\"]}\n"
	            "interception: {ca_cert: a.pem, ca_key: a.key, leaf_lifetime: 720h, "
	            "cache_size: 100000}\n"
	            "tiers:\n  ci:\n    allow: [{host: github.com}]\n");
	ic = &policy_settings(p)->interception;
	assert_int_equal(ic->leaf_lifetime_ms, 720u * 3600 * 1000);
	assert_int_equal(ic->cache_size, 100000);
	policy_unref(p);
}

struct ecase {
	const char *name;
	const char *yaml;
	unsigned line, col;
	const char *msg;
};

static const struct ecase cases[] = {
    /* the intercept: block (line 13 on) */
    {"unknown intercept key", HEAD "          defualt: deny\n", 13, 11, "did you mean 'default'?"},
    {"bad default", HEAD "          default: maybe\n", 13, 20,
     "intercept.default: expected allow or deny, got \"maybe\""},
    {"default not a scalar", HEAD "          default: [allow]\n", 13, 20, "expected allow or deny"},
    {"bad body size", HEAD "          max_request_body: 10 MB\n", 13, 29, "invalid size \"10 MB\""},
    {"zero body size", HEAD "          max_request_body: 0\n", 13, 29, "out of range (1 to 16EiB)"},
    {"bad encoded_slash", HEAD "          encoded_slash: keep\n", 13, 26,
     "intercept.encoded_slash: expected refuse or decode, got \"keep\""},
    {"requests not a list", HEAD "          requests: {a: 1}\n", 13, 21,
     "expected a sequence, got a mapping"},
    {"request not a mapping", HEAD "          requests: [x]\n", 13, 22,
     "requests[0]: expected a mapping, got a scalar"},
    {"missing path", HEAD "          requests:\n            - action: allow\n", 14, 15,
     "intercept.requests[0].path: required key is missing"},
    {"missing action", HEAD "          requests:\n            - path: /x\n", 14, 15,
     "intercept.requests[0].action: required key is missing"},
    {"bad action", HEAD "          requests:\n            - {path: /x, action: permit}\n", 14, 34,
     "expected allow or deny, got \"permit\""},
    {"unknown request key",
     HEAD "          requests:\n            - {path: /x, action: allow, method: [GET]}\n", 14, 41,
     "did you mean 'methods'?"},
    {"lowercase method",
     HEAD "          requests:\n            - {path: /x, action: allow, methods: [get]}\n", 14, 51,
     "method \"get\" is not uppercase"},
    {"CONNECT method",
     HEAD "          requests:\n            - {path: /x, action: allow, methods: [CONNECT]}\n", 14,
     51, "CONNECT is not a plain-HTTP method"},
    {"bad method token",
     HEAD "          requests:\n            - {path: /x, action: allow, methods: [\"G T\"]}\n", 14,
     51, "invalid method \"G T\""},
    {"duplicate method",
     HEAD "          requests:\n            - {path: /x, action: allow, methods: [GET, GET]}\n", 14,
     56, "duplicate method GET"},
    {"empty method list",
     HEAD "          requests:\n            - {path: /x, action: allow, methods: []}\n", 14, 50,
     "at least one method is required"},
    {"methods not a list",
     HEAD "          requests:\n            - {path: /x, action: allow, methods: GET}\n", 14, 50,
     "expected a list of 1 to 32 methods, or any"},
    {"empty name",
     HEAD "          requests:\n            - {name: \"\", path: /x, action: allow}\n", 14, 22,
     "name must be 1 to 128 characters"},
    {"path not from the root", HEAD "          requests:\n            - {path: x, action: allow}\n",
     14, 22, "invalid path pattern \"x\": must start with '/'"},
    {"path with a query",
     HEAD "          requests:\n            - {path: \"/a?b\", action: allow}\n", 14, 22,
     "'?' is not allowed"},
    {"path with a fragment",
     HEAD "          requests:\n            - {path: \"/a#b\", action: allow}\n", 14, 22,
     "'#' is not allowed"},
    {"path with a dot segment",
     HEAD "          requests:\n            - {path: \"/a/../b\", action: allow}\n", 14, 22,
     "a \".\" or \"..\" segment"},
    {"path with an encoded dot segment",
     HEAD "          requests:\n            - {path: \"/a/%2e%2E/**\", action: allow}\n", 14, 22,
     "a \".\" or \"..\" segment"},
    {"path with an encoded slash",
     HEAD "          requests:\n            - {path: \"/a%2fb\", action: allow}\n", 14, 22,
     "an encoded '/'"},
    {"path with an empty segment",
     HEAD "          requests:\n            - {path: \"/a//b\", action: allow}\n", 14, 22,
     "an empty segment"},
    {"path with a backslash",
     HEAD "          requests:\n            - {path: \"/a\\\\b\", action: allow}\n", 14, 22,
     "a raw '\\'"},
    {"path with a bad escape",
     HEAD "          requests:\n            - {path: \"/a%zz\", action: allow}\n", 14, 22,
     "'%' must be followed by two hex digits"},
    {"path not a string", HEAD "          requests:\n            - {path: [/a], action: allow}\n",
     14, 22, "expected a scalar value"},
    {"path too long" /* filled in at run time */, NULL, 14, 22, "longer than 1024 bytes"},
    {"too many requests" /* filled in at run time */, NULL, 14, 13,
     "too many requests entries (at most 256)"},
    {"too many methods" /* filled in at run time */, NULL, 14, 50, "too many methods (at most 32)"},
    {"intercept not a mapping", HEAD "          yes\n", 13, 11, "expected a mapping like"},
    {"intercept empty", HEAD "\n      - host: example.com\n", 12, 19, "expected a mapping like"},
    {"rule key typo", HEAD "          default: deny\n        intercpt: {}\n", 14, 9,
     "did you mean 'intercept'?"},
    /* interception: */
    {"intercept without interception", HEAD_NO_CA "          default: deny\n", 9, 9,
     "intercept needs the top-level interception: section"},
    {"interception typo", "intercepton: {}\n" HEAD_NO_CA "          default: deny\n", 1, 1,
     "did you mean 'interception'?"},
    {"interception empty", "interception:\n" HEAD_NO_CA "          default: deny\n", 1, 14,
     "expected a mapping with ca_cert and ca_key"},
    {"interception not a mapping", "interception: [a]\n" HEAD_NO_CA "          default: deny\n", 1,
     15, "expected a mapping, got a sequence"},
    {"missing ca_cert", "interception: {ca_key: k}\n" HEAD_NO_CA "          default: deny\n", 1, 15,
     "interception.ca_cert: required key is missing"},
    {"missing ca_key", "interception: {ca_cert: c}\n" HEAD_NO_CA "          default: deny\n", 1, 15,
     "interception.ca_key: required key is missing"},
    {"empty ca_cert",
     "interception: {ca_cert: \"\", ca_key: k}\n" HEAD_NO_CA "          default: deny\n", 1, 25,
     "expected a file path"},
    {"unknown interception key",
     "interception: {ca_cert: c, ca_key: k, cach_size: 5}\n" HEAD_NO_CA "          default: deny\n",
     1, 39, "did you mean 'cache_size'?"},
    {"leaf lifetime too short",
     "interception: {ca_cert: c, ca_key: k, leaf_lifetime: 59m}\n" HEAD_NO_CA
     "          default: deny\n",
     1, 54, "59m is out of range (1h to 720h (30 days))"},
    {"leaf lifetime too long",
     "interception: {ca_cert: c, ca_key: k, leaf_lifetime: 721h}\n" HEAD_NO_CA
     "          default: deny\n",
     1, 54, "out of range"},
    {"leaf lifetime in days",
     "interception: {ca_cert: c, ca_key: k, leaf_lifetime: 30d}\n" HEAD_NO_CA
     "          default: deny\n",
     1, 54, "unknown unit"},
    {"cache size zero",
     "interception: {ca_cert: c, ca_key: k, cache_size: 0}\n" HEAD_NO_CA
     "          default: deny\n",
     1, 51, "0 is out of range (1 to 100000)"},
    {"cache size too large",
     "interception: {ca_cert: c, ca_key: k, cache_size: 100001}\n" HEAD_NO_CA
     "          default: deny\n",
     1, 51, "out of range (1 to 100000)"},
    {"upstream_ca not a path",
     "interception: {ca_cert: c, ca_key: k, upstream_ca: [x]}\n" HEAD_NO_CA
     "          default: deny\n",
     1, 52, "expected a scalar value"},
};

/* The cases whose text is too long to write out. */
static char *case_text(const struct ecase *c)
{
	size_t cap = 64 * 1024, n;
	char *s = malloc(cap);
	assert_non_null(s);
	if (c->yaml != NULL) {
		snprintf(s, cap, "%s", c->yaml);
		return s;
	}
	n = (size_t)snprintf(s, cap, "%s          requests:\n", HEAD);
	if (strcmp(c->name, "path too long") == 0) {
		n += (size_t)snprintf(s + n, cap - n, "            - {path: \"/");
		memset(s + n, 'a', 1024);
		n += 1024;
		snprintf(s + n, cap - n, "\", action: allow}\n");
	} else if (strcmp(c->name, "too many requests") == 0) {
		for (int i = 0; i < 257; i++)
			n += (size_t)snprintf(s + n, cap - n,
			                      "            - {path: /a, action: allow}\n");
	} else {
		n += (size_t)snprintf(s + n, cap - n,
		                      "            - {path: /x, action: allow, methods: [");
		for (int i = 0; i < 33; i++)
			n += (size_t)snprintf(s + n, cap - n, "%sM%c%c", i ? ", " : "",
			                      'A' + i / 26, 'A' + i % 26);
		snprintf(s + n, cap - n, "]}\n");
	}
	return s;
}

static void test_error_cases(void **state)
{
	unsigned failed = 0;
	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct ecase *c = &cases[i];
		struct policy *p = (struct policy *)1;
		struct policy_diags d;
		char *text = case_text(c);
		policy_diags_init(&d);
		int rc = policy_load_buffer(text, strlen(text), &p, &d);
		if (rc != POLICY_ERR_INVALID || p != NULL ||
		    !has_diag(&d, c->line, c->col, c->msg)) {
			print_message("case \"%s\": rc %d, want %u:%u \"%s\", got:\n", c->name, rc,
			              c->line, c->col, c->msg);
			dump(&d);
			failed++;
		}
		policy_diags_fini(&d);
		free(text);
	}
	assert_int_equal(failed, 0);
}

/* The base of the error cases is valid with any one valid line added. */
static void test_case_base_valid(void **state)
{
	(void)state;
	policy_unref(load_ok(HEAD "          default: deny\n"));
	policy_unref(load_ok(HEAD "          requests: []\n"));
	policy_unref(load_ok(HEAD "          requests:\n"));
	policy_unref(load_ok(HEAD "          requests:\n            - {path: /x, action: allow, "
	                          "methods: any}\n"));
	/* 256 entries, 32 methods and a 1024-byte pattern are the limits, not over them. */
	char *s = malloc(64 * 1024);
	assert_non_null(s);
	size_t n = (size_t)sprintf(s, "%s          requests:\n", HEAD);
	for (int i = 0; i < 255; i++)
		n += (size_t)sprintf(s + n, "            - {path: /a, action: allow}\n");
	n += (size_t)sprintf(s + n, "            - {path: \"/");
	memset(s + n, 'a', 1023);
	n += 1023;
	n += (size_t)sprintf(s + n, "\", action: allow, methods: [");
	for (int i = 0; i < 32; i++)
		n += (size_t)sprintf(s + n, "%sM%c%c", i ? ", " : "", 'A' + i / 26, 'A' + i % 26);
	sprintf(s + n, "]}\n");
	struct policy *p = load_ok(s);
	const struct policy_intercept *ic = rules_of(p, 0, "github.com", 443);
	assert_non_null(ic);
	assert_int_equal(ic->n_requests, 256);
	policy_unref(p);
	free(s);
}

/* Every problem of the file is reported, not only the first. */
static void test_every_problem_reported(void **state)
{
	static const char yaml[] = HEAD_NO_CA "          default: maybe\n"       /* 10 */
	                                      "          max_request_body: -1\n" /* 11 */
	                                      "          requests:\n"            /* 12 */
	                                      "            - path: \"/a/./b\"\n" /* 13 */
	                                      "              action: allow\n"    /* 14 */
	                                      "            - path: /b\n"         /* 15 */
	                                      "              action: nope\n"     /* 16 */
	                                      "              methods: [get]\n";  /* 17 */
	struct policy *p = NULL;
	struct policy_diags d;
	(void)state;
	policy_diags_init(&d);
	assert_int_equal(policy_load_buffer(yaml, strlen(yaml), &p, &d), POLICY_ERR_INVALID);
	assert_null(p);
	static const struct {
		unsigned line, col;
		const char *msg;
	} want[] = {
	    {9, 9, "intercept needs the top-level interception: section"},
	    {10, 20, "expected allow or deny"},
	    {11, 29, "invalid size \"-1\""},
	    {13, 21, "a \".\" or \"..\" segment"},
	    {16, 23, "expected allow or deny, got \"nope\""},
	    {17, 25, "is not uppercase"},
	};
	if (d.n != sizeof(want) / sizeof(want[0]))
		dump(&d);
	assert_int_equal(d.n, sizeof(want) / sizeof(want[0]));
	for (size_t i = 0; i < d.n; i++)
		if (d.v[i].line != want[i].line || d.v[i].col != want[i].col ||
		    strstr(d.v[i].msg, want[i].msg) == NULL) {
			dump(&d);
			fail_msg("diag %zu: want %u:%u %s", i, want[i].line, want[i].col,
			         want[i].msg);
		}
	policy_diags_fini(&d);
}

/* ---- the verdict's intercept pointer ---- */

static void test_decide_host_pointer(void **state)
{
	(void)state;
	struct policy *p = load_ok(spec_policy);
	struct pc_host h;
	struct verdict v;

	/* Only the rule that decided: github.com:443 and :8443 are two rules, two blocks. */
	const struct policy_intercept *gh = rules_of(p, 0, "github.com", 443);
	assert_non_null(gh);
	assert_non_null(rules_of(p, 0, "github.com", 8443));
	assert_true(rules_of(p, 0, "github.com", 8443) != gh);
	assert_true(rules_of(p, 0, "GitHub.com.", 443) == gh);
	assert_non_null(rules_of(p, 0, "registry.npmjs.org", 443));
	/* A rule without intercept: a plain tunnel. */
	assert_null(rules_of(p, 0, "example.com", 443));
	/* A wildcard rule's block covers its subdomains, not the apex. */
	assert_non_null(rules_of(p, 0, "raw.githubusercontent.com", 443));
	assert_true(rules_of(p, 0, "raw.githubusercontent.com", 443)->default_allow);
	/* Another tier's rule for the same host does not intercept. */
	assert_null(rules_of(p, 1, "github.com", 443));

	/* Refusals carry none, whatever the verdict struct held before. */
	assert_int_equal(host_canon("github.com", 10, &h), HOST_OK);
	policy_decide_host(p, 0, &h, 443, &v);
	assert_true(v.allow);
	assert_true(v.intercept == gh);
	policy_decide_host(p, 0, &h, 80, &v);
	assert_false(v.allow);
	assert_int_equal(v.reason, R_PORT_NOT_ALLOWED);
	assert_null(v.intercept);
	policy_decide_host(p, 0, &h, 443, &v);
	policy_decide_host(p, -1, &h, 443, &v);
	assert_int_equal(v.reason, R_UNKNOWN_SOURCE);
	assert_null(v.intercept);
	policy_decide_host(p, 0, &h, 443, &v);
	assert_int_equal(host_canon("evil.example", 12, &h), HOST_OK);
	policy_decide_host(p, 0, &h, 443, &v);
	assert_int_equal(v.reason, R_HOST_NOT_ALLOWED);
	assert_null(v.intercept);
	assert_int_equal(host_canon("github.com", 10, &h), HOST_OK);
	policy_decide_host(p, 0, &h, 443, &v);
	policy_decide_host(p, 0, NULL, 443, &v);
	assert_null(v.intercept);

	/* Audit mode: an allowed host keeps its block; a would-deny has none. */
	policy_decide_host(p, 2, &h, 443, &v);
	assert_true(v.allow);
	assert_false(v.would_deny);
	assert_non_null(v.intercept);
	assert_string_equal(v.rule, "gh");
	assert_int_equal(host_canon("evil.example", 12, &h), HOST_OK);
	policy_decide_host(p, 2, &h, 443, &v);
	assert_true(v.allow);
	assert_true(v.would_deny);
	assert_null(v.intercept);

	/* The address verdict never carries one. */
	struct pc_addr a = {.family = ADDR_V4, .b = {140, 82, 112, 3}};
	v.intercept = gh;
	policy_decide_addrs(p, 0, &a, 1, &v);
	assert_true(v.allow);
	assert_null(v.intercept);
	policy_unref(p);
}

static void test_tier_intercepts(void **state)
{
	(void)state;
	struct policy *p = load_ok(spec_policy);
	const char *pat[4] = {NULL};

	/* github.com twice (two ports) is listed once, in file order. */
	assert_int_equal(policy_tier_intercepts(p, 0, pat, 4), 3);
	assert_string_equal(pat[0], "github.com");
	assert_string_equal(pat[1], "registry.npmjs.org");
	assert_string_equal(pat[2], "*.githubusercontent.com");
	assert_null(pat[3]);
	/* cap bounds what is stored, not the count. */
	pat[0] = pat[1] = NULL;
	assert_int_equal(policy_tier_intercepts(p, 0, pat, 1), 3);
	assert_string_equal(pat[0], "github.com");
	assert_null(pat[1]);
	assert_int_equal(policy_tier_intercepts(p, 0, NULL, 0), 3);
	assert_int_equal(policy_tier_intercepts(p, 1, pat, 4), 0);
	/* The pattern, not the rule's name. */
	assert_int_equal(policy_tier_intercepts(p, 2, pat, 4), 1);
	assert_string_equal(pat[0], "github.com");
	assert_int_equal(policy_tier_intercepts(p, 3, pat, 4), 0);
	assert_int_equal(policy_tier_intercepts(p, -1, pat, 4), 0);
	assert_int_equal(policy_tier_intercepts(NULL, 0, pat, 4), 0);
	policy_unref(p);
}

/* ---- paths ---- */

struct pcase {
	const char *method;
	const char *target;
	size_t len; /* 0: strlen(target) */
	enum reason want;
	const char *rule; /* expected *rule_name */
};

#define BAD(t)                                                                                     \
	{                                                                                          \
		"GET", t, 0, R_INTERCEPT_BAD_PATH, ""                                              \
	}

static const struct pcase git_cases[] = {
    /* case variants of the org against the deny rule: denied in every spelling */
    {"POST", "/org/repo/git-receive-pack", 0, R_INTERCEPT_DENIED, "no-push"},
    {"POST", "/Org/repo/git-receive-pack", 0, R_INTERCEPT_DENIED, "no-push"},
    {"POST", "/ORG/REPO/GIT-RECEIVE-PACK", 0, R_INTERCEPT_DENIED, "no-push"},
    {"POST", "/oRg/Repo.git/Git-Receive-Pack?service=x", 0, R_INTERCEPT_DENIED, "no-push"},
    /* unreserved escapes are the bytes themselves: no dodging the deny rule with them */
    {"POST", "/org/x/git-receive-pac%6B", 0, R_INTERCEPT_DENIED, "no-push"},
    {"POST", "/%6Frg/x/git-receive-pack", 0, R_INTERCEPT_DENIED, "no-push"},
    {"POST", "/%4F%52%47/x/%67it-receive-pack", 0, R_INTERCEPT_DENIED, "no-push"},
    {"POST", "/org/%78/git%2Dreceive%2dpack", 0, R_INTERCEPT_DENIED, "no-push"},
    /* no method list: every method */
    {"PUT", "/org/x/git-receive-pack", 0, R_INTERCEPT_DENIED, "no-push"},
    /* '*' stays in its segment: two segments are not the deny rule's one */
    {"POST", "/org/x/y/git-receive-pack", 0, R_ALLOWED, "org-read"},
    {"POST", "/org//git-receive-pack", 0, R_INTERCEPT_BAD_PATH, ""},
    /* '**' crosses segments, and may be empty */
    {"GET", "/org/a/b/c/d/e", 0, R_ALLOWED, "org-read"},
    {"GET", "/org/", 0, R_ALLOWED, "org-read"},
    {"GET", "/org", 0, R_INTERCEPT_DENIED, "default"},
    {"GET", "/orgx/a", 0, R_INTERCEPT_DENIED, "default"},
    {"GET", "/ORG/Repo.git/info/refs", 0, R_ALLOWED, "org-read"},
    /* methods: listed or not, ASCII case aside (servers that upper-case "get" act on GET) */
    {"DELETE", "/org/x", 0, R_INTERCEPT_DENIED, "default"},
    {"get", "/org/x", 0, R_ALLOWED, "org-read"},
    {"GETX", "/org/x", 0, R_INTERCEPT_DENIED, "default"},
    {"GE", "/org/x", 0, R_INTERCEPT_DENIED, "default"},
    {"", "/org/x", 0, R_INTERCEPT_DENIED, "default"},
    /* query ignored: what follows '?' matches nothing and is not checked */
    {"GET", "/org/x?../../etc/passwd", 0, R_ALLOWED, "org-read"},
    {"GET", "/org/x?a=%zz&b=%2f", 0, R_ALLOWED, "org-read"},
    {"GET", "/org/x?/org/../y", 0, R_ALLOWED, "org-read"},
    {"GET", "/other?/org/x", 0, R_INTERCEPT_DENIED, "default"},
    {"GET", "/?", 0, R_INTERCEPT_DENIED, "default"},
    /* trailing slash is fine, and is part of the path */
    {"GET", "/org/x/", 0, R_ALLOWED, "org-read"},
    {"GET", "/dir/", 0, R_ALLOWED, "trailing"},
    {"GET", "/DIR/", 0, R_ALLOWED, "trailing"},
    {"GET", "/dir", 0, R_INTERCEPT_DENIED, "default"},
    {"GET", "/", 0, R_INTERCEPT_DENIED, "default"},
    /* first match wins */
    {"GET", "/pub/a.txt", 0, R_ALLOWED, "one-seg"},
    {"GET", "/pub/.txt", 0, R_ALLOWED, "one-seg"},
    {"GET", "/pub/A.TXT", 0, R_ALLOWED, "one-seg"},
    {"POST", "/pub/a.txt", 0, R_INTERCEPT_DENIED, "pub-rest"},
    {"GET", "/pub/a/b.txt", 0, R_INTERCEPT_DENIED, "pub-rest"},
    {"GET", "/pub/a.txt/", 0, R_INTERCEPT_DENIED, "pub-rest"},
    {"GET", "/pub/a.txt.gz", 0, R_INTERCEPT_DENIED, "pub-rest"},
    /* other escapes stay escapes (hex case aside): %2A is not a raw '*' */
    {"GET", "/pct/a%2ab", 0, R_ALLOWED, "enc"},
    {"GET", "/pct/a%2Ab", 0, R_ALLOWED, "enc"},
    {"GET", "/pct/a*b", 0, R_INTERCEPT_DENIED, "default"},
    {"GET", "/~user/x", 0, R_ALLOWED, "tilde"},
    {"GET", "/%7euser/x", 0, R_ALLOWED, "tilde"},
    {"GET", "/%7Euser/X", 0, R_ALLOWED, "tilde"},
    /* stars between literals */
    {"GET", "/m/abc/x/end", 0, R_ALLOWED, "mid"},
    {"GET", "/m/aXXbYYc/1/2/3/end", 0, R_ALLOWED, "mid"},
    {"GET", "/m/abbbbc/b/end", 0, R_ALLOWED, "mid"},
    {"GET", "/m/abc/end", 0, R_INTERCEPT_DENIED, "default"}, /* slash, stars, slash: two */
    {"GET", "/m/ab/c/end", 0, R_INTERCEPT_DENIED, "default"},
    {"GET", "/m/abc/endx", 0, R_INTERCEPT_DENIED, "default"},
    {"GET", "/m/abcx/end", 0, R_INTERCEPT_DENIED, "default"},
    /* literal bytes that are not special */
    {"GET", "/org/x;y", 0, R_ALLOWED, "org-read"},
    {"GET", "/org/..;/x", 0, R_INTERCEPT_BAD_PATH, ""}, /* Tomcat reads "/org/../x" */
    {"GET", "/org/...", 0, R_ALLOWED, "org-read"},
    {"GET", "/org/.git", 0, R_ALLOWED, "org-read"},
    {"GET", "/org/%C3%A9t%c3%a9", 0, R_ALLOWED, "org-read"},
    {"GET", "/org/a@b:c!$&'()*+,=", 0, R_ALLOWED, "org-read"},
    /* not origin-form */
    BAD(""),
    BAD("x"),
    BAD("*"),
    BAD("org/x"),
    BAD("?/org/x"),
    BAD("http://git.example/org/x"),
    BAD("https://git.example/org/x"),
    /* dot segments, plain and encoded */
    BAD("/org/../x"),
    BAD("/org/./x"),
    BAD("/org/.."),
    BAD("/org/."),
    BAD("/.."),
    BAD("/."),
    BAD("/org/x/../../y"),
    BAD("/org/x/..?q"),
    BAD("/org/%2e%2e/x"),
    BAD("/org/%2E%2e/x"),
    BAD("/org/%2E%2E/x"),
    BAD("/org/.%2E/x"),
    BAD("/org/%2e./x"),
    BAD("/org/%2e/x"),
    BAD("/org/%2E"),
    BAD("/%2e%2e"),
    /* encoded slash and backslash */
    BAD("/org/a%2fb"),
    BAD("/org/a%2Fb"),
    BAD("/org%2F..%2Fx"),
    BAD("/org/a%5cb"),
    BAD("/org/a%5Cb"),
    BAD("/org/%2e%2e%5cx"),
    /* encoded NUL and control bytes */
    BAD("/org/%00"),
    BAD("/org/x%00.git"),
    BAD("/org/%0a"),
    BAD("/org/%0D%0A"),
    BAD("/org/%09"),
    BAD("/org/%1f"),
    BAD("/org/%7f"),
    BAD("/org/%7F"),
    /* bad escapes */
    BAD("/org/%zz"),
    BAD("/org/%4"),
    BAD("/org/%4g"),
    BAD("/org/%G0"),
    BAD("/org/%"),
    BAD("/org/x%"),
    BAD("/org/%4?x"),
    BAD("/org/%?xx"),
    BAD("/org/%%41"),
    BAD("/org/% 41"),
    BAD("/org/%+1"),
    BAD("/org/%-1"),
    /* fragments, anywhere */
    BAD("/org/x#frag"),
    BAD("/org/x?q#f"),
    BAD("/org/x?#"),
    BAD("/#"),
    BAD("#"),
    /* raw backslash, controls, space, high bytes */
    BAD("/org\\x"),
    BAD("/org/x\\"),
    BAD("/\\org/x"),
    BAD("/org/\x80"),
    BAD("/org/\xc3\xa9"),
    BAD("/org/\xff"),
    BAD("/org/\x01"),
    BAD("/org/\t"),
    BAD("/org/a b"),
    BAD("/org/\x7f"),
    BAD("/org/x\r\n"),
    /* empty segments */
    BAD("//"),
    BAD("//org/x"),
    BAD("/org//x"),
    BAD("/org/x//"),
    BAD("/org///x"),
    BAD("//?x"),
};

/* Targets with a NUL byte inside (length given). */
static const struct pcase nul_cases[] = {
    {"GET", "/org/\0x", 7, R_INTERCEPT_BAD_PATH, ""},
    {"GET", "/org/x\0", 7, R_INTERCEPT_BAD_PATH, ""},
    {"GET", "\0/org/x", 7, R_INTERCEPT_BAD_PATH, ""},
    /* the length bounds the target: bytes after it are not read */
    {"GET", "/org/x/..", 6, R_ALLOWED, "org-read"},
    {"GET", "/org/x%2f", 7, R_INTERCEPT_BAD_PATH, ""},
};

static unsigned run_cases(const struct policy_intercept *ic, const struct pcase *c, size_t n)
{
	unsigned failed = 0;
	for (size_t i = 0; i < n; i++) {
		size_t len = c[i].len ? c[i].len : strlen(c[i].target);
		const char *rule = "unset";
		enum reason r = policy_intercept_decide(ic, c[i].method, strlen(c[i].method),
		                                        c[i].target, len, &rule);
		if (r != c[i].want || rule == NULL || strcmp(rule, c[i].rule) != 0) {
			char t[128];
			size_t k;
			for (k = 0; k < len && k + 5 < sizeof(t); k++)
				t[k] = c[i].target[k] >= 0x20 && c[i].target[k] < 0x7f
				           ? c[i].target[k]
				           : '?';
			t[k] = '\0';
			print_message("%s %s: got %s (%s), want %s (%s)\n", c[i].method, t,
			              reason_name(r), rule ? rule : "NULL", reason_name(c[i].want),
			              c[i].rule);
			failed++;
		}
	}
	return failed;
}

static void test_paths(void **state)
{
	(void)state;
	struct policy *p = load_ok(path_policy);
	const struct policy_intercept *ic = rules_of(p, 0, "git.example", 443);
	assert_non_null(ic);
	unsigned failed = run_cases(ic, git_cases, sizeof(git_cases) / sizeof(git_cases[0]));
	failed += run_cases(ic, nul_cases, sizeof(nul_cases) / sizeof(nul_cases[0]));
	assert_int_equal(failed, 0);

	/* default allow: publish and unpublish are the exceptions; bad paths still refused */
	const struct policy_intercept *npm = rules_of(p, 0, "registry.npmjs.org", 443);
	static const struct pcase npm_cases[] = {
	    {"GET", "/left-pad", 0, R_ALLOWED, "default"},
	    {"GET", "/@types%2Fnode", 0, R_INTERCEPT_BAD_PATH, ""},
	    {"GET", "/-/v1/search?text=x", 0, R_ALLOWED, "default"},
	    {"PUT", "/left-pad", 0, R_INTERCEPT_DENIED, "registry.npmjs.org[0]"},
	    {"DELETE", "/left-pad/-rev/1-abc", 0, R_INTERCEPT_DENIED, "registry.npmjs.org[0]"},
	    {"PUT", "/", 0, R_INTERCEPT_DENIED, "registry.npmjs.org[0]"},
	    {"put", "/left-pad", 0, R_INTERCEPT_DENIED, "registry.npmjs.org[0]"}, /* case aside */
	    {"PUT", "/%2e%2e/x", 0, R_INTERCEPT_BAD_PATH, ""},
	    {"GET", "/a/../b", 0, R_INTERCEPT_BAD_PATH, ""},
	};
	assert_int_equal(run_cases(npm, npm_cases, sizeof(npm_cases) / sizeof(npm_cases[0])), 0);

	/* No block: fail closed.  rule_name may be NULL. */
	const char *rule = "unset";
	assert_int_equal(policy_intercept_decide(NULL, "GET", 3, "/", 1, &rule),
	                 R_INTERCEPT_DENIED);
	assert_string_equal(rule, "");
	assert_int_equal(policy_intercept_decide(ic, "GET", 3, "/org/x", 6, NULL), R_ALLOWED);
	assert_int_equal(policy_intercept_decide(ic, NULL, 0, "/org/x", 6, &rule),
	                 R_INTERCEPT_DENIED);
	assert_string_equal(rule, "default");
	assert_int_equal(policy_intercept_decide(ic, "GET", 3, NULL, 0, &rule),
	                 R_INTERCEPT_BAD_PATH);
	policy_unref(p);
}

/* ---- urlpath directly ---- */

static void test_normal_form(void **state)
{
	(void)state;
	static const struct {
		const char *in, *out;
	} nf[] = {
	    {"/", "/"},
	    {"/a/b/", "/a/b/"},
	    {"/%41%62%2D%2e%5F%7e", "/Ab-._~"},
	    {"/%c3%a9", "/%C3%A9"},
	    {"/%2a%3f%23%25%40", "/%2A%3F%23%25%40"},
	    {"/Org/X?ignored", "/Org/X"},
	    {"/a%20b", "/a%20b"},
	};
	for (size_t i = 0; i < sizeof(nf) / sizeof(nf[0]); i++) {
		size_t plen = 0;
		char out[64];
		assert_int_equal(urlpath_check(nf[i].in, strlen(nf[i].in), false, &plen),
		                 URLPATH_OK);
		size_t n = urlpath_normalize(nf[i].in, plen, out);
		assert_true(n <= plen);
		out[n] = '\0';
		assert_string_equal(out, nf[i].out);
	}
	/* Statuses, and their words. */
	assert_int_equal(urlpath_check("/a/%2e", 6, false, NULL), URLPATH_ERR_DOT_SEGMENT);
	assert_int_equal(urlpath_check("/a//", 4, false, NULL), URLPATH_ERR_EMPTY_SEGMENT);
	assert_int_equal(urlpath_check("/a%2F", 5, false, NULL), URLPATH_ERR_ENCODED);
	assert_int_equal(urlpath_check("/a%2", 4, false, NULL), URLPATH_ERR_ESCAPE);
	assert_int_equal(urlpath_check("/a\\", 3, false, NULL), URLPATH_ERR_CHAR);
	assert_int_equal(urlpath_check("a", 1, false, NULL), URLPATH_ERR_START);
	assert_int_equal(urlpath_check("/#", 2, false, NULL), URLPATH_ERR_FRAGMENT);
	assert_int_equal(urlpath_check("/a?b", 4, false, NULL), URLPATH_OK);
	assert_int_equal(urlpath_check("/a?b", 4, true, NULL), URLPATH_ERR_QUERY);
	assert_int_equal(urlpath_check("/**", 3, true, NULL), URLPATH_OK);
	for (int s = URLPATH_ERR_TOO_LONG; s <= URLPATH_OK; s++)
		assert_true(strlen(urlpath_status_str(s)) > 0);
	assert_string_equal(urlpath_status_str(-100), "invalid path");
}

/* Reference glob over the folded normal forms: plain recursion, written independently. */
static bool ref_match(const char *p, const char *s)
{
	if (*p == '\0')
		return *s == '\0';
	if (p[0] == '*' && p[1] == '*') {
		while (*p == '*')
			p++;
		for (const char *t = s;; t++) {
			if (ref_match(p, t))
				return true;
			if (*t == '\0')
				return false;
		}
	}
	if (*p == '*') {
		for (const char *t = s;; t++) {
			if (ref_match(p + 1, t))
				return true;
			if (*t == '\0' || *t == '/')
				return false;
		}
	}
	return *s != '\0' && *p == *s && ref_match(p + 1, s + 1);
}

static void folded_normal(const char *in, size_t len, char *out)
{
	size_t n = urlpath_normalize(in, len, out);
	for (size_t i = 0; i < n; i++)
		if (out[i] >= 'A' && out[i] <= 'Z')
			out[i] = (char)(out[i] - 'A' + 'a');
	out[n] = '\0';
}

static unsigned rnd(unsigned *seed)
{
	*seed = *seed * 1103515245u + 12345u;
	return *seed >> 16 & 0x7fff;
}

/* Append a random unit of alphabet al ('%' stands for an escape) to b. */
static void rnd_unit(unsigned *seed, const char *al, char *b, size_t *n)
{
	static const char *const esc[] = {"2e", "41", "2A", "62"};
	char c = al[rnd(seed) % strlen(al)];
	if (c != '%') {
		b[(*n)++] = c;
		return;
	}
	const char *e = esc[rnd(seed) % 4];
	b[(*n)++] = '%';
	b[(*n)++] = e[0];
	b[(*n)++] = e[1];
}

/* urlpath_glob_match agrees with the reference on many small random patterns and paths. */
static void test_glob_reference(void **state)
{
	unsigned seed = 12345, checked = 0, matched = 0;
	(void)state;
	for (int round = 0; round < 200000; round++) {
		char p[40], t[40], pn[80], tn[80];
		size_t pl = 1, tl = 1;
		p[0] = t[0] = '/';
		size_t want_p = 1 + rnd(&seed) % 10, want_t = 1 + rnd(&seed) % 12;
		while (pl < want_p)
			rnd_unit(&seed, "aA/*.b%", p, &pl);
		while (tl < want_t)
			rnd_unit(&seed, "aAb/.%", t, &tl);
		size_t tpl;
		if (urlpath_check(p, pl, true, NULL) != URLPATH_OK ||
		    urlpath_check(t, tl, false, &tpl) != URLPATH_OK)
			continue;
		/* The reference reads '*' as a wildcard: escape-free stars only in patterns. */
		folded_normal(p, pl, pn);
		folded_normal(t, tpl, tn);
		if (strchr(tn, '*') != NULL)
			continue;
		void *mem = malloc(urlpath_glob_size(p, pl));
		assert_non_null(mem);
		const struct urlpath_glob *g = urlpath_glob_compile(p, pl, mem);
		bool got = urlpath_glob_match(g, t, tpl);
		/* "%2A" in the pattern is a literal '*', spelled "%2a" in both normal forms. */
		bool want = ref_match(pn, tn);
		if (got != want)
			fail_msg("pattern %.*s path %.*s: got %d want %d", (int)pl, p, (int)tl, t,
			         got, want);
		checked++;
		matched += got;
		free(mem);
	}
	assert_true(checked > 10000);
	assert_true(matched > 200);
}

/* Long paths against many stars: linear in the path, no backtracking blow-up. */
/* encoded_slash: decode (npm's scoped packages): "%2F" is a '/' for the checks and the match,
 * so it can neither dodge a rule nor smuggle a dot segment; refuse (the default) keeps it bad. */
static void test_encoded_slash(void **state)
{
	(void)state;
	struct policy *p =
	    load_ok(HEAD "          default: allow\n          encoded_slash: decode\n"
	                 "          requests:\n"
	                 "            - {methods: [PUT], path: \"/**\", action: deny}\n"
	                 "            - {path: \"/@evil/*\", action: deny}\n"
	                 "      - host: registry.npmjs.org\n"
	                 "        intercept: {default: allow}\n");
	const struct policy_intercept *ic = rules_of(p, 0, "github.com", 443);
	const struct policy_intercept *strict = rules_of(p, 0, "registry.npmjs.org", 443);
	assert_non_null(ic);
	assert_non_null(strict);
	assert_true(ic->decode_encoded_slash);
	assert_false(strict->decode_encoded_slash);
	static const struct {
		const char *method, *target;
		enum reason with, without;
	} c[] = {
	    {"GET", "/@types%2fnode", R_ALLOWED, R_INTERCEPT_BAD_PATH},
	    {"GET", "/@types%2Fnode?write=true", R_ALLOWED, R_INTERCEPT_BAD_PATH},
	    {"PUT", "/@types%2fnode", R_INTERCEPT_DENIED, R_INTERCEPT_BAD_PATH},
	    {"GET", "/@evil%2fpkg", R_INTERCEPT_DENIED, R_INTERCEPT_BAD_PATH},
	    {"GET", "/@EVIL%2Fpkg", R_INTERCEPT_DENIED, R_INTERCEPT_BAD_PATH},
	    {"GET", "/@good%2f..%2f@evil%2fpkg", R_INTERCEPT_BAD_PATH, R_INTERCEPT_BAD_PATH},
	    {"GET", "/a%2f%2fb", R_INTERCEPT_BAD_PATH, R_INTERCEPT_BAD_PATH},
	    {"GET", "/a%2f%2e%2e/b", R_INTERCEPT_BAD_PATH, R_INTERCEPT_BAD_PATH},
	    {"GET", "/a%5cb", R_INTERCEPT_BAD_PATH, R_INTERCEPT_BAD_PATH},
	    {"GET", "/a?x=%2F..%2F", R_ALLOWED, R_ALLOWED}, /* the query is never matched */
	    {"GET", "/a%2", R_INTERCEPT_BAD_PATH, R_INTERCEPT_BAD_PATH},
	};
	for (size_t i = 0; i < sizeof(c) / sizeof(c[0]); i++) {
		enum reason with = policy_intercept_decide(ic, c[i].method, strlen(c[i].method),
		                                           c[i].target, strlen(c[i].target), NULL);
		enum reason without =
		    policy_intercept_decide(strict, c[i].method, strlen(c[i].method), c[i].target,
		                            strlen(c[i].target), NULL);
		if (with != c[i].with || without != c[i].without)
			fail_msg("%s %s: got %s / %s", c[i].method, c[i].target, reason_name(with),
			         reason_name(without));
	}
	policy_unref(p);
}

/* One decision to check: method, target, and the outcome with the entry that decided. */
struct dcase {
	const char *method, *target;
	enum reason want;
	const char *rule;
};

static void check_decisions(const struct policy_intercept *ic, const struct dcase *c, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		const char *rule = NULL;
		enum reason r = policy_intercept_decide(ic, c[i].method, strlen(c[i].method),
		                                        c[i].target, strlen(c[i].target), &rule);
		if (r != c[i].want || strcmp(rule, c[i].rule) != 0)
			fail_msg("%s %s: got %s (%s), want %s (%s)", c[i].method, c[i].target,
			         reason_name(r), rule, reason_name(c[i].want), c[i].rule);
	}
}

/* Every reading a server may give a path must pass: without ";params" (servlet containers),
 * without a trailing '/' (many frameworks); a deny entry any reading meets refuses. */
static void test_readings(void **state)
{
	(void)state;
	struct policy *p =
	    load_ok(HEAD "          default: allow\n          requests:\n"
	                 "            - {name: s, path: \"/secret/**\", action: deny}\n"
	                 "            - {name: x, path: /x, action: deny}\n"
	                 "            - {name: put, methods: [PUT], path: \"/**\", "
	                 "action: deny}\n");
	const struct policy_intercept *ic = rules_of(p, 0, "github.com", 443);
	assert_non_null(ic);
	static const struct dcase c[] = {
	    {"GET", "/secret;x/vault.git/info/refs", R_INTERCEPT_DENIED, "s"},
	    {"GET", "/secret;jsessionid=1/a", R_INTERCEPT_DENIED, "s"},
	    {"GET", "/x/", R_INTERCEPT_DENIED, "x"},
	    {"GET", "/x;a/", R_INTERCEPT_DENIED, "x"},
	    {"GET", "/x;a", R_INTERCEPT_DENIED, "x"},
	    {"GET", "/a/..;/secret/b", R_INTERCEPT_BAD_PATH, ""},
	    {"GET", "/a/;x/b", R_INTERCEPT_BAD_PATH, ""}, /* "/a//b" once read */
	    {"put", "/pkg", R_INTERCEPT_DENIED, "put"},
	    {"Put", "/pkg", R_INTERCEPT_DENIED, "put"},
	    {"GET", "/xy", R_ALLOWED, "default"},
	    {"GET", "/pub;v=1/a/", R_ALLOWED, "default"},
	};
	check_decisions(ic, c, sizeof(c) / sizeof(c[0]));
	policy_unref(p);

	/* default: deny: the reading without ";params" must itself be allowed (a servlet
	 * container serves /files/secret for /files/secret;.txt); a trailing-slash reading
	 * that only falls to the default does not refuse. */
	p = load_ok(HEAD
	            "          requests:\n"
	            "            - {name: txt, methods: [GET, POST], path: \"/files/*.txt\", "
	            "action: allow}\n"
	            "            - {name: org, path: \"/org/**\", action: allow}\n"
	            "            - {name: noget, methods: [GET], path: /priv/x, action: deny}\n"
	            "            - {name: pub, methods: [GET, HEAD], path: \"/priv/**\", "
	            "action: allow}\n");
	ic = rules_of(p, 0, "github.com", 443);
	assert_non_null(ic);
	static const struct dcase d[] = {
	    {"GET", "/files/a.txt", R_ALLOWED, "txt"},
	    {"GET", "/files/secret;.txt", R_INTERCEPT_DENIED, "default"},
	    {"GET", "/files/a.txt;v=1", R_INTERCEPT_DENIED, "default"}, /* as sent: no match */
	    {"GET", "/org/", R_ALLOWED, "org"},
	    {"GET", "/org;x/", R_INTERCEPT_DENIED, "default"},
	    {"GET", "/org/a/", R_ALLOWED, "org"},
	    {"GET", "/org/%252e%252e/x", R_INTERCEPT_BAD_PATH, ""}, /* decoded twice: ".." */
	    {"GET", "/org/%25%32e%2E/x", R_INTERCEPT_BAD_PATH,
	     ""},                                             /* the same, hex digits escaped */
	    {"GET", "/org/%25zz", R_ALLOWED, "org"},          /* one escape, not two */
	    {"HEAD", "/priv/x", R_INTERCEPT_DENIED, "noget"}, /* a GET deny covers HEAD */
	    {"head", "/priv/x", R_INTERCEPT_DENIED, "noget"},
	    {"HEAD", "/priv/y", R_ALLOWED, "pub"},
	};
	check_decisions(ic, d, sizeof(d) / sizeof(d[0]));
	policy_unref(p);
}

static void test_glob_no_blowup(void **state)
{
	(void)state;
	char pat[URLPATH_PATTERN_MAX + 1], *path = malloc(1 << 20);
	size_t n = 0;
	assert_non_null(path);
	pat[n++] = '/';
	while (n + 4 < URLPATH_PATTERN_MAX) {
		pat[n++] = '*';
		pat[n++] = '*';
		pat[n++] = 'a';
	}
	pat[n++] = 'b';
	assert_int_equal(urlpath_check(pat, n, true, NULL), URLPATH_OK);
	path[0] = '/';
	for (size_t i = 1; i < (1 << 20); i++)
		path[i] = (i % 100) == 0 ? '/' : 'a';
	void *mem = malloc(urlpath_glob_size(pat, n));
	assert_non_null(mem);
	const struct urlpath_glob *g = urlpath_glob_compile(pat, n, mem);
	size_t plen;
	assert_int_equal(urlpath_check(path, 1 << 20, false, &plen), URLPATH_OK);
	assert_false(urlpath_glob_match(g, path, plen));
	path[(1 << 20) - 1] = 'b';
	assert_true(urlpath_glob_match(g, path, plen));
	free(mem);
	free(path);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_spec_example),
	    cmocka_unit_test(test_settings),
	    cmocka_unit_test(test_error_cases),
	    cmocka_unit_test(test_case_base_valid),
	    cmocka_unit_test(test_every_problem_reported),
	    cmocka_unit_test(test_decide_host_pointer),
	    cmocka_unit_test(test_tier_intercepts),
	    cmocka_unit_test(test_paths),
	    cmocka_unit_test(test_normal_form),
	    cmocka_unit_test(test_glob_reference),
	    cmocka_unit_test(test_glob_no_blowup),
	    cmocka_unit_test(test_encoded_slash),
	    cmocka_unit_test(test_readings),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
