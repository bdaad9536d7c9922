/* libFuzzer target: host/address parsers, with round-trip and differential invariants that abort().
 */
#include "addr.h"
#include "host.h"
#include "ranges.h"

#include <arpa/inet.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_TEXT 512

static void require(bool ok, const char *what)
{
	if (!ok) {
		fprintf(stderr, "fuzz_host: invariant violated: %s\n", what);
		abort();
	}
}

static bool same_host(const struct pc_host *a, const struct pc_host *b)
{
	if (a->kind != b->kind || a->len != b->len || strcmp(a->name, b->name) != 0)
		return false;
	return a->kind == HOST_NAME || addr_equal(&a->addr, &b->addr);
}

static bool name_chars_ok(const struct pc_host *h)
{
	for (size_t i = 0; i < h->len; i++) {
		char c = h->name[i];
		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_' ||
		      c == '.'))
			return false;
	}
	return true;
}

/* Properties of any host host_canon accepted. */
static void check_canonical_host(const struct pc_host *h, const struct range_set *blocked)
{
	struct pc_host h2, p;
	char buf[ADDR_STRLEN], auth[HOST_NAME_MAX_LEN + 16];
	bool wild;
	uint16_t port = 0;

	require(h->len > 0 && h->len <= HOST_NAME_MAX_LEN && h->len == strlen(h->name),
	        "canonical length");
	/* a canonical host is a fixed point of host_canon */
	require(host_canon(h->name, h->len, &h2) == HOST_OK, "canonical re-canonicalises");
	require(same_host(h, &h2), "canonical re-canonicalises to itself");
	if (h->kind == HOST_NAME) {
		require(name_chars_ok(h), "name charset");
		require(!addr_looks_ipv4(h->name, h->len), "a name never looks like IPv4");
		require(h->name[h->len - 1] != '.', "no trailing dot");
		snprintf(auth, sizeof(auth), "%s:443", h->name);
	} else {
		require(h->addr.family == (h->kind == HOST_IPV4 ? ADDR_V4 : ADDR_V6),
		        "kind/family");
		require(addr_format(&h->addr, buf, sizeof(buf)) == h->len &&
		            strcmp(buf, h->name) == 0,
		        "IP name is addr_format of addr");
		(void)range_set_contains(blocked, &h->addr);
		snprintf(auth, sizeof(auth), h->kind == HOST_IPV6 ? "[%s]:443" : "%s:443", h->name);
	}
	/* it can be written as an authority and parsed back */
	require(host_parse_authority(auth, strlen(auth), 0, &h2, &port) == HOST_OK,
	        "canonical host as authority");
	require(port == 443 && same_host(h, &h2), "authority round trip");
	/* and it is a valid exact pattern that matches itself */
	require(host_pattern_parse(h->name, h->len, &p, &wild) == HOST_OK && !wild,
	        "canonical host as pattern");
	require(host_pattern_match(&p, false, h), "exact pattern matches itself");
}

static void fuzz_canon(const char *s, size_t n, const struct range_set *blocked)
{
	struct pc_host h;
	struct pc_addr a;

	if (host_canon(s, n, &h) != HOST_OK)
		return;
	check_canonical_host(&h, blocked);
	/* a plain (unbracketed, colon-free) host that parses as IPv4 is always that address */
	if (memchr(s, ':', n) == NULL && memchr(s, '[', n) == NULL &&
	    addr_parse_ipv4(s, n, &a) == ADDR_OK)
		require(h.kind == HOST_IPV4 && addr_equal(&a, &h.addr),
		        "IPv4 literal kept as IPv4");
	if (h.kind == HOST_NAME)
		require(!addr_looks_ipv4(s, n), "number-like host never becomes a name");
}

static void fuzz_authority(const char *s, size_t n, const struct range_set *blocked)
{
	struct pc_host h, h2;
	uint16_t port = 0, port2 = 0;

	if (host_parse_authority(s, n, 0, &h, &port) == HOST_OK) {
		require(port != 0, "port non-zero");
		require(memchr(s, '@', n) == NULL && memchr(s, '%', n) == NULL,
		        "no userinfo/escape");
		check_canonical_host(&h, blocked);
		/* an explicit port wins over any default */
		require(host_parse_authority(s, n, 8080, &h2, &port2) == HOST_OK,
		        "default ignored");
		require(port2 == port && same_host(&h, &h2), "default-port independence");
	} else if (host_parse_authority(s, n, 8080, &h, &port) == HOST_OK) {
		require(port != 0, "port non-zero with default");
		check_canonical_host(&h, blocked);
	}
}

static void fuzz_pattern(const char *s, size_t n)
{
	struct pc_host p, h;
	char buf[HOST_NAME_MAX_LEN + 8];
	bool wild = true;

	if (host_pattern_parse(s, n, &p, &wild) != HOST_OK) {
		require(!wild, "wildcard flag false on error");
		return;
	}
	require(memchr(p.name, '*', p.len) == NULL, "no '*' in a parsed pattern");
	if (!wild) {
		require(host_canon(p.name, p.len, &h) == HOST_OK &&
		            host_pattern_match(&p, false, &h),
		        "exact pattern matches its own text");
		return;
	}
	require(p.kind == HOST_NAME && memchr(p.name, '.', p.len) != NULL, "wildcard suffix");
	/* the apex never matches */
	require(host_canon(p.name, p.len, &h) == HOST_OK && !host_pattern_match(&p, true, &h),
	        "wildcard excludes the apex");
	/* one label in front matches */
	snprintf(buf, sizeof(buf), "a.%s", p.name);
	require(host_canon(buf, strlen(buf), &h) == HOST_OK && host_pattern_match(&p, true, &h),
	        "wildcard matches a subdomain");
	/* glued to the first label it must not */
	snprintf(buf, sizeof(buf), "a%s", p.name);
	if (host_canon(buf, strlen(buf), &h) == HOST_OK && h.kind == HOST_NAME)
		require(!host_pattern_match(&p, true, &h), "wildcard is label-boundary safe");
}

/* Reference matcher over whole labels, written differently from host_pattern_match. */
static bool reference_match(const struct pc_host *p, bool wild, const struct pc_host *h)
{
	if (!wild)
		return p->kind == h->kind && strcmp(p->name, h->name) == 0;
	if (h->kind != HOST_NAME)
		return false;
	/* drop h's labels from the left until what is left is the suffix; need >= 1 dropped */
	for (const char *dot = strchr(h->name, '.'); dot != NULL; dot = strchr(dot + 1, '.'))
		if (strcmp(dot + 1, p->name) == 0)
			return true;
	return false;
}

/* "pattern\nhost": match the two and compare with the reference. */
static void fuzz_match(const char *s, size_t n)
{
	const char *nl = memchr(s, '\n', n);
	struct pc_host p, h;
	bool wild;

	if (nl == NULL)
		return;
	if (host_pattern_parse(s, (size_t)(nl - s), &p, &wild) != HOST_OK)
		return;
	if (host_canon(nl + 1, n - (size_t)(nl - s) - 1, &h) != HOST_OK)
		return;
	require(host_pattern_match(&p, wild, &h) == reference_match(&p, wild, &h),
	        "host_pattern_match agrees with the reference");
}

/* Only characters inet_aton's own grammar uses, and none of the two spots where we differ. */
static bool comparable_with_inet_aton(const char *s, size_t n)
{
	if (n == 0 || n >= MAX_TEXT || s[n - 1] == '.')
		return false; /* we ignore one trailing dot (WHATWG); glibc does not */
	for (size_t i = 0; i < n; i++)
		if (strchr("0123456789abcdefABCDEFxX.", s[i]) == NULL || s[i] == '\0')
			return false;
	/* a bare "0x" part is 0 for us (BSD, WHATWG) and an error for glibc */
	for (size_t i = 0; i + 1 < n; i++)
		if (s[i] == '0' && (s[i + 1] == 'x' || s[i + 1] == 'X') &&
		    (i == 0 || s[i - 1] == '.') && (i + 2 == n || s[i + 2] == '.'))
			return false;
	return true;
}

static void fuzz_ipv4(const char *s, size_t n)
{
	struct pc_addr a, b;
	char buf[ADDR_STRLEN];
	unsigned plen = 0;

	int rc = addr_parse_ipv4(s, n, &a);
	require(rc == ADDR_OK || rc == ADDR_ERR_SYNTAX || rc == ADDR_ERR_OVERFLOW, "ipv4 status");
	if (rc == ADDR_OK) {
		require(a.family == ADDR_V4, "ipv4 family");
		require(addr_looks_ipv4(s, n), "every IPv4 literal looks like one");
		size_t len = addr_format(&a, buf, sizeof(buf));
		require(len >= 7 && len <= 15, "dotted quad length");
		require(addr_parse_ipv4(buf, len, &b) == ADDR_OK && addr_equal(&a, &b),
		        "ipv4 format re-parses");
		require(addr_parse_ipv4_strict(buf, len, &b) == ADDR_OK && addr_equal(&a, &b),
		        "ipv4 format is strict");
		require(range_parse_cidr(buf, len, &b, &plen) == RANGE_OK && plen == 32,
		        "ipv4 format is a host route");
	}
	if (addr_parse_ipv4_strict(s, n, &b) == ADDR_OK) {
		require(rc == ADDR_OK && addr_equal(&a, &b), "strict implies lenient, same value");
		require(addr_format(&b, buf, sizeof(buf)) == n && memcmp(buf, s, n) == 0,
		        "strict input is already canonical");
	}
#ifdef __GLIBC__
	if (comparable_with_inet_aton(s, n)) {
		char z[MAX_TEXT];
		struct in_addr in;
		memcpy(z, s, n);
		z[n] = '\0';
		int ok = inet_aton(z, &in);
		require((ok != 0) == (rc == ADDR_OK), "agrees with glibc inet_aton");
		if (ok)
			require(memcmp(&in, a.b, 4) == 0, "same value as glibc inet_aton");
	}
#endif
}

static void fuzz_ipv6(const char *s, size_t n)
{
	struct pc_addr a, b, v4[ADDR_EMBEDDED_MAX], one;
	char buf[ADDR_STRLEN];

	int rc = addr_parse_ipv6(s, n, &a);
	require(rc == ADDR_OK || rc == ADDR_ERR_SYNTAX || rc == ADDR_ERR_ZONE, "ipv6 status");
	if (rc == ADDR_OK) {
		require(a.family == ADDR_V6, "ipv6 family");
		size_t len = addr_format(&a, buf, sizeof(buf));
		require(len >= 2 && len < ADDR_STRLEN && len == strlen(buf), "ipv6 format length");
		require(addr_parse_ipv6(buf, len, &b) == ADDR_OK && addr_equal(&a, &b),
		        "ipv6 format re-parses");
		char again[ADDR_STRLEN];
		require(addr_format(&b, again, sizeof(again)) == len && strcmp(again, buf) == 0,
		        "ipv6 format is a fixed point");
		for (size_t i = 0; i < len; i++)
			require(!(buf[i] >= 'A' && buf[i] <= 'Z'), "ipv6 format lowercase");
		size_t cnt = addr_embedded_v4_all(&a, v4, ADDR_EMBEDDED_MAX);
		require(cnt <= ADDR_EMBEDDED_MAX, "embedded count");
		for (size_t i = 0; i < cnt; i++)
			require(v4[i].family == ADDR_V4, "embedded family");
		bool e = addr_embedded_v4(&a, &one);
		require(e == (cnt > 0) && (!e || addr_equal(&one, &v4[0])), "embedded consistency");
	}
#ifdef __GLIBC__
	if (n > 0 && n < MAX_TEXT && memchr(s, '\0', n) == NULL && memchr(s, '%', n) == NULL) {
		char z[MAX_TEXT];
		uint8_t raw[16];
		memcpy(z, s, n);
		z[n] = '\0';
		int ok = inet_pton(AF_INET6, z, raw);
		require((ok == 1) == (rc == ADDR_OK), "agrees with glibc inet_pton");
		if (ok == 1)
			require(memcmp(raw, a.b, 16) == 0, "same value as glibc inet_pton");
	}
#endif
}

static void fuzz_cidr(const char *s, size_t n)
{
	struct pc_addr p, q;
	unsigned plen = 0, plen2 = 0, got = 0;
	char buf[ADDR_STRLEN], text[ADDR_STRLEN + 8];
	int tag = -1;

	if (range_parse_cidr(s, n, &p, &plen) != RANGE_OK)
		return;
	require(plen <= (p.family == ADDR_V4 ? 32u : 128u), "prefix length in range");
	addr_format(&p, buf, sizeof(buf));
	snprintf(text, sizeof(text), "%s/%u", buf, plen);
	require(range_parse_cidr(text, strlen(text), &q, &plen2) == RANGE_OK, "cidr re-parses");
	require(addr_equal(&p, &q) && plen == plen2, "cidr round trip");
	if (p.family == ADDR_V4)
		require((strlen(text) == n && memcmp(text, s, n) == 0) ||
		            (plen == 32 && strlen(buf) == n && memcmp(buf, s, n) == 0),
		        "strict IPv4 CIDR is already canonical");
	struct range_set *set = range_set_create();
	if (set == NULL)
		return;
	require(range_set_add(set, &p, plen, 5) == RANGE_OK, "parsed prefix adds");
	require(range_set_lookup(set, &p, &tag, &got) && tag == 5 && got == plen,
	        "prefix finds itself");
	range_set_destroy(set);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *s = (const char *)data;
	struct range_set *blocked = range_set_create();

	if (blocked == NULL || range_set_add_builtin_blocked(blocked) != RANGE_OK) {
		range_set_destroy(blocked);
		return 0;
	}
	fuzz_canon(s, size, blocked);
	fuzz_authority(s, size, blocked);
	fuzz_pattern(s, size);
	fuzz_ipv4(s, size);
	fuzz_ipv6(s, size);
	fuzz_cidr(s, size);
	fuzz_match(s, size);
	(void)addr_looks_ipv4(s, size);
	range_set_destroy(blocked);
	return 0;
}
