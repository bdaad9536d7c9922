/* Unit tests for policy/addr.c: IPv4 notations, IPv6 literals, formatting, embedded IPv4. */
#include "addr.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

static void check_v4(const char *in, size_t len, int want_rc, const char *want)
{
	struct pc_addr a;
	char buf[ADDR_STRLEN];
	int rc = addr_parse_ipv4(in, len, &a);
	if (rc != want_rc)
		fail_msg("addr_parse_ipv4(\"%.*s\") = %d, want %d", (int)len, in, rc, want_rc);
	if (want != NULL) {
		assert_int_equal(a.family, ADDR_V4);
		assert_true(addr_format(&a, buf, sizeof(buf)) > 0);
		if (strcmp(buf, want) != 0)
			fail_msg("addr_parse_ipv4(\"%s\") -> %s, want %s", in, buf, want);
	}
}

#define V4_OK(in, want) check_v4(in, strlen(in), ADDR_OK, want)
#define V4_ERR(in, err) check_v4(in, strlen(in), err, NULL)

static void test_ipv4_dotted(void **state)
{
	(void)state;
	V4_OK("1.2.3.4", "1.2.3.4");
	V4_OK("0.0.0.0", "0.0.0.0");
	V4_OK("255.255.255.255", "255.255.255.255");
	V4_OK("169.254.169.254", "169.254.169.254");
	V4_OK("1.2.3.4.", "1.2.3.4"); /* one trailing dot */
	V4_OK("001.002.003.004", "1.2.3.4");
	V4_OK("00000000000000000000000000000000000001.2.3.4", "1.2.3.4");
}

static void test_ipv4_numeric_forms(void **state)
{
	(void)state;
	V4_OK("2852039166", "169.254.169.254");
	V4_OK("0251.0376.0251.0376", "169.254.169.254");
	V4_OK("0xa9fea9fe", "169.254.169.254");
	V4_OK("0XA9FEA9FE", "169.254.169.254");
	V4_OK("0xA9.0xFE.0xA9.0xFE", "169.254.169.254");
	V4_OK("169.254.43518", "169.254.169.254");
	V4_OK("169.16689662", "169.254.169.254");
	V4_OK("127.1", "127.0.0.1");
	V4_OK("127.0.1", "127.0.0.1");
	V4_OK("0", "0.0.0.0");
	V4_OK("0x7f.1", "127.0.0.1");
	V4_OK("017700000001", "127.0.0.1");
	V4_OK("0x", "0.0.0.0");
	V4_OK("0x.0x.0x.0x", "0.0.0.0");
	V4_OK("00", "0.0.0.0");
	V4_OK("0x0000000000000000000000007f000001", "127.0.0.1");
	V4_OK("4294967295", "255.255.255.255");
	V4_OK("037777777777", "255.255.255.255");
	V4_OK("0xffffffff", "255.255.255.255");
	V4_OK("1.16777215", "1.255.255.255");
	V4_OK("1.2.65535", "1.2.255.255");
	V4_OK("10.0x10.0377.1.", "10.16.255.1");
}

static void test_ipv4_overflow(void **state)
{
	(void)state;
	V4_ERR("4294967296", ADDR_ERR_OVERFLOW);
	V4_ERR("040000000000", ADDR_ERR_OVERFLOW);
	V4_ERR("0x100000000", ADDR_ERR_OVERFLOW);
	V4_ERR("425.510.425.510", ADDR_ERR_OVERFLOW);
	V4_ERR("7147006462", ADDR_ERR_OVERFLOW);
	V4_ERR("256.1.1.1", ADDR_ERR_OVERFLOW);
	V4_ERR("1.1.1.256", ADDR_ERR_OVERFLOW);
	V4_ERR("1.16777216", ADDR_ERR_OVERFLOW);
	V4_ERR("1.2.65536", ADDR_ERR_OVERFLOW);
	V4_ERR("0400.1.1.1", ADDR_ERR_OVERFLOW);
	V4_ERR("0x100.1", ADDR_ERR_OVERFLOW);
	V4_ERR("99999999999999999999999999999999999999999999999999999999999999", ADDR_ERR_OVERFLOW);
	V4_ERR("0xfffffffffffffffffffffffffffffffffffffffffffffffffffffffff", ADDR_ERR_OVERFLOW);
	V4_ERR("18446744073709551616", ADDR_ERR_OVERFLOW); /* 2^64 wraps to 0 if unguarded */
	V4_ERR("18446744073709551617.1", ADDR_ERR_OVERFLOW);
}

static void test_ipv4_syntax(void **state)
{
	(void)state;
	V4_ERR("", ADDR_ERR_SYNTAX);
	V4_ERR(".", ADDR_ERR_SYNTAX);
	V4_ERR("1..1", ADDR_ERR_SYNTAX);
	V4_ERR(".1.2.3", ADDR_ERR_SYNTAX);
	V4_ERR("1.2.3.4..", ADDR_ERR_SYNTAX);
	V4_ERR("1.2.3.4.5", ADDR_ERR_SYNTAX);
	V4_ERR("1.2.3.4.5.", ADDR_ERR_SYNTAX);
	V4_ERR("08", ADDR_ERR_SYNTAX);
	V4_ERR("09.1.1.1", ADDR_ERR_SYNTAX);
	V4_ERR("0xg", ADDR_ERR_SYNTAX);
	V4_ERR("0x0x1", ADDR_ERR_SYNTAX);
	V4_ERR("00x1", ADDR_ERR_SYNTAX);
	V4_ERR("x1", ADDR_ERR_SYNTAX);
	V4_ERR("1e3", ADDR_ERR_SYNTAX);
	V4_ERR("+1.2.3.4", ADDR_ERR_SYNTAX);
	V4_ERR("-1", ADDR_ERR_SYNTAX);
	V4_ERR(" 1.2.3.4", ADDR_ERR_SYNTAX);
	V4_ERR("1.2.3.4 ", ADDR_ERR_SYNTAX);
	V4_ERR("1.2.3.4\n", ADDR_ERR_SYNTAX);
	V4_ERR("1.2.3.a", ADDR_ERR_SYNTAX);
	V4_ERR("example.123", ADDR_ERR_SYNTAX);
	V4_ERR("1.2.3.4/8", ADDR_ERR_SYNTAX);
	/* syntax wins over overflow: a malformed string never says "overflow" */
	V4_ERR("256.1.1.1.1", ADDR_ERR_SYNTAX);
	V4_ERR("99999999999.x", ADDR_ERR_SYNTAX);
	/* NUL inside the length is a byte like any other */
	check_v4("1.2\0.3", 6, ADDR_ERR_SYNTAX, NULL);
	check_v4("127.0.0.1\0", 10, ADDR_ERR_SYNTAX, NULL);
	/* only len bytes are read */
	check_v4("1.2.3.4junk", 7, ADDR_OK, "1.2.3.4");
}

static void check_strict(const char *in, int want_rc)
{
	struct pc_addr a;
	int rc = addr_parse_ipv4_strict(in, strlen(in), &a);
	if (rc != want_rc)
		fail_msg("addr_parse_ipv4_strict(\"%s\") = %d, want %d", in, rc, want_rc);
}

static void test_ipv4_strict(void **state)
{
	(void)state;
	check_strict("1.2.3.4", ADDR_OK);
	check_strict("0.0.0.0", ADDR_OK);
	check_strict("255.255.255.255", ADDR_OK);
	check_strict("256.0.0.0", ADDR_ERR_OVERFLOW);
	check_strict("01.2.3.4", ADDR_ERR_SYNTAX);
	check_strict("1.2.3.00", ADDR_ERR_SYNTAX);
	check_strict("1.2.3", ADDR_ERR_SYNTAX);
	check_strict("1.2.3.4.", ADDR_ERR_SYNTAX);
	check_strict("1.2.3.4.5", ADDR_ERR_SYNTAX);
	check_strict("0x1.2.3.4", ADDR_ERR_SYNTAX);
	check_strict("2852039166", ADDR_ERR_SYNTAX);
	check_strict("1.2.3.1000", ADDR_ERR_SYNTAX);
	check_strict("", ADDR_ERR_SYNTAX);
}

static void looks(const char *in, bool want)
{
	if (addr_looks_ipv4(in, strlen(in)) != want)
		fail_msg("addr_looks_ipv4(\"%s\") != %d", in, want);
}

static void test_looks_ipv4(void **state)
{
	(void)state;
	looks("1.2.3.4", true);
	looks("1.2.3.4.", true);
	looks("example.123", true);
	looks("example.0x", true);
	looks("example.0XfF", true);
	looks("09", true);
	looks("0x", true);
	looks("a.b.c.1", true);
	looks("example.com", false);
	looks("123.example", false);
	looks("1.2.3.4..", false);
	looks("1.2.3.0xg", false);
	looks("1e1", false);
	looks("", false);
	looks(".", false);
	looks("x1", false);
	looks("1x", false);
}

static void check_v6(const char *in, int want_rc, const char *want)
{
	struct pc_addr a, b;
	char buf[ADDR_STRLEN];
	int rc = addr_parse_ipv6(in, strlen(in), &a);
	if (rc != want_rc)
		fail_msg("addr_parse_ipv6(\"%s\") = %d, want %d", in, rc, want_rc);
	if (want == NULL)
		return;
	assert_int_equal(a.family, ADDR_V6);
	size_t n = addr_format(&a, buf, sizeof(buf));
	assert_int_equal(n, strlen(buf));
	if (strcmp(buf, want) != 0)
		fail_msg("addr_parse_ipv6(\"%s\") -> %s, want %s", in, buf, want);
	/* the canonical form parses back to the same address */
	assert_int_equal(addr_parse_ipv6(buf, n, &b), ADDR_OK);
	assert_true(addr_equal(&a, &b));
}

static void test_ipv6_parse_format(void **state)
{
	(void)state;
	check_v6("::", ADDR_OK, "::");
	check_v6("::1", ADDR_OK, "::1");
	check_v6("1::", ADDR_OK, "1::");
	check_v6("0:0:0:0:0:0:0:1", ADDR_OK, "::1");
	check_v6("2001:DB8::1", ADDR_OK, "2001:db8::1");
	check_v6("2001:0db8:0000:0000:0000:0000:0000:0001", ADDR_OK, "2001:db8::1");
	/* RFC 5952 §4.2.2: a single zero group is not compressed */
	check_v6("2001:db8:0:1:1:1:1:1", ADDR_OK, "2001:db8:0:1:1:1:1:1");
	check_v6("2001:db8::1:1:1:1:1", ADDR_OK, "2001:db8:0:1:1:1:1:1");
	/* §4.2.3: the longest run, the first on a tie */
	check_v6("2001:0:0:1:0:0:0:1", ADDR_OK, "2001:0:0:1::1");
	check_v6("2001:db8:0:0:1:0:0:1", ADDR_OK, "2001:db8::1:0:0:1");
	check_v6("1:0:0:0:0:0:0:0", ADDR_OK, "1::");
	check_v6("0:0:0:0:0:0:0:0", ADDR_OK, "::");
	check_v6("1:2:3:4:5:6:7:8", ADDR_OK, "1:2:3:4:5:6:7:8");
	check_v6("::2:3:4:5:6:7:8", ADDR_OK, "0:2:3:4:5:6:7:8");
	check_v6("1:2:3:4:5:6:7::", ADDR_OK, "1:2:3:4:5:6:7:0");
	check_v6("FFFF:ffff:FFFF:ffff:FFFF:ffff:FFFF:ffff", ADDR_OK,
	         "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff");
	check_v6("fd00:ec2::254", ADDR_OK, "fd00:ec2::254");
	/* embedded dotted IPv4 */
	check_v6("::ffff:169.254.169.254", ADDR_OK, "::ffff:169.254.169.254");
	check_v6("::ffff:a9fe:a9fe", ADDR_OK, "::ffff:169.254.169.254");
	check_v6("::169.254.169.254", ADDR_OK, "::a9fe:a9fe");
	check_v6("::ffff:0:169.254.169.254", ADDR_OK, "::ffff:0:a9fe:a9fe");
	check_v6("64:ff9b::127.0.0.1", ADDR_OK, "64:ff9b::7f00:1");
	check_v6("1:2:3:4:5:6:1.2.3.4", ADDR_OK, "1:2:3:4:5:6:102:304");
	check_v6("::1.2.3.4", ADDR_OK, "::102:304");
	check_v6("::0.0.0.0", ADDR_OK, "::");
}

static void test_ipv6_errors(void **state)
{
	(void)state;
	check_v6("", ADDR_ERR_SYNTAX, NULL);
	check_v6(":", ADDR_ERR_SYNTAX, NULL);
	check_v6(":::", ADDR_ERR_SYNTAX, NULL);
	check_v6("::::", ADDR_ERR_SYNTAX, NULL);
	check_v6(":1", ADDR_ERR_SYNTAX, NULL);
	check_v6("1:", ADDR_ERR_SYNTAX, NULL);
	check_v6(":1::", ADDR_ERR_SYNTAX, NULL);
	check_v6("1:::2", ADDR_ERR_SYNTAX, NULL);
	check_v6("1::2::3", ADDR_ERR_SYNTAX, NULL);
	check_v6("::1::", ADDR_ERR_SYNTAX, NULL);
	check_v6("1:2:3:4:5:6:7:8:9", ADDR_ERR_SYNTAX, NULL);
	check_v6("1:2:3:4:5:6:7:8::", ADDR_ERR_SYNTAX, NULL);
	check_v6("::1:2:3:4:5:6:7:8", ADDR_ERR_SYNTAX, NULL);
	check_v6("1:2:3:4:5:6:7", ADDR_ERR_SYNTAX, NULL);
	check_v6("12345::1", ADDR_ERR_SYNTAX, NULL);
	check_v6("::00001", ADDR_ERR_SYNTAX, NULL);
	check_v6("g::1", ADDR_ERR_SYNTAX, NULL);
	check_v6("[::1]", ADDR_ERR_SYNTAX, NULL);
	check_v6("::1 ", ADDR_ERR_SYNTAX, NULL);
	check_v6("1.2.3.4", ADDR_ERR_SYNTAX, NULL);
	check_v6("::1.2.3", ADDR_ERR_SYNTAX, NULL);
	check_v6("::1.2.3.4.5", ADDR_ERR_SYNTAX, NULL);
	check_v6("::01.2.3.4", ADDR_ERR_SYNTAX, NULL);
	check_v6("::256.1.1.1", ADDR_ERR_SYNTAX, NULL);
	check_v6("::0x7f.0.0.1", ADDR_ERR_SYNTAX, NULL);
	check_v6("::127.1", ADDR_ERR_SYNTAX, NULL);
	check_v6("::1.2.3.4:1", ADDR_ERR_SYNTAX, NULL);
	check_v6("1:2:3:4:5:6:7:1.2.3.4", ADDR_ERR_SYNTAX, NULL);
	check_v6("::ffff:1.2.3.4.", ADDR_ERR_SYNTAX, NULL);
	/* zones */
	check_v6("fe80::1%eth0", ADDR_ERR_ZONE, NULL);
	check_v6("fe80::1%25eth0", ADDR_ERR_ZONE, NULL);
	check_v6("::1%", ADDR_ERR_ZONE, NULL);
	/* NUL byte inside the length */
	struct pc_addr a;
	assert_int_equal(addr_parse_ipv6("::1\0", 4, &a), ADDR_ERR_SYNTAX);
	assert_int_equal(addr_parse_ipv6("::\0:1", 5, &a), ADDR_ERR_SYNTAX);
}

static void test_format_edges(void **state)
{
	(void)state;
	struct pc_addr a;
	char buf[ADDR_STRLEN];
	char small[8];

	assert_int_equal(addr_parse_ipv6("1111:2222:3333:4444:5555:6666:7777:8888", 39, &a),
	                 ADDR_OK);
	assert_int_equal(addr_format(&a, buf, sizeof(buf)), 39);
	/* too small: nothing written but an empty string, returns 0 */
	memset(small, 'x', sizeof(small));
	assert_int_equal(addr_format(&a, small, sizeof(small)), 0);
	assert_string_equal(small, "");
	assert_int_equal(addr_format(&a, small, 0), 0);
	/* the longest text form fits ADDR_STRLEN */
	assert_int_equal(addr_parse_ipv6("::ffff:255.255.255.255", 22, &a), ADDR_OK);
	assert_int_equal(addr_format(&a, buf, sizeof(buf)), 22);
	/* exact fit needs room for the NUL */
	assert_int_equal(addr_parse_ipv4("1.2.3.4", 7, &a), ADDR_OK);
	assert_int_equal(addr_format(&a, small, 8), 7);
	assert_int_equal(addr_format(&a, small, 7), 0);
	/* unknown family */
	memset(&a, 0, sizeof(a));
	assert_int_equal(addr_format(&a, buf, sizeof(buf)), 0);
}

static void test_equal(void **state)
{
	(void)state;
	struct pc_addr a, b;
	assert_int_equal(addr_parse_ipv4("10.0.0.1", 8, &a), ADDR_OK);
	assert_int_equal(addr_parse_ipv4("012.0.0.1", 9, &b), ADDR_OK);
	assert_true(addr_equal(&a, &b));
	assert_int_equal(addr_parse_ipv6("::ffff:10.0.0.1", 15, &b), ADDR_OK);
	assert_false(addr_equal(&a, &b)); /* families differ */
	assert_int_equal(addr_parse_ipv4("10.0.0.2", 8, &b), ADDR_OK);
	assert_false(addr_equal(&a, &b));
}

static void check_embed(const char *in, const char *want)
{
	struct pc_addr a, v4;
	char buf[ADDR_STRLEN];
	assert_int_equal(addr_parse_ipv6(in, strlen(in), &a), ADDR_OK);
	bool got = addr_embedded_v4(&a, &v4);
	if (want == NULL) {
		if (got)
			fail_msg("addr_embedded_v4(%s) reported an address", in);
		return;
	}
	if (!got)
		fail_msg("addr_embedded_v4(%s) reported nothing, want %s", in, want);
	assert_int_equal(v4.family, ADDR_V4);
	addr_format(&v4, buf, sizeof(buf));
	if (strcmp(buf, want) != 0)
		fail_msg("addr_embedded_v4(%s) = %s, want %s", in, buf, want);
}

static void test_embedded(void **state)
{
	(void)state;
	check_embed("::ffff:169.254.169.254", "169.254.169.254");   /* mapped */
	check_embed("::ffff:0:127.0.0.1", "127.0.0.1");             /* translated */
	check_embed("::10.1.2.3", "10.1.2.3");                      /* compat */
	check_embed("::2", "0.0.0.2");                              /* compat, tiny */
	check_embed("::1:0", "0.1.0.0");                            /* compat */
	check_embed("64:ff9b::a9fe:a9fe", "169.254.169.254");       /* NAT64 /96 */
	check_embed("64:ff9b:1:a9fe:a9:fe00::", "169.254.169.254"); /* NAT64 local-use /48 */
	check_embed("64:ff9b:1:7f00:ff00:100::", "127.0.0.1");      /* u-octet ignored */
	check_embed("2002:a9fe:a9fe::", "169.254.169.254");         /* 6to4 */
	check_embed("2002:7f00:1:ffff:ffff:ffff:ffff:ffff", "127.0.0.1");
	check_embed("2001:0:cb00:7101::5601:5601", "169.254.169.254"); /* Teredo client */
	check_embed("::", NULL);
	check_embed("::1", NULL);
	check_embed("2001:db8::1", NULL);
	check_embed("2001:1::1", NULL); /* not Teredo: 2001:0::/32 only */
	check_embed("2003::a9fe:a9fe", NULL);
	check_embed("64:ff9b:0:0:1::a9fe:a9fe", NULL); /* outside the /96 */
	check_embed("64:ff9b:2::a9fe:a9fe", NULL);
	/* ... which is why the rest of 64:ff9b::/32 is an unknown layout (policy: blocked) */
	assert_true(addr_nat64_unknown_layout(&(struct pc_addr){0}) == false);
	const char *unknown[] = {"64:ff9b:0:0:1::a9fe:a9fe", "64:ff9b:2::a9fe:a9fe",
	                         "64:ff9b:1:abcd:a9:fea9:fe00:0", "64:ff9b:1::"};
	const char *known[] = {"64:ff9b::a9fe:a9fe", "64:ff9b::", "64:ff9a::1", "::ffff:10.0.0.1"};
	for (size_t i = 0; i < 4; i++) {
		struct pc_addr a;
		assert_int_equal(addr_parse_ipv6(unknown[i], strlen(unknown[i]), &a), ADDR_OK);
		assert_true(addr_nat64_unknown_layout(&a));
		assert_int_equal(addr_parse_ipv6(known[i], strlen(known[i]), &a), ADDR_OK);
		assert_false(addr_nat64_unknown_layout(&a));
	}
	check_embed("::fffe:a9fe:a9fe", NULL);
	check_embed("::ffff:1:a9fe:a9fe", NULL);
	check_embed("1::ffff:a9fe:a9fe", NULL);
	check_embed("fe80::a9fe:a9fe", NULL);

	/* IPv4 input has nothing embedded */
	struct pc_addr a, v4[ADDR_EMBEDDED_MAX];
	assert_int_equal(addr_parse_ipv4("1.2.3.4", 7, &a), ADDR_OK);
	assert_false(addr_embedded_v4(&a, &v4[0]));
	assert_int_equal(addr_embedded_v4_all(&a, v4, ADDR_EMBEDDED_MAX), 0);
}

static void test_embedded_all(void **state)
{
	(void)state;
	struct pc_addr a, v4[ADDR_EMBEDDED_MAX];
	char buf[ADDR_STRLEN];

	/* Teredo: client first, then the server */
	assert_int_equal(addr_parse_ipv6("2001:0:a00:1::39cc:9bf5", 23, &a), ADDR_OK);
	assert_int_equal(addr_embedded_v4_all(&a, v4, ADDR_EMBEDDED_MAX), 2);
	addr_format(&v4[0], buf, sizeof(buf));
	assert_string_equal(buf, "198.51.100.10");
	addr_format(&v4[1], buf, sizeof(buf));
	assert_string_equal(buf, "10.0.0.1");
	/* n smaller than the count: stores n, still returns the count */
	memset(v4, 0, sizeof(v4));
	assert_int_equal(addr_embedded_v4_all(&a, v4, 1), 2);
	assert_int_equal(v4[1].family, 0);
	assert_int_equal(addr_embedded_v4_all(&a, v4, 0), 2);
	/* every other form: exactly one */
	assert_int_equal(addr_parse_ipv6("::ffff:1.2.3.4", 14, &a), ADDR_OK);
	assert_int_equal(addr_embedded_v4_all(&a, v4, ADDR_EMBEDDED_MAX), 1);
}

static struct pc_addr grouped(const char *text, unsigned prefix)
{
	struct pc_addr a, g;
	size_t n = strlen(text);
	if (strchr(text, ':') != NULL)
		assert_int_equal(addr_parse_ipv6(text, n, &a), ADDR_OK);
	else
		assert_int_equal(addr_parse_ipv4(text, n, &a), ADDR_OK);
	addr_source_group(&a, prefix, &g);
	return g;
}

static void expect_group(const char *text, unsigned prefix, const char *want)
{
	struct pc_addr g = grouped(text, prefix);
	char buf[ADDR_STRLEN];
	addr_format(&g, buf, sizeof buf);
	assert_string_equal(buf, want);
}

static void test_source_group(void **state)
{
	(void)state;
	expect_group("10.1.2.3", 64, "10.1.2.3");                /* IPv4: the address */
	expect_group("::ffff:10.1.2.3", 64, "10.1.2.3");         /* mapped: the IPv4 source */
	expect_group("2001:db8:1:2:a:b:c:d", 64, "2001:db8:1:2::");
	expect_group("2001:db8:1:2:ffff::1", 64, "2001:db8:1:2::");
	expect_group("2001:db8:1:2:a:b:c:d", 128, "2001:db8:1:2:a:b:c:d");
	expect_group("2001:db8:1:ff:a:b:c:d", 56, "2001:db8:1::");
	expect_group("2001:db8:1:ff:a:b:c:d", 60, "2001:db8:1:f0::");
	expect_group("2001:db8:1:ff:a:b:c:d", 63, "2001:db8:1:fe::");
	expect_group("2001:db8::1", 300, "2001:db8::1");         /* clamped to 128 */
	expect_group("2001:db8::1", 0, "::");
	/* groups compare whole: the same /64 from two addresses is one group */
	struct pc_addr a = grouped("2001:db8::1", 64), b = grouped("2001:db8::ffff:2", 64);
	assert_true(memcmp(&a, &b, sizeof a) == 0);
	a = grouped("::ffff:10.0.0.1", 64);
	b = grouped("10.0.0.1", 64);
	assert_true(memcmp(&a, &b, sizeof a) == 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_ipv4_dotted),       cmocka_unit_test(test_ipv4_numeric_forms),
	    cmocka_unit_test(test_ipv4_overflow),     cmocka_unit_test(test_ipv4_syntax),
	    cmocka_unit_test(test_ipv4_strict),       cmocka_unit_test(test_looks_ipv4),
	    cmocka_unit_test(test_ipv6_parse_format), cmocka_unit_test(test_ipv6_errors),
	    cmocka_unit_test(test_format_edges),      cmocka_unit_test(test_equal),
	    cmocka_unit_test(test_embedded),          cmocka_unit_test(test_embedded_all),
	    cmocka_unit_test(test_source_group),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
