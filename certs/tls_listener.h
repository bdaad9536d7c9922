/* The TLS listener's server context: built from files, swapped on reload, shared by workers. */
#ifndef PORTCULLIS_TLS_LISTENER_H
#define PORTCULLIS_TLS_LISTENER_H

#include <stdbool.h>
#include <stdint.h>

#include <openssl/ssl.h>

struct event_base;
struct tls_listener;

/* listen.tls.client_certs: whether a client certificate is asked for. */
enum tls_client_certs {
	TLS_CLIENT_CERTS_OFF = 0, /* never asked for */
	TLS_CLIENT_CERTS_REQUEST, /* asked for; a connection without one is identified as before */
	TLS_CLIENT_CERTS_REQUIRE, /* asked for; a connection without one is refused */
};

/* Where the material lives (copied; fixed for the process's life). */
struct tls_listener_conf {
	const char *cert_file; /* PEM chain, leaf first */
	const char *key_file;  /* PEM private key of the leaf */
	enum tls_client_certs client_certs;
	const char *client_ca_file; /* PEM bundle the client certificates are verified against */
	const char *crl_file;       /* PEM CRLs of client_ca_file's CAs, or NULL */
};

/*
 * What a reload did, for the metrics.  not_after: the serving leaf's
 * notAfter (seconds since the epoch), so an alert can fire before it lapses.
 */
struct tls_listener_stats {
	uint64_t reloads_ok, reloads_failed;
	int64_t not_after;
};

/*
 * Build the first context (TLS 1.2 and 1.3 only, ALPN http/1.1).  NULL with
 * errmsg filled when the files do not make a usable context: start-up fails.
 */
struct tls_listener *tls_listener_create(const struct tls_listener_conf *conf, char *errmsg,
                                         size_t errlen);
void tls_listener_destroy(struct tls_listener *ts);

/*
 * Build a new context from the files off to the side and swap it in; a
 * connection keeps the context it started with (its SSL holds a reference).
 * A pair that does not load or does not match keeps the old context, logs why
 * and counts a failed reload.  Thread-safe.  0, or -1 when the old one stays.
 */
int tls_listener_reload(struct tls_listener *ts, const char *why);

/* Reload when a file of the context changes: watch their directories on base (main loop). */
void tls_listener_watch(struct tls_listener *ts, struct event_base *base);

/* A server-side SSL for one accepted connection, from the current context. NULL: no memory. */
SSL *tls_listener_new_ssl(struct tls_listener *ts);

/* The client-certificate mode of the listener an accepted SSL belongs to. */
enum tls_client_certs tls_listener_mode_of(const SSL *ssl);
/* The first error verifying the client's chain (X509_V_OK: none, or no certificate). */
long tls_listener_verify_error(const SSL *ssl);

void tls_listener_get_stats(struct tls_listener *ts, struct tls_listener_stats *out);

/*
 * The listener's ALPN selection (SSL_CTX_set_alpn_select_cb), for every server
 * context of ours that speaks HTTP/1.1 only: http/1.1 when the client offers
 * it, else a fatal no_application_protocol alert (RFC 7301 §3.2).
 */
int tls_alpn_http11_cb(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                       const unsigned char *in, unsigned inlen, void *arg);

#endif
