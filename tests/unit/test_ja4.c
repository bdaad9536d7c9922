/* Unit tests for the JA4 fingerprint (proxy/proto/ja4.c) against the JA4 spec's worked example. */
#include "ja4.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "policy.h"
#include "tls_hello.h"

/*
 * The worked example of FoxIO-LLC/ja4 technical_details/JA4.md: these cipher
 * suites, extensions (in this wire order) and signature algorithms give
 * t13d1516h2_8daaf6152771_e5627efa2ab1; without the signature algorithms the
 * extension part is 6d807ffa2a79.  GREASE values are added here (RFC 8701),
 * as a browser sends them, to check that they are ignored.
 */
static const uint16_t spec_ciphers[] = {0x1301, 0x1302, 0x1303, 0xc02b, 0xc02f,
                                        0xc02c, 0xc030, 0xcca9, 0xcca8, 0xc013,
                                        0xc014, 0x009c, 0x009d, 0x002f, 0x0035};
static const uint16_t spec_exts[] = {0x001b, 0x0000, 0x0033, 0x0010, 0x4469, 0x0017,
                                     0x002d, 0x000d, 0x0005, 0x0023, 0x0012, 0x002b,
                                     0xff01, 0x000b, 0x000a, 0x0015};
static const uint16_t spec_sigalgs[] = {0x0403, 0x0804, 0x0401, 0x0503,
                                        0x0805, 0x0501, 0x0806, 0x0601};

static uint8_t scratch[65536];

struct hb {
	uint8_t b[8192];
	size_t n;
};

static void u8(struct hb *h, unsigned v)
{
	assert_true(h->n < sizeof(h->b));
	h->b[h->n++] = (uint8_t)v;
}

static void u16(struct hb *h, unsigned v)
{
	u8(h, v >> 8);
	u8(h, v & 0xff);
}

static void bytes(struct hb *h, const void *p, size_t n)
{
	assert_true(h->n + n <= sizeof(h->b));
	memcpy(h->b + h->n, p, n);
	h->n += n;
}

/* Open a length prefix of w bytes; close_len fills it in. */
static size_t open_len(struct hb *h, unsigned w)
{
	size_t at = h->n;
	for (unsigned i = 0; i < w; i++)
		u8(h, 0);
	return at;
}

static void close_len(struct hb *h, size_t at, unsigned w)
{
	size_t len = h->n - at - w;
	for (unsigned i = 0; i < w; i++)
		h->b[at + i] = (uint8_t)(len >> (8 * (w - 1 - i)));
}

struct spec {
	const uint16_t *ciphers;
	size_t n_ciphers;
	const uint16_t *exts; /* extension types in wire order */
	size_t n_exts;
	const uint16_t *sigalgs; /* NULL: no signature_algorithms extension */
	size_t n_sigalgs;
	const uint8_t *alpn; /* first protocol (a second, "http/1.1", follows) */
	size_t alpn_len;
	uint16_t legacy_version;
	const uint16_t *versions; /* supported_versions; NULL: none */
	size_t n_versions;
	bool grease; /* add GREASE cipher, extension, version and signature algorithm */
};

/* One extension's body: valid for the ones the parser reads, empty for the others. */
static void ext_body(struct hb *h, uint16_t type, const struct spec *s)
{
	size_t at, at2;
	switch (type) {
	case 0x0000: /* server_name (RFC 6066 §3) */
		at = open_len(h, 2);
		u8(h, 0);
		at2 = open_len(h, 2);
		bytes(h, "example.com", 11);
		close_len(h, at2, 2);
		close_len(h, at, 2);
		break;
	case 0x0010: /* ALPN (RFC 7301 §3.1) */
		at = open_len(h, 2);
		u8(h, (unsigned)s->alpn_len);
		bytes(h, s->alpn, s->alpn_len);
		u8(h, 8);
		bytes(h, "http/1.1", 8);
		close_len(h, at, 2);
		break;
	case 0x002b: /* supported_versions (RFC 8446 §4.2.1) */
		at = open_len(h, 1);
		if (s->grease)
			u16(h, 0x3a3a);
		for (size_t i = 0; i < s->n_versions; i++)
			u16(h, s->versions[i]);
		close_len(h, at, 1);
		break;
	case 0x000d: /* signature_algorithms (RFC 8446 §4.2.3) */
		at = open_len(h, 2);
		if (s->grease)
			u16(h, 0x5a5a);
		for (size_t i = 0; i < s->n_sigalgs; i++)
			u16(h, s->sigalgs[i]);
		close_len(h, at, 2);
		break;
	default:
		break;
	}
}

/* A whole ClientHello record for s, parsed; returns its JA4. */
static void ja4_of(const struct spec *s, char out[JA4_LEN + 1])
{
	struct hb h = {.n = 0};
	u8(&h, 22);
	u16(&h, 0x0301);
	size_t rec = open_len(&h, 2);
	u8(&h, 1);
	size_t msg = open_len(&h, 3);
	u16(&h, s->legacy_version);
	for (int i = 0; i < 32; i++)
		u8(&h, (unsigned)i);
	u8(&h, 0); /* legacy_session_id */
	size_t at = open_len(&h, 2);
	if (s->grease)
		u16(&h, 0x0a0a);
	for (size_t i = 0; i < s->n_ciphers; i++)
		u16(&h, s->ciphers[i]);
	close_len(&h, at, 2);
	u8(&h, 1);
	u8(&h, 0); /* compression: null */
	size_t exts = open_len(&h, 2);
	if (s->grease) {
		u16(&h, 0x1a1a);
		u16(&h, 0);
	}
	for (size_t i = 0; i < s->n_exts; i++) {
		uint16_t type = s->exts[i];
		if (type == 0x000d && s->sigalgs == NULL)
			continue;
		u16(&h, type);
		size_t body = open_len(&h, 2);
		ext_body(&h, type, s);
		close_len(&h, body, 2);
	}
	if (s->grease) {
		u16(&h, 0x2a2a);
		u16(&h, 1);
		u8(&h, 0);
	}
	close_len(&h, exts, 2);
	close_len(&h, msg, 3);
	close_len(&h, rec, 2);

	struct tls_hello th;
	int r = tls_hello_parse(h.b, h.n, NULL, scratch, sizeof(scratch), &th);
	assert_int_equal(r, (int)h.n);
	assert_int_equal(ja4_fingerprint(&th, out), 0);
	assert_true(policy_ja4_valid(out, strlen(out)));
}

static const uint16_t v13[] = {0x0304, 0x0303};

static struct spec spec_example(void)
{
	struct spec s = {
	    .ciphers = spec_ciphers,
	    .n_ciphers = sizeof(spec_ciphers) / 2,
	    .exts = spec_exts,
	    .n_exts = sizeof(spec_exts) / 2,
	    .sigalgs = spec_sigalgs,
	    .n_sigalgs = sizeof(spec_sigalgs) / 2,
	    .alpn = (const uint8_t *)"h2",
	    .alpn_len = 2,
	    .legacy_version = 0x0303,
	    .versions = v13,
	    .n_versions = 2,
	    .grease = true,
	};
	return s;
}

/* JA4.md "Example": JA4 = t13d1516h2_8daaf6152771_e5627efa2ab1. */
static void test_spec_example(void **state)
{
	(void)state;
	char out[JA4_LEN + 1];
	struct spec s = spec_example();
	ja4_of(&s, out);
	assert_string_equal(out, "t13d1516h2_8daaf6152771_e5627efa2ab1");
	/* GREASE changes nothing. */
	s.grease = false;
	ja4_of(&s, out);
	assert_string_equal(out, "t13d1516h2_8daaf6152771_e5627efa2ab1");
}

/*
 * JA4.md "Extension hash": the same extension list (000d included) with no
 * signature algorithm has no "_": 6d807ffa2a79.  A signature_algorithms
 * extension that holds only GREASE is that case.
 */
static void test_no_sigalgs(void **state)
{
	(void)state;
	char out[JA4_LEN + 1];
	struct spec s = spec_example();
	s.n_sigalgs = 0;
	ja4_of(&s, out);
	assert_string_equal(out, "t13d1516h2_8daaf6152771_6d807ffa2a79");
	/* Without the extension at all, 000d leaves the list too. */
	s.sigalgs = NULL;
	ja4_of(&s, out);
	assert_memory_equal(out, "t13d1515h2_8daaf6152771_", 24);
	assert_string_not_equal(out + 24, "6d807ffa2a79");
}

/* The extension order on the wire does not matter, the signature algorithms' order does. */
static void test_orders(void **state)
{
	(void)state;
	char a[JA4_LEN + 1], b[JA4_LEN + 1];
	struct spec s = spec_example();
	uint16_t rev[sizeof(spec_exts) / 2];
	for (size_t i = 0; i < s.n_exts; i++)
		rev[i] = spec_exts[s.n_exts - 1 - i];
	s.exts = rev;
	ja4_of(&s, a);
	assert_string_equal(a, "t13d1516h2_8daaf6152771_e5627efa2ab1");
	uint16_t algs[sizeof(spec_sigalgs) / 2];
	memcpy(algs, spec_sigalgs, sizeof(algs));
	algs[0] = spec_sigalgs[1];
	algs[1] = spec_sigalgs[0];
	s.sigalgs = algs;
	ja4_of(&s, b);
	assert_memory_equal(a, b, 23);
	assert_string_not_equal(a + 24, b + 24);
}

/* JA4.md "ALPN Extension Value": its examples, and "00" without ALPN. */
static void test_alpn(void **state)
{
	(void)state;
	static const struct {
		const char *bytes;
		size_t len;
		const char *want;
	} cases[] = {
	    {"h2", 2, "h2"},
	    {"http/1.1", 8, "h1"},
	    {"\xab", 1, "ab"},
	    {"\x20", 1, "20"},
	    {"\xab\xcd", 2, "ad"},
	    {"\x20\x61", 2, "21"},
	    {"\x30\xab", 2, "3b"},
	    {"\x61\x20", 2, "60"},
	    {"\x30\x31\xab\xcd", 4, "3d"},
	    {"\x30\xab\xcd\x31", 4, "01"},
	    {"x", 1, "xx"},
	};
	char out[JA4_LEN + 1];
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct spec s = spec_example();
		s.alpn = (const uint8_t *)cases[i].bytes;
		s.alpn_len = cases[i].len;
		ja4_of(&s, out);
		assert_memory_equal(out + 8, cases[i].want, 2);
	}
	struct spec s = spec_example();
	static const uint16_t no_alpn[] = {0x001b, 0x0000, 0x0033, 0x000d, 0x002b};
	s.exts = no_alpn;
	s.n_exts = 5;
	ja4_of(&s, out);
	assert_memory_equal(out, "t13d150500_8daaf6152771_", 24);
}

/* Version from legacy_version without supported_versions; "i" without SNI; counts cap at 99. */
static void test_version_sni_counts(void **state)
{
	(void)state;
	char out[JA4_LEN + 1];
	static const uint16_t exts[] = {0x000d, 0x000a};
	uint16_t many[120];
	for (size_t i = 0; i < 120; i++)
		many[i] = (uint16_t)(0x0100 + i);
	struct spec s = {
	    .ciphers = many,
	    .n_ciphers = 120,
	    .exts = exts,
	    .n_exts = 2,
	    .sigalgs = spec_sigalgs,
	    .n_sigalgs = 2,
	    .legacy_version = 0x0302,
	};
	ja4_of(&s, out);
	assert_memory_equal(out, "t11i990200_", 11);
	s.legacy_version = 0x0303;
	ja4_of(&s, out);
	assert_memory_equal(out, "t12i", 4);
	static const uint16_t only_grease_ver[] = {0x0303};
	s.versions = only_grease_ver;
	s.n_versions = 1;
	s.grease = true;
	static const uint16_t exts2[] = {0x000d, 0x002b};
	s.exts = exts2;
	ja4_of(&s, out);
	assert_memory_equal(out, "t12i990200_", 11);
}

/* A hello with no extensions (TLS 1.2 allows it): the extension part is twelve zeros. */
static void test_no_extensions(void **state)
{
	(void)state;
	char out[JA4_LEN + 1];
	static const uint16_t c[] = {0x002f};
	struct spec s = {.ciphers = c, .n_ciphers = 1, .legacy_version = 0x0303};
	ja4_of(&s, out);
	/* sha256("002f") starts ba72b8082249. */
	assert_string_equal(out, "t12i010000_ba72b8082249_000000000000");
}

static void test_valid(void **state)
{
	(void)state;
	assert_true(policy_ja4_valid("t13d1516h2_8daaf6152771_e5627efa2ab1", 36));
	assert_true(policy_ja4_valid("q13d0312h3_55b375c5d22e_06cda9e17597", 36));
	assert_false(policy_ja4_valid("t13d1516h2_8daaf6152771_e5627efa2ab", 35));
	assert_false(policy_ja4_valid("t13d1516h2_8DAAF6152771_e5627efa2ab1", 36));
	assert_false(policy_ja4_valid("x13d1516h2_8daaf6152771_e5627efa2ab1", 36));
	assert_false(policy_ja4_valid("t13x1516h2_8daaf6152771_e5627efa2ab1", 36));
	assert_false(policy_ja4_valid("t13d15a6h2_8daaf6152771_e5627efa2ab1", 36));
	assert_false(policy_ja4_valid("t13d1516h2-8daaf6152771_e5627efa2ab1", 36));
	assert_false(policy_ja4_valid(NULL, 0));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_spec_example),
	    cmocka_unit_test(test_no_sigalgs),
	    cmocka_unit_test(test_orders),
	    cmocka_unit_test(test_alpn),
	    cmocka_unit_test(test_version_sni_counts),
	    cmocka_unit_test(test_no_extensions),
	    cmocka_unit_test(test_valid),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
