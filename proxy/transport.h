/* The transport seam: how the connection reads and writes one peer, whatever carries the bytes. */
#ifndef PORTCULLIS_TRANSPORT_H
#define PORTCULLIS_TRANSPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include <event2/util.h>

struct bufferevent;
struct event_base;
struct transport;

/*
 * One peer of a connection (the client, or the upstream once connected).
 * The connection's phases never touch the socket directly: the buffered
 * phases (request, first flight, forward) read and write through a
 * bufferevent the transport makes, the relay through recv/send.  A transport
 * that is not plain TCP (TLS to the proxy) is one more implementation of
 * these operations; nothing above it changes.
 *
 * fd is the socket readiness is polled on (and the one the relay sizes its
 * reads by: SIOCOUTQ, SO_SNDBUF).
 */
struct transport_ops {
	/* > 0 bytes, 0 at EOF, -1 with errno (EAGAIN: nothing now). */
	ssize_t (*recv)(struct transport *t, void *buf, size_t n);
	/* >= 0 bytes taken, -1 with errno (EAGAIN: no room now). Never raises SIGPIPE. */
	ssize_t (*send)(struct transport *t, const void *buf, size_t n);
	/* No more bytes go to the peer (TCP: FIN). */
	void (*shutdown_write)(struct transport *t);
	/* A bufferevent over this transport (it never closes the socket), or NULL. */
	struct bufferevent *(*buffered)(struct transport *t, struct event_base *base);
	/* Close so that the peer sees an abort, not an orderly end (TCP: RST), and free. */
	void (*reset)(struct transport *t);
	/* Give the socket up (it stays open; the caller owns it now) and free. */
	evutil_socket_t (*release)(struct transport *t);
	/* Close and free. */
	void (*destroy)(struct transport *t);
	/*
	 * Bytes that can be read now without the socket becoming readable (TLS:
	 * decrypted or received records held in the session).  NULL: never any.
	 */
	size_t (*pending)(const struct transport *t);
	/* Still in its handshake: nothing can be read yet (TLS).  NULL: never. */
	bool (*handshaking)(const struct transport *t);
	/*
	 * Free a bufferevent `buffered` made, leaving the socket (and session)
	 * as they are for the next phase.  NULL: detach it from the socket, free.
	 */
	void (*unbuffer)(struct transport *t, struct bufferevent *bev);
};

struct transport {
	const struct transport_ops *ops;
	evutil_socket_t fd;
};

/* Plain TCP over a connected non-blocking socket (owned from here on). NULL: out of memory. */
struct transport *transport_tcp(evutil_socket_t fd);

struct tls_listener;
/*
 * TLS to the proxy (a listen.https listener) over an accepted socket (owned
 * from here on), with a session from the listener's current context.  The
 * handshake runs in the first bufferevent (transport_buffered) the request
 * phase reads through.  NULL: out of memory.
 */
struct transport *transport_tls_accept(evutil_socket_t fd, struct tls_listener *ts);
/* The TLS session of a transport_tls_accept transport (an SSL *), else NULL. */
void *transport_tls_session(const struct transport *t);
/*
 * TLS over a connected socket with a session the caller set up (an SSL * in
 * accept or connect state; both owned from here on, freed on failure): the
 * peers of an intercepted tunnel.  The handshake runs in the first
 * bufferevent made over it.  NULL: out of memory.
 */
struct transport *transport_tls_over(evutil_socket_t fd, void *ssl);
/* The TLS session of any TLS transport (an SSL *), else NULL. */
void *transport_tls_ssl(const struct transport *t);

static inline ssize_t transport_recv(struct transport *t, void *buf, size_t n)
{
	return t->ops->recv(t, buf, n);
}

static inline ssize_t transport_send(struct transport *t, const void *buf, size_t n)
{
	return t->ops->send(t, buf, n);
}

static inline void transport_shutdown_write(struct transport *t)
{
	t->ops->shutdown_write(t);
}

static inline struct bufferevent *transport_buffered(struct transport *t, struct event_base *b)
{
	return t->ops->buffered(t, b);
}

static inline size_t transport_pending(const struct transport *t)
{
	return t->ops->pending != NULL ? t->ops->pending(t) : 0;
}

static inline bool transport_handshaking(const struct transport *t)
{
	return t->ops->handshaking != NULL && t->ops->handshaking(t);
}

/* Free a bufferevent this transport made (NULL bev: nothing). */
void transport_unbuffer(struct transport *t, struct bufferevent *bev);

/* NULL is a no-op for the three below. */
void transport_destroy(struct transport *t);
void transport_reset(struct transport *t);
evutil_socket_t transport_release(struct transport *t);

#endif
