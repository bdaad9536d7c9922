/* TLS client contexts the proxy dials with (the Kubernetes API server). */
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

#endif
