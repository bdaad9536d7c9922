/* Unit tests for policy/ranges.c: strict CIDR parsing, longest-prefix lookup, built-in list. */
#include "ranges.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

static void check_cidr(const char *in, int want_rc, const char *want_addr, unsigned want_plen)
{
	struct pc_addr p;
	unsigned plen = 999;
	char buf[ADDR_STRLEN];
	int rc = range_parse_cidr(in, strlen(in), &p, &plen);
	if (rc != want_rc)
		fail_msg("range_parse_cidr(\"%s\") = %d, want %d", in, rc, want_rc);
	if (want_addr == NULL)
		return;
	addr_format(&p, buf, sizeof(buf));
	if (strcmp(buf, want_addr) != 0 || plen != want_plen)
		fail_msg("range_parse_cidr(\"%s\") -> %s/%u, want %s/%u", in, buf, plen, want_addr,
		         want_plen);
}

static void test_parse_cidr_ok(void **state)
{
	(void)state;
	check_cidr("10.0.0.0/8", RANGE_OK, "10.0.0.0", 8);
	check_cidr("0.0.0.0/0", RANGE_OK, "0.0.0.0", 0);
	check_cidr("10.1.2.3", RANGE_OK, "10.1.2.3", 32);
	check_cidr("10.1.2.3/32", RANGE_OK, "10.1.2.3", 32);
	check_cidr("168.63.129.16/32", RANGE_OK, "168.63.129.16", 32);
	check_cidr("100.64.0.0/10", RANGE_OK, "100.64.0.0", 10);
	check_cidr("::/0", RANGE_OK, "::", 0);
	check_cidr("::1", RANGE_OK, "::1", 128);
	check_cidr("fc00::/7", RANGE_OK, "fc00::", 7);
	check_cidr("FE80::/10", RANGE_OK, "fe80::", 10);
	check_cidr("2001:db8::/32", RANGE_OK, "2001:db8::", 32);
	check_cidr("::ffff:10.0.0.0/104", RANGE_OK, "::ffff:10.0.0.0", 104);
	check_cidr("1:2:3:4:5:6:7:8/128", RANGE_OK, "1:2:3:4:5:6:7:8", 128);
}

static void test_parse_cidr_errors(void **state)
{
	(void)state;
	/* IPv4: canonical dotted quad only */
	check_cidr("010.0.0.0/8", RANGE_ERR_SYNTAX, NULL, 0);
	check_cidr("10.0.0/24", RANGE_ERR_SYNTAX, NULL, 0);
	check_cidr("10/8", RANGE_ERR_SYNTAX, NULL, 0);
	check_cidr("0xa.0.0.0/8", RANGE_ERR_SYNTAX, NULL, 0);
	check_cidr("167772160/8", RANGE_ERR_SYNTAX, NULL, 0);
	check_cidr("256.0.0.0/8", RANGE_ERR_SYNTAX, NULL, 0);
	check_cidr("10.0.0.0./8", RANGE_ERR_SYNTAX, NULL, 0);
	check_cidr(" 10.0.0.0/8", RANGE_ERR_SYNTAX, NULL, 0);
	check_cidr("10.0.0.0/8 ", RANGE_ERR_SYNTAX, NULL, 0);
	check_cidr("", RANGE_ERR_SYNTAX, NULL, 0);
	check_cidr("/8", RANGE_ERR_SYNTAX, NULL, 0);
	check_cidr("10.0.0.0/", RANGE_ERR_SYNTAX, NULL, 0);
	check_cidr("10.0.0.0/+8", RANGE_ERR_SYNTAX, NULL, 0);
	check_cidr("10.0.0.0/-8", RANGE_ERR_SYNTAX, NULL, 0);
	check_cidr("10.0.0.0/08", RANGE_ERR_SYNTAX, NULL, 0);
	check_cidr("10.0.0.0/8/8", RANGE_ERR_SYNTAX, NULL, 0);
	check_cidr("10.0.0.0/0x8", RANGE_ERR_SYNTAX, NULL, 0);
	check_cidr("example.com/8", RANGE_ERR_SYNTAX, NULL, 0);
	/* IPv6 */
	check_cidr("[::1]/128", RANGE_ERR_SYNTAX, NULL, 0);
	check_cidr("fe80::1%eth0/128", RANGE_ERR_SYNTAX, NULL, 0);
	check_cidr("1::2::3/64", RANGE_ERR_SYNTAX, NULL, 0);
	check_cidr(":::/0", RANGE_ERR_SYNTAX, NULL, 0);
	/* prefix length */
	check_cidr("10.0.0.0/33", RANGE_ERR_PREFIX, NULL, 0);
	check_cidr("::/129", RANGE_ERR_PREFIX, NULL, 0);
	check_cidr("::/1000", RANGE_ERR_PREFIX, NULL, 0);
	check_cidr("10.0.0.0/99999999999999999999", RANGE_ERR_PREFIX, NULL, 0);
	/* host bits */
	check_cidr("10.0.0.1/8", RANGE_ERR_HOSTBITS, NULL, 0);
	check_cidr("10.128.0.0/8", RANGE_ERR_HOSTBITS, NULL, 0);
	check_cidr("0.0.0.1/0", RANGE_ERR_HOSTBITS, NULL, 0);
	check_cidr("fe80::1/10", RANGE_ERR_HOSTBITS, NULL, 0);
	check_cidr("fd00::/7", RANGE_ERR_HOSTBITS, NULL, 0);
	/* NUL inside the length */
	struct pc_addr p;
	unsigned plen;
	assert_int_equal(range_parse_cidr("10.0.0.0\0/8", 11, &p, &plen), RANGE_ERR_SYNTAX);
	assert_int_equal(range_parse_cidr("10.0.0.0/8\0", 11, &p, &plen), RANGE_ERR_SYNTAX);
}

static struct pc_addr addr_of(const char *s)
{
	struct pc_addr a;
	memset(&a, 0, sizeof(a));
	if (strchr(s, ':') != NULL)
		assert_int_equal(addr_parse_ipv6(s, strlen(s), &a), ADDR_OK);
	else
		assert_int_equal(addr_parse_ipv4_strict(s, strlen(s), &a), ADDR_OK);
	return a;
}

static void add(struct range_set *set, const char *cidr, int tag)
{
	struct pc_addr p;
	unsigned plen;
	assert_int_equal(range_parse_cidr(cidr, strlen(cidr), &p, &plen), RANGE_OK);
	assert_int_equal(range_set_add(set, &p, plen, tag), RANGE_OK);
}

static void expect_lookup(const struct range_set *set, const char *addr, bool found, int tag,
                          unsigned plen)
{
	struct pc_addr a = addr_of(addr);
	int t = -12345;
	unsigned l = 999;
	bool got = range_set_lookup(set, &a, &t, &l);
	if (got != found)
		fail_msg("lookup(%s) = %d, want %d", addr, got, found);
	if (found && (t != tag || l != plen))
		fail_msg("lookup(%s) -> tag %d /%u, want tag %d /%u", addr, t, l, tag, plen);
}

static void test_longest_prefix(void **state)
{
	(void)state;
	struct range_set *set = range_set_create();
	assert_non_null(set);
	add(set, "10.0.0.0/8", 1);
	add(set, "10.1.0.0/16", 2);
	add(set, "10.1.2.0/24", 3);
	add(set, "10.1.2.3/32", 4);
	add(set, "192.168.0.0/16", 5);
	assert_int_equal(range_set_count(set), 5);

	expect_lookup(set, "10.1.2.3", true, 4, 32);
	expect_lookup(set, "10.1.2.4", true, 3, 24);
	expect_lookup(set, "10.1.3.0", true, 2, 16);
	expect_lookup(set, "10.2.0.0", true, 1, 8);
	expect_lookup(set, "10.255.255.255", true, 1, 8);
	expect_lookup(set, "11.0.0.0", false, 0, 0);
	expect_lookup(set, "9.255.255.255", false, 0, 0);
	expect_lookup(set, "192.168.255.255", true, 5, 16);
	expect_lookup(set, "192.169.0.0", false, 0, 0);
	/* exact family: an IPv6 form of 10.1.2.3 is not found by lookup ... */
	expect_lookup(set, "::ffff:10.1.2.3", false, 0, 0);
	/* ... but contains() sees the embedded IPv4 */
	struct pc_addr m = addr_of("::ffff:10.1.2.3");
	assert_true(range_set_contains(set, &m));

	/* order of insertion does not matter; /0 catches everything of its family */
	add(set, "0.0.0.0/0", 9);
	expect_lookup(set, "8.8.8.8", true, 9, 0);
	expect_lookup(set, "10.1.2.3", true, 4, 32);
	expect_lookup(set, "::1", false, 0, 0);

	/* NULL out-pointers are allowed */
	struct pc_addr a = addr_of("10.1.2.3");
	assert_true(range_set_lookup(set, &a, NULL, NULL));
	range_set_destroy(set);
}

static void test_ipv6_prefixes(void **state)
{
	(void)state;
	struct range_set *set = range_set_create();
	assert_non_null(set);
	add(set, "2001:db8::/32", 1);
	add(set, "2001:db8:1::/48", 2);
	add(set, "2001:db8:1:2::1/128", 3);
	add(set, "fe80::/10", 4);
	expect_lookup(set, "2001:db8:1:2::1", true, 3, 128);
	expect_lookup(set, "2001:db8:1:2::2", true, 2, 48);
	expect_lookup(set, "2001:db8:2::", true, 1, 32);
	expect_lookup(set, "2001:db9::", false, 0, 0);
	expect_lookup(set, "febf:ffff:ffff:ffff:ffff:ffff:ffff:ffff", true, 4, 10);
	expect_lookup(set, "fec0::", false, 0, 0);
	expect_lookup(set, "fe7f:ffff:ffff:ffff:ffff:ffff:ffff:ffff", false, 0, 0);
	/* IPv4 never matches IPv6 prefixes */
	expect_lookup(set, "32.1.13.184", false, 0, 0);
	range_set_destroy(set);
}

static void test_add_rules(void **state)
{
	(void)state;
	struct range_set *set = range_set_create();
	struct pc_addr p = addr_of("10.0.0.0");
	int tag = 0;
	assert_non_null(set);
	assert_int_equal(range_set_add(set, &p, 8, 7), RANGE_OK);
	/* the same prefix again keeps the first tag and is not counted twice */
	assert_int_equal(range_set_add(set, &p, 8, 8), RANGE_OK);
	assert_int_equal(range_set_count(set), 1);
	assert_true(range_set_lookup(set, &p, &tag, NULL));
	assert_int_equal(tag, 7);
	/* a different length on the same address is a different prefix */
	assert_int_equal(range_set_add(set, &p, 16, 8), RANGE_OK);
	assert_int_equal(range_set_count(set), 2);
	/* bad length, host bits, bad family */
	assert_int_equal(range_set_add(set, &p, 33, 1), RANGE_ERR_PREFIX);
	struct pc_addr h = addr_of("10.0.0.1");
	assert_int_equal(range_set_add(set, &h, 8, 1), RANGE_ERR_HOSTBITS);
	struct pc_addr six = addr_of("::");
	assert_int_equal(range_set_add(set, &six, 129, 1), RANGE_ERR_PREFIX);
	struct pc_addr bad;
	memset(&bad, 0, sizeof(bad));
	assert_int_equal(range_set_add(set, &bad, 0, 1), RANGE_ERR_SYNTAX);
	assert_int_equal(range_set_count(set), 2);
	range_set_destroy(set);
	range_set_destroy(NULL);
	assert_int_equal(range_set_count(NULL), 0);
	assert_false(range_set_lookup(NULL, &p, NULL, NULL));
	assert_false(range_set_contains(NULL, &p));
}

static void test_empty_set(void **state)
{
	(void)state;
	struct range_set *set = range_set_create();
	struct pc_addr a = addr_of("10.0.0.1"), b = addr_of("::1");
	assert_non_null(set);
	assert_false(range_set_lookup(set, &a, NULL, NULL));
	assert_false(range_set_contains(set, &b));
	assert_int_equal(range_set_count(set), 0);
	range_set_destroy(set);
}

static void test_many_prefixes(void **state)
{
	(void)state;
	struct range_set *set = range_set_create();
	assert_non_null(set);
	/* 4096 /24s under 20.0.0.0/12, even third octets only, tags = index */
	for (unsigned i = 0; i < 4096; i++) {
		struct pc_addr p;
		char buf[32];
		unsigned plen;
		snprintf(buf, sizeof(buf), "20.%u.%u.0/24", i >> 8, (i & 0xff) & ~1u);
		assert_int_equal(range_parse_cidr(buf, strlen(buf), &p, &plen), RANGE_OK);
		assert_int_equal(range_set_add(set, &p, plen, (int)i), RANGE_OK);
	}
	assert_int_equal(range_set_count(set), 2048);
	struct pc_addr a = addr_of("20.15.254.77");
	int tag = -1;
	assert_true(range_set_lookup(set, &a, &tag, NULL));
	assert_int_equal(tag, 15 * 256 + 254);
	a = addr_of("20.15.255.77");
	assert_false(range_set_lookup(set, &a, NULL, NULL));
	a = addr_of("20.16.0.1");
	assert_false(range_set_lookup(set, &a, NULL, NULL));
	range_set_destroy(set);
}

static void test_builtin_list(void **state)
{
	(void)state;
	size_t n = range_builtin_count();
	assert_true(n >= 19);
	for (size_t i = 0; i < n; i++) {
		const char *t = range_builtin_text(i);
		struct pc_addr p;
		unsigned plen;
		assert_non_null(t);
		if (range_parse_cidr(t, strlen(t), &p, &plen) != RANGE_OK)
			fail_msg("built-in %s does not parse", t);
	}
	assert_null(range_builtin_text(n));
	assert_null(range_builtin_text((size_t)-1));

	struct range_set *set = range_set_create();
	assert_non_null(set);
	assert_int_equal(range_set_add_builtin_blocked(set), RANGE_OK);
	assert_int_equal(range_set_count(set), n);
	/* adding it twice is harmless */
	assert_int_equal(range_set_add_builtin_blocked(set), RANGE_OK);
	assert_int_equal(range_set_count(set), n);

	static const char *const blocked[] = {
	    "0.0.0.0",
	    "10.0.0.1",
	    "100.64.0.1",
	    "127.0.0.1",
	    "169.254.169.254",
	    "172.16.0.1",
	    "192.0.0.1",
	    "192.168.1.1",
	    "198.18.0.1",
	    "224.0.0.1",
	    "255.255.255.255",
	    "168.63.129.16",
	    "::",
	    "::1",
	    "fd00:ec2::254",
	    "fe80::1",
	    "fec0::1",
	    "ff02::1",
	    "100::1",
	    "::ffff:127.0.0.1",
	    "::ffff:0:10.0.0.1",
	    "::a9fe:a9fe",
	    "64:ff9b::a9fe:a9fe",
	    "64:ff9b:1:a9fe:a9:fe00::",
	    "2002:a00:1::",
	    "2001:0:cb00:7101::5601:5601",
	    "2001:0:a00:1::39cc:9bf5",
	};
	static const char *const allowed[] = {
	    "8.8.8.8",
	    "192.0.2.1",
	    "198.51.100.10",
	    "203.0.113.5",
	    "168.63.129.15",
	    "168.63.129.17",
	    "1.1.1.1",
	    "2001:db8::1",
	    "2606:4700::1111",
	    "::ffff:198.51.100.10",
	    "64:ff9b::c633:640a",
	    "2002:c633:640a::",
	    "2001:0:cb00:7101::39cc:9bf5",
	    "100:0:0:1::",
	};
	for (size_t i = 0; i < sizeof(blocked) / sizeof(blocked[0]); i++) {
		struct pc_addr a = addr_of(blocked[i]);
		if (!range_set_contains(set, &a))
			fail_msg("%s should be blocked", blocked[i]);
	}
	for (size_t i = 0; i < sizeof(allowed) / sizeof(allowed[0]); i++) {
		struct pc_addr a = addr_of(allowed[i]);
		if (range_set_contains(set, &a))
			fail_msg("%s should not be blocked", allowed[i]);
	}
	range_set_destroy(set);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_parse_cidr_ok),  cmocka_unit_test(test_parse_cidr_errors),
	    cmocka_unit_test(test_longest_prefix), cmocka_unit_test(test_ipv6_prefixes),
	    cmocka_unit_test(test_add_rules),      cmocka_unit_test(test_empty_set),
	    cmocka_unit_test(test_many_prefixes),  cmocka_unit_test(test_builtin_list),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
