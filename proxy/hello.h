/*
 * Phase "first flight": the client's ClientHello checked against the tier's
 * TLS rules before any byte moves, the server's answer read as far as its
 * ServerHello, and after a HelloRetryRequest the second ClientHello checked
 * like the first (and bound to its SNI).
 */
#ifndef PORTCULLIS_HELLO_H
#define PORTCULLIS_HELLO_H

#include "conn.h"

/* CS_HELLO, CS_SERVER_HELLO and CS_HELLO_RETRY. */
extern const struct conn_phase hello_phase;
extern const struct conn_phase hello_server_phase;
extern const struct conn_phase hello_retry_phase;

#endif
