/* SPIFFE IDs (spiffe://trust-domain/path): strict parsing and the policy's ID patterns. */
#ifndef PORTCULLIS_SPIFFE_H
#define PORTCULLIS_SPIFFE_H

#include <stdbool.h>
#include <stddef.h>

/* The SPIFFE spec's ceiling on a whole ID (SPIFFE-ID §2.4: 2048 bytes). */
#define SPIFFE_ID_MAX 2048
/* A trust domain name (SPIFFE-ID §2.1: at most 255 bytes). */
#define SPIFFE_TD_MAX 255

enum spiffe_status {
	SPIFFE_OK = 0,
	SPIFFE_ERR_SCHEME = -1,       /* not "spiffe://" (lowercase) */
	SPIFFE_ERR_TRUST_DOMAIN = -2, /* empty, too long, or a character outside [a-z0-9._-] */
	SPIFFE_ERR_PATH = -3,         /* an empty, "." or ".." segment, a trailing "/", or a
	                                 character outside [A-Za-z0-9._-] */
	SPIFFE_ERR_TOO_LONG = -4,     /* more than SPIFFE_ID_MAX bytes */
};

/* Views into the parsed text (not copies). */
struct spiffe_id {
	const char *td; /* trust domain */
	size_t td_len;
	const char *path; /* "" or "/seg/..." */
	size_t path_len;
};

/*
 * Parse s (len bytes; NUL bytes are refused like any other stray byte) as a
 * SPIFFE ID by SPIFFE-ID §2: scheme "spiffe", a trust domain of lowercase
 * letters, digits, '.', '-', '_' (so no port, no userinfo), an optional path
 * of non-empty segments of letters, digits, '.', '-', '_' that are not "."
 * or "..", no trailing '/', no query, no fragment, no percent-encoding.
 */
int spiffe_id_parse(const char *s, size_t len, struct spiffe_id *out)
    __attribute__((warn_unused_result));

/*
 * A policy pattern: a SPIFFE ID (exact match), or a SPIFFE ID followed by
 * a slash and an asterisk (any ID strictly below that path: at least one more
 * segment; "spiffe://td/" and an asterisk: any ID of the trust domain with a path).  Validated with
 * spiffe_id_parse; SPIFFE_OK or its error.
 */
int spiffe_pattern_check(const char *pat, size_t len) __attribute__((warn_unused_result));

/* Does the (valid) id match the (checked) pattern?  Byte-exact: IDs are case-sensitive. */
bool spiffe_pattern_match(const char *pat, size_t pat_len, const char *id, size_t id_len);

const char *spiffe_status_str(int st);

#endif
