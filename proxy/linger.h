/* Lingering closes: after the last byte to a client, read and discard what it still sends, briefly.
 */
#ifndef PORTCULLIS_LINGER_H
#define PORTCULLIS_LINGER_H

#include <stddef.h>
#include <stdint.h>

#include <event2/util.h>

struct event_base;
struct linger_pool; /* one per worker loop; opaque */

/*
 * Why linger: a client that is still sending when the proxy closes makes the
 * kernel answer with a RST, and a RST can destroy the response the client
 * has not read yet (RFC 9112 §9.6).  So a connection the proxy ends after
 * writing to it (a refusal, a closing exchange, a cap) gives its socket here:
 * the write side is shut, input is discarded until the client's FIN, an
 * error, or `ms` passed.
 *
 * A lingering socket is no connection any more: it holds no slot of
 * limits.max_connections or of caps.connections_per_source, and its record
 * is already written.  The pool is bounded: beyond `max` sockets the oldest
 * is closed at once.
 */
struct linger_pool *linger_pool_create(struct event_base *base, size_t max);
/* Closes every socket still lingering. NULL is a no-op. */
void linger_pool_destroy(struct linger_pool *p);

/* Take over fd (a connected socket whose output is flushed). Never fails: closes on error. */
void linger_add(struct linger_pool *p, evutil_socket_t fd, uint32_t ms);

/* Sockets lingering now. */
size_t linger_count(const struct linger_pool *p);

#endif
