/*
 * The transport seam's TLS implementation, one SSL session over a socket: a
 * TLS listener's client, and both peers of an intercepted tunnel (the
 * client, to whom the proxy presents a minted certificate, and the upstream).
 */
#include "transport.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "tls_listener.h"

struct tls_transport {
	struct transport t; /* first: the seam's view */
	SSL *ssl;
	/*
	 * The handshake completed (SSL_CB_HANDSHAKE_DONE).  Not SSL_is_init_finished:
	 * a TLS 1.3 server is "in init" again until its session tickets are out.
	 */
	bool done;
	bool starved; /* the last SSL_read wanted the socket: what OpenSSL holds is no whole record */
	bool listener; /* a TLS listener's client (transport_tls_session) */
	void (*chained)(const SSL *ssl, int where, int ret); /* the session's own info callback */
};

static bool done(const struct transport *t)
{
	return ((const struct tls_transport *)(const void *)t)->done;
}

static void info_cb(const SSL *ssl, int where, int ret)
{
	struct tls_transport *tt = SSL_get_app_data(ssl);
	if ((where & SSL_CB_HANDSHAKE_DONE) && tt != NULL)
		tt->done = true;
	if (tt != NULL && tt->chained != NULL)
		tt->chained(ssl, where, ret);
}

static SSL *ssl_of(const struct transport *t)
{
	return ((const struct tls_transport *)(const void *)t)->ssl;
}

/*
 * The session reads and writes the socket through a BIO.  Each bufferevent
 * made over it reuses that BIO and tls_unbuffer leaves it alone; should
 * anything have pointed it elsewhere (bufferevent_setfd), point it back at
 * our socket before the relay uses the session directly.
 */
static SSL *session(struct transport *t)
{
	SSL *ssl = ssl_of(t);
	if (SSL_get_fd(ssl) != t->fd)
		SSL_set_fd(ssl, t->fd);
	return ssl;
}

/* errno for an SSL call that returned r <= 0 (the error queue is cleared). */
static ssize_t fail(SSL *ssl, int r)
{
	int e = SSL_get_error(ssl, r);
	int saved = errno;
	ERR_clear_error();
	switch (e) {
	case SSL_ERROR_WANT_READ:
	case SSL_ERROR_WANT_WRITE:
		errno = EAGAIN;
		return -1;
	case SSL_ERROR_ZERO_RETURN:
		return 0; /* close_notify (or an EOF without one: SSL_OP_IGNORE_UNEXPECTED_EOF) */
	case SSL_ERROR_SYSCALL:
		errno = saved != 0 ? saved : ECONNRESET;
		return -1;
	default:
		errno = EPROTO;
		return -1;
	}
}

static ssize_t tls_recv(struct transport *t, void *buf, size_t n)
{
	SSL *ssl = session(t);
	if (!done(t)) {
		errno = EAGAIN; /* the handshake is the bufferevent's */
		return -1;
	}
	/*
	 * The relay reads whole socket buffers, not a record header and then its
	 * body per read(2); transport_pending tells it what the session holds.
	 * (The bufferevent phases read record by record: libevent's OpenSSL
	 * bufferevent waits on the socket for what it has not seen.)
	 */
	SSL_set_read_ahead(ssl, 1);
	ERR_clear_error();
	int r = SSL_read(ssl, buf, n > INT_MAX ? INT_MAX : (int)n);
	struct tls_transport *tt = (struct tls_transport *)(void *)t;
	tt->starved = r <= 0 && SSL_get_error(ssl, r) == SSL_ERROR_WANT_READ;
	return r > 0 ? r : fail(ssl, r);
}

static ssize_t tls_send(struct transport *t, const void *buf, size_t n)
{
	SSL *ssl = session(t);
	if (n == 0)
		return 0;
	/*
	 * In partial-write mode SSL_write takes one record (16 KiB) per call: go on until
	 * the socket is full, so a short count means "full", as for a TCP send.  A retry
	 * after EAGAIN sends at least the same bytes (the relay keeps them in order).
	 */
	const unsigned char *p = buf;
	size_t sent = 0;
	int r = 0;
	while (sent < n) {
		size_t left = n - sent;
		ERR_clear_error();
		r = SSL_write(ssl, p + sent, left > INT_MAX ? INT_MAX : (int)left);
		if (r <= 0)
			break;
		sent += (size_t)r;
	}
	if (sent > 0)
		return (ssize_t)sent;
	ssize_t v = fail(ssl, r);
	if (v == 0) {
		errno = EPIPE;
		return -1;
	}
	return v;
}

/* close_notify (RFC 8446 §6.1), then the FIN; a close_notify that does not fit now is skipped. */
static void tls_shutdown_write(struct transport *t)
{
	SSL *ssl = session(t);
	ERR_clear_error();
	if (done(t))
		(void)SSL_shutdown(ssl);
	ERR_clear_error();
	shutdown(t->fd, SHUT_WR);
}

static struct bufferevent *tls_buffered(struct transport *t, struct event_base *base)
{
	SSL *ssl = session(t);
	bool open = done(t);
	/* No BEV_OPT_CLOSE_ON_FREE: the transport owns the socket and the session. */
	enum bufferevent_ssl_state st = open                 ? BUFFEREVENT_SSL_OPEN
	                                : SSL_is_server(ssl) ? BUFFEREVENT_SSL_ACCEPTING
	                                                     : BUFFEREVENT_SSL_CONNECTING;
	struct bufferevent *bev = bufferevent_openssl_socket_new(base, t->fd, ssl, st, 0);
	if (bev == NULL)
		return NULL;
	/* A client that ends with a FIN but no close_notify has still ended. */
	bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
	/*
	 * Records the session already holds (the relay read ahead) would wait for
	 * a socket event that may never come: move them into the input now, and
	 * read record by record from here on.
	 */
	char buf[4096];
	while (open && (SSL_pending(ssl) > 0 || SSL_has_pending(ssl))) {
		ERR_clear_error();
		int r = SSL_read(ssl, buf, sizeof(buf));
		if (r <= 0) {
			ERR_clear_error();
			break;
		}
		struct evbuffer *in = bufferevent_get_input(bev);
		evbuffer_unfreeze(in, 0);
		int rc = evbuffer_add(in, buf, (size_t)r);
		evbuffer_freeze(in, 0);
		if (rc != 0) {
			bufferevent_free(bev);
			return NULL;
		}
	}
	SSL_set_read_ahead(ssl, 0);
	return bev;
}

/*
 * No bufferevent_setfd(-1) here: libevent's OpenSSL bufferevent answers it by
 * resetting the session to the state it was created in (SSL_clear, a new
 * handshake).  Freed as it is, it keeps its hands off the socket and session.
 */
static void tls_unbuffer(struct transport *t, struct bufferevent *bev)
{
	bufferevent_disable(bev, EV_READ | EV_WRITE);
	bufferevent_free(bev);
}

static void tls_free(struct transport *t)
{
	SSL_free(ssl_of(t));
	ERR_clear_error();
	free(t);
}

static void tls_reset(struct transport *t)
{
	struct linger lg = {.l_onoff = 1, .l_linger = 0};
	setsockopt(t->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	close(t->fd);
	tls_free(t);
}

/* The socket goes to the linger pool: say close_notify first, so the client sees an orderly end. */
static evutil_socket_t tls_release(struct transport *t)
{
	evutil_socket_t fd = t->fd;
	SSL *ssl = session(t);
	ERR_clear_error();
	if (done(t))
		(void)SSL_shutdown(ssl);
	tls_free(t);
	return fd;
}

static void tls_destroy(struct transport *t)
{
	evutil_socket_t fd = tls_release(t);
	close(fd);
}

static size_t tls_pending(const struct transport *t)
{
	SSL *ssl = ssl_of(t);
	if (!done(t))
		return 0;
	int n = SSL_pending(ssl);
	if (n > 0)
		return (size_t)n;
	/* A partial record is not "pending": the socket says when the rest comes (else the
	 * relay would spin on it). */
	if (((const struct tls_transport *)(const void *)t)->starved)
		return 0;
	return SSL_has_pending(ssl) ? 1 : 0; /* records read ahead, not yet decrypted */
}

static bool tls_handshaking(const struct transport *t)
{
	return !done(t);
}

static const struct transport_ops tls_ops = {
    .recv = tls_recv,
    .send = tls_send,
    .shutdown_write = tls_shutdown_write,
    .buffered = tls_buffered,
    .reset = tls_reset,
    .release = tls_release,
    .destroy = tls_destroy,
    .pending = tls_pending,
    .handshaking = tls_handshaking,
    .unbuffer = tls_unbuffer,
};

/* A transport over fd and ssl (both owned from here on; freed on failure). */
static struct transport *wrap(evutil_socket_t fd, SSL *ssl, bool listener)
{
	struct tls_transport *tt = ssl != NULL ? malloc(sizeof(*tt)) : NULL;
	if (tt == NULL || SSL_set_fd(ssl, fd) != 1) {
		SSL_free(ssl);
		ERR_clear_error();
		free(tt);
		return NULL;
	}
	tt->t.ops = &tls_ops;
	tt->t.fd = fd;
	tt->ssl = ssl;
	tt->done = false;
	tt->starved = false;
	tt->listener = listener;
	/* The session's own callback (or its context's, which ours would hide) still runs. */
	tt->chained = SSL_get_info_callback(ssl);
	if (tt->chained == NULL)
		tt->chained = SSL_CTX_get_info_callback(SSL_get_SSL_CTX(ssl));
	SSL_set_app_data(ssl, tt);
	SSL_set_info_callback(ssl, info_cb);
	return &tt->t;
}

struct transport *transport_tls_accept(evutil_socket_t fd, struct tls_listener *ts)
{
	SSL *ssl = tls_listener_new_ssl(ts);
	if (ssl != NULL)
		SSL_set_accept_state(ssl);
	return wrap(fd, ssl, true);
}

struct transport *transport_tls_over(evutil_socket_t fd, void *ssl)
{
	return wrap(fd, ssl, false);
}

void *transport_tls_session(const struct transport *t)
{
	return t != NULL && t->ops == &tls_ops &&
	               ((const struct tls_transport *)(const void *)t)->listener
	           ? ssl_of(t)
	           : NULL;
}

void *transport_tls_ssl(const struct transport *t)
{
	return t != NULL && t->ops == &tls_ops ? ssl_of(t) : NULL;
}
