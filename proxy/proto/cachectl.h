/* How long a response may be reused (RFC 9111 §4.2.1, §5.1, §5.2.2): for the JWKS cache. */
#ifndef PORTCULLIS_CACHECTL_H
#define PORTCULLIS_CACHECTL_H

#include <stdint.h>

#include "http_parse.h"

/*
 * The response's remaining freshness in seconds, from its own headers only:
 * Cache-Control's max-age (s-maxage is for shared caches and ignored) less
 * Age; 0 for no-store, no-cache, a max-age already used up, and a max-age
 * that is not delta-seconds or is given twice with different values (§4.2.1:
 * stale).  -1 when the response has no max-age at all.  Values past 2^31 are
 * taken as 2^31 (§1.2.2).  Expires is not read.
 */
int64_t cachectl_freshness(const struct http_resp *r);

#endif
