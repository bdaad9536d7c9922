/* Phase "relay": a tunnel's bytes both ways through the transports, charged, with backpressure. */
#ifndef PORTCULLIS_RELAY_H
#define PORTCULLIS_RELAY_H

#include "conn.h"

/* CS_TUNNEL. */
extern const struct conn_phase relay_phase;

#endif
