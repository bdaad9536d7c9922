/* Phase "request": read a request head, identify the tier, decide under the current policy. */
#ifndef PORTCULLIS_REQUEST_H
#define PORTCULLIS_REQUEST_H

#include "conn.h"

/* url.path in a record is cut after this many bytes. */
#define REQUEST_PATH_MAX 511
/* user_agent.original is cut at this many bytes. */
#define REQUEST_UA_MAX 256

/* Keep a request's path (never its query) as url.path of its record, cut at REQUEST_PATH_MAX.
 * -1: out of memory. */
int request_keep_path(struct conn *c, const char *path, size_t len)
    __attribute__((warn_unused_result));

/* CS_REQUEST. */
extern const struct conn_phase request_phase;

#endif
