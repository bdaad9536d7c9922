/* Request paths of intercepted requests: strict checking, the matching form, and path globs. */
#ifndef PORTCULLIS_URLPATH_H
#define PORTCULLIS_URLPATH_H

#include <stdbool.h>
#include <stddef.h>

/* Longest glob pattern (bytes as written); a glob never has more states than this. */
#define URLPATH_PATTERN_MAX 1024

/* Why a path (or a pattern) cannot be matched safely: 0 or negative. */
enum urlpath_status {
	URLPATH_OK = 0,
	URLPATH_ERR_START = -1,         /* does not start with '/' (or is empty) */
	URLPATH_ERR_FRAGMENT = -2,      /* '#' anywhere (a client never sends a fragment) */
	URLPATH_ERR_ESCAPE = -3,        /* '%' not followed by two hex digits */
	URLPATH_ERR_ENCODED = -4,       /* an escape of '/', '\\', NUL or a control byte; "%25XX" */
	URLPATH_ERR_CHAR = -5,          /* a raw '\\', space, control byte or byte >= 0x80 */
	URLPATH_ERR_DOT_SEGMENT = -6,   /* a segment "." or ".." (after decoding) */
	URLPATH_ERR_EMPTY_SEGMENT = -7, /* "//": an empty segment other than the last */
	URLPATH_ERR_QUERY = -8,         /* pattern only: '?' (the query is never matched) */
	URLPATH_ERR_TOO_LONG = -9,      /* pattern only: over URLPATH_PATTERN_MAX bytes */
};

/* Short plain-English text of a urlpath_status, for messages. */
const char *urlpath_status_str(int status);

/*
 * Check an origin-form request-target (RFC 9112 §3.2.1: "/path?query"), or
 * with pattern a glob, against the rules that let it be matched safely; fail
 * closed on anything else:
 *  - it starts with '/'; a '#' anywhere is refused (RFC 9112 §3.2: no fragment
 *    in a request-target); the query, from the first '?', is not looked at
 *    further (a pattern has no '?');
 *  - every '%' is followed by two hex digits (RFC 3986 §2.1); an escape of an
 *    unreserved byte (ALPHA DIGIT - . _ ~, RFC 3986 §2.3) is the byte itself
 *    (§6.2.2.2); an escape of '/', '\\', NUL or another control byte is
 *    refused, and so is a double escape ("%25" then two hex digits: a server
 *    that decodes twice reads "%2e" as '.'); any other escape stays an escape, its hex digits
 * uppercased (§6.2.2.1);
 *  - a raw '\\', space, control byte or byte >= 0x80 is refused;
 *  - after decoding, no segment is "." or ".." (RFC 3986 §5.2.4 would remove
 *    them), and no segment is empty except the last ("/a/" is fine, "/a//b"
 *    is not).  ';' is an ordinary byte.
 * In a pattern a raw '*' is a wildcard and counts as text of its segment.
 * *path_len (may be NULL) receives the length of the path part, before '?'.
 */
int urlpath_check(const char *s, size_t len, bool pattern, size_t *path_len)
    __attribute__((warn_unused_result));

/*
 * The normal form of the path part of a target urlpath_check accepted (len is
 * its path_len): unreserved escapes decoded, other escapes with uppercase hex,
 * everything else as is.  out needs len bytes; returns the length written.
 */
size_t urlpath_normalize(const char *s, size_t len, char *out);

/*
 * A compiled path glob (opaque).  Over the normal form, ASCII case-insensitive:
 * '*' is any run of bytes without '/', "**" (or more stars) any run of bytes,
 * '/' included, both possibly empty; everything else is literal ("%2A" is a
 * literal '*').  Matching is a bit-parallel NFA: time linear in the path,
 * whatever the pattern.
 */
struct urlpath_glob;

/* Bytes urlpath_glob_compile needs for pattern p (already accepted by urlpath_check). */
size_t urlpath_glob_size(const char *p, size_t len);

/* Compile p into mem (urlpath_glob_size(p, len) bytes, aligned for any type). */
const struct urlpath_glob *urlpath_glob_compile(const char *p, size_t len, void *mem);

/* Does the path part (path_len bytes) of a target urlpath_check accepted match g? */
bool urlpath_glob_match(const struct urlpath_glob *g, const char *path, size_t len);

#endif
