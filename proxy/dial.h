/* Phase "dial": resolve with the pinned resolvers, vet every answer, connect to a vetted address. */
#ifndef PORTCULLIS_DIAL_H
#define PORTCULLIS_DIAL_H

#include "conn.h"

/* CS_RESOLVING and CS_CONNECTING. */
extern const struct conn_phase dial_resolving_phase;
extern const struct conn_phase dial_connecting_phase;

#endif
