/* Unit tests for the PROXY protocol parser (proxy/proto/proxy_proto.c). */
#include "proxy_proto.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#define EITHER (PP_ACCEPT_V1 | PP_ACCEPT_V2)

static const uint8_t sig[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};

/*
 * Every prefix of buf[0..len) answers NEED_MORE up to some point and the
 * whole input's answer from there on; returns that answer.  The header's own
 * bytes never decide before they are all there.
 */
static int parse_all_prefixes(const uint8_t *buf, size_t len, unsigned accept)
{
	struct pp_header h;
	int final = proxy_proto_parse(buf, len, accept, &h);
	bool decided = false;
	for (size_t n = 0; n <= len; n++) {
		/* An exact-size copy: ASan sees any read past the prefix. */
		uint8_t *cp = malloc(n ? n : 1);
		assert_non_null(cp);
		memcpy(cp, buf, n);
		int r = proxy_proto_parse(cp, n, accept, &h);
		free(cp);
		if (r == PP_NEED_MORE) {
			if (decided)
				fail_msg("prefix %zu: need_more after an answer", n);
			continue;
		}
		decided = true;
		if (r != final)
			fail_msg("prefix %zu: %s, whole input: %s", n, proxy_proto_status_str(r),
			         proxy_proto_status_str(final));
		/* A header is complete only with all its bytes. */
		if (r > 0 && (size_t)r != n && final > 0)
			assert_true((size_t)r < n);
	}
	return final;
}

static int v1(const char *s, unsigned accept, struct pp_header *h)
{
	return proxy_proto_parse((const uint8_t *)s, strlen(s), accept, h);
}

/* ---- v1 ---- */

static void test_v1_tcp4(void **state)
{
	(void)state;
	const char *s =
	    "PROXY TCP4 192.0.2.10 203.0.113.5 56324 3128\r\nCONNECT x:443 HTTP/1.1\r\n";
	struct pp_header h;
	int n = v1(s, PP_ACCEPT_V1, &h);
	assert_int_equal(n, (int)(strstr(s, "CONNECT") - s));
	assert_int_equal(h.version, 1);
	assert_false(h.local);
	assert_int_equal(h.src.family, ADDR_V4);
	assert_memory_equal(h.src.b, ((uint8_t[]){192, 0, 2, 10}), 4);
	assert_memory_equal(h.dst.b, ((uint8_t[]){203, 0, 113, 5}), 4);
	assert_int_equal(h.src_port, 56324);
	assert_int_equal(h.dst_port, 3128);
	assert_string_equal(h.vpce, "");
	assert_int_equal(parse_all_prefixes((const uint8_t *)s, strlen(s), EITHER), n);
}

static void test_v1_tcp6(void **state)
{
	(void)state;
	const char *s = "PROXY TCP6 2001:db8::1 2001:db8:0:0:0:0:0:2 0 65535\r\n";
	struct pp_header h;
	assert_int_equal(v1(s, EITHER, &h), (int)strlen(s));
	assert_int_equal(h.src.family, ADDR_V6);
	assert_int_equal(h.src.b[0], 0x20);
	assert_int_equal(h.src.b[15], 1);
	assert_int_equal(h.dst.b[15], 2);
	assert_int_equal(h.src_port, 0);
	assert_int_equal(h.dst_port, 65535);
	assert_int_equal(parse_all_prefixes((const uint8_t *)s, strlen(s), EITHER), (int)strlen(s));
}

static void test_v1_longest(void **state)
{
	(void)state;
	/* §2.1's worst case: 104 bytes. */
	const char *s = "PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
	                "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n";
	struct pp_header h;
	assert_int_equal(strlen(s), 104);
	assert_int_equal(v1(s, PP_ACCEPT_V1, &h), 104);
}

static void test_v1_unknown(void **state)
{
	(void)state;
	struct pp_header h;
	assert_int_equal(v1("PROXY UNKNOWN\r\nGET", PP_ACCEPT_V1, &h), 15);
	assert_true(h.local);
	assert_int_equal(h.version, 1);
	assert_int_equal(v1("PROXY UNKNOWN ffff::1 ::2 1 2\r\n", PP_ACCEPT_V1, &h), 31);
	assert_true(h.local);
	/* 107 bytes in all is the most; one more is too long. */
	char line[200];
	memset(line, 'x', sizeof(line));
	memcpy(line, "PROXY UNKNOWN ", 14);
	memcpy(line + 105, "\r\n", 2);
	assert_int_equal(parse_all_prefixes((const uint8_t *)line, 107, PP_ACCEPT_V1), 107);
	memcpy(line + 105, "xx\r\n", 4);
	assert_int_equal(parse_all_prefixes((const uint8_t *)line, 109, PP_ACCEPT_V1),
	                 PP_ERR_V1_TOO_LONG);
	/* A CR as the 107th byte: too long whatever comes next. */
	line[106] = '\r';
	line[107] = 'y';
	assert_int_equal(parse_all_prefixes((const uint8_t *)line, 108, PP_ACCEPT_V1),
	                 PP_ERR_V1_TOO_LONG);
	/* Not UNKNOWNX, not control bytes in the ignored part. */
	assert_int_equal(v1("PROXY UNKNOWNX\r\n", PP_ACCEPT_V1, &h), PP_ERR_V1_SYNTAX);
	assert_int_equal(v1("PROXY UNKNOWN \x01\r\n", PP_ACCEPT_V1, &h), PP_ERR_V1_SYNTAX);
}

struct bad {
	const char *in;
	size_t len;
	int want;
};
/* A case with its length: some hold a NUL. */
#define C(s, w)                                                                                    \
	{                                                                                          \
		s, sizeof(s) - 1, w                                                                \
	}

static void test_v1_bad(void **state)
{
	(void)state;
	static const struct bad cases[] = {
	    /* syntax */
	    C("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n", PP_ERR_V1_SYNTAX),    /* bare LF */
	    C("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rX\n", PP_ERR_V1_SYNTAX), /* CR not before LF */
	    C("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\r\n", PP_ERR_V1_SYNTAX),
	    C("PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n", PP_ERR_V1_SYNTAX),  /* two spaces */
	    C("PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n", PP_ERR_V1_SYNTAX),  /* trailing space */
	    C("PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n", PP_ERR_V1_SYNTAX),     /* a field short */
	    C("PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n", PP_ERR_V1_SYNTAX), /* a field over */
	    C("PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n", PP_ERR_V1_SYNTAX),
	    C("PROXY tcp4 1.2.3.4 5.6.7.8 1 2\r\n", PP_ERR_V1_SYNTAX),
	    C("PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n", PP_ERR_V1_SYNTAX),
	    C("PROXY TCP4\t1.2.3.4 5.6.7.8 1 2\r\n", PP_ERR_V1_SYNTAX),
	    C("PROXY TCP4 1.2.3.4\x00 5.6.7.8 1 2\r\n", PP_ERR_V1_SYNTAX),
	    C("PROXY \r\n", PP_ERR_V1_SYNTAX),
	    C("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\xc3\xa9\r\n", PP_ERR_V1_SYNTAX),
	    /* addresses: strict literals, family matches */
	    C("PROXY TCP4 010.0.0.1 5.6.7.8 1 2\r\n", PP_ERR_V1_ADDRESS), /* octal to inet_aton */
	    C("PROXY TCP4 0x7f.0.0.1 5.6.7.8 1 2\r\n", PP_ERR_V1_ADDRESS),
	    C("PROXY TCP4 127.1 5.6.7.8 1 2\r\n", PP_ERR_V1_ADDRESS),
	    C("PROXY TCP4 2130706433 5.6.7.8 1 2\r\n", PP_ERR_V1_ADDRESS),
	    C("PROXY TCP4 1.2.3.256 5.6.7.8 1 2\r\n", PP_ERR_V1_ADDRESS),
	    C("PROXY TCP4 1.2.3.4. 5.6.7.8 1 2\r\n", PP_ERR_V1_ADDRESS),
	    C("PROXY TCP4 1.2.3.4 5.6.7 1 2\r\n", PP_ERR_V1_ADDRESS),
	    C("PROXY TCP4 ::1 5.6.7.8 1 2\r\n", PP_ERR_V1_ADDRESS), /* v6 in TCP4 */
	    C("PROXY TCP4 ::ffff:1.2.3.4 5.6.7.8 1 2\r\n", PP_ERR_V1_ADDRESS),
	    C("PROXY TCP6 1.2.3.4 ::2 1 2\r\n", PP_ERR_V1_ADDRESS), /* v4 in TCP6 */
	    C("PROXY TCP6 ::1 5.6.7.8 1 2\r\n", PP_ERR_V1_ADDRESS),
	    C("PROXY TCP6 fe80::1%eth0 ::2 1 2\r\n", PP_ERR_V1_ADDRESS), /* zone id */
	    C("PROXY TCP6 [::1] ::2 1 2\r\n", PP_ERR_V1_ADDRESS),
	    C("PROXY TCP6 1::2::3 ::2 1 2\r\n", PP_ERR_V1_ADDRESS),
	    C("PROXY TCP4 localhost 5.6.7.8 1 2\r\n", PP_ERR_V1_ADDRESS),
	    /* ports */
	    C("PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n", PP_ERR_V1_PORT),
	    C("PROXY TCP4 1.2.3.4 5.6.7.8 1 00\r\n", PP_ERR_V1_PORT),
	    C("PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n", PP_ERR_V1_PORT),
	    C("PROXY TCP4 1.2.3.4 5.6.7.8 1 99999\r\n", PP_ERR_V1_PORT),
	    C("PROXY TCP4 1.2.3.4 5.6.7.8 100000 2\r\n", PP_ERR_V1_PORT),
	    C("PROXY TCP4 1.2.3.4 5.6.7.8 +1 2\r\n", PP_ERR_V1_PORT),
	    C("PROXY TCP4 1.2.3.4 5.6.7.8 -1 2\r\n", PP_ERR_V1_PORT),
	    C("PROXY TCP4 1.2.3.4 5.6.7.8 0x10 2\r\n", PP_ERR_V1_PORT),
	    C("PROXY TCP4 1.2.3.4 5.6.7.8 1 2a\r\n", PP_ERR_V1_PORT),
	    /* not a header at all */
	    C("GET http://x/ HTTP/1.1\r\n", PP_ERR_MISSING),
	    C("CONNECT x:443 HTTP/1.1\r\n", PP_ERR_MISSING),
	    C("PROXX TCP4", PP_ERR_MISSING),
	    C("proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n", PP_ERR_MISSING),
	    C(" PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n", PP_ERR_MISSING),
	    C("\x16\x03\x01", PP_ERR_MISSING), /* a TLS ClientHello */
	    C("\r\nPROXY", PP_ERR_MISSING),
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const char *s = cases[i].in;
		size_t len = cases[i].len;
		int r = parse_all_prefixes((const uint8_t *)s, len, EITHER);
		if (r != cases[i].want)
			fail_msg("case %zu \"%s\": %s, want %s", i, s, proxy_proto_status_str(r),
			         proxy_proto_status_str(cases[i].want));
	}
}

static void test_v1_no_crlf_within_limit(void **state)
{
	(void)state;
	char line[300];
	memset(line, '1', sizeof(line));
	memcpy(line, "PROXY TCP4 1.2.3.4 5.6.7.8 1 ", 29);
	struct pp_header h;
	/* Garbage digits forever: need more up to 107 bytes, then too long; never past 107. */
	assert_int_equal(proxy_proto_parse((const uint8_t *)line, 106, EITHER, &h), PP_NEED_MORE);
	assert_int_equal(proxy_proto_parse((const uint8_t *)line, 107, EITHER, &h),
	                 PP_ERR_V1_TOO_LONG);
	assert_int_equal(parse_all_prefixes((const uint8_t *)line, sizeof(line), EITHER),
	                 PP_ERR_V1_TOO_LONG);
}

/* ---- v2 ---- */

/* A v2 header: sig, ver_cmd, fam, then body; the len field from body_len. Returns its size. */
static size_t v2(uint8_t *out, uint8_t ver_cmd, uint8_t fam, const uint8_t *body, size_t body_len)
{
	memcpy(out, sig, 12);
	out[12] = ver_cmd;
	out[13] = fam;
	out[14] = (uint8_t)(body_len >> 8);
	out[15] = (uint8_t)body_len;
	if (body_len > 0)
		memcpy(out + 16, body, body_len);
	return 16 + body_len;
}

static const uint8_t body4[12] = {192, 0, 2, 10, 203, 0, 113, 5, 0xdc, 0x04, 0x0c, 0x38};

static size_t with_tlvs(uint8_t *out, const uint8_t *tlvs, size_t n)
{
	uint8_t body[PP_MAX_HEADER];
	memcpy(body, body4, 12);
	memcpy(body + 12, tlvs, n);
	return v2(out, 0x21, 0x11, body, 12 + n);
}

/* Put the right CRC32C into the 4-byte TLV value at `at`. */
static void fix_crc(uint8_t *hdr, size_t len, size_t at)
{
	memset(hdr + at, 0, 4);
	uint32_t c = proxy_proto_crc32c(hdr, len);
	hdr[at] = (uint8_t)(c >> 24);
	hdr[at + 1] = (uint8_t)(c >> 16);
	hdr[at + 2] = (uint8_t)(c >> 8);
	hdr[at + 3] = (uint8_t)c;
}

static void test_crc32c_vector(void **state)
{
	(void)state;
	/* RFC 3720 §B.4 / the usual check value of CRC-32C. */
	assert_int_equal(proxy_proto_crc32c((const uint8_t *)"123456789", 9), 0xE3069283u);
	uint8_t zeros[32] = {0};
	assert_int_equal(proxy_proto_crc32c(zeros, 32), 0x8A9136AAu); /* RFC 3720 §B.4 */
}

static void test_v2_tcp4(void **state)
{
	(void)state;
	uint8_t b[64];
	size_t n = v2(b, 0x21, 0x11, body4, 12);
	memcpy(b + n, "CONNECT", 7);
	struct pp_header h;
	assert_int_equal(proxy_proto_parse(b, n + 7, PP_ACCEPT_V2, &h), 28);
	assert_int_equal(h.version, 2);
	assert_false(h.local);
	assert_int_equal(h.src.family, ADDR_V4);
	assert_memory_equal(h.src.b, ((uint8_t[]){192, 0, 2, 10}), 4);
	assert_memory_equal(h.dst.b, ((uint8_t[]){203, 0, 113, 5}), 4);
	assert_int_equal(h.src_port, 56324);
	assert_int_equal(h.dst_port, 3128);
	assert_false(h.crc_checked);
	assert_int_equal(parse_all_prefixes(b, n + 7, EITHER), 28);
}

static void test_v2_tcp6(void **state)
{
	(void)state;
	uint8_t body[36] = {0};
	body[0] = 0x20;
	body[1] = 0x01;
	body[15] = 7;
	body[16] = 0xfe;
	body[31] = 9;
	body[32] = 0xff;
	body[33] = 0xff; /* src port 65535, dst port 0 */
	uint8_t b[64];
	size_t n = v2(b, 0x21, 0x21, body, 36);
	struct pp_header h;
	assert_int_equal(parse_all_prefixes(b, n, PP_ACCEPT_V2), 52);
	assert_int_equal(proxy_proto_parse(b, n, PP_ACCEPT_V2, &h), 52);
	assert_int_equal(h.src.family, ADDR_V6);
	assert_int_equal(h.src.b[0], 0x20);
	assert_int_equal(h.src.b[15], 7);
	assert_int_equal(h.dst.b[0], 0xfe);
	assert_int_equal(h.src_port, 65535);
	assert_int_equal(h.dst_port, 0);
}

static void test_v2_local(void **state)
{
	(void)state;
	uint8_t b[128];
	struct pp_header h;
	/* LOCAL skips len bytes, whatever they are; its family is ignored. */
	size_t n = v2(b, 0x20, 0x00, NULL, 0);
	assert_int_equal(parse_all_prefixes(b, n, PP_ACCEPT_V2), 16);
	assert_int_equal(proxy_proto_parse(b, n, PP_ACCEPT_V2, &h), 16);
	assert_true(h.local);
	uint8_t junk[40];
	memset(junk, 0xEA, sizeof(junk)); /* would be a malformed TLV: never read */
	n = v2(b, 0x20, 0x31, junk, sizeof(junk));
	b[n] = 'G';
	assert_int_equal(parse_all_prefixes(b, n + 1, PP_ACCEPT_V2), 56);
	assert_int_equal(proxy_proto_parse(b, n, PP_ACCEPT_V2, &h), 56);
	assert_true(h.local);
	/* ... but its length is still bounded. */
	b[14] = 0x10;
	b[15] = 0x01;
	assert_int_equal(proxy_proto_parse(b, 16, PP_ACCEPT_V2, &h), PP_ERR_V2_TOO_LARGE);
}

static void test_v2_version_and_command(void **state)
{
	(void)state;
	uint8_t b[64];
	struct pp_header h;
	for (unsigned ver = 0; ver < 16; ver++) {
		for (unsigned cmd = 0; cmd < 16; cmd++) {
			size_t n = v2(b, (uint8_t)(ver << 4 | cmd), 0x11, body4, 12);
			int r = parse_all_prefixes(b, n, PP_ACCEPT_V2);
			int want = ver != 2 ? PP_ERR_VERSION : cmd > 1 ? PP_ERR_V2_COMMAND : (int)n;
			if (r != want)
				fail_msg("ver %u cmd %u: %s", ver, cmd, proxy_proto_status_str(r));
		}
	}
	/* The version is refused from byte 13 on, before the rest arrives. */
	v2(b, 0x11, 0x11, body4, 12);
	assert_int_equal(proxy_proto_parse(b, 13, PP_ACCEPT_V2, &h), PP_ERR_VERSION);
}

static void test_v2_family(void **state)
{
	(void)state;
	uint8_t b[128], body[64] = {0};
	for (unsigned fam = 0; fam < 256; fam++) {
		size_t n = v2(b, 0x21, (uint8_t)fam, body, 36);
		int r = parse_all_prefixes(b, n, PP_ACCEPT_V2);
		bool ok = fam == 0x11 || fam == 0x21;
		if (ok ? r <= 0 : r != PP_ERR_V2_FAMILY)
			fail_msg("fam 0x%02x: %s", fam, proxy_proto_status_str(r));
		/* LOCAL takes any family. */
		n = v2(b, 0x20, (uint8_t)fam, body, 36);
		assert_int_equal(parse_all_prefixes(b, n, PP_ACCEPT_V2), 52);
	}
}

static void test_v2_length(void **state)
{
	(void)state;
	uint8_t b[PP_MAX_HEADER + 64], body[PP_MAX_HEADER] = {0};
	struct pp_header h;
	/* Too short for the family's addresses. */
	for (size_t len = 0; len < 12; len++)
		assert_int_equal(parse_all_prefixes(b, v2(b, 0x21, 0x11, body, len), PP_ACCEPT_V2),
		                 PP_ERR_V2_LENGTH);
	for (size_t len = 0; len < 36; len++)
		assert_int_equal(parse_all_prefixes(b, v2(b, 0x21, 0x21, body, len), PP_ACCEPT_V2),
		                 PP_ERR_V2_LENGTH);
	/* The limit: exactly PP_V2_MAX_LEN with a NOOP TLV as padding; one more is refused
	 * from the length field on, before the body arrives. */
	body[12] = 0x04;
	size_t pad = PP_V2_MAX_LEN - 12 - 3;
	body[13] = (uint8_t)(pad >> 8);
	body[14] = (uint8_t)pad;
	size_t n = v2(b, 0x21, 0x11, body, PP_V2_MAX_LEN);
	assert_int_equal(proxy_proto_parse(b, n, PP_ACCEPT_V2, &h), (int)PP_MAX_HEADER);
	assert_int_equal(proxy_proto_parse(b, n - 1, PP_ACCEPT_V2, &h), PP_NEED_MORE);
	b[14] = (uint8_t)((PP_V2_MAX_LEN + 1) >> 8);
	b[15] = (uint8_t)(PP_V2_MAX_LEN + 1);
	assert_int_equal(proxy_proto_parse(b, 16, PP_ACCEPT_V2, &h), PP_ERR_V2_TOO_LARGE);
	b[14] = b[15] = 0xff;
	assert_int_equal(proxy_proto_parse(b, 16, PP_ACCEPT_V2, &h), PP_ERR_V2_TOO_LARGE);
	assert_int_equal(proxy_proto_parse(b, 15, PP_ACCEPT_V2, &h), PP_NEED_MORE);
}

static void test_v2_tlvs(void **state)
{
	(void)state;
	uint8_t b[256];
	struct pp_header h;
	/* NOOP, an unknown vendor TLV, ALPN, an empty one, AWS VPC endpoint ID. */
	static const uint8_t t[] = {0x04, 0x00, 0x02, 0xaa, 0xbb, 0xe0, 0x00, 0x01, 0x00, 0x01,
	                            0x00, 0x08, 'h',  't',  't',  'p',  '/',  '1',  '.',  '1',
	                            0x05, 0x00, 0x00, 0xEA, 0x00, 0x17, 0x01, 'v',  'p',  'c',
	                            'e',  '-',  '0',  '8',  'd',  '2',  'b',  'f',  '1',  '5',
	                            'f',  'a',  'c',  '5',  '0',  '0',  '1',  'c',  '9'};
	size_t n = with_tlvs(b, t, sizeof(t));
	assert_int_equal(parse_all_prefixes(b, n, PP_ACCEPT_V2), (int)n);
	assert_int_equal(proxy_proto_parse(b, n, PP_ACCEPT_V2, &h), (int)n);
	assert_string_equal(h.vpce, "vpce-08d2bf15fac5001c9");
	assert_false(h.crc_checked);
	/* Another AWS subtype is not an endpoint ID. */
	static const uint8_t other[] = {0xEA, 0x00, 0x03, 0x02, 'a', 'b'};
	n = with_tlvs(b, other, sizeof(other));
	assert_int_equal(proxy_proto_parse(b, n, PP_ACCEPT_V2, &h), (int)n);
	assert_string_equal(h.vpce, "");
}

static void test_v2_tlv_bad(void **state)
{
	(void)state;
	static const struct {
		uint8_t t[80];
		size_t n;
	} cases[] = {
	    {{0x04}, 1},                                   /* 1 byte of a TLV head */
	    {{0x04, 0x00}, 2},                             /* 2 bytes */
	    {{0x04, 0x00, 0x01}, 3},                       /* value overruns by 1 */
	    {{0x04, 0xff, 0xff, 0x00}, 4},                 /* value overruns by far */
	    {{0x04, 0x00, 0x00, 0x04, 0x00, 0x05, 1}, 7},  /* the second overruns */
	    {{0x03, 0x00, 0x03, 0, 0, 0}, 6},              /* CRC of 3 bytes */
	    {{0x03, 0x00, 0x05, 0, 0, 0, 0, 0}, 8},        /* CRC of 5 bytes */
	    {{0xEA, 0x00, 0x00}, 3},                       /* AWS without a subtype */
	    {{0xEA, 0x00, 0x01, 0x01}, 4},                 /* empty endpoint ID */
	    {{0xEA, 0x00, 0x04, 0x01, 'a', 0x00, 'b'}, 7}, /* NUL in it */
	    {{0xEA, 0x00, 0x04, 0x01, 'a', '"', 'b'}, 7},  /* a quote in it */
	    {{0xEA, 0x00, 0x02, 0x01, 'a', 0xEA, 0x00, 0x02, 0x01, 'b'}, 10}, /* twice */
	};
	uint8_t b[256];
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		size_t n = with_tlvs(b, cases[i].t, cases[i].n);
		int r = parse_all_prefixes(b, n, PP_ACCEPT_V2);
		if (r != PP_ERR_V2_TLV)
			fail_msg("case %zu: %s", i, proxy_proto_status_str(r));
	}
	/* An endpoint ID over PP_VPCE_MAX. */
	uint8_t t[80];
	t[0] = 0xEA;
	t[1] = 0;
	t[2] = PP_VPCE_MAX + 2;
	t[3] = 0x01;
	memset(t + 4, 'a', PP_VPCE_MAX + 1);
	assert_int_equal(parse_all_prefixes(b, with_tlvs(b, t, 4 + PP_VPCE_MAX + 1), PP_ACCEPT_V2),
	                 PP_ERR_V2_TLV);
	t[2] = PP_VPCE_MAX + 1; /* exactly the most */
	struct pp_header h;
	size_t n = with_tlvs(b, t, 4 + PP_VPCE_MAX);
	assert_int_equal(proxy_proto_parse(b, n, PP_ACCEPT_V2, &h), (int)n);
	assert_int_equal(strlen(h.vpce), PP_VPCE_MAX);
}

static void test_v2_crc(void **state)
{
	(void)state;
	uint8_t b[256];
	struct pp_header h;
	static const uint8_t t[] = {0x03, 0x00, 0x04, 0,   0,   0,   0,   0xEA,
	                            0x00, 0x06, 0x01, 'v', 'p', 'c', 'e', '1'};
	size_t n = with_tlvs(b, t, sizeof(t));
	fix_crc(b, n, 16 + 12 + 3);
	assert_int_equal(parse_all_prefixes(b, n, PP_ACCEPT_V2), (int)n);
	assert_int_equal(proxy_proto_parse(b, n, PP_ACCEPT_V2, &h), (int)n);
	assert_true(h.crc_checked);
	assert_string_equal(h.vpce, "vpce1");
	/* Any single bit flipped anywhere in the header fails, but where the header no longer
	 * carries a CRC: the command made LOCAL (its block is skipped whole, §2.2), or the CRC
	 * TLV's type turned into one that is skipped. */
	for (size_t i = 0; i < n; i++) {
		for (int bit = 0; bit < 8; bit++) {
			b[i] ^= (uint8_t)(1u << bit);
			int r = proxy_proto_parse(b, n, PP_ACCEPT_V2, &h);
			if (i == 12 && bit == 0) {
				assert_int_equal(r, (int)n);
				assert_true(h.local);
			} else if (i == 16 + 12 && r == (int)n) {
				assert_false(h.crc_checked);
			} else if (r == (int)n)
				fail_msg("byte %zu bit %d flipped: accepted", i, bit);
			b[i] ^= (uint8_t)(1u << bit);
		}
	}
	/* The checksum itself wrong, and a second CRC TLV. */
	b[16 + 12 + 3] ^= 0x80;
	assert_int_equal(parse_all_prefixes(b, n, PP_ACCEPT_V2), PP_ERR_V2_CRC);
	static const uint8_t two[] = {0x03, 0x00, 0x04, 0, 0, 0, 0, 0x03, 0x00, 0x04, 0, 0, 0, 0};
	n = with_tlvs(b, two, sizeof(two));
	fix_crc(b, n, 16 + 12 + 3);
	assert_int_equal(proxy_proto_parse(b, n, PP_ACCEPT_V2, &h), PP_ERR_V2_TLV);
	/* The CRC covers the bytes after it too (the TLVs that follow). */
	static const uint8_t after[] = {0x03, 0x00, 0x04, 0, 0, 0, 0, 0x04, 0x00, 0x01, 'x'};
	n = with_tlvs(b, after, sizeof(after));
	fix_crc(b, n, 16 + 12 + 3);
	assert_int_equal(proxy_proto_parse(b, n, PP_ACCEPT_V2, &h), (int)n);
	b[n - 1] = 'y';
	assert_int_equal(proxy_proto_parse(b, n, PP_ACCEPT_V2, &h), PP_ERR_V2_CRC);
}

static void test_signature(void **state)
{
	(void)state;
	uint8_t b[64];
	struct pp_header h;
	size_t n = v2(b, 0x21, 0x11, body4, 12);
	/* Every byte of the signature matters, and is refused as soon as it is wrong
	 * (the two that would make "\r\n\r\n" could still begin an HTTP head: missing). */
	for (size_t i = 0; i < 12; i++) {
		b[i] ^= 0x01;
		int r = parse_all_prefixes(b, n, EITHER);
		assert_int_equal(r, PP_ERR_MISSING);
		assert_int_equal(proxy_proto_parse(b, i + 1, EITHER, &h), PP_ERR_MISSING);
		b[i] ^= 0x01;
	}
	/* Which versions a listener takes. */
	assert_int_equal(parse_all_prefixes(b, n, PP_ACCEPT_V1), PP_ERR_VERSION);
	assert_int_equal(proxy_proto_parse(b, 11, PP_ACCEPT_V1, &h), PP_NEED_MORE);
	const char *s = "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n";
	assert_int_equal(parse_all_prefixes((const uint8_t *)s, strlen(s), PP_ACCEPT_V2),
	                 PP_ERR_VERSION);
	assert_int_equal(proxy_proto_parse((const uint8_t *)s, strlen(s), 0, &h), PP_ERR_VERSION);
	assert_int_equal(proxy_proto_parse(b, 0, EITHER, &h), PP_NEED_MORE);
}

static void test_doubled(void **state)
{
	(void)state;
	/* Two headers: the first is the header, the second is the client's bytes (the request
	 * parser refuses it); parsing never runs on into the second. */
	uint8_t b[128];
	size_t n = v2(b, 0x21, 0x11, body4, 12);
	memcpy(b + n, b, n);
	struct pp_header h;
	assert_int_equal(proxy_proto_parse(b, 2 * n, EITHER, &h), (int)n);
	const char *s = "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\nPROXY TCP4 9.9.9.9 5.6.7.8 1 2\r\n";
	assert_int_equal(v1(s, EITHER, &h), 32);
	assert_int_equal(h.src.b[0], 1);
}

static void test_status_str(void **state)
{
	(void)state;
	assert_string_equal(proxy_proto_status_str(5), "header");
	assert_string_equal(proxy_proto_status_str(PP_ERR_V2_CRC), "v2_crc");
	assert_string_equal(proxy_proto_status_str(-99), "unknown");
	for (int s = PP_ERR_V2_CRC; s <= 0; s++)
		assert_string_not_equal(proxy_proto_status_str(s), "unknown");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_v1_tcp4),
	    cmocka_unit_test(test_v1_tcp6),
	    cmocka_unit_test(test_v1_longest),
	    cmocka_unit_test(test_v1_unknown),
	    cmocka_unit_test(test_v1_bad),
	    cmocka_unit_test(test_v1_no_crlf_within_limit),
	    cmocka_unit_test(test_crc32c_vector),
	    cmocka_unit_test(test_v2_tcp4),
	    cmocka_unit_test(test_v2_tcp6),
	    cmocka_unit_test(test_v2_local),
	    cmocka_unit_test(test_v2_version_and_command),
	    cmocka_unit_test(test_v2_family),
	    cmocka_unit_test(test_v2_length),
	    cmocka_unit_test(test_v2_tlvs),
	    cmocka_unit_test(test_v2_tlv_bad),
	    cmocka_unit_test(test_v2_crc),
	    cmocka_unit_test(test_signature),
	    cmocka_unit_test(test_doubled),
	    cmocka_unit_test(test_status_str),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
