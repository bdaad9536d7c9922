/* Unit tests for the TLS ClientHello parser (proxy/tls_hello.c). */
#include "tls_hello.h"
#include "tls_server.h"

#include <errno.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

/* The committed fuzz corpus holds the real ClientHellos captured on loopback. */
#define CORPUS_DIR TEST_DATA_DIR "/../../fuzz/corpus/tls_hello"

/* Set TLS_HELLO_CORPUS_OUT=dir to write every hand-made case there as edge_<name>. */
#define CORPUS_OUT_ENV "TLS_HELLO_CORPUS_OUT"

#define BIG (1u << 17)

static uint8_t scratch[TLS_HELLO_HARD_MAX];
static uint8_t scratch2[TLS_HELLO_HARD_MAX];

/* ---- a tiny notation for TLS byte strings --------------------------------- */

/*
 *   0301            hex pairs: bytes
 *   'text'          ASCII bytes
 *   [1 .. ]         a vector with a 1-, 2- or 3-byte length prefix (RFC 8446 §3.4),
 *   [2 .. ] [3 .. ] the length filled in when the bracket closes
 *   *N:XX           the byte XX, N times (N decimal)
 *   spaces          ignored
 */
static size_t tb(const char *spec, uint8_t *out, size_t cap)
{
	size_t n = 0, depth = 0, at[16];
	unsigned width[16];
	const char *s = spec;

	while (*s != '\0') {
		if (*s == ' ') {
			s++;
		} else if (*s == '[') {
			assert_true(depth < 16 && s[1] >= '1' && s[1] <= '3');
			width[depth] = (unsigned)(s[1] - '0');
			at[depth++] = n;
			n += (size_t)(s[1] - '0');
			assert_true(n <= cap);
			s += 2;
		} else if (*s == ']') {
			assert_true(depth > 0);
			depth--;
			size_t len = n - at[depth] - width[depth];
			assert_true(len >> (8 * width[depth]) == 0);
			for (unsigned i = 0; i < width[depth]; i++)
				out[at[depth] + i] = (uint8_t)(len >> (8 * (width[depth] - 1 - i)));
			s++;
		} else if (*s == '\'') {
			const char *e = strchr(s + 1, '\'');
			assert_non_null(e);
			assert_true(n + (size_t)(e - s - 1) <= cap);
			memcpy(out + n, s + 1, (size_t)(e - s - 1));
			n += (size_t)(e - s - 1);
			s = e + 1;
		} else if (*s == '*') {
			char *e;
			unsigned long k = strtoul(s + 1, &e, 10);
			unsigned b = 0;
			assert_true(*e == ':' && sscanf(e + 1, "%2x", &b) == 1);
			assert_true(n + k <= cap);
			memset(out + n, (int)b, k);
			n += k;
			s = e + 3;
		} else {
			unsigned b = 0;
			assert_true(sscanf(s, "%2x", &b) == 1 && s[1] != '\0' && s[1] != ' ');
			assert_true(n < cap);
			out[n++] = (uint8_t)b;
			s += 2;
		}
	}
	assert_int_equal(depth, 0);
	return n;
}

/* ClientHello pieces (RFC 8446 §4.1.2) for the tables below. */
#define CH_FIXED   "0303 *32:11 [1 *32:22] [2 1301 1302 c02b 00ff] [1 00]"
#define SNI(nm)    "0000 [2 [2 00 [2 " nm "]]]"
#define EXTS_OK    SNI("'allowed.example'") " 000a [2 [2 001d 0017]] 002b [2 [1 0304 0303]]"
#define HS(body)   "01 [3 " body "]"
#define REC(pl)    "16 0301 [2 " pl "]"
#define HELLO(ext) REC(HS(CH_FIXED " [2 " ext "]"))
#define HELLO_OK   HELLO(EXTS_OK)

/* ---- helpers ------------------------------------------------------------- */

static void save_case(const char *name, const uint8_t *b, size_t n)
{
	const char *dir = getenv(CORPUS_OUT_ENV);
	if (dir == NULL)
		return;
	char path[4096];
	snprintf(path, sizeof(path), "%s/edge_%s", dir, name);
	FILE *f = fopen(path, "wb");
	assert_non_null(f);
	assert_int_equal(fwrite(b, 1, n, f), n);
	assert_int_equal(fclose(f), 0);
}

static size_t read_corpus(const char *name, uint8_t *out, size_t cap)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/%s", CORPUS_DIR, name);
	FILE *f = fopen(path, "rb");
	if (f == NULL)
		fail_msg("%s: %s", path, strerror(errno));
	size_t n = fread(out, 1, cap, f);
	fclose(f);
	assert_true(n > 0 && n < cap);
	return n;
}

/* Parse n bytes of b from an exact-size heap copy, so ASan flags any read past n. */
static int parse_exact(const uint8_t *b, size_t n, const struct tls_limits *lim,
                       struct tls_hello *out)
{
	uint8_t *copy = malloc(n ? n : 1);
	assert_non_null(copy);
	if (n)
		memcpy(copy, b, n);
	int rc = tls_hello_parse(copy, n, lim, scratch, sizeof(scratch), out);
	free(copy);
	return rc;
}

/*
 * Feed b byte by byte (every prefix, each in an exact-size buffer): NEED_MORE
 * until the final answer, which must be expect and must then stay.  Returns
 * the shortest prefix that gave the final answer, 0 if none did.
 */
static size_t check_prefixes(const uint8_t *b, size_t n, const struct tls_limits *lim, int expect)
{
	struct tls_hello h;
	size_t first = 0;
	for (size_t k = 0; k <= n; k++) {
		int rc = parse_exact(b, k, lim, &h);
		if (rc == TLS_NEED_MORE) {
			if (first != 0)
				fail_msg("prefix %zu: need_more after final at %zu", k, first);
			continue;
		}
		if (rc != expect)
			fail_msg("prefix %zu of %zu: got %d (%s), want %d (%s)", k, n, rc,
			         tls_status_str(rc), expect, tls_status_str(expect));
		if (first == 0)
			first = k;
	}
	return first;
}

static bool view_in(struct tls_view v, const uint8_t *base, size_t len)
{
	return v.p >= base && v.len <= len && (size_t)(v.p - base) <= len - v.len;
}

static bool view_is(struct tls_view v, const char *s)
{
	return v.len == strlen(s) && memcmp(v.p, s, v.len) == 0;
}

/* Same result by content (the views of a and b point into different buffers). */
static void assert_same_hello(const struct tls_hello *a, const struct tls_hello *b)
{
	assert_int_equal(a->legacy_version, b->legacy_version);
	assert_int_equal(a->record_version, b->record_version);
	assert_int_equal(a->has_sni, b->has_sni);
	assert_int_equal(a->sni.len, b->sni.len);
	if (a->sni.len)
		assert_memory_equal(a->sni.p, b->sni.p, a->sni.len);
	assert_int_equal(a->n_alpn, b->n_alpn);
	assert_int_equal(a->n_alpn_total, b->n_alpn_total);
	for (size_t i = 0; i < a->n_alpn; i++) {
		assert_int_equal(a->alpn[i].len, b->alpn[i].len);
		assert_memory_equal(a->alpn[i].p, b->alpn[i].p, a->alpn[i].len);
	}
	assert_int_equal(a->n_versions, b->n_versions);
	assert_int_equal(a->n_versions_total, b->n_versions_total);
	assert_memory_equal(a->versions, b->versions, sizeof(a->versions));
	assert_int_equal(a->has_alpn, b->has_alpn);
	assert_int_equal(a->has_versions, b->has_versions);
	assert_int_equal(a->has_ech, b->has_ech);
	assert_int_equal(a->has_esni, b->has_esni);
	assert_int_equal(a->n_extensions, b->n_extensions);
	assert_int_equal(a->msg_len, b->msg_len);
}

/*
 * Put the handshake message msg[0..n) into records cut at the message offsets
 * cuts[0..ncuts) (increasing, inside (0, n)), record version 0x0301.
 */
static size_t frame(const uint8_t *msg, size_t n, const size_t *cuts, size_t ncuts, uint8_t *out)
{
	size_t o = 0, from = 0;
	for (size_t i = 0; i <= ncuts; i++) {
		size_t to = i < ncuts ? cuts[i] : n;
		assert_true(to > from && to - from <= 16384);
		out[o++] = 0x16;
		out[o++] = 3;
		out[o++] = 1;
		out[o++] = (uint8_t)((to - from) >> 8);
		out[o++] = (uint8_t)(to - from);
		memcpy(out + o, msg + from, to - from);
		o += to - from;
		from = to;
	}
	return o;
}

/* The handshake message of a single-record hello. */
static const uint8_t *single_msg(const uint8_t *b, size_t n, size_t *msg_len)
{
	assert_true(n >= 9 && b[0] == 0x16);
	size_t rlen = (size_t)b[3] << 8 | b[4];
	size_t mlen = 4 + ((size_t)b[6] << 16 | (size_t)b[7] << 8 | b[8]);
	assert_int_equal(rlen, mlen);
	*msg_len = mlen;
	return b + 5;
}

/* ---- real ClientHellos captured on loopback ------------------------------- */

struct real_case {
	const char *file;
	size_t consumed;
	const char *sni;  /* NULL: no server_name */
	const char *alpn; /* protocols joined by ',', NULL: no ALPN */
	uint16_t versions[TLS_MAX_VERSIONS];
	size_t n_versions; /* 0: no supported_versions */
	size_t n_extensions;
};

#define V_ALL {0x0304, 0x0303, 0x0302, 0x0301}, 4

static const struct real_case reals[] = {
    {"real_curl_default", 517, "allowed.example", "h2,http/1.1", V_ALL, 12},
    {"real_curl_http2", 517, "allowed.example", "h2,http/1.1", V_ALL, 12},
    {"real_curl_http11", 517, "allowed.example", "http/1.1", V_ALL, 12},
    {"real_curl_ip_nosni", 517, NULL, "h2,http/1.1", V_ALL, 11},
    {"real_curl_tls12", 226, "allowed.example", "h2,http/1.1", {0}, 0, 7},
    {"real_sclient_sni", 321, "allowed.example", NULL, V_ALL, 10},
    {"real_sclient_nosni", 297, NULL, NULL, V_ALL, 9},
    {"real_sclient_alpn", 339, "allowed.example", "h2,http/1.1", V_ALL, 11},
    {"real_sclient_tls12", 212, "allowed.example", NULL, {0}, 0, 7},
    {"real_sclient_tls13", 249, "allowed.example", NULL, {0x0304}, 1, 10},
    /* resumption: pre_shared_key is the last extension */
    {"real_sclient_psk", 592, "allowed.example", NULL, V_ALL, 11},
    /* 0-RTT: a CCS and an application_data record follow the hello (489 bytes in all) */
    {"real_sclient_early_data", 420, "allowed.example", NULL, V_ALL, 12},
    {"real_wget_gnutls_ip", 517, NULL, NULL, V_ALL, 12},
    {"real_node_sni", 391, "allowed.example", "h2,http/1.1", {0x0304, 0x0303}, 2, 11},
};

static void check_real_fields(const struct real_case *c, const struct tls_hello *h)
{
	assert_int_equal(h->consumed, c->consumed);
	assert_int_equal(h->record_version, 0x0301);
	assert_int_equal(h->legacy_version, 0x0303);
	if (c->sni == NULL) {
		assert_false(h->has_sni);
		assert_null(h->sni.p);
	} else {
		assert_true(h->has_sni);
		assert_true(view_is(h->sni, c->sni));
		assert_true(view_in(h->sni, scratch, h->msg_len));
	}
	if (c->alpn == NULL) {
		assert_false(h->has_alpn);
		assert_int_equal(h->n_alpn, 0);
	} else {
		char joined[256] = "";
		for (size_t i = 0; i < h->n_alpn; i++) {
			assert_true(view_in(h->alpn[i], scratch, h->msg_len));
			if (i)
				strcat(joined, ",");
			strncat(joined, (const char *)h->alpn[i].p, h->alpn[i].len);
		}
		assert_true(h->has_alpn);
		assert_string_equal(joined, c->alpn);
		assert_int_equal(h->n_alpn_total, h->n_alpn);
	}
	assert_int_equal(h->has_versions, c->n_versions > 0);
	assert_int_equal(h->n_versions, c->n_versions);
	assert_int_equal(h->n_versions_total, c->n_versions);
	for (size_t i = 0; i < c->n_versions; i++)
		assert_int_equal(h->versions[i], c->versions[i]);
	assert_int_equal(h->n_extensions, c->n_extensions);
	assert_false(h->has_ech);
	assert_false(h->has_esni);
}

static void test_real_hellos(void **state)
{
	static uint8_t b[BIG];
	struct tls_hello h;
	for (size_t i = 0; i < sizeof(reals) / sizeof(reals[0]); i++) {
		const struct real_case *c = &reals[i];
		size_t n = read_corpus(c->file, b, sizeof(b));
		int rc = parse_exact(b, n, NULL, &h);
		if (rc != (int)c->consumed)
			fail_msg("%s: got %d (%s), want %zu", c->file, rc, tls_status_str(rc),
			         c->consumed);
		check_real_fields(c, &h);
		/* byte by byte: NEED_MORE until the last byte of the hello's record */
		assert_int_equal(check_prefixes(b, n, NULL, (int)c->consumed), c->consumed);
	}
}

/* What follows the hello's records is never looked at. */
static void test_real_hellos_with_garbage_after(void **state)
{
	static uint8_t b[BIG];
	struct tls_hello h;
	for (size_t i = 0; i < sizeof(reals) / sizeof(reals[0]); i++) {
		const struct real_case *c = &reals[i];
		size_t n = read_corpus(c->file, b, sizeof(b));
		n = c->consumed;
		memcpy(b + n, "SSH-2.0-x\r\n\0\xff", 13);
		assert_int_equal(parse_exact(b, n + 13, NULL, &h), (int)c->consumed);
		check_real_fields(c, &h);
	}
}

/* Re-frame each real hello over 2 and 3 records, cutting also inside the handshake header. */
static void test_real_hellos_split(void **state)
{
	static uint8_t b[BIG], f[BIG];
	struct tls_hello whole, split;
	for (size_t i = 0; i < sizeof(reals) / sizeof(reals[0]); i++) {
		const struct real_case *c = &reals[i];
		size_t n = read_corpus(c->file, b, sizeof(b)), mlen;
		const uint8_t *msg = single_msg(b, n, &mlen);
		assert_int_equal(tls_hello_parse(b, n, NULL, scratch2, sizeof(scratch2), &whole),
		                 (int)c->consumed);
		const size_t two[] = {1, 2, 3, 4, 5, 39, mlen / 2, mlen - 1};
		for (size_t j = 0; j < sizeof(two) / sizeof(two[0]); j++) {
			size_t fn = frame(msg, mlen, &two[j], 1, f);
			assert_int_equal(fn, mlen + 10);
			assert_int_equal(parse_exact(f, fn, NULL, &split), (int)fn);
			assert_same_hello(&whole, &split);
			assert_int_equal(split.consumed, fn);
			if (j == 2 || j == 6)
				assert_int_equal(check_prefixes(f, fn, NULL, (int)fn), fn);
		}
		const size_t three[][2] = {
		    {1, 2}, {2, 4}, {4, 5}, {3, mlen - 1}, {mlen / 3, mlen / 2}};
		for (size_t j = 0; j < sizeof(three) / sizeof(three[0]); j++) {
			size_t fn = frame(msg, mlen, three[j], 2, f);
			assert_int_equal(fn, mlen + 15);
			assert_int_equal(parse_exact(f, fn, NULL, &split), (int)fn);
			assert_same_hello(&whole, &split);
			if (j == 1)
				assert_int_equal(check_prefixes(f, fn, NULL, (int)fn), fn);
		}
	}
}

/* §5.1: no other record type may come between the records of the hello. */
static void test_interleaved_records(void **state)
{
	static uint8_t b[BIG], f[BIG];
	struct tls_hello h;
	size_t n = read_corpus("real_curl_default", b, sizeof(b)), mlen;
	const uint8_t *msg = single_msg(b, n, &mlen);
	const size_t cut[] = {100};
	size_t fn = frame(msg, mlen, cut, 1, f);
	const uint8_t types[] = {0x14, 0x15, 0x17, 0x18, 0x00, 0x80};
	for (size_t i = 0; i < sizeof(types); i++) {
		f[5 + 100] = types[i];
		assert_int_equal(check_prefixes(f, fn, NULL, TLS_ERR_MALFORMED), 5 + 100 + 5);
		char name[64];
		snprintf(name, sizeof(name), "second_record_type_%02x", types[i]);
		save_case(name, f, fn);
	}
	f[5 + 100] = 0x16;
	/* record versions of the later records: TLS 1.0..1.3 only */
	const uint8_t bad_ver[][2] = {{3, 0}, {3, 5}, {2, 0}, {0x16, 3}};
	for (size_t i = 0; i < sizeof(bad_ver) / sizeof(bad_ver[0]); i++) {
		f[106] = bad_ver[i][0];
		f[107] = bad_ver[i][1];
		assert_int_equal(parse_exact(f, fn, NULL, &h), TLS_ERR_MALFORMED);
		char name[64];
		snprintf(name, sizeof(name), "second_record_version_%02x%02x", f[106], f[107]);
		save_case(name, f, fn);
	}
	f[106] = 3;
	f[107] = 3;
	assert_int_equal(parse_exact(f, fn, NULL, &h), (int)fn);

	/* a zero-length handshake record between the two halves */
	static uint8_t z[BIG];
	memcpy(z, f, 105);
	memcpy(z + 105, "\x16\x03\x01\x00\x00", 5);
	memcpy(z + 110, f + 105, fn - 105);
	assert_int_equal(check_prefixes(z, fn + 5, NULL, TLS_ERR_MALFORMED), 110);
	save_case("zero_length_record_between", z, fn + 5);

	/* an alert between the two halves */
	memcpy(z + 105, "\x15\x03\x03\x00\x02\x02\x28", 7);
	memcpy(z + 112, f + 105, fn - 105);
	assert_int_equal(parse_exact(z, fn + 7, NULL, &h), TLS_ERR_MALFORMED);
	save_case("alert_between_records", z, fn + 7);
	f[105] = 0x16;
	save_case("split_2_records", f, fn);
	const size_t cuts3[] = {2, 300};
	fn = frame(msg, mlen, cuts3, 2, f);
	save_case("split_3_records_header_cut", f, fn);
	assert_int_equal(parse_exact(f, fn, NULL, &h), (int)fn);
}

/* ---- hand-made cases ----------------------------------------------------- */

#define ALL  INT_MAX       /* accepted, the whole input consumed */
#define REC1 (INT_MAX - 1) /* accepted, the first record consumed */
#define ANY  "\x01"        /* an SNI is present; not compared */

enum { F_ECH = 1, F_ESNI = 2 };

struct ecase {
	const char *name;
	const char *spec;
	int expect;
	const char *sni; /* when accepted: NULL no SNI, ANY, or the name */
	unsigned flags;
	int keep; /* > 0: only the first keep bytes; < 0: all but the last -keep */
};

/* draft-ietf-tls-esni-06 ClientEncryptedSNI: suite, key_share, record_digest, encrypted_sni */
#define ESNI_EXT "ffce [2 1301 [2 001d [2 *32:55]] [2 *32:66] [2 *16:77]]"
/* GREASE (RFC 8701) in cipher suites, extensions, ALPN and supported_versions */
#define GREASE_CH "0303 *32:11 [1] [2 0a0a 1301 c02b] [1 00]"
#define GREASE_EXTS                                                                                \
	"0a0a [2] 0000 [2 [2 00 [2 'allowed.example']]] 0010 [2 [2 [1 0a0a] [1 'h2']]] "           \
	"002b [2 [1 fafa 0304 0303]] 1a1a [2 00]"

static const struct ecase ecases[] = {
    /* accepted */
    {"ok_minimal", HELLO_OK, ALL, "allowed.example", 0, 0},
    {"ok_no_extensions_tls12", REC(HS(CH_FIXED)), ALL, NULL, 0, 0},
    {"ok_empty_extensions", HELLO(""), ALL, NULL, 0, 0},
    {"ok_empty_session_id", REC(HS("0303 *32:11 [1] [2 1301] [1 00] [2 " EXTS_OK "]")), ALL,
     "allowed.example", 0, 0},
    {"ok_tls10", "16 0301 [2 01 [3 0301 *32:11 [1] [2 002f] [1 01 00] [2 " EXTS_OK "]]]", ALL,
     "allowed.example", 0, 0},
    {"ok_record_0303", "16 0303 [2 " HS(CH_FIXED " [2 " EXTS_OK "]") "]", ALL, "allowed.example", 0,
     0},
    {"ok_no_sni", HELLO("000a [2 [2 001d]]"), ALL, NULL, 0, 0},
    {"ok_sni_255", HELLO(SNI("*255:61")), ALL, ANY, 0, 0},
    {"ok_sni_raw_case_dot", HELLO(SNI("'Allowed.Example.'")), ALL, "Allowed.Example.", 0, 0},
    {"ok_sni_ip_literal", HELLO(SNI("'127.0.0.1'")), ALL, "127.0.0.1", 0, 0},
    {"ok_sni_last", HELLO("000a [2 [2 001d]] " SNI("'a.example'")), ALL, "a.example", 0, 0},
    {"ok_ech", HELLO(SNI("'public.example'") " fe0d [2 00 0001 0001 2a [2 *32:33] [2 *64:44]]"),
     ALL, "public.example", F_ECH, 0},
    {"ok_ech_empty", HELLO(SNI("'public.example'") " fe0d [2]"), ALL, "public.example", F_ECH, 0},
    {"ok_esni", HELLO(SNI("'allowed.example'") " " ESNI_EXT), ALL, "allowed.example", F_ESNI, 0},
    {"ok_ech_and_esni_no_sni", HELLO("fe0d [2 01] ffce [2 02]"), ALL, NULL, F_ECH | F_ESNI, 0},
    {"ok_grease", REC(HS(GREASE_CH " [2 " GREASE_EXTS "]")), ALL, "allowed.example", 0, 0},
    {"ok_psk_last",
     HELLO(EXTS_OK " 002d [2 [1 01]] 0029 [2 [2 [2 *16:aa] 00000000] [2 [1 *32:bb]]]"), ALL,
     "allowed.example", 0, 0},
    {"ok_unknown_extension", HELLO("abcd [2 'whatever'] " SNI("'allowed.example'")), ALL,
     "allowed.example", 0, 0},
    {"ok_padding_ext", HELLO(EXTS_OK " 0015 [2 *200:00]"), ALL, "allowed.example", 0, 0},
    {"ok_ccs_after", HELLO_OK " 14 0303 [2 01]", REC1, "allowed.example", 0, 0},
    {"ok_appdata_after", HELLO_OK " 17 0303 [2 *40:99]", REC1, "allowed.example", 0, 0},
    {"ok_ssh_after", HELLO_OK " 'SSH-2.0-OpenSSH' 0d0a", REC1, "allowed.example", 0, 0},
    /* not TLS: decided at the first byte that shows it */
    {"nottls_ssh", "'SSH-2.0-OpenSSH_9.2p1 Debian-2' 0d0a", TLS_ERR_NOT_TLS, NULL, 0, 0},
    {"nottls_http_get", "'GET / HTTP/1.1' 0d0a 'Host: allowed.example' 0d0a 0d0a", TLS_ERR_NOT_TLS,
     NULL, 0, 0},
    {"nottls_http_connect", "'CONNECT allowed.example:443 HTTP/1.1' 0d0a 0d0a", TLS_ERR_NOT_TLS,
     NULL, 0, 0},
    {"nottls_one_S", "'S'", TLS_ERR_NOT_TLS, NULL, 0, 0},
    {"nottls_nul", "00", TLS_ERR_NOT_TLS, NULL, 0, 0},
    /* SSLv2-compatible CLIENT-HELLO (RFC 8446 Appendix D.5) */
    {"nottls_sslv2_hello", "802e 01 0301 0015 0000 0010 *21:0a *16:cc", TLS_ERR_NOT_TLS, NULL, 0,
     0},
    {"nottls_alert_first", "15 0303 [2 02 28]", TLS_ERR_NOT_TLS, NULL, 0, 0},
    {"nottls_ccs_first", "14 0303 [2 01]", TLS_ERR_NOT_TLS, NULL, 0, 0},
    {"nottls_appdata_first", "17 0303 [2 'x']", TLS_ERR_NOT_TLS, NULL, 0, 0},
    {"nottls_sslv3_record", "16 0300 [2 " HS(CH_FIXED) "]", TLS_ERR_NOT_TLS, NULL, 0, 0},
    {"nottls_record_0305", "16 0305 [2 " HS(CH_FIXED) "]", TLS_ERR_NOT_TLS, NULL, 0, 0},
    {"nottls_record_major_2", "16 0203", TLS_ERR_NOT_TLS, NULL, 0, 0},
    {"nottls_record_0316", "16 0316", TLS_ERR_NOT_TLS, NULL, 0, 0},
    /* truncated: a prefix of a good hello is never an error */
    {"truncated_1", HELLO_OK, TLS_NEED_MORE, NULL, 0, 1},
    {"truncated_header", HELLO_OK, TLS_NEED_MORE, NULL, 0, 4},
    {"truncated_hs_header", HELLO_OK, TLS_NEED_MORE, NULL, 0, 8},
    {"truncated_body", HELLO_OK, TLS_NEED_MORE, NULL, 0, 60},
    {"truncated_last_byte", HELLO_OK, TLS_NEED_MORE, NULL, 0, -1},
    {"truncated_in_second_record", "16 0301 [2 01 000050 *20:00] 16 0301 003c *10:00",
     TLS_NEED_MORE, NULL, 0, 0},
    /* record layer (RFC 8446 §5.1) */
    {"rec_zero_length", "16 0301 0000", TLS_ERR_MALFORMED, NULL, 0, 0},
    {"rec_zero_length_then_hello", "16 0301 0000 " HELLO_OK, TLS_ERR_MALFORMED, NULL, 0, 0},
    {"rec_16385", "16 0301 4001 01 003ffc", TLS_ERR_MALFORMED, NULL, 0, 0},
    {"rec_ffff", "16 0301 ffff 01", TLS_ERR_MALFORMED, NULL, 0, 0},
    {"rec_trailing_byte", REC(HS(CH_FIXED " [2 " EXTS_OK "]") " 00"), TLS_ERR_MALFORMED, NULL, 0,
     0},
    {"rec_second_message", REC(HS(CH_FIXED " [2 " EXTS_OK "]") " 14 [3 *32:00]"), TLS_ERR_MALFORMED,
     NULL, 0, 0},
    {"rec_hs_shorter_than_record", "16 0301 [2 01 000000 *60:00]", TLS_ERR_MALFORMED, NULL, 0, 0},
    /* handshake type (RFC 8446 §4) */
    {"nothello_server_hello", REC("02 [3 0303 *32:00 00 1301 00]"), TLS_ERR_NOT_HELLO, NULL, 0, 0},
    {"nothello_type_0", REC("00 000000"), TLS_ERR_NOT_HELLO, NULL, 0, 0},
    {"nothello_certificate", REC("0b [3 *40:00]"), TLS_ERR_NOT_HELLO, NULL, 0, 0},
    {"nothello_hello_request_ff", "16 0303 0001 ff", TLS_ERR_NOT_HELLO, NULL, 0, 0},
    /* ClientHello body (RFC 8446 §4.1.2) */
    {"body_empty", REC("01 000000"), TLS_ERR_MALFORMED, NULL, 0, 0},
    {"body_short_random", REC(HS("0303 *10:00")), TLS_ERR_MALFORMED, NULL, 0, 0},
    {"body_no_session_id", REC(HS("0303 *32:11")), TLS_ERR_MALFORMED, NULL, 0, 0},
    {"body_legacy_0300", REC(HS("0300 *32:11 [1] [2 1301] [1 00]")), TLS_ERR_MALFORMED, NULL, 0, 0},
    {"body_legacy_0200", REC(HS("0200 *32:11 [1] [2 1301] [1 00]")), TLS_ERR_MALFORMED, NULL, 0, 0},
    {"body_legacy_0305", REC(HS("0305 *32:11 [1] [2 1301] [1 00]")), TLS_ERR_MALFORMED, NULL, 0, 0},
    {"body_sid_33", REC(HS("0303 *32:11 [1 *33:22] [2 1301] [1 00]")), TLS_ERR_MALFORMED, NULL, 0,
     0},
    {"body_sid_overrun", REC(HS("0303 *32:11 20 *5:22")), TLS_ERR_MALFORMED, NULL, 0, 0},
    {"body_ciphers_odd", REC(HS("0303 *32:11 [1] [2 1301 13] [1 00]")), TLS_ERR_MALFORMED, NULL, 0,
     0},
    {"body_ciphers_empty", REC(HS("0303 *32:11 [1] [2] [1 00]")), TLS_ERR_MALFORMED, NULL, 0, 0},
    {"body_ciphers_overrun", REC(HS("0303 *32:11 [1] 0010 1301")), TLS_ERR_MALFORMED, NULL, 0, 0},
    {"body_comp_missing", REC(HS("0303 *32:11 [1] [2 1301]")), TLS_ERR_MALFORMED, NULL, 0, 0},
    {"body_comp_empty", REC(HS("0303 *32:11 [1] [2 1301] [1]")), TLS_ERR_MALFORMED, NULL, 0, 0},
    {"body_comp_no_null", REC(HS("0303 *32:11 [1] [2 1301] [1 01]")), TLS_ERR_MALFORMED, NULL, 0,
     0},
    {"body_comp_overrun", REC(HS("0303 *32:11 [1] [2 1301] 05 00")), TLS_ERR_MALFORMED, NULL, 0, 0},
    {"body_ext_block_1_byte", REC(HS(CH_FIXED " 00")), TLS_ERR_MALFORMED, NULL, 0, 0},
    {"body_ext_block_short", REC(HS(CH_FIXED " [2 " EXTS_OK "] 00")), TLS_ERR_MALFORMED, NULL, 0,
     0},
    {"body_ext_block_long", REC(HS(CH_FIXED " 0010 000a 0002 0000")), TLS_ERR_MALFORMED, NULL, 0,
     0},
    {"ext_header_1_byte", HELLO("00"), TLS_ERR_MALFORMED, NULL, 0, 0},
    {"ext_header_3_bytes", HELLO("000a 00"), TLS_ERR_MALFORMED, NULL, 0, 0},
    {"ext_data_overrun", HELLO("000a 0010 0000"), TLS_ERR_MALFORMED, NULL, 0, 0},
    {"ext_data_overrun_last", HELLO(EXTS_OK " 0015 0001"), TLS_ERR_MALFORMED, NULL, 0, 0},
    /* RFC 8446 §4.2: no two extensions of one type */
    {"dup_ext", HELLO("000a [2 [2 001d]] 000a [2 [2 001d]]"), TLS_ERR_MALFORMED, NULL, 0, 0},
    {"dup_sni", HELLO(SNI("'allowed.example'") " " SNI("'evil.example'")), TLS_ERR_MALFORMED, NULL,
     0, 0},
    {"dup_sni_same_name", HELLO(SNI("'allowed.example'") " " SNI("'allowed.example'")),
     TLS_ERR_MALFORMED, NULL, 0, 0},
    {"dup_sni_apart", HELLO(SNI("'allowed.example'") " 000a [2 [2 001d]] " SNI("'evil.example'")),
     TLS_ERR_MALFORMED, NULL, 0, 0},
    {"dup_ech", HELLO("fe0d [2 00] fe0d [2 00]"), TLS_ERR_MALFORMED, NULL, 0, 0},
    {"dup_grease", HELLO("0a0a [2] 0a0a [2]"), TLS_ERR_MALFORMED, NULL, 0, 0},
    {"dup_versions", HELLO("002b [2 [1 0304]] 002b [2 [1 0303]]"), TLS_ERR_MALFORMED, NULL, 0, 0},
    {"dup_alpn", HELLO("0010 [2 [2 [1 'h2']]] 0010 [2 [2 [1 'h2']]]"), TLS_ERR_MALFORMED, NULL, 0,
     0},
    /* RFC 8446 §4.2.11: pre_shared_key last */
    {"psk_not_last", HELLO("0029 [2 0000] 000a [2 [2 001d]]"), TLS_ERR_MALFORMED, NULL, 0, 0},
    /* server_name framing (RFC 6066 §3): MALFORMED */
    {"sni_ext_empty", HELLO("0000 [2]"), TLS_ERR_MALFORMED, NULL, 0, 0},
    {"sni_ext_1_byte", HELLO("0000 [2 00]"), TLS_ERR_MALFORMED, NULL, 0, 0},
    {"sni_list_short", HELLO("0000 [2 0005 00 [2 'allowed.example']]"), TLS_ERR_MALFORMED, NULL, 0,
     0},
    {"sni_list_long", HELLO("0000 [2 0020 00 [2 'a']]"), TLS_ERR_MALFORMED, NULL, 0, 0},
    {"sni_trailing_after_list", HELLO("0000 [2 [2 00 [2 'a.example']] 00]"), TLS_ERR_MALFORMED,
     NULL, 0, 0},
    {"sni_name_overrun", HELLO("0000 [2 [2 00 0020 'abc']]"), TLS_ERR_MALFORMED, NULL, 0, 0},
    {"sni_name_len_cut", HELLO("0000 [2 [2 00 00]]"), TLS_ERR_MALFORMED, NULL, 0, 0},
    /* server_name content: BAD_SNI */
    {"sni_two_host_names", HELLO("0000 [2 [2 00 [2 'allowed.example'] 00 [2 'evil.example']]]"),
     TLS_ERR_BAD_SNI, NULL, 0, 0},
    {"sni_host_name_then_other", HELLO("0000 [2 [2 00 [2 'allowed.example'] 01 [2 'x']]]"),
     TLS_ERR_BAD_SNI, NULL, 0, 0},
    {"sni_host_name_then_junk", HELLO("0000 [2 [2 00 [2 'allowed.example'] 00]]"), TLS_ERR_BAD_SNI,
     NULL, 0, 0},
    {"sni_other_type", HELLO("0000 [2 [2 01 [2 'allowed.example']]]"), TLS_ERR_BAD_SNI, NULL, 0, 0},
    {"sni_type_ff_first", HELLO("0000 [2 [2 ff [2 'x'] 00 [2 'allowed.example']]]"),
     TLS_ERR_BAD_SNI, NULL, 0, 0},
    {"sni_empty_list", HELLO("0000 [2 [2]]"), TLS_ERR_BAD_SNI, NULL, 0, 0},
    {"sni_empty_name", HELLO(SNI("")), TLS_ERR_BAD_SNI, NULL, 0, 0},
    {"sni_256", HELLO(SNI("*256:61")), TLS_ERR_BAD_SNI, NULL, 0, 0},
    {"sni_nul_end", HELLO(SNI("'allowed.example' 00")), TLS_ERR_BAD_SNI, NULL, 0, 0},
    {"sni_nul_inside", HELLO(SNI("'allowed.example' 00 '.evil.example'")), TLS_ERR_BAD_SNI, NULL, 0,
     0},
    {"sni_newline", HELLO(SNI("'allowed' 0a '.example'")), TLS_ERR_BAD_SNI, NULL, 0, 0},
    {"sni_tab", HELLO(SNI("'allowed' 09 '.example'")), TLS_ERR_BAD_SNI, NULL, 0, 0},
    {"sni_del", HELLO(SNI("'allowed' 7f '.example'")), TLS_ERR_BAD_SNI, NULL, 0, 0},
    {"sni_utf8", HELLO(SNI("'b' c3a4 'r.example'")), TLS_ERR_BAD_SNI, NULL, 0, 0},
    {"sni_space", HELLO(SNI("'allowed example'")), TLS_ERR_BAD_SNI, NULL, 0, 0},
    {"sni_bad_then_dup", HELLO(SNI("'a' 00") " " SNI("'b'")), TLS_ERR_BAD_SNI, NULL, 0, 0},
    /* ALPN (RFC 7301 §3.1) */
    {"alpn_ext_empty", HELLO("0010 [2]"), TLS_ERR_MALFORMED, NULL, 0, 0},
    {"alpn_list_empty", HELLO("0010 [2 [2]]"), TLS_ERR_MALFORMED, NULL, 0, 0},
    {"alpn_proto_empty", HELLO("0010 [2 [2 [1 'h2'] 00]]"), TLS_ERR_MALFORMED, NULL, 0, 0},
    {"alpn_proto_overrun", HELLO("0010 [2 [2 05 'h2']]"), TLS_ERR_MALFORMED, NULL, 0, 0},
    {"alpn_list_long", HELLO("0010 [2 0009 [1 'h2']]"), TLS_ERR_MALFORMED, NULL, 0, 0},
    {"alpn_trailing", HELLO("0010 [2 [2 [1 'h2']] 00]"), TLS_ERR_MALFORMED, NULL, 0, 0},
    /* supported_versions (RFC 8446 §4.2.1) */
    {"versions_ext_empty", HELLO("002b [2]"), TLS_ERR_MALFORMED, NULL, 0, 0},
    {"versions_empty", HELLO("002b [2 [1]]"), TLS_ERR_MALFORMED, NULL, 0, 0},
    {"versions_odd", HELLO("002b [2 [1 0304 03]]"), TLS_ERR_MALFORMED, NULL, 0, 0},
    {"versions_one_byte", HELLO("002b [2 [1 03]]"), TLS_ERR_MALFORMED, NULL, 0, 0},
    {"versions_trailing", HELLO("002b [2 [1 0304] 00]"), TLS_ERR_MALFORMED, NULL, 0, 0},
    {"versions_overrun", HELLO("002b [2 04 0304]"), TLS_ERR_MALFORMED, NULL, 0, 0},
    /* limits, default max_hello_bytes 16384 */
    {"large_hs_len_ffffff", "16 0301 0004 01 ffffff", TLS_ERR_TOO_LARGE, NULL, 0, 0},
    {"large_hs_len_16380", "16 0301 0004 01 003ffc", TLS_ERR_TOO_LARGE, NULL, 0, 0},
    {"large_record_16384", "16 0301 4000 01 003ff8", TLS_ERR_TOO_LARGE, NULL, 0, 0},
};

static void check_accepted(const struct ecase *c, const uint8_t *b, size_t n,
                           const struct tls_hello *h, int rc)
{
	size_t want = c->expect == ALL ? n : 5 + ((size_t)b[3] << 8 | b[4]);
	assert_int_equal(rc, (int)want);
	assert_int_equal(h->consumed, want);
	if (c->sni == NULL) {
		assert_false(h->has_sni);
	} else {
		assert_true(h->has_sni);
		assert_true(view_in(h->sni, scratch, h->msg_len));
		if (strcmp(c->sni, ANY) != 0)
			assert_true(view_is(h->sni, c->sni));
	}
	assert_int_equal(h->has_ech, (c->flags & F_ECH) != 0);
	assert_int_equal(h->has_esni, (c->flags & F_ESNI) != 0);
}

static void test_edge_table(void **state)
{
	static uint8_t b[BIG];
	struct tls_hello h;
	for (size_t i = 0; i < sizeof(ecases) / sizeof(ecases[0]); i++) {
		const struct ecase *c = &ecases[i];
		size_t n = tb(c->spec, b, sizeof(b));
		if (c->keep > 0)
			n = (size_t)c->keep;
		else if (c->keep < 0)
			n -= (size_t)-c->keep;
		save_case(c->name, b, n);
		int rc = parse_exact(b, n, NULL, &h);
		if (c->expect == ALL || c->expect == REC1) {
			if (rc <= 0)
				fail_msg("%s: got %d (%s), want accepted", c->name, rc,
				         tls_status_str(rc));
			check_accepted(c, b, n, &h, rc);
			(void)check_prefixes(b, n, NULL, rc);
			continue;
		}
		if (rc != c->expect)
			fail_msg("%s: got %d (%s), want %d (%s)", c->name, rc, tls_status_str(rc),
			         c->expect, tls_status_str(c->expect));
		static const struct tls_hello zero;
		assert_memory_equal(&h, &zero, sizeof(zero));
		size_t first = check_prefixes(b, n, NULL, c->expect);
		if (c->expect == TLS_ERR_NOT_TLS)
			assert_true(first >= 1 && first <= 3); /* from the first bytes */
	}
}

/* ---- specific behaviour -------------------------------------------------- */

/* SSH banner, HTTP, 'S': NOT_TLS from the very first byte. */
static void test_not_tls_first_byte(void **state)
{
	const char *inputs[] = {"S",
	                        "SSH-2.0-OpenSSH\r\n",
	                        "GET / HTTP/1.1\r\n",
	                        "CONNECT a:443",
	                        "\x80",
	                        "\x15\x03\x03",
	                        "\x17"};
	struct tls_hello h;
	for (size_t i = 0; i < sizeof(inputs) / sizeof(inputs[0]); i++) {
		const uint8_t *b = (const uint8_t *)inputs[i];
		assert_int_equal(parse_exact(b, 1, NULL, &h), TLS_ERR_NOT_TLS);
		assert_int_equal(parse_exact(b, strlen(inputs[i]), NULL, &h), TLS_ERR_NOT_TLS);
	}
	/* second and third byte */
	assert_int_equal(parse_exact((const uint8_t *)"\x16", 1, NULL, &h), TLS_NEED_MORE);
	assert_int_equal(parse_exact((const uint8_t *)"\x16\x02", 2, NULL, &h), TLS_ERR_NOT_TLS);
	assert_int_equal(parse_exact((const uint8_t *)"\x16\x03", 2, NULL, &h), TLS_NEED_MORE);
	assert_int_equal(parse_exact((const uint8_t *)"\x16\x03\x00", 3, NULL, &h),
	                 TLS_ERR_NOT_TLS);
	assert_int_equal(parse_exact((const uint8_t *)"\x16\x03\x05", 3, NULL, &h),
	                 TLS_ERR_NOT_TLS);
	for (uint8_t minor = 1; minor <= 4; minor++) {
		uint8_t b[3] = {0x16, 3, minor};
		assert_int_equal(parse_exact(b, 3, NULL, &h), TLS_NEED_MORE);
	}
}

static void test_empty_input(void **state)
{
	struct tls_hello h;
	struct tls_limits tiny = {1};
	assert_int_equal(tls_hello_parse((const uint8_t *)"", 0, NULL, scratch, 10, &h),
	                 TLS_NEED_MORE);
	assert_int_equal(tls_hello_parse(NULL, 0, NULL, scratch, 10, &h), TLS_NEED_MORE);
	assert_int_equal(tls_hello_parse(NULL, 0, &tiny, NULL, 0, &h), TLS_NEED_MORE);
}

/* Oversize: at the limit is accepted, one byte over is TOO_LARGE. */
static void test_default_limit_edge(void **state)
{
	static uint8_t b[BIG];
	char spec[256];
	struct tls_hello h;
	size_t base = tb(HELLO(EXTS_OK " 0015 [2]"), b, sizeof(b));
	size_t pad = TLS_HELLO_DEFAULT_MAX - base;

	snprintf(spec, sizeof(spec), HELLO(EXTS_OK " 0015 [2 *%zu:00]"), pad);
	size_t n = tb(spec, b, sizeof(b));
	assert_int_equal(n, TLS_HELLO_DEFAULT_MAX);
	save_case("limit_16384_ok", b, n);
	assert_int_equal(parse_exact(b, n, NULL, &h), (int)n);
	assert_true(h.has_sni && view_is(h.sni, "allowed.example"));
	assert_int_equal(check_prefixes(b, n, NULL, (int)n), n);

	snprintf(spec, sizeof(spec), HELLO(EXTS_OK " 0015 [2 *%zu:00]"), pad + 1);
	n = tb(spec, b, sizeof(b));
	assert_int_equal(n, TLS_HELLO_DEFAULT_MAX + 1);
	save_case("limit_16385_too_large", b, n);
	assert_int_equal(parse_exact(b, n, NULL, &h), TLS_ERR_TOO_LARGE);
	/* known from the record header, before any payload */
	assert_int_equal(check_prefixes(b, n, NULL, TLS_ERR_TOO_LARGE), 5);

	/* the same 16385-byte message fits a bigger limit, and two records */
	struct tls_limits big = {TLS_HELLO_DEFAULT_MAX + 5};
	size_t mlen;
	const uint8_t *msg = single_msg(b, n, &mlen);
	assert_int_equal(parse_exact(b, n, &big, &h), (int)n);
	static uint8_t f[BIG];
	const size_t cut[] = {8000};
	size_t fn = frame(msg, mlen, cut, 1, f);
	assert_int_equal(fn, n + 5);
	big.max_hello_bytes = fn;
	assert_int_equal(parse_exact(f, fn, &big, &h), (int)fn);
	big.max_hello_bytes = fn - 1;
	assert_int_equal(parse_exact(f, fn, &big, &h), TLS_ERR_TOO_LARGE);
	/* known with the handshake length: the rest needs a second record header */
	assert_int_equal(check_prefixes(f, fn, &big, TLS_ERR_TOO_LARGE), 5 + 4);
}

/* A custom limit on a real hello: exactly its size passes; one less fails as soon as known. */
static void test_custom_limit_real(void **state)
{
	static uint8_t b[BIG], f[BIG];
	struct tls_hello h;
	size_t n = read_corpus("real_curl_default", b, sizeof(b)), mlen;
	struct tls_limits lim = {n};
	assert_int_equal(parse_exact(b, n, &lim, &h), (int)n);
	lim.max_hello_bytes = n - 1;
	/* the record header already shows it */
	assert_int_equal(check_prefixes(b, n, &lim, TLS_ERR_TOO_LARGE), 5);
	/* with a first record of 4 bytes, the handshake length shows it */
	size_t mlen0;
	const uint8_t *msg0 = single_msg(b, n, &mlen0);
	const size_t cut4[] = {4};
	size_t fn4 = frame(msg0, mlen0, cut4, 1, f);
	lim.max_hello_bytes = fn4;
	assert_int_equal(parse_exact(f, fn4, &lim, &h), (int)fn4);
	lim.max_hello_bytes = fn4 - 1;
	assert_int_equal(check_prefixes(f, fn4, &lim, TLS_ERR_TOO_LARGE), 9);

	/* split in 3: 15 bytes of headers; the third header tips it */
	const uint8_t *msg = single_msg(b, n, &mlen);
	const size_t cuts[] = {100, 200};
	size_t fn = frame(msg, mlen, cuts, 2, f);
	lim.max_hello_bytes = fn;
	assert_int_equal(parse_exact(f, fn, &lim, &h), (int)fn);
	lim.max_hello_bytes = fn - 1;
	assert_int_equal(check_prefixes(f, fn, &lim, TLS_ERR_TOO_LARGE), 5 + 100 + 5);

	/* nonsense limits are still safe */
	lim.max_hello_bytes = 0;
	assert_int_equal(parse_exact(b, n, &lim, &h), TLS_ERR_TOO_LARGE);
	assert_int_equal(parse_exact(b, 1, &lim, &h), TLS_ERR_TOO_LARGE);
	assert_int_equal(parse_exact((const uint8_t *)"S", 1, &lim, &h), TLS_ERR_NOT_TLS);
	lim.max_hello_bytes = SIZE_MAX;
	assert_int_equal(parse_exact(b, n, &lim, &h), (int)n);
}

/* Handshake length beyond the limit: TOO_LARGE as soon as the length is in, even across records. */
static void test_hs_length_too_large_early(void **state)
{
	static uint8_t b[64];
	size_t n = tb("16 0301 0002 01 00 16 0301 0002 4000", b, sizeof(b));
	assert_int_equal(check_prefixes(b, n, NULL, TLS_ERR_TOO_LARGE), n);
	n = tb("16 0301 0001 01 16 0301 0001 00 16 0301 0002 4000", b, sizeof(b));
	assert_int_equal(check_prefixes(b, n, NULL, TLS_ERR_TOO_LARGE), n);
	/* a message of exactly limit - 5 in one record fits */
	n = tb("16 0301 3ffb 01 003ff7", b, sizeof(b));
	assert_int_equal(check_prefixes(b, n, NULL, TLS_NEED_MORE), 0);
	/* but not when its first record is short: a second header is needed */
	n = tb("16 0301 0004 01 003ff7", b, sizeof(b));
	assert_int_equal(check_prefixes(b, n, NULL, TLS_ERR_TOO_LARGE), n);
}

/* With len at the limit and the hello still incomplete, no more bytes can help. */
static void test_limit_reached_exactly(void **state)
{
	static uint8_t b[64];
	struct tls_limits lim = {12};
	/* two 1-byte records, the handshake length still unknown */
	size_t n = tb("16 0301 0001 01 16 0301 0001 00", b, sizeof(b));
	assert_int_equal(n, 12);
	assert_int_equal(check_prefixes(b, n, &lim, TLS_ERR_TOO_LARGE), 12);
	lim.max_hello_bytes = 13;
	assert_int_equal(check_prefixes(b, n, &lim, TLS_ERR_TOO_LARGE), 0);
}

/* The scratch buffer bounds the message too. */
static void test_scratch_size(void **state)
{
	static uint8_t b[BIG];
	struct tls_hello h;
	size_t n = read_corpus("real_sclient_sni", b, sizeof(b));
	size_t mlen = n - 5;
	assert_int_equal(tls_hello_parse(b, n, NULL, scratch, mlen, &h), (int)n);
	assert_true(view_in(h.sni, scratch, mlen));
	assert_int_equal(tls_hello_parse(b, n, NULL, scratch, mlen - 1, &h), TLS_ERR_TOO_LARGE);
	assert_int_equal(tls_hello_parse(b, n, NULL, scratch, 3, &h), TLS_ERR_TOO_LARGE);
	assert_int_equal(tls_hello_parse(b, n, NULL, NULL, 4096, &h), TLS_ERR_TOO_LARGE);
	assert_int_equal(tls_hello_parse(b, 5, NULL, NULL, 0, &h), TLS_NEED_MORE);
	/* the views live in scratch, not in buf */
	assert_int_equal(tls_hello_parse(b, n, NULL, scratch2, sizeof(scratch2), &h), (int)n);
	assert_true(view_in(h.sni, scratch2, h.msg_len));
	memset(b, 0, n);
	assert_true(view_is(h.sni, "allowed.example"));
}

/* More entries than stored: the first 16 kept, the totals counted. */
static void test_alpn_and_versions_truncated(void **state)
{
	static uint8_t b[BIG];
	struct tls_hello h;
	size_t n = tb(HELLO("0010 [2 [2 [1 'p0'] [1 'p1'] [1 'p2'] [1 'p3'] [1 'p4'] [1 'p5'] "
	                    "[1 'p6'] [1 'p7'] [1 'p8'] [1 'p9'] [1 'pa'] [1 'pb'] [1 'pc'] "
	                    "[1 'pd'] [1 'pe'] [1 'pf'] [1 'pg']]] "
	                    "002b [2 [1 0a0a 0304 0303 0302 0301 1a1a 2a2a 3a3a 4a4a 5a5a 6a6a "
	                    "7a7a 8a8a 9a9a aaaa baba caca]]"),
	              b, sizeof(b));
	save_case("alpn_17_versions_17", b, n);
	assert_int_equal(parse_exact(b, n, NULL, &h), (int)n);
	assert_int_equal(h.n_alpn, TLS_MAX_ALPN);
	assert_int_equal(h.n_alpn_total, 17);
	assert_true(view_is(h.alpn[0], "p0") && view_is(h.alpn[15], "pf"));
	assert_int_equal(h.n_versions, TLS_MAX_VERSIONS);
	assert_int_equal(h.n_versions_total, 17);
	assert_int_equal(h.versions[0], 0x0a0a);
	assert_int_equal(h.versions[1], 0x0304);
	assert_int_equal(h.versions[15], 0xbaba);
	assert_false(h.has_sni);

	/* a 255-byte protocol name is fine */
	n = tb(HELLO("0010 [2 [2 [1 *255:41]]]"), b, sizeof(b));
	assert_int_equal(parse_exact(b, n, NULL, &h), (int)n);
	assert_int_equal(h.alpn[0].len, 255);
	/* 127 versions: the most a 1-byte length can hold (254 bytes) */
	n = tb(HELLO("002b [2 [1 *254:03]]"), b, sizeof(b));
	assert_int_equal(parse_exact(b, n, NULL, &h), (int)n);
	assert_int_equal(h.n_versions_total, 127);
}

static void test_grease(void **state)
{
	static uint8_t b[BIG];
	struct tls_hello h;
	size_t n = tb(REC(HS("0303 *32:11 [1] [2 dada 1301] [1 00] [2 2a2a [2] " SNI(
	                  "'a.example'") " 002b [2 [1 eaea 0304]] 0010 [2 [2 [1 3a3a] [1 'h2']]] "
	                                 "fafa [2 00]]")),
	              b, sizeof(b));
	assert_int_equal(parse_exact(b, n, NULL, &h), (int)n);
	assert_int_equal(h.n_versions, 2);
	assert_true(tls_is_grease(h.versions[0]));
	assert_false(tls_is_grease(h.versions[1]));
	assert_int_equal(h.n_extensions, 5);
	assert_int_equal(h.n_alpn, 2);
	for (unsigned i = 0; i < 16; i++)
		assert_true(tls_is_grease((uint16_t)(0x0a0a + 0x1010 * i)));
	assert_false(tls_is_grease(0x0a1a));
	assert_false(tls_is_grease(0x0a0b));
	assert_false(tls_is_grease(0x0303));
	assert_false(tls_is_grease(0xaaab));
}

/* Every call starts from scratch: the same answer twice, and out zeroed unless complete. */
static void test_out_zeroed_and_repeatable(void **state)
{
	static uint8_t b[BIG];
	static const struct tls_hello zero;
	struct tls_hello h, h2;
	size_t n = read_corpus("real_curl_default", b, sizeof(b));
	assert_int_equal(parse_exact(b, n, NULL, &h), (int)n);
	assert_int_equal(parse_exact(b, n, NULL, &h2), (int)n);
	assert_same_hello(&h, &h2);
	assert_int_equal(parse_exact(b, n - 1, NULL, &h), TLS_NEED_MORE);
	assert_memory_equal(&h, &zero, sizeof(zero));
	assert_int_equal(parse_exact(b, n, NULL, &h), (int)n);
	size_t m = tb(HELLO(SNI("'a' 01")), b, sizeof(b));
	assert_int_equal(parse_exact(b, m, NULL, &h), TLS_ERR_BAD_SNI);
	assert_memory_equal(&h, &zero, sizeof(zero));
}

static void test_null_arguments(void **state)
{
	static uint8_t b[BIG];
	struct tls_hello h;
	size_t n = tb(HELLO_OK, b, sizeof(b));
	assert_int_equal(tls_hello_parse(b, n, NULL, scratch, sizeof(scratch), NULL),
	                 TLS_ERR_MALFORMED);
	assert_int_equal(tls_hello_parse(NULL, 5, NULL, scratch, sizeof(scratch), &h),
	                 TLS_ERR_MALFORMED);
	assert_int_equal(tls_hello_parse(b, n, NULL, scratch, sizeof(scratch), &h), (int)n);
}

static void test_limits_default(void **state)
{
	struct tls_limits l = {0};
	tls_limits_default(&l);
	assert_int_equal(l.max_hello_bytes, 16384);
}

/* ---- the server's first flight and the interlude (HelloRetryRequest) --------- */

#define HRR_RND "cf21ad74e59a6111be1d8c021e65b891c2a211167abb8c5e079e09e2c8a8339c"
#define SH_BODY(rnd) "0303 " rnd " [1 ] 1301 00 [2 002b [2 0304]]"
#define SH_REC(rnd) "16 0303 [2 02 [3 " SH_BODY(rnd) "]]"

/* Every prefix of b: NEED_MORE up to the deciding byte, then `want` (split-invariance). */
static void server_prefixes(const uint8_t *b, size_t n, int want, size_t decided_at)
{
	for (size_t k = 0; k <= n; k++) {
		uint8_t *copy = malloc(k ? k : 1);
		assert_non_null(copy);
		memcpy(copy, b, k);
		int r = tls_server_first(copy, k, 16384);
		free(copy);
		if (k < decided_at && r != TLS_SERVER_NEED_MORE)
			fail_msg("prefix %zu: %s before byte %zu", k, tls_server_status_str(r), decided_at);
		if (k >= decided_at && r != want)
			fail_msg("prefix %zu: %s, want %s", k, tls_server_status_str(r),
			         tls_server_status_str(want));
	}
}

static void test_server_first(void **state)
{
	(void)state;
	uint8_t b[512], m[512];
	size_t n;
	/* A retry request, decided at the last byte of its random (5 + 4 + 2 + 32). */
	n = tb(SH_REC(HRR_RND), b, sizeof(b));
	server_prefixes(b, n, TLS_SERVER_RETRY, 43);
	/* Any other random: a ServerHello. */
	n = tb(SH_REC("*32:5a"), b, sizeof(b));
	server_prefixes(b, n, TLS_SERVER_HELLO, 43);
	/* The same retry request cut into one-byte records: reassembled. */
	size_t hl = tb("02 [3 " SH_BODY(HRR_RND) "]", m, sizeof(m));
	n = 0;
	for (size_t i = 0; i < hl; i++) {
		uint8_t rec[6] = {0x16, 0x03, 0x03, 0x00, 0x01, m[i]};
		memcpy(b + n, rec, 6);
		n += 6;
	}
	assert_int_equal(tls_server_first(b, n, 16384), TLS_SERVER_RETRY);
	/* ... but not past max. */
	assert_int_equal(tls_server_first(b, n, 100), TLS_SERVER_ERR_TOO_LARGE);
	/* An alert first: the server refused. */
	n = tb("15 0303 [2 02 28]", b, sizeof(b));
	server_prefixes(b, n, TLS_SERVER_ALERT, 5);
	/* Refused at the first byte that settles it. */
	n = tb("'HTTP/1.1 400'", b, sizeof(b));
	server_prefixes(b, n, TLS_SERVER_ERR_MALFORMED, 1);
	n = tb("16 0200", b, sizeof(b)); /* SSL 2 / 3.0 */
	server_prefixes(b, n, TLS_SERVER_ERR_MALFORMED, 2);
	n = tb("16 0303 [2 0b [3 00]]", b, sizeof(b)); /* first message not a ServerHello */
	server_prefixes(b, n, TLS_SERVER_ERR_MALFORMED, 6);
	n = tb("16 0303 [2 02 00 00]  17 0303 [2 00]", b, sizeof(b)); /* another type inside it */
	server_prefixes(b, n, TLS_SERVER_ERR_MALFORMED, 9);
	n = tb("16 0303 0000", b, sizeof(b)); /* an empty handshake record */
	server_prefixes(b, n, TLS_SERVER_ERR_MALFORMED, 5);
	n = tb("15 0303 [2 02 28 00]", b, sizeof(b)); /* an alert is two bytes */
	server_prefixes(b, n, TLS_SERVER_ERR_MALFORMED, 5);
	n = tb("16 0303 [2 02 [3 0304 *32:00]]", b, sizeof(b)); /* legacy_version above 1.2 */
	server_prefixes(b, n, TLS_SERVER_ERR_MALFORMED, 11);
	assert_int_equal(tls_server_first(NULL, 0, 100), TLS_SERVER_NEED_MORE);
	assert_int_equal(tls_server_first(NULL, 1, 100), TLS_SERVER_ERR_MALFORMED);
	assert_string_equal(tls_server_status_str(TLS_SERVER_RETRY), "hello_retry_request");
	assert_string_equal(tls_server_status_str(99), "unknown");
}

static void test_interlude(void **state)
{
	(void)state;
	uint8_t b[512];
	size_t n, off = 99;
	/* Nothing to skip: the next record starts at 0 (one byte of it is enough). */
	n = tb("16", b, sizeof(b));
	assert_int_equal(tls_skip_interlude(b, n, false, 1000, &off), 1);
	assert_int_equal(off, 0);
	assert_int_equal(tls_skip_interlude(b, 0, false, 1000, &off), TLS_NEED_MORE);
	/* One compatibility record, then the hello. */
	n = tb("14 0303 [2 01] 16 03", b, sizeof(b));
	for (size_t k = 0; k < 6; k++)
		assert_int_equal(tls_skip_interlude(b, k, false, 1000, &off), TLS_NEED_MORE);
	assert_int_equal(tls_skip_interlude(b, 7, false, 1000, &off), 1);
	assert_int_equal(off, 6);
	/* Early data only when the first hello offered it. */
	n = tb("14 0303 [2 01] 17 0303 [2 'early'] 17 0303 [2 'more'] 16", b, sizeof(b));
	assert_int_equal(tls_skip_interlude(b, n, true, 1000, &off), 1);
	assert_int_equal(off, n - 1);
	assert_int_equal(tls_skip_interlude(b, n, false, 1000, &off), TLS_ERR_MALFORMED);
	/* A second compatibility record, a bad one, another version. */
	n = tb("14 0303 [2 01] 14 0303 [2 01] 16", b, sizeof(b));
	assert_int_equal(tls_skip_interlude(b, n, true, 1000, &off), TLS_ERR_MALFORMED);
	n = tb("14 0303 [2 02] 16", b, sizeof(b));
	assert_int_equal(tls_skip_interlude(b, n, false, 1000, &off), TLS_ERR_MALFORMED);
	n = tb("14 0303 [2 01 01] 16", b, sizeof(b));
	assert_int_equal(tls_skip_interlude(b, n, false, 1000, &off), TLS_ERR_MALFORMED);
	n = tb("14 0200 [2 01] 16", b, sizeof(b));
	assert_int_equal(tls_skip_interlude(b, n, false, 1000, &off), TLS_ERR_MALFORMED);
	/* Bounded: records past max are TOO_LARGE. */
	n = tb("17 0303 [2 *300:aa] 16", b, sizeof(b));
	assert_int_equal(tls_skip_interlude(b, n, true, 200, &off), TLS_ERR_TOO_LARGE);
	assert_int_equal(tls_skip_interlude(b, n, true, 400, &off), 1);
}

/*
 * A hello dripped one byte per read, and one cut into one-byte records: the
 * watch says "parse" O(log n) times and walks linearly; the complete hello is
 * parsed.
 */
static void watch_drip(const uint8_t *b, size_t n)
{
	struct tls_hello_watch w;
	memset(&w, 0, sizeof(w));
	size_t parses = 0;
	for (size_t len = 1; len <= n; len++) {
		bool now = tls_hello_worth_parsing(&w, b, len, 65536);
		parses += now;
		/* Never "wait" on a complete hello. */
		if (!now && len == n)
			fail_msg("the complete hello (%zu bytes) was not parsed", n);
	}
	assert_true(parses <= 24);
	assert_true(w.work <= n);
}

static void test_hello_watch_linear(void **state)
{
	(void)state;
	static uint8_t b[70000], msg[20000];
	/* One record with a 15 KiB hello (padding). */
	size_t n = tb(HELLO(EXTS_OK " 0015 [2 *15000:00]"), b, sizeof(b));
	watch_drip(b, n);
	/* The same message in one-byte records. */
	size_t ml = tb(HS(CH_FIXED " [2 " EXTS_OK " 0015 [2 *2000:00]]"), msg, sizeof(msg));
	size_t k = 0;
	for (size_t i = 0; i < ml; i++) {
		uint8_t r[6] = {0x16, 0x03, 0x01, 0x00, 0x01, msg[i]};
		memcpy(b + k, r, 6);
		k += 6;
	}
	watch_drip(b, k);
	struct tls_hello h;
	static uint8_t scr[TLS_HELLO_HARD_MAX];
	struct tls_limits lim = {65536};
	assert_int_equal(tls_hello_parse(b, k, &lim, scr, sizeof(scr), &h), (int)k);
	/* A first byte that is not a handshake record: parse (NOT_TLS) at once. */
	struct tls_hello_watch w;
	memset(&w, 0, sizeof(w));
	assert_true(tls_hello_worth_parsing(&w, (const uint8_t *)"SSH-2.0-x", 9, 16384));
}

static void test_status_names(void **state)
{
	assert_string_equal(tls_status_str(1), "complete");
	assert_string_equal(tls_status_str(TLS_NEED_MORE), "need_more");
	assert_string_equal(tls_status_str(TLS_ERR_NOT_TLS), "not_tls");
	assert_string_equal(tls_status_str(TLS_ERR_MALFORMED), "malformed");
	assert_string_equal(tls_status_str(TLS_ERR_TOO_LARGE), "too_large");
	assert_string_equal(tls_status_str(TLS_ERR_NOT_HELLO), "not_hello");
	assert_string_equal(tls_status_str(TLS_ERR_BAD_SNI), "bad_sni");
	assert_string_equal(tls_status_str(-6), "unknown");
	assert_string_equal(tls_status_str(INT_MIN), "unknown");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_real_hellos),
	    cmocka_unit_test(test_real_hellos_with_garbage_after),
	    cmocka_unit_test(test_real_hellos_split),
	    cmocka_unit_test(test_interleaved_records),
	    cmocka_unit_test(test_edge_table),
	    cmocka_unit_test(test_not_tls_first_byte),
	    cmocka_unit_test(test_empty_input),
	    cmocka_unit_test(test_default_limit_edge),
	    cmocka_unit_test(test_custom_limit_real),
	    cmocka_unit_test(test_hs_length_too_large_early),
	    cmocka_unit_test(test_limit_reached_exactly),
	    cmocka_unit_test(test_scratch_size),
	    cmocka_unit_test(test_alpn_and_versions_truncated),
	    cmocka_unit_test(test_grease),
	    cmocka_unit_test(test_out_zeroed_and_repeatable),
	    cmocka_unit_test(test_null_arguments),
	    cmocka_unit_test(test_limits_default),
	    cmocka_unit_test(test_hello_watch_linear),
	    cmocka_unit_test(test_server_first),
	    cmocka_unit_test(test_interlude),
	    cmocka_unit_test(test_status_names),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
