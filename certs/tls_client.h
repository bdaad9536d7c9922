/* TLS client contexts the proxy dials with (the Kubernetes API server, JWKS URLs). */
#ifndef PORTCULLIS_TLS_CLIENT_H
#define PORTCULLIS_TLS_CLIENT_H

#include <stddef.h>

#include <openssl/ssl.h>

#include "addr.h"

/*
 * A TLS client for one connection to a server dialled by IP address: TLS 1.2+,
 * the CA file read anew each time (a rotated bundle takes effect without a
 * restart), and the server's certificate must name that address in an IP SAN
 * (as client-go checks).  NULL with why filled.
 */
SSL *tls_client_for_ip(const char *ca_file, const struct pc_addr *ip, char *why, size_t whylen);

/*
 * A TLS client for one connection to an HTTPS URL's host: TLS 1.2+, verified
 * against ca_file (read anew each time) or, when it is NULL, the system's
 * trust store; the certificate must name host in a DNS SAN (never its CN; SNI
 * sent), or, when ip is non-NULL (the URL's host is an address), that
 * address in an IP SAN.
 * NULL with why filled.
 */
SSL *tls_client_for_host(const char *ca_file, const char *host, const struct pc_addr *ip,
                         char *why, size_t whylen);

/*
 * The context tls_client_for_host builds: TLS 1.2+, verified against ca_file
 * or, when it is NULL, the system's trust store.  For a caller that keeps one
 * (reads ca_file once).  NULL with why filled.
 */
SSL_CTX *tls_client_ctx_new(const char *ca_file, char *why, size_t whylen);

/*
 * The name tls_client_for_host binds an SSL to: host in a DNS SAN (never the
 * CN; SNI sent), or, when ip is non-NULL, that address in an IP SAN (no SNI).
 * 0, or -1 (no memory, or a name longer than 255 bytes).
 */
int tls_client_expect_name(SSL *ssl, const char *host, const struct pc_addr *ip)
    __attribute__((warn_unused_result));

#endif
