/* Host strings: canonical names and IP literals, authority (host:port) parsing, allowlist patterns.
 */
#include "host.h"

#include <string.h>

const char *host_status_str(int status)
{
	switch (status) {
	case HOST_OK:
		return "ok";
	case HOST_ERR_EMPTY:
		return "empty";
	case HOST_ERR_CHAR:
		return "bad_char";
	case HOST_ERR_LABEL:
		return "bad_label";
	case HOST_ERR_TOO_LONG:
		return "too_long";
	case HOST_ERR_BAD_IP:
		return "bad_ip";
	case HOST_ERR_ZONE:
		return "zone_id";
	case HOST_ERR_PORT:
		return "bad_port";
	case HOST_ERR_BRACKET:
		return "bad_bracket";
	case HOST_ERR_PUNYCODE:
		return "bad_punycode";
	case HOST_ERR_WILDCARD:
		return "bad_wildcard";
	default:
		return "unknown";
	}
}

/*
 * Bytes never allowed anywhere in a host or authority: controls, space, DEL,
 * non-ASCII (IDNs travel as A-labels only), the userinfo delimiter '@'
 * (RFC 3986 §3.2.1), '\' (some URL parsers treat it as '/'), and the
 * delimiters that end an authority, '/', '?', '#' (RFC 3986 §3.2).
 */
static int scan_forbidden(const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c <= 0x20 || c >= 0x7f || c == '@' || c == '\\' || c == '/' || c == '?' ||
		    c == '#')
			return HOST_ERR_CHAR;
	}
	return HOST_OK;
}

/* RFC 3492 §5 parameters. */
enum {
	PY_BASE = 36,
	PY_TMIN = 1,
	PY_TMAX = 26,
	PY_SKEW = 38,
	PY_DAMP = 700,
	PY_INITIAL_BIAS = 72,
	PY_INITIAL_N = 128,
};

/* RFC 3492 §6.1 bias adaptation. */
static uint32_t py_adapt(uint32_t delta, uint32_t numpoints, bool first)
{
	uint32_t k = 0;

	delta = first ? delta / PY_DAMP : delta / 2;
	delta += delta / numpoints;
	while (delta > ((PY_BASE - PY_TMIN) * PY_TMAX) / 2) {
		delta /= PY_BASE - PY_TMIN;
		k += PY_BASE;
	}
	return k + (PY_BASE - PY_TMIN + 1) * delta / (delta + PY_SKEW);
}

/* Lowercase input only: the caller has already folded case. */
static int py_digit(char c)
{
	if (c >= 'a' && c <= 'z')
		return c - 'a';
	if (c >= '0' && c <= '9')
		return c - '0' + 26;
	return -1;
}

/* Never characters in a host name: C1 controls, surrogates, noncharacters, above U+10FFFF. */
static bool py_code_point_ok(uint32_t c)
{
	if (c < 0xa0 || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
		return false;
	if ((c >= 0xfdd0 && c <= 0xfdef) || (c & 0xfffe) == 0xfffe)
		return false;
	return true;
}

/*
 * Validate the part of an A-label after "xn--" by decoding it (RFC 3492 §6.2,
 * with the §6.4 overflow checks).  Valid when it decodes and inserts at least
 * one code point; inserted code points are >= 0x80 by construction and
 * py_code_point_ok refuses those that are never characters.  The encoder only
 * emits a delimiter after at least one basic code point, so an empty basic
 * part with a delimiter ("xn---abc") is refused as a second spelling.  Full
 * IDNA2008 validation (RFC 5892 code point classes, NFC, bidi) is not done.
 */
static bool punycode_valid(const char *in, size_t len)
{
	uint32_t out[HOST_LABEL_MAX_LEN];
	uint32_t nout = 0, n = PY_INITIAL_N, i = 0, bias = PY_INITIAL_BIAS;
	size_t pos = 0, delim = len;

	for (size_t j = 0; j < len; j++)
		if (in[j] == '-')
			delim = j;
	if (delim == 0)
		return false;
	if (delim < len) {
		if (delim > HOST_LABEL_MAX_LEN)
			return false;
		for (; pos < delim; pos++)
			out[nout++] = (unsigned char)in[pos]; /* already checked ASCII */
		pos = delim + 1;
	}
	if (pos >= len)
		return false; /* nothing encoded: an all-ASCII "IDN" */
	while (pos < len) {
		uint32_t oldi = i, w = 1;
		for (uint32_t k = PY_BASE;; k += PY_BASE) {
			if (pos >= len)
				return false;
			int digit = py_digit(in[pos++]);
			if (digit < 0 || (uint32_t)digit > (UINT32_MAX - i) / w)
				return false;
			i += (uint32_t)digit * w;
			uint32_t t = k <= bias ? PY_TMIN : k >= bias + PY_TMAX ? PY_TMAX : k - bias;
			if ((uint32_t)digit < t)
				break;
			if (w > UINT32_MAX / (PY_BASE - t))
				return false;
			w *= PY_BASE - t;
		}
		bias = py_adapt(i - oldi, nout + 1, oldi == 0);
		if (i / (nout + 1) > UINT32_MAX - n)
			return false;
		n += i / (nout + 1);
		i %= nout + 1;
		if (!py_code_point_ok(n))
			return false;
		if (nout >= HOST_LABEL_MAX_LEN)
			return false;
		memmove(out + i + 1, out + i, (nout - i) * sizeof(out[0]));
		out[i++] = n;
		nout++;
	}
	return true;
}

/* A DNS name (RFC 1035 §2.3.4 limits; '_' allowed for service names). s has no '[', ']', ':', '%'.
 */
static int canon_name(const char *s, size_t len, struct pc_host *h)
{
	if (s[len - 1] == '.')
		len--; /* one trailing dot: the root; a second one leaves an empty label */
	if (len == 0)
		return HOST_ERR_EMPTY;
	if (len > HOST_NAME_MAX_LEN)
		return HOST_ERR_TOO_LONG;
	for (size_t i = 0; i < len; i++) {
		char c = s[i];
		if (c >= 'A' && c <= 'Z')
			c = (char)(c - 'A' + 'a');
		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_' ||
		      c == '.'))
			return HOST_ERR_CHAR;
		h->name[i] = c;
	}
	h->name[len] = '\0';
	for (size_t st = 0; st <= len;) {
		const char *dot = memchr(h->name + st, '.', len - st);
		size_t end = dot ? (size_t)(dot - h->name) : len;
		size_t l = end - st;
		const char *lab = h->name + st;
		if (l == 0 || l > HOST_LABEL_MAX_LEN || lab[0] == '-' || lab[l - 1] == '-')
			return HOST_ERR_LABEL;
		if (l >= 4 && memcmp(lab, "xn--", 4) == 0 && !punycode_valid(lab + 4, l - 4))
			return HOST_ERR_PUNYCODE;
		st = end + 1;
	}
	h->kind = HOST_NAME;
	h->len = len;
	return HOST_OK;
}

static void set_addr(struct pc_host *h, const struct pc_addr *a)
{
	h->kind = a->family == ADDR_V4 ? HOST_IPV4 : HOST_IPV6;
	h->addr = *a;
	h->len = addr_format(a, h->name, sizeof(h->name));
}

/* IPv6 literal without brackets.  An embedded IPv4 stays IPv6: range checks see through it. */
static int canon_v6(const char *s, size_t len, struct pc_host *h)
{
	struct pc_addr a;

	if (memchr(s, '[', len) != NULL || memchr(s, ']', len) != NULL)
		return HOST_ERR_BRACKET;
	int rc = addr_parse_ipv6(s, len, &a);
	if (rc == ADDR_ERR_ZONE)
		return HOST_ERR_ZONE;
	if (rc != ADDR_OK)
		return HOST_ERR_BAD_IP;
	set_addr(h, &a);
	return HOST_OK;
}

int host_canon(const char *s, size_t len, struct pc_host *out)
{
	struct pc_host h;
	struct pc_addr a;
	int rc;

	if (len == 0)
		return HOST_ERR_EMPTY;
	if (len > HOST_NAME_MAX_LEN + 1)
		return HOST_ERR_TOO_LONG; /* no host, in any notation, is longer than a name + '.'
		                           */
	rc = scan_forbidden(s, len);
	if (rc != HOST_OK)
		return rc;
	memset(&h, 0, sizeof(h));
	if (s[0] == '[' || s[len - 1] == ']') {
		/* RFC 3986 §3.2.2 IP-literal; IPvFuture is not an address we can vet. */
		if (len < 2 || s[0] != '[' || s[len - 1] != ']')
			return HOST_ERR_BRACKET;
		rc = canon_v6(s + 1, len - 2, &h);
	} else if (memchr(s, '[', len) != NULL || memchr(s, ']', len) != NULL) {
		return HOST_ERR_BRACKET;
	} else if (memchr(s, ':', len) != NULL) {
		rc = canon_v6(s, len, &h);
	} else if (memchr(s, '%', len) != NULL) {
		return HOST_ERR_CHAR; /* percent-escapes are never decoded */
	} else if (addr_looks_ipv4(s, len)) {
		/* WHATWG URL host parser: ends in a number => IPv4 or failure, never DNS. */
		if (addr_parse_ipv4(s, len, &a) != ADDR_OK)
			return HOST_ERR_BAD_IP;
		set_addr(&h, &a);
		rc = HOST_OK;
	} else {
		rc = canon_name(s, len, &h);
	}
	if (rc != HOST_OK)
		return rc;
	*out = h;
	return HOST_OK;
}

/* RFC 3986 §3.2.3 port, stricter: 1..65535, digits only, no leading zero, never empty. */
static int parse_port(const char *p, size_t n, uint16_t *port)
{
	uint32_t v = 0;

	if (n == 0 || n > 5 || p[0] == '0')
		return HOST_ERR_PORT;
	for (size_t i = 0; i < n; i++) {
		if (p[i] < '0' || p[i] > '9')
			return HOST_ERR_PORT;
		v = v * 10 + (uint32_t)(p[i] - '0');
	}
	if (v > 65535)
		return HOST_ERR_PORT;
	*port = (uint16_t)v;
	return HOST_OK;
}

int host_parse_authority(const char *s, size_t len, uint16_t default_port, struct pc_host *host,
                         uint16_t *port)
{
	const char *p = NULL;
	size_t hlen = len, plen = 0;
	struct pc_host h;
	uint16_t pt = default_port;
	int rc;

	if (len == 0)
		return HOST_ERR_EMPTY;
	rc = scan_forbidden(s, len); /* userinfo '@' included: RFC 9110 §4.2.4 */
	if (rc != HOST_OK)
		return rc;
	if (s[0] == '[') {
		const char *rb = memchr(s, ']', len);
		if (rb == NULL)
			return HOST_ERR_BRACKET;
		hlen = (size_t)(rb - s) + 1;
		if (hlen < len) {
			if (s[hlen] != ':')
				return HOST_ERR_BRACKET;
			p = s + hlen + 1;
			plen = len - hlen - 1;
		}
	} else {
		if (memchr(s, '[', len) != NULL || memchr(s, ']', len) != NULL)
			return HOST_ERR_BRACKET;
		const char *c = memchr(s, ':', len);
		if (c != NULL) {
			hlen = (size_t)(c - s);
			p = c + 1;
			plen = len - hlen - 1;
			/* A second ':' is an IPv6 address that lacks its brackets (RFC 3986
			 * §3.2.2). */
			if (memchr(p, ':', plen) != NULL)
				return HOST_ERR_BRACKET;
		}
	}
	if (hlen == 0)
		return HOST_ERR_EMPTY;
	if (p != NULL) {
		rc = parse_port(p, plen, &pt);
		if (rc != HOST_OK)
			return rc;
	} else if (default_port == 0) {
		return HOST_ERR_PORT; /* RFC 9112 §3.2.3 authority-form needs a port */
	}
	rc = host_canon(s, hlen, &h);
	if (rc != HOST_OK)
		return rc;
	*host = h;
	*port = pt;
	return HOST_OK;
}

int host_pattern_parse(const char *s, size_t len, struct pc_host *out, bool *wildcard)
{
	struct pc_host h;
	struct pc_addr a;
	int rc;

	*wildcard = false;
	if (len == 0)
		return HOST_ERR_EMPTY;
	if (memchr(s, '*', len) == NULL) {
		rc = host_canon(s, len, &h);
		if (rc != HOST_OK)
			return rc;
		/* In a policy file an IPv4 pattern is a plain dotted quad: "010.0.0.1" is 8.0.0.1.
		 */
		if (h.kind == HOST_IPV4 && addr_parse_ipv4_strict(s, len, &a) != ADDR_OK)
			return HOST_ERR_BAD_IP;
		*out = h;
		return HOST_OK;
	}
	/* Only "*." followed by a name with no other '*'. */
	if (len < 3 || s[0] != '*' || s[1] != '.' || memchr(s + 1, '*', len - 1) != NULL)
		return HOST_ERR_WILDCARD;
	rc = host_canon(s + 2, len - 2, &h);
	if (rc != HOST_OK)
		return rc;
	/* At least two labels ("*.com" is a TLD) and room for one more label in front. */
	if (h.kind != HOST_NAME || memchr(h.name, '.', h.len) == NULL)
		return HOST_ERR_WILDCARD;
	if (h.len + 2 > HOST_NAME_MAX_LEN)
		return HOST_ERR_TOO_LONG;
	*out = h;
	*wildcard = true;
	return HOST_OK;
}

bool host_pattern_match(const struct pc_host *p, bool wildcard, const struct pc_host *h)
{
	if (p->len > HOST_NAME_MAX_LEN || h->len > HOST_NAME_MAX_LEN)
		return false;
	if (!wildcard) {
		if (p->kind != h->kind)
			return false;
		if (p->kind == HOST_NAME)
			return p->len == h->len && memcmp(p->name, h->name, p->len) == 0;
		if (p->kind == HOST_IPV4 || p->kind == HOST_IPV6)
			return addr_equal(&p->addr, &h->addr);
		return false;
	}
	/* Strict subdomain: h = <one or more labels> "." p, compared whole labels only. */
	if (p->kind != HOST_NAME || h->kind != HOST_NAME || p->len == 0 || h->len < p->len + 2)
		return false;
	size_t off = h->len - p->len;
	return h->name[off - 1] == '.' && memcmp(h->name + off, p->name, p->len) == 0;
}
