/* Phase "forward": one plain-HTTP exchange per upstream connection; an allowed 101 becomes a tunnel. */
#ifndef PORTCULLIS_FORWARD_H
#define PORTCULLIS_FORWARD_H

#include "conn.h"

/* CS_FORWARD and CS_UPGRADING. */
extern const struct conn_phase forward_phase;
extern const struct conn_phase upgrading_phase;

#endif
