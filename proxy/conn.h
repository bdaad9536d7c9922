/* One client connection: request, decision, resolution, upstream connect, relay, audit. */
#ifndef PORTCULLIS_CONN_H
#define PORTCULLIS_CONN_H

#include <event2/util.h>

struct worker;
struct sockaddr;

/* Take ownership of an accepted socket. */
void conn_accept(struct worker *w, evutil_socket_t fd, const struct sockaddr *sa, int salen);

/* Close every connection of the worker with reason drain_timeout. */
void conn_close_all(struct worker *w);

#endif
