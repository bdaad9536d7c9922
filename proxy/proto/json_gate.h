/*
 * A JSON gate in front of libyaml.  JSON is (almost) a subset of YAML 1.1, but
 * libyaml 0.2.5 is not a JSON parser: it refuses a whole document holding a
 * raw DEL, U+FFFE or U+FFFF or a surrogate-pair escape, folds a raw NEL, LS or
 * PS inside a string into a space, and accepts YAML that is not JSON
 * (trailing commas, "\x41" escapes, quotes of the wrong kind, anchors, tags,
 * plain strings, comments).  The gate checks the RFC 8259 grammar, the
 * nesting depth and every literal in one pass, and hands libyaml a text it
 * reads as the same JSON.  Pure: bytes in, bytes out.
 */
#ifndef PORTCULLIS_JSON_GATE_H
#define PORTCULLIS_JSON_GATE_H

#include <stdbool.h>
#include <stddef.h>

#define JSON_GATE_MAX_DEPTH 64 /* the most max_depth may be */
/* An object key longer than this (bytes, as written) becomes "~portcullis-long-key~". */
#define JSON_GATE_LONG_KEY 512

enum json_gate_status {
	JSON_GATE_OK = 0,
	JSON_GATE_ERR_SYNTAX = -1, /* not one well-formed RFC 8259 JSON text */
	JSON_GATE_ERR_DEPTH = -2,  /* objects and arrays nested deeper than max_depth */
	JSON_GATE_ERR_NOMEM = -3,
};

/* What a bare JSON token is (RFC 8259 §3 literal names, §6 numbers). */
enum json_lit {
	JSON_LIT_BAD = 0,
	JSON_LIT_NULL,
	JSON_LIT_TRUE,
	JSON_LIT_FALSE,
	JSON_LIT_NUMBER,
};

enum json_lit json_literal(const char *s, size_t n);

/*
 * Check buf[0..len) (not NUL-terminated; nothing past len is read): exactly
 * one JSON value, surrounded by JSON whitespace only, nested at most
 * max_depth (<= JSON_GATE_MAX_DEPTH) deep.  On success *out / *outlen is what
 * to give libyaml: the value in buf without the whitespace around it (where
 * libyaml refuses a tab that starts a line), or a rewritten copy also stored
 * in *copy (the caller frees it; NULL when not needed).  The rewrite, inside
 * strings only:
 * raw DEL, C1 controls (U+0080..U+009F), LS, PS, U+FFFE and U+FFFF become
 * \uXXXX escapes; a surrogate pair escape becomes the character in UTF-8, a
 * lone surrogate escape U+FFFD (as Go's encoding/json decodes it).  err (may
 * be NULL) receives a short reason on failure.
 */
int json_gate(const char *buf, size_t len, unsigned max_depth, const char **out, size_t *outlen,
              char **copy, char *err, size_t errlen) __attribute__((warn_unused_result));

#endif
