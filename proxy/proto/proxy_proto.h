/* The PROXY protocol header a load balancer puts in front of a connection, v1 and v2.  Pure. */
#ifndef PORTCULLIS_PROXY_PROTO_H
#define PORTCULLIS_PROXY_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "addr.h"

/*
 * Spec: haproxy's "The PROXY protocol, Versions 1 & 2" (proxy-protocol.txt,
 * 2020/03/05); section numbers below are that document's.
 */

/* §2.1: a v1 line, "PROXY" to CRLF included, is at most 107 bytes. */
#define PP_V1_MAX 107
/* §2.2: the fixed part of a v2 header: signature, ver_cmd, fam, len. */
#define PP_V2_FIXED 16
/*
 * Our limit on a v2 header's len field (addresses and TLVs).  The spec allows
 * 65535; what load balancers send is far smaller (AWS: 12 + about 30 bytes of
 * TLVs; haproxy with every SSL TLV: a few hundred), so a larger one is refused.
 */
#define PP_V2_MAX_LEN 4096
/* The most bytes a header can take, either version: the most a reader buffers. */
#define PP_MAX_HEADER (PP_V2_FIXED + PP_V2_MAX_LEN)
/* The AWS VPC endpoint ID we keep (they are "vpce-" and 17 hex digits today). */
#define PP_VPCE_MAX 64

/* Which versions a listener takes (policy: v1, v2, either). */
#define PP_ACCEPT_V1 1u
#define PP_ACCEPT_V2 2u

/* proxy_proto_parse: > 0 bytes of header, 0 need more, or one of these. */
enum pp_status {
	PP_NEED_MORE = 0,
	PP_ERR_MISSING = -1,     /* the bytes are not the start of any PROXY header */
	PP_ERR_VERSION = -2,     /* a header of a version the listener does not take; v2 ver != 2 */
	PP_ERR_V1_TOO_LONG = -3, /* no CRLF within PP_V1_MAX bytes */
	PP_ERR_V1_SYNTAX = -4,   /* not "PROXY SP proto SP src SP dst SP sport SP dport CRLF" */
	PP_ERR_V1_ADDRESS = -5,  /* an address that is not its family's strict literal */
	PP_ERR_V1_PORT = -6,     /* a port that is not 0..65535 without leading zeros */
	PP_ERR_V2_COMMAND = -7,  /* command neither LOCAL nor PROXY */
	PP_ERR_V2_FAMILY = -8,   /* PROXY with a family other than TCP over IPv4 / IPv6 */
	PP_ERR_V2_LENGTH = -9,   /* len too short for the family's addresses */
	PP_ERR_V2_TOO_LARGE = -10, /* len over PP_V2_MAX_LEN */
	PP_ERR_V2_TLV = -11,       /* a TLV overruns the header, or a known TLV is malformed */
	PP_ERR_V2_CRC = -12,       /* the CRC32C TLV does not match the header */
};

/* A parsed header.  Addresses are copies; vpce is a copy (NUL-terminated). */
struct pp_header {
	unsigned version; /* 1 or 2 */
	/*
	 * No addresses: v2 LOCAL (a health check of the balancer itself, §2.2)
	 * or v1 UNKNOWN (§2.1).  The connection's real peer stands for itself.
	 */
	bool local;
	struct pc_addr src, dst; /* the client, and the address it connected to */
	uint16_t src_port, dst_port;
	bool crc_checked;           /* v2: a CRC32C TLV was present and matched */
	char vpce[PP_VPCE_MAX + 1]; /* AWS VPC endpoint ID (TLV 0xEA, subtype 0x01), "" if none */
};

/*
 * Parse the PROXY header at the front of buf[0..len), of a version in accept
 * (PP_ACCEPT_V1 | PP_ACCEPT_V2).  Returns the header's length (> 0: the bytes
 * after it are the client's own), PP_NEED_MORE, or a pp_status error.
 *
 * Stateless and split-invariant: call again as bytes arrive; once a prefix
 * gets an answer other than PP_NEED_MORE every longer prefix gets the same
 * one, and a prefix that cannot begin a header of an accepted version is
 * refused as soon as it shows it.  Never reads past the header, nor past
 * PP_MAX_HEADER bytes.  out is filled only on success.
 *
 * v1 (§2.1): exactly one space between fields; TCP4 takes a strict dotted
 * quad, TCP6 an IPv6 literal (no zone, no brackets); ports are decimal
 * 0..65535 without leading zeros; the line ends in CRLF.  UNKNOWN is
 * "local": whatever follows it up to CRLF is ignored (printable ASCII only).
 *
 * v2 (§2.2): the 12-byte signature, version 2, command LOCAL or PROXY.  LOCAL
 * skips len bytes, whatever they hold.  PROXY takes AF_INET or AF_INET6 with
 * STREAM only (we are a TCP proxy; UNSPEC, UNIX and DGRAM are refused: fail
 * closed), len at least the family's address block.  TLVs (§2.2.1) fill the
 * rest exactly; PP2_TYPE_CRC32C (§2.2.5) must be 4 bytes and match the
 * CRC32C of the whole header with its value zeroed; AWS's 0xEA with subtype
 * 0x01 carries the VPC endpoint ID (printable, 1..PP_VPCE_MAX bytes).  A
 * second CRC32C or VPC endpoint TLV is refused (which one would count?).
 */
int proxy_proto_parse(const uint8_t *buf, size_t len, unsigned accept, struct pp_header *out)
    __attribute__((warn_unused_result));

/* Stable snake_case name of a proxy_proto_parse result ("header" for > 0, "unknown" else). */
const char *proxy_proto_status_str(int status);

/* CRC32C (Castagnoli, RFC 3720 §B.4) of buf, as PP2_TYPE_CRC32C carries it. */
uint32_t proxy_proto_crc32c(const uint8_t *buf, size_t len);

#endif
