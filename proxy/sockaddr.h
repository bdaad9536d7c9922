/* Socket addresses <-> the policy's pc_addr. */
#ifndef PORTCULLIS_SOCKADDR_H
#define PORTCULLIS_SOCKADDR_H

#include <stdint.h>
#include <sys/socket.h>

#include "addr.h"

/* A sockaddr_in / sockaddr_in6 for an address and port; returns its length. */
socklen_t sockaddr_make(const struct pc_addr *a, uint16_t port, struct sockaddr_storage *ss);

/*
 * The address and port of an accepted peer.  An IPv4-mapped IPv6 address
 * (a dual-stack listener, ::ffff:a.b.c.d) is the IPv4 address a.b.c.d.
 */
void sockaddr_to_addr(const struct sockaddr *sa, struct pc_addr *a, uint16_t *port);

/* "a.b.c.d:port" or "[v6]:port" into buf (ADDR_STRLEN + 8 bytes is enough). */
void sockaddr_format(const struct pc_addr *a, uint16_t port, char *buf, size_t n);

#endif
