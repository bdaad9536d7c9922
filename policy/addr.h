/* IP addresses: strict literal parsing, inet_aton-compatible IPv4 canonicalisation, formatting. */
#ifndef PORTCULLIS_ADDR_H
#define PORTCULLIS_ADDR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ADDR_V4 4
#define ADDR_V6 6
/* Longest text form: IPv6 with embedded IPv4 (45) + NUL. */
#define ADDR_STRLEN 46

/* One IPv4 or IPv6 address, network byte order. IPv4 uses b[0..3]. */
struct pc_addr {
	uint8_t family; /* ADDR_V4 or ADDR_V6 */
	uint8_t b[16];
};

enum addr_status {
	ADDR_OK = 0,
	ADDR_ERR_SYNTAX = -1,   /* not a valid literal */
	ADDR_ERR_OVERFLOW = -2, /* numeric IPv4 form whose parts overflow (425.1.1.1, 7147006462) */
	ADDR_ERR_ZONE = -3,     /* IPv6 zone id (fe80::1%eth0) */
};

/*
 * True when the text "looks like an IPv4 number" in the WHATWG URL sense: its
 * last dot-separated label (one trailing dot ignored) is all decimal digits or
 * 0x/0X followed by hex digits.  Such a host must parse as IPv4 or be refused;
 * it is never handed to a resolver as a name.
 */
bool addr_looks_ipv4(const char *s, size_t len);

/*
 * Parse every IPv4 notation inet_aton(3) accepts: 1 to 4 parts, each decimal,
 * octal (leading 0) or hex (0x); the last part fills the remaining bytes
 * (a, a.b, a.b.c, a.b.c.d).  One trailing dot is ignored.  Overflow is
 * ADDR_ERR_OVERFLOW, anything else malformed ADDR_ERR_SYNTAX.
 */
int addr_parse_ipv4(const char *s, size_t len, struct pc_addr *out)
	__attribute__((warn_unused_result));

/*
 * Strict IPv4: exactly a canonical dotted quad, four decimal parts 0..255
 * without leading zeros (RFC 3986 §3.2.2 dec-octet).  For configuration text
 * and the IPv4 tail of an IPv6 literal, where inet_aton's forms are a trap.
 */
int addr_parse_ipv4_strict(const char *s, size_t len, struct pc_addr *out)
	__attribute__((warn_unused_result));

/* Parse an IPv6 literal without brackets (RFC 4291 §2.2, incl. trailing dotted IPv4). */
int addr_parse_ipv6(const char *s, size_t len, struct pc_addr *out)
	__attribute__((warn_unused_result));

/* Canonical text: dotted quad, or RFC 5952 IPv6 (no brackets). Returns length. */
size_t addr_format(const struct pc_addr *a, char *buf, size_t n);

bool addr_equal(const struct pc_addr *a, const struct pc_addr *b);

/*
 * The group a source address counts under for every per-source limit: an
 * IPv4 address (also when seen as ::ffff:a.b.c.d on a dual-stack listener)
 * is itself; an IPv6 address is its first v6_prefix bits, the rest zeroed
 * (identity.ipv6_source_prefix, 64 by default: a host or pod given a whole
 * /64 is one source however many of its addresses it uses).  v6_prefix is
 * clamped to 0..128.  Unused bytes of *g are zeroed so groups compare whole.
 */
void addr_source_group(const struct pc_addr *src, unsigned v6_prefix, struct pc_addr *g);

/*
 * When a is an IPv6 address that carries an IPv4 address — mapped
 * ::ffff:0:0/96, translated ::ffff:0:0:0/96, compat ::/96 (except :: and ::1),
 * NAT64 64:ff9b::/96 and 64:ff9b:1::/48, 6to4 2002::/16, Teredo 2001::/32
 * (client address, bit-inverted) — store that IPv4 address in *v4 and return
 * true.
 */
bool addr_embedded_v4(const struct pc_addr *a, struct pc_addr *v4);

/*
 * Is a in 64:ff9b::/32 but outside the well-known prefix 64:ff9b::/96?  There
 * (the local-use 64:ff9b:1::/48 of RFC 8215 included) an operator's NAT64 may
 * embed an IPv4 address at any RFC 6052 prefix length, so which IPv4 address
 * traffic to a reaches cannot be read from a: policy treats it as blocked.
 */
bool addr_nat64_unknown_layout(const struct pc_addr *a);

/* Most IPv4 addresses addr_embedded_v4_all can report for one IPv6 address. */
#define ADDR_EMBEDDED_MAX 2

/*
 * Every IPv4 address that traffic to a may reach: the one addr_embedded_v4
 * reports first, and for Teredo also the server address (RFC 4380 §4, bytes
 * 4..7).  Stores up to n addresses (n >= ADDR_EMBEDDED_MAX gets them all) and
 * returns how many there are.  Blocklist checks use this one.
 */
size_t addr_embedded_v4_all(const struct pc_addr *a, struct pc_addr *v4, size_t n);

#endif
