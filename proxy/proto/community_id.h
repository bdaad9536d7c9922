/* Community ID flow hashing, version 1 (corelight/community-id-spec): pure, no I/O. */
#ifndef PORTCULLIS_COMMUNITY_ID_H
#define PORTCULLIS_COMMUNITY_ID_H

#include <stddef.h>
#include <stdint.h>

#include "addr.h"

/* "1:" and the base64 of a 20-byte SHA-1 (28 characters), and a NUL. */
#define COMMUNITY_ID_LEN 30

/* IANA protocol numbers the proxy uses. */
#define COMMUNITY_ID_TCP 6
#define COMMUNITY_ID_UDP 17

/*
 * The Community ID v1 of a flow between two endpoints with ports (TCP, UDP,
 * SCTP), written as "1:<base64>" into out.  The same flow gives the same id
 * whichever side is named first: the endpoints are ordered (address, then
 * port) before hashing, as the spec says.  seed is the spec's 16-bit seed
 * (0 by default, as Zeek, Suricata and cloud flow logs use).  Both addresses
 * must be of one family.  0, or -1 (out is "").
 */
int community_id_v1(const struct pc_addr *a, uint16_t a_port, const struct pc_addr *b,
                    uint16_t b_port, uint8_t proto, uint16_t seed, char out[COMMUNITY_ID_LEN + 1])
    __attribute__((warn_unused_result));

#endif
