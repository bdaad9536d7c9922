/* JA4 TLS client fingerprint, from the spec in FoxIO-LLC/ja4 technical_details/JA4.md. */
#include "ja4.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "ascii.h"

#define EXT_SNI  0x0000
#define EXT_ALPN 0x0010
/* Cipher suites (extension types) sorted on the stack; a longer list (legal, never seen in
 * practice) is malloc'd. */
#define JA4_STACK_CIPHERS 512

static uint16_t be16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

/* Two characters of the version part (JA4.md, "TLS and DTLS Version"). */
static const char *version_text(const struct tls_hello *h)
{
	uint16_t v = h->legacy_version;
	if (h->has_versions) {
		v = 0;
		for (size_t i = 0; i < h->n_versions; i++)
			if (!tls_is_grease(h->versions[i]) && h->versions[i] > v)
				v = h->versions[i];
	}
	switch (v) {
	case 0x0304:
		return "13";
	case 0x0303:
		return "12";
	case 0x0302:
		return "11";
	case 0x0301:
		return "10";
	case 0x0300:
		return "s3";
	case 0x0002:
		return "s2";
	case 0xfeff:
		return "d1";
	case 0xfefd:
		return "d2";
	case 0xfefc:
		return "d3";
	default:
		return "00";
	}
}

static bool alnum(uint8_t c)
{
	return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
}

/* First and last character of the first ALPN value (JA4.md, "ALPN Extension Value"). */
static void alpn_text(const struct tls_hello *h, char out[2])
{
	if (h->n_alpn == 0 || h->alpn[0].len == 0) {
		out[0] = out[1] = '0';
		return;
	}
	uint8_t first = h->alpn[0].p[0], last = h->alpn[0].p[h->alpn[0].len - 1];
	if (alnum(first) && alnum(last)) {
		out[0] = (char)first;
		out[1] = (char)last;
	} else {
		out[0] = ascii_hex_digit(first >> 4, false);
		out[1] = ascii_hex_digit(last, false);
	}
}

static void two_digits(size_t n, char out[2])
{
	if (n > 99)
		n = 99;
	out[0] = (char)('0' + n / 10);
	out[1] = (char)('0' + n % 10);
}

static int cmp_u16(const void *a, const void *b)
{
	uint16_t x = *(const uint16_t *)a, y = *(const uint16_t *)b;
	return (x > y) - (x < y);
}

/* A running SHA-256 over comma-joined 4-digit hex values. */
struct hexlist {
	EVP_MD_CTX *md;
	bool any;
	bool ok;
};

static void hexlist_add(struct hexlist *l, uint16_t v, const char *sep)
{
	char t[5] = {ascii_hex_digit(v >> 12, false), ascii_hex_digit(v >> 8, false),
	             ascii_hex_digit(v >> 4, false), ascii_hex_digit(v, false), 0};
	if (l->any && EVP_DigestUpdate(l->md, sep, 1) != 1)
		l->ok = false;
	if (EVP_DigestUpdate(l->md, t, 4) != 1)
		l->ok = false;
	l->any = true;
}

/* The first 12 hex digits of the hash, or twelve zeros for an empty list. */
static int hexlist_end(struct hexlist *l, char out[12])
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned len = 0;
	if (!l->ok || EVP_DigestFinal_ex(l->md, md, &len) != 1 || len != 32)
		return -1;
	for (unsigned i = 0; i < 6; i++) {
		out[2 * i] = l->any ? ascii_hex_digit(md[i] >> 4, false) : '0';
		out[2 * i + 1] = l->any ? ascii_hex_digit(md[i], false) : '0';
	}
	return 0;
}

static int hexlist_begin(struct hexlist *l, EVP_MD_CTX *md)
{
	l->md = md;
	l->any = false;
	l->ok = EVP_DigestInit_ex(md, EVP_sha256(), NULL) == 1;
	return l->ok ? 0 : -1;
}

/* Part b: the sorted cipher suites without GREASE; *count gets how many. */
static int cipher_hash(const struct tls_hello *h, EVP_MD_CTX *md, char out[12], size_t *count)
{
	uint16_t stack[JA4_STACK_CIPHERS];
	size_t total = h->ciphers.len / 2, n = 0;
	uint16_t *v = total <= JA4_STACK_CIPHERS ? stack : malloc(total * sizeof(*v));
	if (v == NULL)
		return -1;
	for (size_t i = 0; i < total; i++) {
		uint16_t c = be16(h->ciphers.p + 2 * i);
		if (!tls_is_grease(c))
			v[n++] = c;
	}
	qsort(v, n, sizeof(*v), cmp_u16);
	struct hexlist l;
	int rc = hexlist_begin(&l, md);
	for (size_t i = 0; rc == 0 && i < n; i++)
		hexlist_add(&l, v[i], ",");
	if (rc == 0)
		rc = hexlist_end(&l, out);
	if (v != stack)
		free(v);
	*count = n;
	return rc;
}

/*
 * Part c: the extension types without GREASE, SNI and ALPN left out of the
 * hash but counted (the parser refused duplicates), sorted; then the
 * signature algorithms in wire order.  Sorting the few types a hello has
 * costs far less than walking a 65536-bit map (that walk cost about 50 us per
 * hello in bench/run's TLS scenario).
 */
static int extension_hash(const struct tls_hello *h, EVP_MD_CTX *md, char out[12], size_t *count)
{
	uint16_t stack[JA4_STACK_CIPHERS];
	size_t cap = h->extensions.len / 4, n = 0, counted = 0;
	uint16_t *v = cap <= JA4_STACK_CIPHERS ? stack : malloc(cap * sizeof(*v));
	if (v == NULL)
		return -1;
	for (size_t off = 0; off + 4 <= h->extensions.len;) {
		uint16_t type = be16(h->extensions.p + off);
		off += 4 + be16(h->extensions.p + off + 2);
		if (tls_is_grease(type))
			continue;
		counted++;
		if (type != EXT_SNI && type != EXT_ALPN && n < cap)
			v[n++] = type;
	}
	*count = counted;
	qsort(v, n, sizeof(*v), cmp_u16);
	struct hexlist l;
	int rc = hexlist_begin(&l, md);
	for (size_t i = 0; rc == 0 && i < n; i++)
		hexlist_add(&l, v[i], ",");
	bool first_alg = true;
	for (size_t i = 0; rc == 0 && n > 0 && h->has_sig_algs && i + 2 <= h->sig_algs.len;
	     i += 2) {
		uint16_t a = be16(h->sig_algs.p + i);
		if (tls_is_grease(a))
			continue;
		hexlist_add(&l, a, first_alg ? "_" : ",");
		first_alg = false;
	}
	if (rc == 0)
		rc = hexlist_end(&l, out);
	if (v != stack)
		free(v);
	return rc;
}

int ja4_fingerprint(const struct tls_hello *h, char out[JA4_LEN + 1])
{
	out[0] = '\0';
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	if (h == NULL || md == NULL) {
		EVP_MD_CTX_free(md);
		return -1;
	}
	char t[JA4_LEN + 1];
	size_t n_ciphers = 0, n_ext = 0;
	t[0] = 't';
	memcpy(t + 1, version_text(h), 2);
	t[3] = h->has_sni ? 'd' : 'i';
	int rc = cipher_hash(h, md, t + 11, &n_ciphers);
	if (rc == 0)
		rc = extension_hash(h, md, t + 24, &n_ext);
	EVP_MD_CTX_free(md);
	if (rc != 0)
		return -1;
	two_digits(n_ciphers, t + 4);
	two_digits(n_ext, t + 6);
	alpn_text(h, t + 8);
	t[10] = '_';
	t[23] = '_';
	t[JA4_LEN] = '\0';
	memcpy(out, t, sizeof(t));
	return 0;
}
