/* Address range sets: strict CIDR parsing, a binary trie per family for longest-prefix match. */
#include "ranges.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Node 0 is the root; a child index of 0 therefore means "no child". */
struct rnode {
	uint32_t child[2];
	int tag;
	bool has; /* a prefix ends here */
};

struct rtrie {
	struct rnode *n;
	uint32_t len, cap;
};

struct range_set {
	struct rtrie v4, v6;
	size_t count;
};

/* Nodes per trie: a prefix adds at most 128, so this allows ~500k distinct /128s. */
#define RTRIE_MAX_NODES (1u << 26)

/*
 * Always-on blocked list (design.md). IPv4 embedded in IPv6 (mapped, compat,
 * NAT64, 6to4, Teredo) is handled by range_set_contains, not listed here.
 * 192.0.2/24, 198.51.100/24 and 203.0.113/24 (RFC 5737) are deliberately absent.
 */
static const char *const builtin_blocked[] = {
    "0.0.0.0/8",        /* RFC 791 "this network" */
    "10.0.0.0/8",       /* RFC 1918 */
    "100.64.0.0/10",    /* RFC 6598 shared address space (CGNAT) */
    "127.0.0.0/8",      /* RFC 1122 loopback */
    "169.254.0.0/16",   /* RFC 3927 link-local, cloud metadata */
    "172.16.0.0/12",    /* RFC 1918 */
    "192.0.0.0/24",     /* RFC 6890 IETF protocol assignments */
    "192.168.0.0/16",   /* RFC 1918 */
    "198.18.0.0/15",    /* RFC 2544 benchmarking */
    "224.0.0.0/4",      /* RFC 5771 multicast */
    "240.0.0.0/4",      /* RFC 1112 reserved, incl. 255.255.255.255 */
    "168.63.129.16/32", /* Azure wireserver */
    "::/128",           /* RFC 4291 unspecified */
    "::1/128",          /* RFC 4291 loopback */
    "100::/64",         /* RFC 6666 discard-only */
    "64:ff9b:1::/48",   /* RFC 8215 local-use NAT64: operator-internal, IPv4 at any RFC 6052 length */
    "fc00::/7",         /* RFC 4193 unique local, incl. fd00:ec2::254 */
    "fe80::/10",        /* RFC 4291 link-local */
    "fec0::/10",        /* RFC 3879 deprecated site-local */
    "ff00::/8",         /* RFC 4291 multicast */
};

#define BUILTIN_COUNT (sizeof(builtin_blocked) / sizeof(builtin_blocked[0]))

size_t range_builtin_count(void)
{
	return BUILTIN_COUNT;
}

const char *range_builtin_text(size_t i)
{
	return i < BUILTIN_COUNT ? builtin_blocked[i] : NULL;
}

static unsigned family_bits(uint8_t family)
{
	return family == ADDR_V4 ? 32 : family == ADDR_V6 ? 128 : 0;
}

static unsigned bit_at(const uint8_t *b, unsigned i)
{
	return (b[i / 8] >> (7 - i % 8)) & 1u;
}

static bool host_bits_zero(const struct pc_addr *a, unsigned plen)
{
	unsigned bits = family_bits(a->family);
	for (unsigned i = plen; i < bits; i++)
		if (bit_at(a->b, i))
			return false;
	return true;
}

/* Decimal prefix length: digits only, no leading zero, no sign. */
static int parse_plen(const char *s, size_t len, unsigned max, unsigned *plen)
{
	unsigned v = 0;

	if (len == 0)
		return RANGE_ERR_SYNTAX;
	for (size_t i = 0; i < len; i++)
		if (s[i] < '0' || s[i] > '9')
			return RANGE_ERR_SYNTAX;
	if (len > 1 && s[0] == '0')
		return RANGE_ERR_SYNTAX;
	if (len > 3)
		return RANGE_ERR_PREFIX;
	for (size_t i = 0; i < len; i++)
		v = v * 10 + (unsigned)(s[i] - '0');
	if (v > max)
		return RANGE_ERR_PREFIX;
	*plen = v;
	return RANGE_OK;
}

int range_parse_cidr(const char *s, size_t len, struct pc_addr *prefix, unsigned *plen)
{
	const char *slash = len ? memchr(s, '/', len) : NULL;
	size_t alen = slash ? (size_t)(slash - s) : len;
	struct pc_addr a;
	unsigned max, n;

	if (alen == 0)
		return RANGE_ERR_SYNTAX;
	if (memchr(s, ':', alen) != NULL) {
		if (addr_parse_ipv6(s, alen, &a) != ADDR_OK)
			return RANGE_ERR_SYNTAX;
		max = 128;
	} else {
		if (addr_parse_ipv4_strict(s, alen, &a) != ADDR_OK)
			return RANGE_ERR_SYNTAX;
		max = 32;
	}
	n = max;
	if (slash != NULL) {
		int rc = parse_plen(slash + 1, len - alen - 1, max, &n);
		if (rc != RANGE_OK)
			return rc;
	}
	if (!host_bits_zero(&a, n))
		return RANGE_ERR_HOSTBITS;
	*prefix = a;
	*plen = n;
	return RANGE_OK;
}

struct range_set *range_set_create(void)
{
	return calloc(1, sizeof(struct range_set));
}

void range_set_destroy(struct range_set *set)
{
	if (set == NULL)
		return;
	free(set->v4.n);
	free(set->v6.n);
	free(set);
}

/* Appends a node; returns its index, or 0 when out of memory (0 is only ever the root). */
static uint32_t trie_new_node(struct rtrie *t)
{
	if (t->len == t->cap) {
		uint32_t cap = t->cap ? t->cap * 2 : 64;
		if (cap > RTRIE_MAX_NODES)
			return 0;
		struct rnode *n = realloc(t->n, (size_t)cap * sizeof(*n));
		if (n == NULL)
			return 0;
		t->n = n;
		t->cap = cap;
	}
	memset(&t->n[t->len], 0, sizeof(t->n[0]));
	return t->len++;
}

static int trie_add(struct rtrie *t, const uint8_t *b, unsigned plen, int tag, bool *added)
{
	uint32_t cur = 0;

	if (t->len == 0) {
		(void)trie_new_node(t); /* the root, index 0 */
		if (t->len == 0)
			return RANGE_ERR_NOMEM;
	}
	for (unsigned i = 0; i < plen; i++) {
		unsigned bit = bit_at(b, i);
		if (t->n[cur].child[bit] == 0) {
			uint32_t nn = trie_new_node(t); /* may move t->n */
			if (nn == 0)
				return RANGE_ERR_NOMEM;
			t->n[cur].child[bit] = nn;
		}
		cur = t->n[cur].child[bit];
	}
	*added = !t->n[cur].has;
	if (*added) {
		t->n[cur].has = true;
		t->n[cur].tag = tag;
	}
	return RANGE_OK;
}

int range_set_add(struct range_set *set, const struct pc_addr *prefix, unsigned plen, int tag)
{
	unsigned bits = family_bits(prefix->family);
	bool added = false;

	if (set == NULL)
		return RANGE_ERR_NOMEM;
	if (bits == 0)
		return RANGE_ERR_SYNTAX;
	if (plen > bits)
		return RANGE_ERR_PREFIX;
	if (!host_bits_zero(prefix, plen))
		return RANGE_ERR_HOSTBITS;
	int rc =
	    trie_add(prefix->family == ADDR_V4 ? &set->v4 : &set->v6, prefix->b, plen, tag, &added);
	if (rc == RANGE_OK && added)
		set->count++;
	return rc;
}

bool range_set_lookup(const struct range_set *set, const struct pc_addr *a, int *tag,
                      unsigned *plen)
{
	unsigned bits = family_bits(a->family);
	const struct rtrie *t;
	bool found = false;
	uint32_t cur = 0;

	if (set == NULL || bits == 0)
		return false;
	t = a->family == ADDR_V4 ? &set->v4 : &set->v6;
	if (t->len == 0)
		return false;
	for (unsigned depth = 0;; depth++) {
		if (t->n[cur].has) {
			found = true;
			if (tag != NULL)
				*tag = t->n[cur].tag;
			if (plen != NULL)
				*plen = depth;
		}
		if (depth == bits)
			break;
		cur = t->n[cur].child[bit_at(a->b, depth)];
		if (cur == 0)
			break;
	}
	return found;
}

bool range_set_contains(const struct range_set *set, const struct pc_addr *a)
{
	struct pc_addr v4[ADDR_EMBEDDED_MAX];

	if (range_set_lookup(set, a, NULL, NULL))
		return true;
	size_t n = addr_embedded_v4_all(a, v4, ADDR_EMBEDDED_MAX);
	for (size_t i = 0; i < n && i < ADDR_EMBEDDED_MAX; i++)
		if (range_set_lookup(set, &v4[i], NULL, NULL))
			return true;
	return false;
}

size_t range_set_count(const struct range_set *set)
{
	return set ? set->count : 0;
}

int range_set_add_builtin_blocked(struct range_set *set)
{
	for (size_t i = 0; i < BUILTIN_COUNT; i++) {
		struct pc_addr p;
		unsigned plen;
		const char *s = builtin_blocked[i];
		int rc = range_parse_cidr(s, strlen(s), &p, &plen);
		if (rc != RANGE_OK)
			return rc;
		rc = range_set_add(set, &p, plen, 0);
		if (rc != RANGE_OK)
			return rc;
	}
	return RANGE_OK;
}
