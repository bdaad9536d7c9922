/* The text of a refusal: an HTTP response with the reason in Proxy-Status. */
#ifndef PORTCULLIS_REFUSAL_H
#define PORTCULLIS_REFUSAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "reason.h"

/*
 * Format the refusal: status line, Proxy-Status (RFC 9209 §2: the proxy, the
 * error type and the reason code in details), Retry-After when retry_after
 * > 0 (RFC 9110 §10.2.3), a short text body unless the request was HEAD
 * (RFC 9110 §9.3.2: same head, no content), Connection: close.  Returns the
 * length, or 0 if it does not fit in n bytes.  Pure.
 */
size_t refusal_format(enum reason why, int status, uint32_t retry_after, bool head, char *buf,
                      size_t n);

#endif
