/* Unit tests for policy/host.c: canonical hosts, authority parsing, allowlist patterns. */
#include "host.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

static void canon_n(const char *in, size_t len, int want_rc, int want_kind, const char *want)
{
	struct pc_host h;
	memset(&h, 0x5a, sizeof(h));
	int rc = host_canon(in, len, &h);
	if (rc != want_rc)
		fail_msg("host_canon(\"%.*s\") = %s, want %s", (int)len, in, host_status_str(rc),
		         host_status_str(want_rc));
	if (want == NULL)
		return;
	if ((int)h.kind != want_kind || strcmp(h.name, want) != 0 || h.len != strlen(want))
		fail_msg("host_canon(\"%s\") -> kind %d \"%s\", want kind %d \"%s\"", in, h.kind,
		         h.name, want_kind, want);
}

#define CANON(in, kind, want) canon_n(in, strlen(in), HOST_OK, kind, want)
#define CANON_ERR(in, err)    canon_n(in, strlen(in), err, 0, NULL)

static void test_canon_names(void **state)
{
	(void)state;
	CANON("example.com", HOST_NAME, "example.com");
	CANON("Example.COM", HOST_NAME, "example.com");
	CANON("example.com.", HOST_NAME, "example.com");
	CANON("localhost", HOST_NAME, "localhost");
	CANON("a-b.c_d.example", HOST_NAME, "a-b.c_d.example");
	CANON("_acme-challenge.example", HOST_NAME, "_acme-challenge.example");
	CANON("123.example", HOST_NAME, "123.example");
	CANON("1.2.3.4.example", HOST_NAME, "1.2.3.4.example");
	CANON("0x.example", HOST_NAME, "0x.example");
	CANON("a.0x1g", HOST_NAME, "a.0x1g"); /* last label is not a number */
	CANON("1e100.net", HOST_NAME, "1e100.net");
	CANON("ab--cd.example", HOST_NAME, "ab--cd.example");

	CANON_ERR("", HOST_ERR_EMPTY);
	CANON_ERR(".", HOST_ERR_EMPTY);
	CANON_ERR("example.com..", HOST_ERR_LABEL);
	CANON_ERR("..", HOST_ERR_LABEL);
	CANON_ERR(".example.com", HOST_ERR_LABEL);
	CANON_ERR("a..b", HOST_ERR_LABEL);
	CANON_ERR("-a.example", HOST_ERR_LABEL);
	CANON_ERR("a-.example", HOST_ERR_LABEL);
	CANON_ERR("a.-", HOST_ERR_LABEL);
	CANON_ERR("exa mple.com", HOST_ERR_CHAR);
	CANON_ERR(" example.com", HOST_ERR_CHAR);
	CANON_ERR("example.com ", HOST_ERR_CHAR);
	CANON_ERR("example.com\t", HOST_ERR_CHAR);
	CANON_ERR("example.com\r\n", HOST_ERR_CHAR);
	CANON_ERR("a@example.com", HOST_ERR_CHAR);
	CANON_ERR("example.com\\@evil", HOST_ERR_CHAR);
	CANON_ERR("evil\\example.com", HOST_ERR_CHAR);
	CANON_ERR("example.com/x", HOST_ERR_CHAR);
	CANON_ERR("example.com?x", HOST_ERR_CHAR);
	CANON_ERR("example.com#x", HOST_ERR_CHAR);
	CANON_ERR("exam%70le.com", HOST_ERR_CHAR);
	CANON_ERR("%31%32%37.0.0.1", HOST_ERR_CHAR);
	CANON_ERR("*.example.com", HOST_ERR_CHAR);
	CANON_ERR("ex\"ample.com", HOST_ERR_CHAR);
	CANON_ERR("ex,ample.com", HOST_ERR_CHAR);
	CANON_ERR("b\303\274cher.example", HOST_ERR_CHAR);
	CANON_ERR("\177a.example", HOST_ERR_CHAR);
	CANON_ERR("example.com\xe3\x80\x82", HOST_ERR_CHAR); /* ideographic full stop */
	/* NUL inside the length */
	canon_n("example.com\0.evil", 17, HOST_ERR_CHAR, 0, NULL);
	canon_n("example.com\0", 12, HOST_ERR_CHAR, 0, NULL);
	/* only len bytes are read */
	canon_n("example.comXYZ", 11, HOST_OK, HOST_NAME, "example.com");
}

static void test_canon_lengths(void **state)
{
	(void)state;
	char buf[400];
	/* label of 63 ok, 64 refused */
	memset(buf, 'a', 63);
	memcpy(buf + 63, ".example", 9);
	canon_n(buf, strlen(buf), HOST_OK, HOST_NAME, buf);
	memset(buf, 'a', 64);
	memcpy(buf + 64, ".example", 9);
	canon_n(buf, strlen(buf), HOST_ERR_LABEL, 0, NULL);
	/* 253 bytes ok (with and without trailing dot), 254 refused */
	for (size_t i = 0; i < 253; i++)
		buf[i] = (i % 2) ? '.' : 'a';
	buf[253] = '\0';
	canon_n(buf, 253, HOST_OK, HOST_NAME, buf);
	buf[253] = '.';
	buf[254] = '\0';
	canon_n(buf, 254, HOST_OK, HOST_NAME, NULL);
	buf[253] = 'a';
	canon_n(buf, 254, HOST_ERR_TOO_LONG, 0, NULL);
	memset(buf, 'a', sizeof(buf));
	canon_n(buf, sizeof(buf), HOST_ERR_TOO_LONG, 0, NULL);
	/* a huge numeric host is refused, not parsed */
	memset(buf, '0', sizeof(buf));
	buf[sizeof(buf) - 1] = '1';
	canon_n(buf, sizeof(buf), HOST_ERR_TOO_LONG, 0, NULL);
}

static void test_canon_ipv4(void **state)
{
	(void)state;
	CANON("1.2.3.4", HOST_IPV4, "1.2.3.4");
	CANON("1.2.3.4.", HOST_IPV4, "1.2.3.4");
	CANON("2852039166", HOST_IPV4, "169.254.169.254");
	CANON("0251.0376.0251.0376", HOST_IPV4, "169.254.169.254");
	CANON("0xA9FEA9FE", HOST_IPV4, "169.254.169.254");
	CANON("0XA9.0XFE.0XA9.0XFE", HOST_IPV4, "169.254.169.254");
	CANON("169.254.43518", HOST_IPV4, "169.254.169.254");
	CANON("169.16689662", HOST_IPV4, "169.254.169.254");
	CANON("127.1", HOST_IPV4, "127.0.0.1");
	CANON("0", HOST_IPV4, "0.0.0.0");
	CANON("0x7f.1", HOST_IPV4, "127.0.0.1");
	CANON("017700000001", HOST_IPV4, "127.0.0.1");
	/* ends in a number but is not one: refused, never resolved */
	CANON_ERR("example.123", HOST_ERR_BAD_IP);
	CANON_ERR("example.0x", HOST_ERR_BAD_IP);
	CANON_ERR("example.0x1F.", HOST_ERR_BAD_IP);
	CANON_ERR("a.b.c.d.1", HOST_ERR_BAD_IP);
	CANON_ERR("1.2.3.4.5", HOST_ERR_BAD_IP);
	CANON_ERR("256.1.1.1", HOST_ERR_BAD_IP);
	CANON_ERR("4294967296", HOST_ERR_BAD_IP);
	CANON_ERR("425.510.425.510", HOST_ERR_BAD_IP);
	CANON_ERR("08", HOST_ERR_BAD_IP);
	CANON_ERR("1..1", HOST_ERR_BAD_IP);
	CANON_ERR("1.2.3.4..", HOST_ERR_LABEL);

	struct pc_host h;
	assert_int_equal(host_canon("0x7f.1", 6, &h), HOST_OK);
	assert_int_equal(h.addr.family, ADDR_V4);
	assert_int_equal(h.addr.b[0], 127);
	assert_int_equal(h.addr.b[3], 1);
}

static void test_canon_ipv6(void **state)
{
	(void)state;
	CANON("::1", HOST_IPV6, "::1");
	CANON("[::1]", HOST_IPV6, "::1");
	CANON("[0:0:0:0:0:0:0:1]", HOST_IPV6, "::1");
	CANON("[2001:DB8::1]", HOST_IPV6, "2001:db8::1");
	CANON("[::ffff:127.0.0.1]", HOST_IPV6, "::ffff:127.0.0.1");
	CANON("::ffff:7f00:1", HOST_IPV6, "::ffff:127.0.0.1");
	CANON("[64:ff9b::169.254.169.254]", HOST_IPV6, "64:ff9b::a9fe:a9fe");

	CANON_ERR("[::1", HOST_ERR_BRACKET);
	CANON_ERR("::1]", HOST_ERR_BRACKET);
	CANON_ERR("[", HOST_ERR_BRACKET);
	CANON_ERR("]", HOST_ERR_BRACKET);
	CANON_ERR("[[::1]]", HOST_ERR_BRACKET);
	CANON_ERR("[::1]]", HOST_ERR_BRACKET);
	CANON_ERR("a[::1]", HOST_ERR_BRACKET);
	CANON_ERR("[::1].", HOST_ERR_BRACKET);
	CANON_ERR("[]", HOST_ERR_BAD_IP);
	CANON_ERR("[1.2.3.4]", HOST_ERR_BAD_IP);
	CANON_ERR("[v1.x]", HOST_ERR_BAD_IP);
	CANON_ERR(":::", HOST_ERR_BAD_IP);
	CANON_ERR("1::2::3", HOST_ERR_BAD_IP);
	CANON_ERR("1:2:3:4:5:6:7:8:9", HOST_ERR_BAD_IP);
	CANON_ERR("[::1]:80", HOST_ERR_BRACKET);
	CANON_ERR("example.com:80", HOST_ERR_BAD_IP);
	CANON_ERR("fe80::1%eth0", HOST_ERR_ZONE);
	CANON_ERR("[fe80::1%eth0]", HOST_ERR_ZONE);
	CANON_ERR("[fe80::1%25eth0]", HOST_ERR_ZONE);
	CANON_ERR("[fe80::1%25]", HOST_ERR_ZONE);
	CANON_ERR("[::1 ]", HOST_ERR_CHAR);
}

static void test_canon_punycode(void **state)
{
	(void)state;
	CANON("xn--bcher-kva.example", HOST_NAME, "xn--bcher-kva.example"); /* bücher */
	CANON("XN--BCHER-KVA.example", HOST_NAME, "xn--bcher-kva.example");
	CANON("xn--mnchen-3ya.de", HOST_NAME, "xn--mnchen-3ya.de");   /* münchen */
	CANON("xn--fiqs8s", HOST_NAME, "xn--fiqs8s");                 /* 中国 */
	CANON("xn--n3h.example", HOST_NAME, "xn--n3h.example");       /* ☃ */
	CANON("xn--80ak6aa92e.com", HOST_NAME, "xn--80ak6aa92e.com"); /* apple, Cyrillic */
	CANON("www.xn--i-7iq.ws", HOST_NAME, "www.xn--i-7iq.ws");
	/* RFC 3492 §7.1 (A) Arabic, lowercased */
	CANON("xn--egbpdaj6bu4bxfgehfvwxn", HOST_NAME, "xn--egbpdaj6bu4bxfgehfvwxn");

	CANON_ERR("xn--.example", HOST_ERR_LABEL);            /* nothing at all, ends in '-' */
	CANON_ERR("xn--abc-.example", HOST_ERR_LABEL);        /* ends in '-' */
	CANON_ERR("xn--a.example", HOST_ERR_PUNYCODE);        /* truncated delta */
	CANON_ERR("xn--zz.example", HOST_ERR_PUNYCODE);       /* truncated delta */
	CANON_ERR("xn--ab_c.example", HOST_ERR_PUNYCODE);     /* '_' is no base-36 digit */
	CANON_ERR("xn---abc.example", HOST_ERR_PUNYCODE);     /* empty basic part + delimiter */
	CANON_ERR("xn--a-rc4g.example", HOST_ERR_PUNYCODE);   /* "a" U+D800 surrogate */
	CANON_ERR("xn--zy0c.example", HOST_ERR_PUNYCODE);     /* U+DFFF */
	CANON_ERR("xn--en32g.example", HOST_ERR_PUNYCODE);    /* U+110000 */
	CANON_ERR("xn--a.example", HOST_ERR_PUNYCODE);        /* U+0080, a C1 control */
	CANON_ERR("xn--5a.example", HOST_ERR_PUNYCODE);       /* U+009F */
	CANON_ERR("xn--0n7c.example", HOST_ERR_PUNYCODE);     /* U+FFFE */
	CANON_ERR("xn--1n7c.example", HOST_ERR_PUNYCODE);     /* U+FFFF */
	CANON_ERR("xn--266c.example", HOST_ERR_PUNYCODE);     /* U+FDD0 */
	CANON("xn--6a.example", HOST_NAME, "xn--6a.example"); /* U+00A0: decodes fine */
	CANON_ERR("xn--dn32g.example", HOST_ERR_PUNYCODE);    /* U+10FFFF, a noncharacter */
	CANON("xn--bn32g.example", HOST_NAME, "xn--bn32g.example"); /* U+10FFFD */
	CANON("xn--0y0c.example", HOST_NAME, "xn--0y0c.example");   /* U+E000 */
	/* overflowing deltas */
	CANON_ERR("xn--99999999999999999999999999999999999999.example", HOST_ERR_PUNYCODE);
	CANON_ERR("xn--a-99999999999999999999999999999999999999999999999999999999",
	          HOST_ERR_PUNYCODE);
	CANON_ERR("xn--zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz",
	          HOST_ERR_PUNYCODE);
	/* a label merely containing "xn--" later is not an A-label */
	CANON("axn--b.example", HOST_NAME, "axn--b.example");
}

static void auth_n(const char *in, size_t len, uint16_t defport, int want_rc, const char *want,
                   uint16_t want_port)
{
	struct pc_host h;
	uint16_t port = 4242;
	memset(&h, 0, sizeof(h));
	int rc = host_parse_authority(in, len, defport, &h, &port);
	if (rc != want_rc)
		fail_msg("host_parse_authority(\"%.*s\", %u) = %s, want %s", (int)len, in, defport,
		         host_status_str(rc), host_status_str(want_rc));
	if (want_rc != HOST_OK) {
		assert_int_equal(port, 4242); /* outputs untouched on error */
		return;
	}
	if (strcmp(h.name, want) != 0 || port != want_port)
		fail_msg("host_parse_authority(\"%s\") -> %s port %u, want %s port %u", in, h.name,
		         port, want, want_port);
}

#define AUTH(in, defport, want, port) auth_n(in, strlen(in), defport, HOST_OK, want, port)
#define AUTH_ERR(in, defport, err)    auth_n(in, strlen(in), defport, err, NULL, 0)

static void test_authority(void **state)
{
	(void)state;
	AUTH("example.com:443", 0, "example.com", 443);
	AUTH("Example.COM.:8443", 0, "example.com", 8443);
	AUTH("example.com:1", 0, "example.com", 1);
	AUTH("example.com:65535", 0, "example.com", 65535);
	AUTH("example.com", 80, "example.com", 80);
	AUTH("127.1:80", 0, "127.0.0.1", 80);
	AUTH("2852039166:443", 0, "169.254.169.254", 443);
	AUTH("[::1]:443", 0, "::1", 443);
	AUTH("[::1]", 443, "::1", 443);
	AUTH("[::FFFF:169.254.169.254]:80", 0, "::ffff:169.254.169.254", 80);
	AUTH("1:2", 0, "0.0.0.1", 2); /* host "1" is the number 1 */

	/* ports */
	AUTH_ERR("example.com", 0, HOST_ERR_PORT);
	AUTH_ERR("[::1]", 0, HOST_ERR_PORT);
	AUTH_ERR("host:", 0, HOST_ERR_PORT);
	AUTH_ERR("host:", 443, HOST_ERR_PORT);
	AUTH_ERR("host:0", 0, HOST_ERR_PORT);
	AUTH_ERR("host:00", 0, HOST_ERR_PORT);
	AUTH_ERR("host:080", 0, HOST_ERR_PORT);
	AUTH_ERR("host:065535", 0, HOST_ERR_PORT);
	AUTH_ERR("host:65536", 0, HOST_ERR_PORT);
	AUTH_ERR("host:99999", 0, HOST_ERR_PORT);
	AUTH_ERR("host:100000", 0, HOST_ERR_PORT);
	AUTH_ERR("host:4294967377", 0, HOST_ERR_PORT); /* 2^32 + 81 */
	AUTH_ERR("host:+80", 0, HOST_ERR_PORT);
	AUTH_ERR("host:-80", 0, HOST_ERR_PORT);
	AUTH_ERR("host:0x50", 0, HOST_ERR_PORT);
	AUTH_ERR("host:8%30", 0, HOST_ERR_PORT);
	AUTH_ERR("[::1]:", 0, HOST_ERR_PORT);
	AUTH_ERR("[::1]:http", 0, HOST_ERR_PORT);

	/* brackets */
	AUTH_ERR("::1", 443, HOST_ERR_BRACKET);
	AUTH_ERR("::1:443", 0, HOST_ERR_BRACKET);
	AUTH_ERR("2001:db8::1:443", 0, HOST_ERR_BRACKET);
	AUTH_ERR("[::1", 0, HOST_ERR_BRACKET);
	AUTH_ERR("[::1:443", 0, HOST_ERR_BRACKET);
	AUTH_ERR("::1]:80", 0, HOST_ERR_BRACKET);
	AUTH_ERR("[::1]80", 0, HOST_ERR_BRACKET);
	AUTH_ERR("[::1]]:80", 0, HOST_ERR_BRACKET);
	AUTH_ERR("[[::1]]:80", 0, HOST_ERR_BRACKET);
	AUTH_ERR("a[::1]:80", 0, HOST_ERR_BRACKET);
	AUTH_ERR("[::1]:80]", 0, HOST_ERR_PORT);
	AUTH_ERR("[1.2.3.4]:80", 0, HOST_ERR_BAD_IP);
	AUTH_ERR("[]:80", 0, HOST_ERR_BAD_IP);
	AUTH_ERR("[fe80::1%25eth0]:443", 0, HOST_ERR_ZONE);
	AUTH_ERR("[fe80::1%eth0]:443", 0, HOST_ERR_ZONE);

	/* userinfo, escapes, junk */
	AUTH_ERR("a@b:80", 0, HOST_ERR_CHAR);
	AUTH_ERR("user:pass@example.com:443", 0, HOST_ERR_CHAR);
	AUTH_ERR("allowed.example@evil.example:443", 0, HOST_ERR_CHAR);
	AUTH_ERR("@example.com:443", 0, HOST_ERR_CHAR);
	AUTH_ERR("exam%70le.com:443", 0, HOST_ERR_CHAR);
	AUTH_ERR("allowed.example\\@evil.example:443", 0, HOST_ERR_CHAR);
	AUTH_ERR("evil.example\\allowed.example:443", 0, HOST_ERR_CHAR);
	AUTH_ERR("example.com :443", 0, HOST_ERR_CHAR);
	AUTH_ERR("example.com: 443", 0, HOST_ERR_CHAR);
	AUTH_ERR("example.com:443 ", 0, HOST_ERR_CHAR);
	AUTH_ERR("example.com/:443", 0, HOST_ERR_CHAR);
	AUTH_ERR("example.com:443/", 0, HOST_ERR_CHAR);
	AUTH_ERR("example.com#:443", 0, HOST_ERR_CHAR);
	AUTH_ERR("example.com?:443", 0, HOST_ERR_CHAR);
	AUTH_ERR(":443", 0, HOST_ERR_EMPTY);
	AUTH_ERR("", 443, HOST_ERR_EMPTY);
	AUTH_ERR("[]", 443, HOST_ERR_BAD_IP);
	AUTH_ERR("example.123:443", 0, HOST_ERR_BAD_IP);
	AUTH_ERR("example..com:443", 0, HOST_ERR_LABEL);
	auth_n("example.com\0:443", 16, 0, HOST_ERR_CHAR, NULL, 0);
	auth_n("example.com:443\0", 16, 0, HOST_ERR_CHAR, NULL, 0);
	auth_n("example.com:44\0003", 16, 0, HOST_ERR_CHAR, NULL, 0);
	/* only len bytes are read */
	auth_n("example.com:4431", 15, 0, HOST_OK, "example.com", 443);
}

static void pat_n(const char *in, int want_rc, bool want_wild, int want_kind, const char *want)
{
	struct pc_host p;
	bool wild = !want_wild;
	memset(&p, 0, sizeof(p));
	int rc = host_pattern_parse(in, strlen(in), &p, &wild);
	if (rc != want_rc)
		fail_msg("host_pattern_parse(\"%s\") = %s, want %s", in, host_status_str(rc),
		         host_status_str(want_rc));
	if (rc != HOST_OK) {
		assert_false(wild);
		return;
	}
	if (wild != want_wild || (int)p.kind != want_kind || strcmp(p.name, want) != 0)
		fail_msg("host_pattern_parse(\"%s\") -> wild %d kind %d %s", in, wild, p.kind,
		         p.name);
}

static void test_pattern_parse(void **state)
{
	(void)state;
	pat_n("example.com", HOST_OK, false, HOST_NAME, "example.com");
	pat_n("Example.COM.", HOST_OK, false, HOST_NAME, "example.com");
	pat_n("*.githubusercontent.com", HOST_OK, true, HOST_NAME, "githubusercontent.com");
	pat_n("*.Example.COM.", HOST_OK, true, HOST_NAME, "example.com");
	pat_n("*.co.uk", HOST_OK, true, HOST_NAME, "co.uk"); /* no public-suffix list */
	pat_n("*.xn--bcher-kva.example", HOST_OK, true, HOST_NAME, "xn--bcher-kva.example");
	pat_n("10.0.0.1", HOST_OK, false, HOST_IPV4, "10.0.0.1");
	pat_n("::1", HOST_OK, false, HOST_IPV6, "::1");
	pat_n("[2001:DB8::1]", HOST_OK, false, HOST_IPV6, "2001:db8::1");

	pat_n("", HOST_ERR_EMPTY, false, 0, NULL);
	pat_n("*", HOST_ERR_WILDCARD, false, 0, NULL);
	pat_n("*.", HOST_ERR_WILDCARD, false, 0, NULL);
	pat_n("*..", HOST_ERR_EMPTY, false, 0, NULL);
	pat_n("*.com", HOST_ERR_WILDCARD, false, 0, NULL);
	pat_n("*.com.", HOST_ERR_WILDCARD, false, 0, NULL);
	pat_n("*x.example.com", HOST_ERR_WILDCARD, false, 0, NULL);
	pat_n("x*.example.com", HOST_ERR_WILDCARD, false, 0, NULL);
	pat_n("a.*.example.com", HOST_ERR_WILDCARD, false, 0, NULL);
	pat_n("**.example.com", HOST_ERR_WILDCARD, false, 0, NULL);
	pat_n("*.*.example.com", HOST_ERR_WILDCARD, false, 0, NULL);
	pat_n("*.example.*", HOST_ERR_WILDCARD, false, 0, NULL);
	pat_n("example.com*", HOST_ERR_WILDCARD, false, 0, NULL);
	pat_n(".example.com", HOST_ERR_LABEL, false, 0, NULL);
	pat_n("*..example.com", HOST_ERR_LABEL, false, 0, NULL);
	pat_n("*.10.0.0.1", HOST_ERR_WILDCARD, false, 0, NULL);
	pat_n("*.[::1]", HOST_ERR_WILDCARD, false, 0, NULL);
	pat_n("*.example.123", HOST_ERR_BAD_IP, false, 0, NULL);
	pat_n("b\303\274cher.example", HOST_ERR_CHAR, false, 0, NULL);
	pat_n("*.b\303\274cher.example", HOST_ERR_CHAR, false, 0, NULL);
	pat_n("example.com:443", HOST_ERR_BAD_IP, false, 0, NULL);
	pat_n("user@example.com", HOST_ERR_CHAR, false, 0, NULL);
	pat_n("exa mple.com", HOST_ERR_CHAR, false, 0, NULL);
	/* IPv4 patterns are plain dotted quads: no inet_aton surprises in config */
	pat_n("010.0.0.1", HOST_ERR_BAD_IP, false, 0, NULL);
	pat_n("127.1", HOST_ERR_BAD_IP, false, 0, NULL);
	pat_n("2130706433", HOST_ERR_BAD_IP, false, 0, NULL);
	pat_n("10.0.0.1.", HOST_ERR_BAD_IP, false, 0, NULL);

	/* long names: the wildcard must leave room for a label in front */
	char buf[300];
	memcpy(buf, "*.", 2);
	for (size_t i = 0; i < 251; i++)
		buf[2 + i] = (i % 2) ? '.' : 'a';
	buf[253] = '\0';
	pat_n(buf, HOST_OK, true, HOST_NAME, buf + 2);
	buf[253] = 'a';
	buf[254] = '.';
	buf[255] = 'a';
	buf[256] = '\0';
	pat_n(buf, HOST_ERR_TOO_LONG, false, 0, NULL);
}

static bool match(const char *pat, const char *host)
{
	struct pc_host p, h;
	bool wild;
	assert_int_equal(host_pattern_parse(pat, strlen(pat), &p, &wild), HOST_OK);
	assert_int_equal(host_canon(host, strlen(host), &h), HOST_OK);
	return host_pattern_match(&p, wild, &h);
}

#define MATCH(p, h)   assert_true(match(p, h))
#define NOMATCH(p, h) assert_false(match(p, h))

static void test_pattern_match(void **state)
{
	(void)state;
	MATCH("example.com", "example.com");
	MATCH("example.com", "EXAMPLE.com.");
	NOMATCH("example.com", "www.example.com");
	NOMATCH("example.com", "example.co");
	NOMATCH("example.com", "example.com.evil.example");
	NOMATCH("example.com", "xexample.com");

	MATCH("*.allowed.example", "a.allowed.example");
	MATCH("*.allowed.example", "A.B.Allowed.Example.");
	NOMATCH("*.allowed.example", "allowed.example"); /* not the apex */
	NOMATCH("*.allowed.example", "allowed.example.");
	NOMATCH("*.allowed.example", "evilallowed.example");
	NOMATCH("*.allowed.example", "allowed.example.evil.example");
	NOMATCH("*.allowed.example", "a.allowed.example.evil.example");
	NOMATCH("*.allowed.example", "a.allowed.examplex");
	NOMATCH("*.allowed.example", "a.xallowed.example");
	NOMATCH("*.allowed.example", "example");
	NOMATCH("*.allowed.example", "a-allowed.example");
	NOMATCH("*.allowed.example", "a_allowed.example");

	/* IP literals: exact address, any notation of the host */
	MATCH("127.0.0.1", "127.1");
	MATCH("127.0.0.1", "0x7f000001");
	NOMATCH("127.0.0.1", "127.0.0.2");
	NOMATCH("127.0.0.1", "::ffff:127.0.0.1"); /* an allow rule is never widened */
	MATCH("::1", "[0:0::1]");
	MATCH("[2001:db8::1]", "2001:DB8:0::1");
	NOMATCH("::1", "::2");
	/* names never match addresses and vice versa */
	NOMATCH("*.in-addr.arpa", "1.0.0.127");
	NOMATCH("1.0.0.127.in-addr.arpa", "127.0.0.1");
	NOMATCH("*.0.0.127.example", "1.0.0.127");

	/* kinds and lengths inconsistent with canonical form never match */
	struct pc_host p, h;
	memset(&p, 0, sizeof(p));
	memset(&h, 0, sizeof(h));
	p.kind = HOST_NAME;
	h.kind = HOST_NAME;
	assert_false(host_pattern_match(&p, true, &h)); /* empty wildcard suffix */
	p.len = 1000;
	assert_false(host_pattern_match(&p, false, &h));
	p.kind = (enum host_kind)0;
	p.len = 0;
	h.kind = (enum host_kind)0;
	assert_false(host_pattern_match(&p, false, &h));
}

static void test_status_str(void **state)
{
	(void)state;
	for (int s = HOST_ERR_WILDCARD; s <= HOST_OK; s++) {
		const char *t = host_status_str(s);
		assert_non_null(t);
		assert_string_not_equal(t, "unknown");
		for (int u = s + 1; u <= HOST_OK; u++)
			assert_string_not_equal(t, host_status_str(u));
	}
	assert_string_equal(host_status_str(HOST_OK), "ok");
	assert_string_equal(host_status_str(-1000), "unknown");
	assert_string_equal(host_status_str(1), "unknown");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_canon_names),    cmocka_unit_test(test_canon_lengths),
	    cmocka_unit_test(test_canon_ipv4),     cmocka_unit_test(test_canon_ipv6),
	    cmocka_unit_test(test_canon_punycode), cmocka_unit_test(test_authority),
	    cmocka_unit_test(test_pattern_parse),  cmocka_unit_test(test_pattern_match),
	    cmocka_unit_test(test_status_str),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
