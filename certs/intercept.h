/* TLS interception: the CA that mints leaves, the contexts toward the client and the upstream. */
#ifndef PORTCULLIS_INTERCEPT_H
#define PORTCULLIS_INTERCEPT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/ssl.h>

#include "addr.h"

struct event_base;
/* Process-wide, shared by the worker threads; every function below is thread-safe. */
struct icpt_ca;

/* interception: in the policy (paths copied; fixed for the process's life, contents reload). */
struct icpt_ca_conf {
	const char *ca_cert_file;     /* PEM CA certificate that signs the leaves (the first one) */
	const char *ca_key_file;      /* its PEM private key (RSA or EC) */
	const char *upstream_ca_file; /* PEM bundle upstreams verify against; NULL: the system's */
	uint32_t leaf_lifetime_s;     /* a leaf's lifetime (clamped to the CA's notAfter), > 0 */
	uint32_t cache_size;          /* leaves kept, least recently used dropped first, > 0 */
};

/* What the SNI check of a server-side SSL found (icpt_server_sni_result). */
enum icpt_sni {
	ICPT_SNI_OK = 0, /* the SNI names the host, or none was needed; or no ClientHello yet */
	ICPT_SNI_MISSING = 1,  /* no SNI, and one was required (a name host and require_sni) */
	ICPT_SNI_MISMATCH = 2, /* an SNI naming another host */
};

struct icpt_stats {
	uint64_t minted, cache_hits; /* leaves signed; leaves served from the cache */
	uint64_t reloads_ok, reloads_failed;
	int64_t ca_not_after; /* the current CA's notAfter, seconds since the epoch */
	size_t cached;        /* leaves in the cache now */
};

/*
 * Load the CA and build the first generation: the CA certificate and key
 * (refused: no basicConstraints CA:TRUE, a keyUsage without keyCertSign, a
 * key that does not match, an expired certificate, a key neither RSA nor EC),
 * a fresh P-256 key for the leaves, the server and upstream contexts.  NULL
 * with err filled: start-up fails.
 */
struct icpt_ca *icpt_ca_create(const struct icpt_ca_conf *conf, char *err, size_t errlen);
void icpt_ca_destroy(struct icpt_ca *ca);

/*
 * Build a new generation from the files off to the side and swap it in (a new
 * leaf key, an empty cache, new contexts; connections keep what their SSL
 * holds).  On failure the old generation stays, the failure is counted and
 * logged.  0, or -1.
 */
int icpt_ca_reload(struct icpt_ca *ca, const char *why);

/* Reload when one of the files changes: watch their directories on base (main loop). */
void icpt_ca_watch(struct icpt_ca *ca, struct event_base *base);

/*
 * The server side toward the client, in accept state, presenting a leaf for
 * host (minted, or from the cache) followed by the CA certificate.  host: the
 * canonical CONNECT host (a lowercase name, or an address literal without
 * brackets, ip non-NULL then).  TLS 1.2 and 1.3, no resumption; ALPN selects
 * http/1.1 (as the TLS listener: a client offering ALPN without http/1.1, h2
 * alone, gets a fatal no_application_protocol alert, RFC 7301 §3.2).  The
 * client's SNI must name host (ASCII case-insensitive, a trailing dot
 * ignored), else the handshake ends with a fatal unrecognized_name alert; no
 * SNI passes only when !require_sni or host is an address.  The SSL carries
 * an info callback (icpt_server_client_rejected): do not replace it.
 * NULL with why filled (no memory, a leaf that could not be signed).
 */
SSL *icpt_server_ssl(struct icpt_ca *ca, const char *host, const struct pc_addr *ip,
                     bool require_sni, char *why, size_t whylen);

/* After a failed server handshake: what the SNI check found (enum icpt_sni). */
int icpt_server_sni_result(const SSL *ssl);

/*
 * Whether the server handshake failed because the client refused our
 * certificate: a fatal alert from it saying so (bad_certificate,
 * unsupported_certificate, certificate_revoked/expired/unknown, unknown_ca,
 * access_denied, decrypt_error).  alert: the text of the first fatal alert
 * the client sent ("unknown CA"), whatever it was, or "" when none.
 */
bool icpt_server_client_rejected(const SSL *ssl, char *alert, size_t alertlen);

/*
 * The client side toward the real upstream, in connect state: TLS 1.2+, ALPN
 * http/1.1, verified against upstream_ca_file or the system's store, the name
 * checked as tls_client_for_host does (host in a DNS SAN, never the CN, SNI
 * sent; ip's address in an IP SAN, no SNI, when ip is non-NULL).  The context
 * is the generation's, not one per connection.  NULL with why filled.
 */
SSL *icpt_client_ssl(struct icpt_ca *ca, const char *host, const struct pc_addr *ip, char *why,
                     size_t whylen);

/*
 * After a failed client handshake: whether the upstream's certificate failed
 * verification (untrusted, wrong name, expired, ...), with OpenSSL's text of
 * the X509_V_ERR_* in why ("certificate has expired").
 */
bool icpt_client_verify_failed(const SSL *ssl, char *why, size_t whylen);

void icpt_ca_get_stats(struct icpt_ca *ca, struct icpt_stats *out);

#endif
