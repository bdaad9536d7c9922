/* Warnings: policies that are valid but dangerous (--check, daemon start and reload). */
#ifndef PORTCULLIS_WARN_H
#define PORTCULLIS_WARN_H

#include <stddef.h>

#include "policy.h"

/*
 * Stable codes: names never change once released; new codes are appended.
 * Each is documented in docs/policy-tools.md (a unit test checks the names).
 */
enum policy_warn {
	PW_ALLOW_RANGE_EVERYTHING = 0, /* allow_ranges 0.0.0.0/0 or ::/0: no address is blocked */
	PW_ALLOW_RANGE_METADATA,       /* allow_ranges holds a cloud metadata address */
	PW_ALLOW_RANGE_LOOPBACK,       /* allow_ranges overlaps 127.0.0.0/8 or ::1 */
	PW_SOURCES_EVERYTHING,         /* sources 0.0.0.0/0 or ::/0: every address is this tier */
	PW_UNKNOWN_SOURCE_TIER,        /* identity.unknown_source names a tier */
	PW_RULE_IP_LITERAL,            /* an allow rule names an IP address */
	PW_RULE_BLOCKED_ADDRESS,       /* an allow rule names a blocked address: it never allows */
	PW_RULE_PUBLIC_SUFFIX,         /* *.suffix where suffix is a public suffix (*.co.uk) */
	PW_RULE_DUPLICATE,             /* the same host pattern again, its ports already allowed */
	PW_RULE_SHADOWED,              /* every host and port of the rule is decided by earlier rules */
	PW_TIER_AUDIT_MODE,            /* mode: audit lets through what it would refuse */
	PW_TLS_PORT_UNCHECKED,         /* a rule allows 443 (or a top-level TLS port) that the tier
	                                  does not check for TLS: plain HTTP and anything else pass */
	PW_AUDIT_QUEUE_SMALL,          /* audit.queue_size below 2 KiB x limits.max_connections */
	PW_PROXY_TRUSTED_BROAD,        /* proxy_protocol.trusted is /0 or covers a tier's sources:
	                                  clients there could choose their own source address */
	PW_OIDC_RULE_UNSCOPED,         /* an identity.oidc rule names no project, namespace,
	                                  repository or owner: any project of a shared issuer can
	                                  mint a token it matches */
	PW__COUNT
};

/* Stable snake_case name, e.g. "rule_shadowed". */
const char *policy_warn_name(enum policy_warn w);

struct policy_warning {
	enum policy_warn code;
	unsigned line, col; /* 1-based place of the node the warning is about */
	char msg[320];
};

/* Collected warnings, sorted by place; at most POLICY_MAX_WARNINGS (then `truncated`). */
#define POLICY_MAX_WARNINGS 200
struct policy_warnings {
	struct policy_warning v[POLICY_MAX_WARNINGS];
	size_t n;
	bool truncated;
};

/*
 * Every warning of a loaded snapshot into *out (overwritten).  Pure: reads
 * only the snapshot and the public suffix data compiled into libpsl.  Cost is
 * linear in the rules (shadowing is found through a hash of the patterns, not
 * by comparing every pair).  0, or POLICY_ERR_NOMEM (out then holds what was
 * found so far).
 */
int policy_warn(const struct policy *p, struct policy_warnings *out)
	__attribute__((warn_unused_result));

/*
 * Is name (canonical, no trailing dot) a public suffix, private section
 * included ("co.uk", "githubusercontent.com")?  The implicit "*" rule of the
 * list is not applied: an unlisted TLD's names are not public suffixes.
 */
bool policy_is_public_suffix(const char *name);

#endif
