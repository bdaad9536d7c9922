/* Chunked transfer coding (RFC 9112 §7.1): a validating, resumable decoder.  Pure. */
#ifndef PORTCULLIS_CHUNKED_H
#define PORTCULLIS_CHUNKED_H

#include <stddef.h>
#include <stdint.h>

#include "http_parse.h"

/* Largest chunk size accepted: 2^62 (as Content-Length, http_msg.h). */
#define CHUNKED_SIZE_MAX (UINT64_C(1) << 62)

#define CHUNKED_MAX_LINE    256  /* chunk-size [chunk-ext], CRLF excluded */
#define CHUNKED_MAX_TRAILER 8192 /* trailer section incl. the final CRLF */

enum chunked_status {
	CHUNKED_MORE = 0,                /* every byte consumed, the body goes on */
	CHUNKED_DONE = 1,                /* the body ended within the consumed bytes */
	CHUNKED_ERR_SIZE = -40,          /* chunk-size not 1*HEXDIG then ';' or CRLF */
	CHUNKED_ERR_SIZE_OVERFLOW = -41, /* chunk-size over CHUNKED_SIZE_MAX */
	CHUNKED_ERR_DATA_CRLF = -42,     /* chunk-data not followed by CRLF */
	CHUNKED_ERR_BARE_LF = -43,       /* LF without CR in a chunk line or trailer */
	CHUNKED_ERR_BARE_CR = -44,       /* CR not followed by LF */
	CHUNKED_ERR_EXT = -45,           /* malformed chunk-ext (whitespace, CTL, bad quoting) */
	CHUNKED_ERR_LINE_TOO_LONG = -46, /* chunk line over CHUNKED_MAX_LINE */
	CHUNKED_ERR_TRAILER = -47,       /* malformed trailer field line (incl. obs-fold) */
	CHUNKED_ERR_TRAILER_TOO_LARGE = -48, /* trailer section over CHUNKED_MAX_TRAILER */
};

/* Validator state; zero it (or chunked_init) before the first byte.  Fields are private. */
struct chunked_state {
	int state;
	int result;     /* sticky once DONE or an error */
	uint64_t size;  /* chunk-size being read, then chunk-data bytes left */
	size_t line;    /* bytes of the current chunk line */
	size_t trailer; /* bytes of the trailer section */
};

void chunked_init(struct chunked_state *s);

/*
 * Validate the next bytes of a chunked body.  Sets *consumed to the bytes
 * of buf that belong to the body and are valid: forward exactly those,
 * unchanged.  Returns CHUNKED_MORE (all of buf consumed), CHUNKED_DONE (the
 * body, last-chunk, trailer section and final CRLF included, ends at
 * buf[*consumed - 1]; later bytes are the next message), or a negative
 * chunked_status (*consumed is the valid bytes before the offending one).
 * Any split of a byte stream into calls gives the same result and the same
 * total consumed.  After DONE or an error, further calls return the same
 * value and consume nothing.
 *
 * Strict where RFC 9112 §7.1 allows leniency: no whitespace in chunk lines
 * (§7.1.1 BWS), chunk-ext only as ';' token ['=' token / quoted-string],
 * CRLF only.  Trailer fields are field lines as in a head but are neither
 * interpreted nor merged (RFC 9110 §6.5).
 */
int chunked_feed(struct chunked_state *s, const char *buf, size_t len, size_t *consumed)
    __attribute__((warn_unused_result));

/*
 * Decode a chunked body: chunked_feed's validation and limits, but each call
 * stops right after one run of chunk-data so the caller can take the
 * payload.  *data views the payload inside buf[0..*consumed) ({NULL, 0} when
 * the call consumed framing only); call again with buf + *consumed while
 * bytes remain.  Returns as chunked_feed.  Any split of a byte stream gives
 * the same payload bytes in the same order (the Kubernetes client reads its
 * list and watch bodies through this).
 */
int chunked_decode(struct chunked_state *s, const char *buf, size_t len, size_t *consumed,
                   struct http_view *data) __attribute__((warn_unused_result));

/* Stable snake_case name of a negative chunked_status ("unknown" otherwise). */
const char *chunked_status_str(int status);

#endif
