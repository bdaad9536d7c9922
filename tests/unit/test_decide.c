/* Unit tests for policy/decide.c: host and address verdicts, identity, audit mode. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "policy.h"

/*
 * Tier 0 "standard" (enforce), tier 1 "mirror" (enforce, may reach the internal
 * mirror 10.96.5.0/24, plain HTTP only GET, HEAD, VERSION-CONTROL), tier 2
 * "watch" (audit).  Sources of different tiers
 * may not overlap (a load error); standard's own sources nest.
 */
static const char policy_yaml[] = "version: 1\n"
                                  "resolver: {servers: [\"10.96.0.10\"]}\n"
                                  "blocked_ranges: [198.51.100.0/24, \"2001:db8:bad::/48\"]\n"
                                  "tiers:\n"
                                  "  standard:\n"
                                  "    sources: [10.0.0.0/9, 10.1.0.0/16, \"fd00:1::/64\"]\n"
                                  "    allow:\n"
                                  "      - host: \"*.githubusercontent.com\"\n"
                                  "      - host: github.com\n"
                                  "      - host: allowed.example\n"
                                  "      - host: \"*.allowed.example\"\n"
                                  "        name: allowed-subdomains\n"
                                  "      - host: api.example.com\n"
                                  "        ports: [80, 443]\n"
                                  "        name: api-web\n"
                                  "      - host: api.example.com\n"
                                  "        ports: [8443]\n"
                                  "        name: api-alt\n"
                                  "      - host: xn--bcher-kva.example\n"
                                  "      - host: 203.0.113.7\n"
                                  "        ports: [443, 8080]\n"
                                  "      - host: \"2001:DB8::7\"\n"
                                  "      - host: 169.254.169.254\n"
                                  "        ports: [80]\n"
                                  "      - host: 10.96.5.10\n"
                                  "  mirror:\n"
                                  "    sources: [10.128.0.0/10]\n"
                                  "    allow:\n"
                                  "      - host: 10.96.5.10\n"
                                  "      - host: mirror.internal\n"
                                  "    allow_ranges: [10.96.5.0/24]\n"
                                  "    http: {methods: [GET, HEAD, VERSION-CONTROL]}\n"
                                  "  watch:\n"
                                  "    mode: audit\n"
                                  "    sources: [\"192.0.2.0/24\"]\n"
                                  "    allow:\n"
                                  "      - host: pypi.org\n";

static int setup(void **state)
{
	struct policy *p = NULL;
	struct policy_diags d;
	policy_diags_init(&d);
	int rc = policy_load_buffer(policy_yaml, sizeof(policy_yaml) - 1, &p, &d);
	for (size_t i = 0; i < d.n; i++)
		print_message("%u:%u: %s\n", d.v[i].line, d.v[i].col, d.v[i].msg);
	policy_diags_fini(&d);
	*state = p;
	return rc == POLICY_OK ? 0 : -1;
}

static int teardown(void **state)
{
	policy_unref(*state);
	return 0;
}

enum { STANDARD = 0, MIRROR = 1, WATCH = 2 };

static struct pc_host H(const char *s) {
	struct pc_host h;
	if (host_canon(s, strlen(s), &h) != HOST_OK)
		fail_msg("host_canon(\"%s\") failed", s);
	return h;
}

static struct pc_addr
A(const char *s) {
	struct pc_addr a;
	int rc =
	    strchr(s, ':') ? addr_parse_ipv6(s, strlen(s), &a) : addr_parse_ipv4(s, strlen(s), &a);
	if (rc != ADDR_OK)
		fail_msg("bad address %s", s);
	return a;
}

struct dcase {
	int tier;
	const char *host;
	uint16_t port;
	bool allow, would_deny;
	enum reason reason;
	const char *rule;
};

static void run(const struct policy *p, const struct dcase *c, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		struct pc_host h = H(c[i].host);
		struct verdict v;
		memset(&v, 0xa5, sizeof(v));
		policy_decide_host(p, c[i].tier, &h, c[i].port, &v);
		if (v.allow != c[i].allow || v.would_deny != c[i].would_deny ||
		    v.reason != c[i].reason || v.rule == NULL || strcmp(v.rule, c[i].rule) != 0)
			fail_msg("tier %d %s:%u: got allow=%d would_deny=%d %s rule \"%s\"; want "
			         "allow=%d would_deny=%d %s rule \"%s\"",
			         c[i].tier, c[i].host, c[i].port, v.allow, v.would_deny,
			         reason_name(v.reason), v.rule ? v.rule : "(null)", c[i].allow,
			         c[i].would_deny, reason_name(c[i].reason), c[i].rule);
	}
}

#define RUN(p, tbl) run(p, tbl, sizeof(tbl) / sizeof(tbl[0]))

static void test_names(void **state)
{
	static const struct dcase c[] = {
	    /* apex vs "*." */
	    {STANDARD, "raw.githubusercontent.com", 443, true, false, R_ALLOWED,
	     "*.githubusercontent.com"},
	    {STANDARD, "a.b.githubusercontent.com", 443, true, false, R_ALLOWED,
	     "*.githubusercontent.com"},
	    {STANDARD, "githubusercontent.com", 443, false, false, R_HOST_NOT_ALLOWED, ""},
	    {STANDARD, "github.com", 443, true, false, R_ALLOWED, "github.com"},
	    {STANDARD, "api.github.com", 443, false, false, R_HOST_NOT_ALLOWED, ""},
	    /* label boundaries */
	    {STANDARD, "allowed.example", 443, true, false, R_ALLOWED, "allowed.example"},
	    {STANDARD, "x.allowed.example", 443, true, false, R_ALLOWED, "allowed-subdomains"},
	    {STANDARD, "allowed.example.evil.example", 443, false, false, R_HOST_NOT_ALLOWED, ""},
	    {STANDARD, "evilallowed.example", 443, false, false, R_HOST_NOT_ALLOWED, ""},
	    {STANDARD, "allowed.examplex", 443, false, false, R_HOST_NOT_ALLOWED, ""},
	    {STANDARD, "xgithub.com", 443, false, false, R_HOST_NOT_ALLOWED, ""},
	    {STANDARD, "github.com.evil.example", 443, false, false, R_HOST_NOT_ALLOWED, ""},
	    /* case and one trailing dot (host_canon) */
	    {STANDARD, "GitHub.COM.", 443, true, false, R_ALLOWED, "github.com"},
	    {STANDARD, "RAW.GitHubUserContent.com", 443, true, false, R_ALLOWED,
	     "*.githubusercontent.com"},
	    /* punycode: only the A-label form exists for matching */
	    {STANDARD, "xn--bcher-kva.example", 443, true, false, R_ALLOWED,
	     "xn--bcher-kva.example"},
	    {STANDARD, "XN--BCHER-KVA.example.", 443, true, false, R_ALLOWED,
	     "xn--bcher-kva.example"},
	    {STANDARD, "xn--bcher-kvb.example", 443, false, false, R_HOST_NOT_ALLOWED, ""},
	};
	struct pc_host h;
	RUN(*state, c);
	/* Raw UTF-8 never reaches a decision. */
	assert_int_not_equal(host_canon("b\xc3\xbc"
	                                "cher.example",
	                                14, &h),
	                     HOST_OK);
}

static void test_ports(void **state)
{
	static const struct dcase c[] = {
	    /* default [443] */
	    {STANDARD, "github.com", 80, false, false, R_PORT_NOT_ALLOWED, ""},
	    {STANDARD, "github.com", 22, false, false, R_PORT_NOT_ALLOWED, ""},
	    {STANDARD, "github.com", 0, false, false, R_PORT_NOT_ALLOWED, ""},
	    /* first rule whose ports include the port wins */
	    {STANDARD, "api.example.com", 80, true, false, R_ALLOWED, "api-web"},
	    {STANDARD, "api.example.com", 443, true, false, R_ALLOWED, "api-web"},
	    {STANDARD, "api.example.com", 8443, true, false, R_ALLOWED, "api-alt"},
	    {STANDARD, "api.example.com", 8080, false, false, R_PORT_NOT_ALLOWED, ""},
	    /* a host matching no rule at all is host_not_allowed whatever the port */
	    {STANDARD, "unknown.example", 443, false, false, R_HOST_NOT_ALLOWED, ""},
	};
	RUN(*state, c);
}

static void test_ip_literals(void **state)
{
	static const struct dcase c[] = {
	    {STANDARD, "203.0.113.7", 443, true, false, R_ALLOWED, "203.0.113.7"},
	    {STANDARD, "203.0.113.7", 8080, true, false, R_ALLOWED, "203.0.113.7"},
	    {STANDARD, "203.0.113.7", 80, false, false, R_PORT_NOT_ALLOWED, ""},
	    {STANDARD, "203.0.113.8", 443, false, false, R_HOST_NOT_ALLOWED, ""},
	    /* every spelling of the same address is the same address */
	    {STANDARD, "3405803783", 443, true, false, R_ALLOWED, "203.0.113.7"},
	    {STANDARD, "0xcb.0.113.7", 443, true, false, R_ALLOWED, "203.0.113.7"},
	    {STANDARD, "[2001:db8:0:0::7]", 443, true, false, R_ALLOWED, "2001:db8::7"},
	    {STANDARD, "2001:db8::8", 443, false, false, R_HOST_NOT_ALLOWED, ""},
	    /* a name rule never matches an address */
	    {STANDARD, "140.82.112.3", 443, false, false, R_HOST_NOT_ALLOWED, ""},
	    /* blocked although a rule names it, in every spelling */
	    {STANDARD, "169.254.169.254", 80, false, false, R_BLOCKED_ADDRESS, ""},
	    {STANDARD, "0xa9fea9fe", 80, false, false, R_BLOCKED_ADDRESS, ""},
	    {STANDARD, "2852039166", 80, false, false, R_BLOCKED_ADDRESS, ""},
	    {STANDARD, "169.254.43518", 80, false, false, R_BLOCKED_ADDRESS, ""},
	    {STANDARD, "[::ffff:169.254.169.254]", 80, false, false, R_BLOCKED_ADDRESS, ""},
	    {STANDARD, "127.1", 443, false, false, R_BLOCKED_ADDRESS, ""},
	    {STANDARD, "[::1]", 443, false, false, R_BLOCKED_ADDRESS, ""},
	    {STANDARD, "[fd00:ec2::254]", 80, false, false, R_BLOCKED_ADDRESS, ""},
	    /* blocked_ranges from the file */
	    {STANDARD, "198.51.100.9", 443, false, false, R_BLOCKED_ADDRESS, ""},
	    {STANDARD, "[2001:db8:bad::1]", 443, false, false, R_BLOCKED_ADDRESS, ""},
	};
	RUN(*state, c);
}

static void test_allow_ranges_per_tier(void **state)
{
	static const struct dcase c[] = {
	    /* mirror may reach 10.96.5.10 (allow_ranges lifts the block, a rule allows it) */
	    {MIRROR, "10.96.5.10", 443, true, false, R_ALLOWED, "10.96.5.10"},
	    /* ... but allow_ranges is not an allow rule */
	    {MIRROR, "10.96.5.11", 443, false, false, R_HOST_NOT_ALLOWED, ""},
	    /* ... and does not lift other blocks */
	    {MIRROR, "10.96.6.10", 443, false, false, R_BLOCKED_ADDRESS, ""},
	    /* standard has the same rule but no allow_ranges */
	    {STANDARD, "10.96.5.10", 443, false, false, R_BLOCKED_ADDRESS, ""},
	};
	struct pc_addr a = A("10.96.5.10"), m = A("::ffff:10.96.5.10");
	const struct policy *p = *state;
	RUN(p, c);
	assert_false(policy_addr_blocked(p, MIRROR, &a));
	assert_false(policy_addr_blocked(p, MIRROR, &m));
	assert_true(policy_addr_blocked(p, STANDARD, &a));
	assert_true(policy_addr_blocked(p, STANDARD, &m));
	assert_true(policy_addr_blocked(p, -1, &a));
	/*
	 * Teredo carries two IPv4 addresses: server 10.96.5.1 (in mirror's
	 * allow_ranges) and client 169.254.169.254 (bit-inverted).  The allowed
	 * server must not vouch for the blocked client.
	 */
	struct pc_addr teredo = A("2001:0:a60:501::5601:5601");
	assert_true(policy_addr_blocked(p, MIRROR, &teredo));
	struct pc_addr teredo_ok = A("2001:0:a60:501::f7f7:f7f7"); /* client 8.8.8.8 */
	assert_false(policy_addr_blocked(p, MIRROR, &teredo_ok));
	assert_true(policy_addr_blocked(p, STANDARD, &teredo_ok));
	assert_true(policy_addr_blocked(p, 99, &a));
}

static void test_audit_mode(void **state)
{
	static const struct dcase c[] = {
	    {WATCH, "pypi.org", 443, true, false, R_ALLOWED, "pypi.org"},
	    {WATCH, "evil.example", 443, true, true, R_HOST_NOT_ALLOWED, ""},
	    {WATCH, "pypi.org", 22, true, true, R_PORT_NOT_ALLOWED, ""},
	    {WATCH, "203.0.113.7", 443, true, true, R_HOST_NOT_ALLOWED, ""},
	    /* blocked stays blocked */
	    {WATCH, "169.254.169.254", 80, false, false, R_BLOCKED_ADDRESS, ""},
	    {WATCH, "10.0.0.1", 443, false, false, R_BLOCKED_ADDRESS, ""},
	};
	const struct policy *p = *state;
	struct pc_addr bad = A("169.254.169.254");
	struct verdict v;
	RUN(p, c);
	policy_decide_addrs(p, WATCH, &bad, 1, &v);
	assert_false(v.allow);
	assert_false(v.would_deny);
	assert_int_equal(v.reason, R_RESOLVED_TO_BLOCKED);
}

static void test_unknown_tier(void **state)
{
	const struct policy *p = *state;
	struct pc_host h = H("github.com");
	struct pc_addr a = A("140.82.112.3");
	struct verdict v;
	const int tiers[] = {-1, -2, 3, 1000};
	for (size_t i = 0; i < sizeof(tiers) / sizeof(tiers[0]); i++) {
		policy_decide_host(p, tiers[i], &h, 443, &v);
		assert_false(v.allow);
		assert_false(v.would_deny);
		assert_int_equal(v.reason, R_UNKNOWN_SOURCE);
		assert_string_equal(v.rule, "");
		policy_decide_addrs(p, tiers[i], &a, 1, &v);
		assert_false(v.allow);
		assert_int_equal(v.reason, R_UNKNOWN_SOURCE);
	}
}

static void test_identity(void **state)
{
	static const struct {
		const char *src;
		int tier;
	} c[] = {
	    {"10.1.2.3", STANDARD}, /* in both of standard's nested prefixes */
	    {"10.42.1.2", STANDARD},
	    {"10.127.255.255", STANDARD},
	    {"10.128.0.0", MIRROR},
	    {"10.191.255.255", MIRROR},
	    {"10.192.0.0", -1},
	    {"192.0.2.77", WATCH},
	    {"192.0.3.1", -1},
	    {"127.0.0.1", -1},
	    {"fd00:1::5", STANDARD},
	    {"fd00:2::5", -1},
	    /* a dual-stack listener sees IPv4 clients as mapped addresses */
	    {"::ffff:10.128.1.2", MIRROR},
	    {"::ffff:192.0.2.1", WATCH},
	    /* other IPv6 forms carrying an IPv4 address are IPv6 hosts */
	    {"2002:a2a:102::1", -1},
	    {"64:ff9b::a2a:102", -1},
	    {"::10.42.1.2", -1},
	};
	const struct policy *p = *state;
	for (size_t i = 0; i < sizeof(c) / sizeof(c[0]); i++) {
		struct pc_addr a = A(c[i].src);
		int t = policy_identify(p, &a);
		if (t != c[i].tier)
			fail_msg("identify %s: %d, want %d", c[i].src, t, c[i].tier);
	}
}

static void test_unknown_source_tier(void **state)
{
	static const char yaml[] = "version: 1\n"
	                           "resolver: {servers: [\"10.96.0.10\"]}\n"
	                           "identity: {unknown_source: guests}\n"
	                           "tiers:\n"
	                           "  staff: {sources: [10.0.0.0/8], allow: [{host: a.example}]}\n"
	                           "  guests: {allow: [{host: b.example}]}\n";
	struct policy *p = NULL;
	struct pc_addr in = A("10.9.9.9"), out = A("203.0.113.1");
	struct pc_host h = H("b.example");
	struct verdict v;
	(void)state;
	assert_int_equal(policy_load_buffer(yaml, sizeof(yaml) - 1, &p, NULL), POLICY_OK);
	assert_int_equal(policy_identify(p, &in), 0);
	assert_int_equal(policy_identify(p, &out), 1);
	policy_decide_host(p, policy_identify(p, &out), &h, 443, &v);
	assert_true(v.allow);
	assert_string_equal(v.rule, "b.example");
	policy_decide_host(p, policy_identify(p, &in), &h, 443, &v);
	assert_false(v.allow);
	assert_int_equal(v.reason, R_HOST_NOT_ALLOWED);
	policy_unref(p);
}

struct acase {
	int tier;
	const char *addrs[3];
	bool allow;
	enum reason reason;
};

static void test_decide_addrs(void **state)
{
	static const struct acase c[] = {
	    {STANDARD, {"140.82.112.3"}, true, R_ALLOWED},
	    {STANDARD, {"140.82.112.3", "140.82.112.4"}, true, R_ALLOWED},
	    /* one good and one bad answer: refused */
	    {STANDARD, {"140.82.112.3", "127.0.0.1"}, false, R_RESOLVED_TO_BLOCKED},
	    {STANDARD, {"10.0.0.5", "140.82.112.3"}, false, R_RESOLVED_TO_BLOCKED},
	    {STANDARD, {"2606:4700::1111"}, true, R_ALLOWED},
	    {STANDARD, {"2606:4700::1111", "fd00:ec2::254"}, false, R_RESOLVED_TO_BLOCKED},
	    {STANDARD, {"198.51.100.1"}, false, R_RESOLVED_TO_BLOCKED},
	    /* IPv4 embedded in AAAA answers */
	    {STANDARD, {"::ffff:169.254.169.254"}, false, R_RESOLVED_TO_BLOCKED},
	    {STANDARD, {"64:ff9b::a9fe:a9fe"}, false, R_RESOLVED_TO_BLOCKED},
	    {STANDARD, {"64:ff9b:1:a00:0:100::"}, false, R_RESOLVED_TO_BLOCKED}, /* 10.0.0.1 */
	    {STANDARD, {"2002:a9fe:a9fe::1"}, false, R_RESOLVED_TO_BLOCKED},
	    {STANDARD, {"2001:0:4136:e378:8000:63bf:f5ff:fffe"}, false, R_RESOLVED_TO_BLOCKED},
	    {STANDARD, {"::ffff:140.82.112.3"}, true, R_ALLOWED},
	    {STANDARD, {"64:ff9b::8c52:7003"}, true, R_ALLOWED},
	    /* NAT64 outside the well-known /96: the IPv4 inside cannot be read, so blocked */
	    {STANDARD, {"64:ff9b:1:abcd:a9:fea9:fe00:0"}, false, R_RESOLVED_TO_BLOCKED}, /* /64 layout */
	    {STANDARD, {"64:ff9b:1:c633:64:a00::"}, false, R_RESOLVED_TO_BLOCKED}, /* a public one too */
	    {STANDARD, {"64:ff9b:0:0:1::8c52:7003"}, false, R_RESOLVED_TO_BLOCKED},
	    {STANDARD, {"64:ff9b:2::8c52:7003"}, false, R_RESOLVED_TO_BLOCKED},
	    {STANDARD, {"64:ff9a::8c52:7003"}, true, R_ALLOWED}, /* not NAT64 at all */
	    /* allow_ranges: the mirror tier, including the mapped form */
	    {MIRROR, {"10.96.5.20", "::ffff:10.96.5.21"}, true, R_ALLOWED},
	    {MIRROR, {"10.96.5.20", "10.96.4.1"}, false, R_RESOLVED_TO_BLOCKED},
	    {STANDARD, {"10.96.5.20"}, false, R_RESOLVED_TO_BLOCKED},
	    /* audit mode does not relax address checks */
	    {WATCH, {"140.82.112.3", "192.168.1.1"}, false, R_RESOLVED_TO_BLOCKED},
	    {WATCH, {"140.82.112.3"}, true, R_ALLOWED},
	};
	const struct policy *p = *state;
	for (size_t i = 0; i < sizeof(c) / sizeof(c[0]); i++) {
		struct pc_addr a[3];
		size_t n = 0;
		struct verdict v;
		while (n < 3 && c[i].addrs[n] != NULL) {
			a[n] = A(c[i].addrs[n]);
			n++;
		}
		policy_decide_addrs(p, c[i].tier, a, n, &v);
		if (v.allow != c[i].allow || v.reason != c[i].reason || v.would_deny)
			fail_msg("case %zu (%s...): allow=%d %s, want allow=%d %s", i,
			         c[i].addrs[0], v.allow, reason_name(v.reason), c[i].allow,
			         reason_name(c[i].reason));
	}
}

static void test_decide_addrs_empty_and_junk(void **state)
{
	const struct policy *p = *state;
	struct pc_addr junk;
	struct verdict v;
	policy_decide_addrs(p, STANDARD, NULL, 0, &v);
	assert_false(v.allow);
	assert_int_equal(v.reason, R_DNS_ERROR);
	/* Fail closed on an address of no family. */
	memset(&junk, 0, sizeof(junk));
	assert_true(policy_addr_blocked(p, STANDARD, &junk));
	policy_decide_addrs(p, STANDARD, &junk, 1, &v);
	assert_false(v.allow);
	assert_int_equal(v.reason, R_RESOLVED_TO_BLOCKED);
}

/* policy_tier_method_allowed: exact bytes, any when no list, never CONNECT. */
static void test_method_allowed(void **state)
{
	const struct policy *p = *state;
	const struct policy_tier *any = policy_tier(p, STANDARD), *mirror = policy_tier(p, MIRROR);
	static const struct {
		const char *m;
		size_t len;
		bool any, mirror;
	} c[] = {
	    {"GET", 3, true, true},
	    {"HEAD", 4, true, true},
	    {"VERSION-CONTROL", 15, true, true},
	    {"POST", 4, true, false},
	    {"PROPFIND", 8, true, false},
	    /* Case-sensitive (RFC 9110 §9.1): "get" is another method, which any allows. */
	    {"get", 3, true, false},
	    {"Head", 4, true, false},
	    /* A view, not a C string: only len bytes count. */
	    {"GETX", 3, true, true},
	    {"GE", 2, true, false},
	    {"GETS", 4, true, false},
	    {"HEAD\0", 5, true, false},
	    {"VERSION", 7, true, false},
	    /* CONNECT is never a plain-HTTP method, even with no list. */
	    {"CONNECT", 7, false, false},
	    {"", 0, false, false},
	};
	(void)state;
	assert_int_equal(any->n_http_methods, 0);
	assert_int_equal(mirror->n_http_methods, 3);
	for (size_t i = 0; i < sizeof(c) / sizeof(c[0]); i++) {
		bool a = policy_tier_method_allowed(any, c[i].m, c[i].len);
		bool m = policy_tier_method_allowed(mirror, c[i].m, c[i].len);
		if (a != c[i].any || m != c[i].mirror)
			fail_msg("method \"%.*s\" (%zu): any %d mirror %d, want %d %d",
			         (int)c[i].len, c[i].m, c[i].len, a, m, c[i].any, c[i].mirror);
	}
	assert_false(policy_tier_method_allowed(NULL, "GET", 3));
	assert_false(policy_tier_method_allowed(any, NULL, 3));
	assert_false(policy_tier_method_allowed(mirror, NULL, 0));
	/* No http: anywhere: every method but CONNECT. */
	assert_true(policy_tier_method_allowed(policy_tier(p, WATCH), "DELETE", 6));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_names),
	    cmocka_unit_test(test_ports),
	    cmocka_unit_test(test_ip_literals),
	    cmocka_unit_test(test_allow_ranges_per_tier),
	    cmocka_unit_test(test_audit_mode),
	    cmocka_unit_test(test_unknown_tier),
	    cmocka_unit_test(test_identity),
	    cmocka_unit_test(test_unknown_source_tier),
	    cmocka_unit_test(test_decide_addrs),
	    cmocka_unit_test(test_decide_addrs_empty_and_junk),
	    cmocka_unit_test(test_method_allowed),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
