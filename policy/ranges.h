/* Address range sets: CIDR parsing, longest-prefix lookup, the built-in blocked list. */
#ifndef PORTCULLIS_RANGES_H
#define PORTCULLIS_RANGES_H

#include <stdbool.h>
#include <stddef.h>

#include "addr.h"

/* A set of IPv4 and IPv6 prefixes, each carrying an int tag; longest prefix wins. */
struct range_set;

enum range_status {
	RANGE_OK = 0,
	RANGE_ERR_SYNTAX = -1,   /* not "addr/len" or addr not a strict literal */
	RANGE_ERR_PREFIX = -2,   /* prefix length out of range for the family */
	RANGE_ERR_HOSTBITS = -3, /* bits set after the prefix (10.0.0.1/8) */
	RANGE_ERR_NOMEM = -4,
};

/*
 * Parse "a.b.c.d/n" or "v6/n" (or a bare address = /32 or /128).  Config
 * CIDRs are strict: IPv4 only as canonical dotted quad (no 0x, no leading
 * zeros, four parts), host bits must be zero.
 */
int range_parse_cidr(const char *s, size_t len, struct pc_addr *prefix, unsigned *plen)
	__attribute__((warn_unused_result));

struct range_set *range_set_create(void);
void range_set_destroy(struct range_set *set); /* NULL is a no-op */

/* Add a prefix with a tag.  Adding the same prefix twice keeps the first tag and returns RANGE_OK. */
int range_set_add(struct range_set *set, const struct pc_addr *prefix, unsigned plen, int tag)
	__attribute__((warn_unused_result));

/*
 * Longest-prefix match of exactly this address (no embedded-IPv4 logic).
 * Returns true and the tag (and the matched prefix length) when found.
 */
bool range_set_lookup(const struct range_set *set, const struct pc_addr *a, int *tag,
		      unsigned *plen);

/*
 * Does the set contain a, or the IPv4 address embedded in a (addr_embedded_v4)?
 * IPv4-mapped/compat forms count as their IPv4 address.
 */
bool range_set_contains(const struct range_set *set, const struct pc_addr *a);

/* Number of prefixes added. */
size_t range_set_count(const struct range_set *set);

/* Add the built-in blocked list of design.md (tag 0). Always on. */
int range_set_add_builtin_blocked(struct range_set *set) __attribute__((warn_unused_result));

/* Number of entries and the text of each built-in blocked prefix, for docs and --check. */
size_t range_builtin_count(void);
const char *range_builtin_text(size_t i);

#endif
