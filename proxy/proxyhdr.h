/*
 * Phase "PROXY header": on a listener behind a load balancer, read the PROXY
 * protocol header (v1 or v2) its trusted balancer sends first, whole within
 * the listener's timeout, and make the client it names the connection's
 * source (conn_start).  The header is taken off the socket exactly: the bytes
 * after it stay for whatever reads next.
 */
#ifndef PORTCULLIS_PROXYHDR_H
#define PORTCULLIS_PROXYHDR_H

#include "conn.h"

/* CS_PROXY_HEADER. */
extern const struct conn_phase proxyhdr_phase;

#endif
