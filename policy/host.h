/* Host strings: canonicalisation, authority (host:port) parsing, allowlist patterns. */
#ifndef PORTCULLIS_HOST_H
#define PORTCULLIS_HOST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "addr.h"

#define HOST_NAME_MAX_LEN 253
#define HOST_LABEL_MAX_LEN 63

enum host_kind { HOST_NAME = 1, HOST_IPV4 = 4, HOST_IPV6 = 6 };

/* A canonical host: a lowercase DNS name without trailing dot, or an address. */
struct pc_host {
	enum host_kind kind;
	size_t len;                          /* strlen(name) */
	char name[HOST_NAME_MAX_LEN + 1];    /* canonical text: name, dotted quad, or IPv6 (no brackets) */
	struct pc_addr addr;                 /* valid for HOST_IPV4 / HOST_IPV6 */
};

enum host_status {
	HOST_OK = 0,
	HOST_ERR_EMPTY = -1,
	HOST_ERR_CHAR = -2,        /* a byte not allowed in a host (%, @, \, space, control, non-ASCII...) */
	HOST_ERR_LABEL = -3,       /* empty label, label > 63, label starting/ending with '-' */
	HOST_ERR_TOO_LONG = -4,    /* name > 253 */
	HOST_ERR_BAD_IP = -5,      /* looks like an IPv4 number but is not a valid one, or bad IPv6 */
	HOST_ERR_ZONE = -6,        /* IPv6 zone id */
	HOST_ERR_PORT = -7,        /* missing, empty, non-digit, 0 or > 65535 port */
	HOST_ERR_BRACKET = -8,     /* unbalanced brackets / IPv6 without brackets in an authority */
	HOST_ERR_PUNYCODE = -9,    /* malformed xn-- label */
	HOST_ERR_WILDCARD = -10,   /* pattern: '*' other than a leading "*." over >= 2 labels */
};

/* Stable short name of a host_status, for messages. */
const char *host_status_str(int status);

/*
 * Canonicalise a host (no port, no brackets for IPv6 allowed here too):
 * lowercase, one trailing dot removed, IDNs only as A-labels (raw non-ASCII
 * refused), labels of [a-z0-9_-], 1..63 bytes, name <= 253; numbers that look
 * like IPv4 (addr_looks_ipv4) parsed as IPv4 (every inet_aton form) or refused;
 * IPv6 literals accepted with or without brackets, zone ids refused.
 */
int host_canon(const char *s, size_t len, struct pc_host *out) __attribute__((warn_unused_result));

/*
 * Parse an authority "host:port" / "[v6]:port" (RFC 9110 §7.2, RFC 3986
 * §3.2.2).  Refuses userinfo, percent-escapes, backslashes, spaces, zone ids.
 * When default_port is 0 the port is required; otherwise a missing port
 * yields default_port.
 */
int host_parse_authority(const char *s, size_t len, uint16_t default_port, struct pc_host *host,
			 uint16_t *port) __attribute__((warn_unused_result));

/*
 * Allowlist host patterns (policy files): "name" (exact), "*.name" (strict
 * subdomains of name, not the apex), or an IP literal (exact address).
 * Validates and canonicalises pattern text into out (kind, name).  For a
 * wildcard, out->name holds the suffix without "*." and *wildcard is true.
 */
int host_pattern_parse(const char *s, size_t len, struct pc_host *out, bool *wildcard)
	__attribute__((warn_unused_result));

/* Does canonical host h match the (canonical) pattern p? Label-boundary safe. */
bool host_pattern_match(const struct pc_host *p, bool wildcard, const struct pc_host *h);

#endif
