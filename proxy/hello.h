/* Phase "first flight": the client's ClientHello checked against the tier's TLS rules before any byte moves. */
#ifndef PORTCULLIS_HELLO_H
#define PORTCULLIS_HELLO_H

#include "conn.h"

/* CS_HELLO. */
extern const struct conn_phase hello_phase;

#endif
