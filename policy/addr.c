/* IP address literals: inet_aton-compatible IPv4, RFC 4291 IPv6, RFC 5952 text, embedded IPv4. */
#include "addr.h"

#include <stdio.h>
#include <string.h>

#include "ascii.h"
#define V4_MAX 0xffffffffULL

static int hex_val(char c)
{
	return ascii_hex_value((unsigned char)c);
}

static bool is_digit(char c)
{
	return ascii_is_digit((unsigned char)c);
}

static bool is_hex_prefix(const char *s, size_t len)
{
	return len >= 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X');
}

static void set_v4(struct pc_addr *out, uint32_t v)
{
	memset(out, 0, sizeof(*out));
	out->family = ADDR_V4;
	out->b[0] = (uint8_t)(v >> 24);
	out->b[1] = (uint8_t)(v >> 16);
	out->b[2] = (uint8_t)(v >> 8);
	out->b[3] = (uint8_t)v;
}

bool addr_looks_ipv4(const char *s, size_t len)
{
	/* WHATWG URL "ends in a number": only the last label counts. */
	if (len > 0 && s[len - 1] == '.')
		len--;
	size_t start = len;
	while (start > 0 && s[start - 1] != '.')
		start--;
	const char *l = s + start;
	size_t n = len - start;
	if (n == 0)
		return false;
	size_t i = 0;
	if (is_hex_prefix(l, n)) {
		for (i = 2; i < n && hex_val(l[i]) >= 0; i++)
			;
		return i == n; /* "0x" with no digits counts: it is the number 0 */
	}
	while (i < n && is_digit(l[i]))
		i++;
	return i == n;
}

/*
 * One inet_aton part: decimal, octal after a leading 0, hex after 0x/0X ("0x"
 * alone is 0, as in BSD inet_aton and the WHATWG IPv4 number parser).  The
 * value saturates just above V4_MAX, so a digit run of any length is safe.
 */
static int parse_v4_part(const char *s, size_t len, uint64_t *val)
{
	unsigned base = 10;
	size_t i = 0;
	uint64_t v = 0;

	if (len == 0)
		return ADDR_ERR_SYNTAX;
	if (is_hex_prefix(s, len)) {
		base = 16;
		i = 2;
	} else if (s[0] == '0' && len > 1) {
		base = 8;
		i = 1;
	}
	for (; i < len; i++) {
		int d = hex_val(s[i]);
		if (d < 0 || (unsigned)d >= base)
			return ADDR_ERR_SYNTAX;
		if (v <= V4_MAX)
			v = v * base + (unsigned)d; /* at most 2^36: no overflow */
	}
	*val = v;
	return ADDR_OK;
}

int addr_parse_ipv4(const char *s, size_t len, struct pc_addr *out)
{
	uint64_t part[4];
	size_t nparts = 0, start = 0;

	if (len > 0 && s[len - 1] == '.')
		len--;
	if (len == 0)
		return ADDR_ERR_SYNTAX;
	/* Syntax of every part first, so a malformed string never reports overflow. */
	for (size_t i = 0; i <= len; i++) {
		if (i < len && s[i] != '.')
			continue;
		if (nparts == 4)
			return ADDR_ERR_SYNTAX;
		int rc = parse_v4_part(s + start, i - start, &part[nparts]);
		if (rc != ADDR_OK)
			return rc;
		nparts++;
		start = i + 1;
	}
	/* a, b, c of a.b.c.d are bytes; the last part fills what is left. */
	uint32_t v = 0;
	for (size_t k = 0; k + 1 < nparts; k++) {
		if (part[k] > 0xff)
			return ADDR_ERR_OVERFLOW;
		v |= (uint32_t)part[k] << (24 - 8 * k);
	}
	if (part[nparts - 1] > (V4_MAX >> (8 * (nparts - 1))))
		return ADDR_ERR_OVERFLOW;
	v |= (uint32_t)part[nparts - 1];
	set_v4(out, v);
	return ADDR_OK;
}

int addr_parse_ipv4_strict(const char *s, size_t len, struct pc_addr *out)
{
	uint32_t v = 0;
	size_t i = 0;

	for (int k = 0; k < 4; k++) {
		if (k > 0) {
			if (i >= len || s[i] != '.')
				return ADDR_ERR_SYNTAX;
			i++;
		}
		size_t st = i;
		unsigned part = 0;
		while (i < len && i - st < 4 && is_digit(s[i]))
			part = part * 10 + (unsigned)(s[i++] - '0');
		size_t nd = i - st;
		/* RFC 3986 §3.2.2 dec-octet: 1-3 digits, no leading zero. */
		if (nd == 0 || nd > 3 || (nd > 1 && s[st] == '0'))
			return ADDR_ERR_SYNTAX;
		if (part > 255)
			return ADDR_ERR_OVERFLOW;
		v = v << 8 | part;
	}
	if (i != len)
		return ADDR_ERR_SYNTAX;
	set_v4(out, v);
	return ADDR_OK;
}

/* RFC 4291 §2.2: x:x:x:x:x:x:x:x, one "::" for one or more zero groups, x:x:x:x:x:x:d.d.d.d. */
int addr_parse_ipv6(const char *s, size_t len, struct pc_addr *out)
{
	uint16_t g[8];
	int ng = 0, gap = -1;
	size_t i = 0;

	if (memchr(s, '%', len) != NULL)
		return ADDR_ERR_ZONE; /* RFC 6874 zone ids are never accepted */
	if (len < 2)
		return ADDR_ERR_SYNTAX;
	if (s[0] == ':') {
		if (s[1] != ':')
			return ADDR_ERR_SYNTAX;
		gap = 0;
		i = 2;
	}
	while (i < len) {
		size_t st = i;
		unsigned v = 0;
		while (i < len && i - st < 5 && hex_val(s[i]) >= 0)
			v = v * 16 + (unsigned)hex_val(s[i++]);
		if (i < len && s[i] == '.') {
			/* Embedded dotted quad: last 32 bits, strict (RFC 4291 §2.2 form 3). */
			struct pc_addr v4;
			if (ng > 6 || addr_parse_ipv4_strict(s + st, len - st, &v4) != ADDR_OK)
				return ADDR_ERR_SYNTAX;
			g[ng++] = (uint16_t)(v4.b[0] << 8 | v4.b[1]);
			g[ng++] = (uint16_t)(v4.b[2] << 8 | v4.b[3]);
			break;
		}
		if (i == st || i - st > 4 || ng == 8)
			return ADDR_ERR_SYNTAX;
		g[ng++] = (uint16_t)v;
		if (i == len)
			break;
		if (s[i] != ':' || ++i == len)
			return ADDR_ERR_SYNTAX; /* junk, or a trailing single ':' */
		if (s[i] == ':') {
			if (gap >= 0)
				return ADDR_ERR_SYNTAX; /* a second "::" */
			gap = ng;
			i++;
		}
	}
	if (gap < 0 ? ng != 8 : ng > 7)
		return ADDR_ERR_SYNTAX;

	uint16_t w[8] = {0};
	if (gap < 0) {
		memcpy(w, g, sizeof(w));
	} else {
		memcpy(w, g, (size_t)gap * sizeof(w[0]));
		int tail = ng - gap;
		memcpy(w + 8 - tail, g + gap, (size_t)tail * sizeof(w[0]));
	}
	memset(out, 0, sizeof(*out));
	out->family = ADDR_V6;
	for (int k = 0; k < 8; k++) {
		out->b[2 * k] = (uint8_t)(w[k] >> 8);
		out->b[2 * k + 1] = (uint8_t)w[k];
	}
	return ADDR_OK;
}

static bool all_zero(const uint8_t *b, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (b[i] != 0)
			return false;
	return true;
}

static bool is_v4_mapped(const struct pc_addr *a)
{
	return all_zero(a->b, 10) && a->b[10] == 0xff && a->b[11] == 0xff;
}

/*
 * RFC 5952 §4: lowercase hex, no leading zeros, the longest run of two or more
 * zero groups as "::" (leftmost on a tie).  IPv4-mapped addresses keep their
 * dotted tail, "::ffff:a.b.c.d" (RFC 5952 §5); every other form, translated,
 * compat and NAT64 included, is printed in plain hex.
 */
static size_t format_v6(const struct pc_addr *a, char *t, size_t n)
{
	unsigned w[8];
	int best = -1, bestlen = 1;
	int len = 0;

	if (is_v4_mapped(a))
		return (size_t)snprintf(t, n, "::ffff:%u.%u.%u.%u", a->b[12], a->b[13], a->b[14],
		                        a->b[15]);
	for (int k = 0; k < 8; k++)
		w[k] = (unsigned)a->b[2 * k] << 8 | a->b[2 * k + 1];
	for (int k = 0; k < 8;) {
		int e = k;
		while (e < 8 && w[e] == 0)
			e++;
		if (e - k > bestlen) {
			best = k;
			bestlen = e - k;
		}
		k = e > k ? e : k + 1;
	}
	for (int k = 0; k < 8; k++) {
		if (k == best) {
			len += snprintf(t + len, n - (size_t)len, "::");
			k += bestlen - 1;
			continue;
		}
		const char *sep = (k == 0 || k == best + bestlen) ? "" : ":";
		len += snprintf(t + len, n - (size_t)len, "%s%x", sep, w[k]);
	}
	return (size_t)len;
}

/* Writes the text and a NUL; returns its length, or 0 (buf "") when it does not fit in n. */
size_t addr_format(const struct pc_addr *a, char *buf, size_t n)
{
	char t[ADDR_STRLEN + 8];
	size_t len;

	if (a->family == ADDR_V4)
		len = (size_t)snprintf(t, sizeof(t), "%u.%u.%u.%u", a->b[0], a->b[1], a->b[2],
		                       a->b[3]);
	else if (a->family == ADDR_V6)
		len = format_v6(a, t, sizeof(t));
	else
		len = 0;
	if (len == 0 || len >= n) {
		if (n > 0)
			buf[0] = '\0';
		return 0;
	}
	memcpy(buf, t, len + 1);
	return len;
}

void addr_source_group(const struct pc_addr *src, unsigned v6_prefix, struct pc_addr *g)
{
	static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

	memset(g, 0, sizeof *g);
	if (src->family == ADDR_V4 ||
	    (src->family == ADDR_V6 && memcmp(src->b, mapped, sizeof mapped) == 0)) {
		g->family = ADDR_V4;
		memcpy(g->b, src->family == ADDR_V4 ? src->b : src->b + 12, 4);
		return;
	}
	g->family = src->family;
	if (src->family != ADDR_V6)
		return;
	unsigned bits = v6_prefix > 128 ? 128 : v6_prefix;
	memcpy(g->b, src->b, bits / 8);
	if (bits % 8 != 0)
		g->b[bits / 8] = (uint8_t)(src->b[bits / 8] & (0xff00u >> (bits % 8)));
}

bool addr_equal(const struct pc_addr *a, const struct pc_addr *b)
{
	if (a->family != b->family)
		return false;
	if (a->family == ADDR_V4)
		return memcmp(a->b, b->b, 4) == 0;
	if (a->family == ADDR_V6)
		return memcmp(a->b, b->b, 16) == 0;
	return false;
}

static void v4_from(struct pc_addr *v4, uint8_t b0, uint8_t b1, uint8_t b2, uint8_t b3)
{
	set_v4(v4, (uint32_t)b0 << 24 | (uint32_t)b1 << 16 | (uint32_t)b2 << 8 | b3);
}

size_t addr_embedded_v4_all(const struct pc_addr *a, struct pc_addr *v4, size_t n)
{
	static const uint8_t nat64[4] = {0x00, 0x64, 0xff, 0x9b};
	const uint8_t *b = a->b;
	struct pc_addr got[ADDR_EMBEDDED_MAX];
	size_t cnt = 0;

	if (a->family != ADDR_V6)
		return 0;
	if (all_zero(b, 12)) {
		/* compat ::/96 (RFC 4291 §2.5.5.1), minus :: and ::1 (their own ranges) */
		if (all_zero(b + 12, 3) && b[15] <= 1)
			return 0;
		v4_from(&got[cnt++], b[12], b[13], b[14], b[15]);
	} else if (is_v4_mapped(a)) {
		/* mapped ::ffff:0:0/96 (RFC 4291 §2.5.5.2) */
		v4_from(&got[cnt++], b[12], b[13], b[14], b[15]);
	} else if (all_zero(b, 8) && b[8] == 0xff && b[9] == 0xff && b[10] == 0 && b[11] == 0) {
		/* translated ::ffff:0:0:0/96 (RFC 2765 §2.1) */
		v4_from(&got[cnt++], b[12], b[13], b[14], b[15]);
	} else if (memcmp(b, nat64, 4) == 0 && all_zero(b + 4, 8)) {
		/* NAT64 well-known prefix 64:ff9b::/96 (RFC 6052 §2.1) */
		v4_from(&got[cnt++], b[12], b[13], b[14], b[15]);
	} else if (memcmp(b, nat64, 4) == 0 && b[4] == 0 && b[5] == 1) {
		/*
		 * NAT64 local-use 64:ff9b:1::/48 (RFC 8215) in the /48 layout of
		 * RFC 6052 §2.2: IPv4 in bytes 6, 7, then 9, 10; byte 8 is the u-octet.
		 */
		v4_from(&got[cnt++], b[6], b[7], b[9], b[10]);
	} else if (b[0] == 0x20 && b[1] == 0x02) {
		/* 6to4 2002::/16 (RFC 3056 §2): bytes 2..5 */
		v4_from(&got[cnt++], b[2], b[3], b[4], b[5]);
	} else if (b[0] == 0x20 && b[1] == 0x01 && b[2] == 0 && b[3] == 0) {
		/* Teredo 2001::/32 (RFC 4380 §4): client bit-inverted in 12..15, server in 4..7 */
		v4_from(&got[cnt++], (uint8_t)~b[12], (uint8_t)~b[13], (uint8_t)~b[14],
		        (uint8_t)~b[15]);
		v4_from(&got[cnt++], b[4], b[5], b[6], b[7]);
	}
	for (size_t i = 0; i < cnt && i < n; i++)
		v4[i] = got[i];
	return cnt;
}

bool addr_nat64_unknown_layout(const struct pc_addr *a)
{
	static const uint8_t nat64[4] = {0x00, 0x64, 0xff, 0x9b};
	if (a->family != ADDR_V6 || memcmp(a->b, nat64, 4) != 0)
		return false;
	/* The well-known prefix is /96 only (RFC 6052 §2.1): there the IPv4 is bytes 12..15. */
	return !all_zero(a->b + 4, 8);
}

bool addr_embedded_v4(const struct pc_addr *a, struct pc_addr *v4)
{
	return addr_embedded_v4_all(a, v4, 1) > 0;
}
