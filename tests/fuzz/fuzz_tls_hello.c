/* libFuzzer target for the TLS ClientHello parser, with its consistency invariants. */
#include "tls_hello.h"

#include "ja4.h"
#include "policy.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/*
 * Invariants checked on every input (abort() on a breach):
 *  1. the answer is a known status, or 0 < consumed <= min(len, max);
 *  2. every prefix answers NEED_MORE up to some point and the final answer
 *     from there on; an accepted hello is final exactly at its last byte;
 *  3. an accepted hello is what an independent walk of the same bytes says:
 *     records of type handshake that tile [0, consumed), whose payloads
 *     concatenate to the message in scratch, which follows the ClientHello
 *     grammar with no duplicate extension, a valid single SNI, and fields
 *     equal to what the parser reported;
 *  4. bytes after the hello are never read; out is zeroed unless accepted;
 *  5. the result does not depend on how the message is cut into records.
 */

/* All prefixes up to this length; beyond it a sample (the whole sweep is O(n^2)). */
#define ALL_PREFIXES_MAX 256
/* Prefixes up to this length are parsed from an exact-size copy, so ASan sees over-reads. */
#define EXACT_PREFIX_MAX 2048

static uint8_t scratch[TLS_HELLO_HARD_MAX];
static uint8_t scratch2[TLS_HELLO_HARD_MAX];

static void die(const char *what, size_t k, int a, int b)
{
	fprintf(stderr, "tls_hello invariant broken: %s (at %zu: %d %s vs %d %s)\n", what, k, a,
	        tls_status_str(a), b, tls_status_str(b));
	abort();
}

static void check(bool ok, const char *what)
{
	if (!ok) {
		fprintf(stderr, "tls_hello invariant broken: %s\n", what);
		abort();
	}
}

static size_t eff_max(const struct tls_limits *l)
{
	return l->max_hello_bytes < TLS_HELLO_HARD_MAX ? l->max_hello_bytes : TLS_HELLO_HARD_MAX;
}

static bool is_zero(const struct tls_hello *h)
{
	static const struct tls_hello zero;
	return memcmp(h, &zero, sizeof(zero)) == 0;
}

static bool view_in(struct tls_view v, const uint8_t *base, size_t len)
{
	return v.p != NULL && v.p >= base && v.len <= len && (size_t)(v.p - base) <= len - v.len;
}

static bool view_eq(struct tls_view a, const uint8_t *p, size_t n)
{
	return a.len == n && (n == 0 || memcmp(a.p, p, n) == 0);
}

/* By content: a and b may point into different scratch buffers. */
static bool same_hello(const struct tls_hello *a, const struct tls_hello *b)
{
	if (a->legacy_version != b->legacy_version || a->record_version != b->record_version ||
	    a->has_sni != b->has_sni || a->n_alpn != b->n_alpn ||
	    a->n_alpn_total != b->n_alpn_total || a->n_versions != b->n_versions ||
	    a->n_versions_total != b->n_versions_total || a->has_alpn != b->has_alpn ||
	    a->has_versions != b->has_versions || a->has_ech != b->has_ech ||
	    a->has_esni != b->has_esni || a->n_extensions != b->n_extensions ||
	    a->msg_len != b->msg_len)
		return false;
	if (a->has_sni && !view_eq(a->sni, b->sni.p, b->sni.len))
		return false;
	for (size_t i = 0; i < a->n_alpn && i < TLS_MAX_ALPN; i++) {
		if (!view_eq(a->alpn[i], b->alpn[i].p, b->alpn[i].len))
			return false;
	}
	if (!view_eq(a->ciphers, b->ciphers.p, b->ciphers.len) ||
	    !view_eq(a->extensions, b->extensions.p, b->extensions.len) ||
	    a->has_sig_algs != b->has_sig_algs ||
	    (a->has_sig_algs && !view_eq(a->sig_algs, b->sig_algs.p, b->sig_algs.len)))
		return false;
	return memcmp(a->versions, b->versions, sizeof(a->versions)) == 0;
}

/* The JA4 of an accepted hello: computed, shaped as the policy expects, the same for an equal
 * hello parsed elsewhere. */
static void check_ja4(const struct tls_hello *a, const struct tls_hello *b)
{
	char x[JA4_LEN + 1], y[JA4_LEN + 1];
	check(ja4_fingerprint(a, x) == 0 && ja4_fingerprint(b, y) == 0, "ja4 failed");
	check(policy_ja4_valid(x, strlen(x)), "ja4 shape");
	check(strcmp(x, y) == 0, "ja4 differs between equal hellos");
	check(a->ciphers.len >= 2 && a->ciphers.len % 2 == 0, "cipher view");
	check(!a->has_sig_algs || (a->sig_algs.len >= 2 && a->sig_algs.len % 2 == 0), "sig_algs view");
}

/* ---- an independent walk of an accepted hello (invariant 3) ---------------- */

static size_t be(const uint8_t *p, size_t n)
{
	size_t v = 0;
	for (size_t i = 0; i < n; i++)
		v = v << 8 | p[i];
	return v;
}

/* The records in buf[0..consumed) and the message they carry in scratch. */
static void check_records(const uint8_t *buf, size_t consumed, const struct tls_hello *h)
{
	size_t off = 0, m = 0;
	while (off < consumed) {
		check(consumed - off >= 5, "record header cut");
		size_t rlen = be(buf + off + 3, 2);
		check(buf[off] == 0x16 && buf[off + 1] == 3 && buf[off + 2] >= 1 &&
		          buf[off + 2] <= 4,
		      "record type/version");
		check(rlen >= 1 && rlen <= 16384 && rlen <= consumed - off - 5, "record length");
		check(m + rlen <= h->msg_len, "records carry more than the message");
		check(memcmp(buf + off + 5, scratch + m, rlen) == 0, "scratch != record payloads");
		m += rlen;
		off += 5 + rlen;
	}
	check(m == h->msg_len && h->msg_len >= 4, "records do not carry exactly the message");
	check(scratch[0] == 1 && be(scratch + 1, 3) + 4 == h->msg_len, "handshake header");
	check(h->record_version == be(buf + 1, 2), "record_version");
}

/* One extension of an accepted hello: its content against what out says. */
static void check_extension(size_t type, const uint8_t *d, size_t n, const struct tls_hello *h,
                            size_t *alpn_seen, size_t *ver_seen)
{
	if (type == 0) {
		check(n >= 5 && be(d, 2) == n - 2 && d[2] == 0 && be(d + 3, 2) == n - 5,
		      "server_name not one host_name");
		check(h->has_sni && view_eq(h->sni, d + 5, n - 5), "sni view");
		check(n - 5 >= 1 && n - 5 <= 255, "sni length");
		for (size_t i = 5; i < n; i++)
			check(d[i] > 0x20 && d[i] < 0x7f, "sni byte");
	} else if (type == 16) {
		check(n >= 3 && be(d, 2) == n - 2, "alpn list length");
		for (size_t i = 2; i < n; i += 1 + d[i]) {
			check(d[i] >= 1 && i + 1 + d[i] <= n, "alpn entry");
			if (*alpn_seen < TLS_MAX_ALPN)
				check(view_eq(h->alpn[*alpn_seen], d + i + 1, d[i]), "alpn view");
			(*alpn_seen)++;
		}
	} else if (type == 43) {
		check(n >= 3 && d[0] == n - 1 && d[0] % 2 == 0, "versions length");
		for (size_t i = 1; i < n; i += 2) {
			if (*ver_seen < TLS_MAX_VERSIONS)
				check(h->versions[*ver_seen] == be(d + i, 2), "version value");
			(*ver_seen)++;
		}
	}
}

static void check_grammar(const struct tls_hello *h)
{
	const uint8_t *p = scratch + 4, *end = scratch + h->msg_len;
	check(end - p >= 35, "body too short");
	check(h->legacy_version == be(p, 2) && p[0] == 3 && p[1] >= 1 && p[1] <= 4,
	      "legacy_version");
	p += 34;
	check(p[0] <= 32 && end - p > p[0], "session id");
	p += 1 + p[0];
	check(end - p >= 2, "cipher suites length");
	size_t cs = be(p, 2);
	check(cs >= 2 && cs % 2 == 0 && (size_t)(end - p) >= 2 + cs, "cipher suites");
	p += 2 + cs;
	check(end - p >= 1 && p[0] >= 1 && (size_t)(end - p) >= 1u + p[0], "compression");
	check(memchr(p + 1, 0, p[0]) != NULL, "no null compression");
	p += 1 + p[0];

	static uint8_t seen[65536];
	memset(seen, 0, sizeof(seen));
	size_t n_ext = 0, alpn_seen = 0, ver_seen = 0;
	bool sni = false, alpn = false, ver = false, ech = false, esni = false, psk_last = false;
	if (p != end) {
		check(end - p >= 2 && be(p, 2) == (size_t)(end - p) - 2, "extensions length");
		p += 2;
		while (p < end) {
			check(end - p >= 4, "extension header");
			size_t type = be(p, 2), n = be(p + 2, 2);
			check((size_t)(end - p) - 4 >= n, "extension length");
			check(!seen[type], "duplicate extension accepted");
			check(!psk_last, "extension after pre_shared_key");
			seen[type] = 1;
			psk_last = type == 41;
			sni |= type == 0;
			alpn |= type == 16;
			ver |= type == 43;
			ech |= type == 0xfe0d;
			esni |= type == 0xffce;
			check_extension(type, p + 4, n, h, &alpn_seen, &ver_seen);
			p += 4 + n;
			n_ext++;
		}
	}
	check(sni == h->has_sni && alpn == h->has_alpn && ver == h->has_versions &&
	          ech == h->has_ech && esni == h->has_esni,
	      "extension flags");
	check(n_ext == h->n_extensions, "n_extensions");
	check(alpn_seen == h->n_alpn_total && h->n_alpn == (alpn_seen < 16 ? alpn_seen : 16),
	      "alpn counts");
	check(ver_seen == h->n_versions_total && h->n_versions == (ver_seen < 16 ? ver_seen : 16),
	      "version counts");
	if (!sni)
		check(h->sni.p == NULL && h->sni.len == 0, "sni set without server_name");
	for (size_t i = 0; i < h->n_alpn; i++)
		check(view_in(h->alpn[i], scratch, h->msg_len), "alpn view outside scratch");
	if (sni)
		check(view_in(h->sni, scratch, h->msg_len), "sni view outside scratch");
}

/* ---- prefixes (invariant 2) ----------------------------------------------- */

static int parse_prefix(const uint8_t *buf, size_t k, const struct tls_limits *l,
                        struct tls_hello *out)
{
	if (k > EXACT_PREFIX_MAX)
		return tls_hello_parse(buf, k, l, scratch2, sizeof(scratch2), out);
	uint8_t *copy = malloc(k ? k : 1);
	if (copy == NULL)
		abort();
	if (k)
		memcpy(copy, buf, k);
	int rc = tls_hello_parse(copy, k, l, scratch2, sizeof(scratch2), out);
	free(copy);
	return rc;
}

static void check_prefix(const uint8_t *buf, size_t k, const struct tls_limits *l, int r,
                         size_t *first)
{
	static struct tls_hello part;
	int rk = parse_prefix(buf, k, l, &part);
	if (rk == TLS_NEED_MORE) {
		if (k >= *first)
			die("need_more after a final answer", k, rk, r);
		return;
	}
	if (rk != r)
		die("prefix answer differs from whole", k, rk, r);
	if (k < *first)
		*first = k;
}

static void check_prefixes(const uint8_t *buf, size_t n, const struct tls_limits *l, int r)
{
	size_t first = SIZE_MAX;
	if (n <= ALL_PREFIXES_MAX) {
		/* ascending, so "first" is the first final prefix */
		for (size_t k = 0; k <= n; k++)
			check_prefix(buf, k, l, r, &first);
	} else {
		/* 64 evenly spaced prefixes, the first 64, and both sides of
		 * every record header the stream may have */
		size_t ks[512], nk = 0;
		for (size_t k = 0; k < 64; k++)
			ks[nk++] = k;
		for (size_t k = 1; k <= 64; k++)
			ks[nk++] = n * k / 64;
		for (size_t off = 0; off + 5 <= n && nk + 8 <= 512;
		     off += 5 + be(buf + off + 3, 2)) {
			size_t d[] = {0, 1, 4, 5, 6, 9};
			for (size_t j = 0; j < 6; j++)
				ks[nk++] = off + d[j] <= n ? off + d[j] : n;
		}
		if (r > 0) {
			ks[nk++] = (size_t)r - 1;
			ks[nk++] = (size_t)r;
		}
		/* insertion sort; nk is small */
		for (size_t i = 1; i < nk; i++)
			for (size_t j = i; j > 0 && ks[j - 1] > ks[j]; j--) {
				size_t t = ks[j];
				ks[j] = ks[j - 1];
				ks[j - 1] = t;
			}
		for (size_t i = 0; i < nk; i++)
			check_prefix(buf, ks[i], l, r, &first);
	}
	if (r > 0 && first != (size_t)r)
		die("hello final before its last byte", first, r, r);
}

/* ---- one input under one limit ------------------------------------------ */

static void run(const uint8_t *buf, size_t n, const struct tls_limits *l)
{
	static struct tls_hello whole, part;
	int r = tls_hello_parse(buf, n, l, scratch, sizeof(scratch), &whole);

	if (r > 0) {
		check((size_t)r <= n && (size_t)r <= eff_max(l), "consumed > len or max");
		check(whole.consumed == (size_t)r, "out->consumed");
		check_records(buf, (size_t)r, &whole);
		check_grammar(&whole);
	} else {
		check(r >= TLS_ERR_BAD_SNI, "unknown status");
		check(is_zero(&whole), "out not zeroed on a non-complete result");
		check(r != TLS_NEED_MORE || n < eff_max(l), "need_more at or past the limit");
	}
	check_prefixes(buf, n, l, r);

	if (r > 0) {
		/* the records alone: the same result, the same views into scratch2 */
		int rm = tls_hello_parse(buf, (size_t)r, l, scratch2, sizeof(scratch2), &part);
		check(rm == r && same_hello(&whole, &part), "hello alone differs");
		check_ja4(&whole, &part);
		/* a scratch of exactly the message is enough; one byte less is not */
		rm = tls_hello_parse(buf, n, l, scratch2, whole.msg_len, &part);
		check(rm == r && same_hello(&whole, &part), "scratch of msg_len differs");
		rm = tls_hello_parse(buf, n, l, scratch2, whole.msg_len - 1, &part);
		check(rm == TLS_ERR_TOO_LARGE, "message accepted in a scratch too small");
	}
	if (r > 0 && (size_t)r < n) {
		uint8_t *mut = malloc(n);
		if (mut == NULL)
			abort();
		memcpy(mut, buf, n);
		for (size_t i = (size_t)r; i < n; i++)
			mut[i] ^= 0x5a;
		int rm = tls_hello_parse(mut, n, l, scratch2, sizeof(scratch2), &part);
		if (rm != r)
			die("answer depends on bytes after the hello", n, rm, r);
		check(same_hello(&whole, &part), "fields depend on bytes after the hello");
		free(mut);
	}
}

/* ---- framing does not matter (invariant 5) -------------------------------- */

/* Cut msg into records of sizes from a little PRNG (or all of size step when step > 0). */
static size_t frame(const uint8_t *msg, size_t mlen, uint32_t seed, size_t step, uint8_t *out)
{
	size_t o = 0, from = 0;
	while (from < mlen) {
		size_t sz;
		if (step) {
			sz = step;
		} else {
			seed = seed * 1103515245u + 12345u;
			sz = 1 + (seed >> 8) % (seed & 0x100 ? 16 : 700);
		}
		if (sz > mlen - from)
			sz = mlen - from;
		if (sz > 16384)
			sz = 16384;
		out[o++] = 0x16;
		out[o++] = 3;
		out[o++] = 1;
		out[o++] = (uint8_t)(sz >> 8);
		out[o++] = (uint8_t)sz;
		memcpy(out + o, msg + from, sz);
		o += sz;
		from += sz;
	}
	return o;
}

static void reframe(const uint8_t *data, size_t size)
{
	/* the input as a handshake message (its record header dropped if it has one) */
	if (size >= 5 && data[0] == 0x16) {
		data += 5;
		size -= 5;
	}
	if (size < 4 || size > 60000)
		return;
	static uint8_t msg[60000], a[60000 + 5 * 4], b[6 * 60000], c[6 * 2000];
	static struct tls_hello ha, hb, hc;
	memcpy(msg, data, size);
	size_t body = size - 4;
	msg[1] = (uint8_t)(body >> 16);
	msg[2] = (uint8_t)(body >> 8);
	msg[3] = (uint8_t)body;

	uint32_t seed = 2166136261u;
	for (size_t i = 0; i < size; i++)
		seed = (seed ^ msg[i]) * 16777619u;
	size_t na = frame(msg, size, 0, 16384, a);
	size_t nb = frame(msg, size, seed, 0, b);
	struct tls_limits la = {na}, lb = {nb};
	int ra = tls_hello_parse(a, na, &la, scratch, sizeof(scratch), &ha);
	int rb = tls_hello_parse(b, nb, &lb, scratch2, sizeof(scratch2), &hb);
	if ((ra > 0) != (rb > 0) || (ra <= 0 && ra != rb))
		die("result depends on record framing", nb, rb, ra);
	if (ra > 0) {
		check((size_t)ra == na && (size_t)rb == nb, "reframed hello not all consumed");
		check(same_hello(&ha, &hb), "fields depend on record framing");
	}
	if (size <= 2000) {
		/* one byte per record: every cut, inside the handshake header too */
		size_t nc = frame(msg, size, 0, 1, c);
		struct tls_limits lc = {nc};
		int rc = tls_hello_parse(c, nc, &lc, scratch2, sizeof(scratch2), &hc);
		if ((ra > 0) != (rc > 0) || (ra <= 0 && ra != rc))
			die("result depends on 1-byte records", nc, rc, ra);
		if (ra > 0)
			check(same_hello(&ha, &hc), "fields depend on 1-byte records");
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct tls_limits def;
	tls_limits_default(&def);
	const struct tls_limits small = {300};
	const struct tls_limits tiny = {12};

	run(data, size, &def);
	run(data, size, &small);
	run(data, size, &tiny);
	/* NULL limits are the defaults */
	static struct tls_hello a, b;
	int ra = tls_hello_parse(data, size, NULL, scratch, sizeof(scratch), &a);
	int rb = tls_hello_parse(data, size, &def, scratch2, sizeof(scratch2), &b);
	check(ra == rb && (ra <= 0 || same_hello(&a, &b)), "NULL limits differ from defaults");
	reframe(data, size);
	return 0;
}
