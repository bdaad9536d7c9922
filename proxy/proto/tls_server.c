/* The start of a TLS server's first flight: a ServerHello, or a HelloRetryRequest (RFC 8446
 * §4.1.3). */
#include "tls_server.h"

#include <string.h>

#define REC_HDR   5     /* ContentType + ProtocolVersion + uint16 length (RFC 8446 §5.1) */
#define REC_MAX   16384 /* §5.1: a TLSPlaintext fragment is at most 2^14 bytes */
#define HS_HDR    4     /* HandshakeType + uint24 length (§4) */
#define SH_PREFIX (HS_HDR + 2 + 32) /* through legacy_version and random (§4.1.3) */

enum {
	CT_ALERT = 21,
	CT_HANDSHAKE = 22,
	HS_SERVER_HELLO = 2,
};

/* §4.1.3: a HelloRetryRequest is a ServerHello whose random is SHA-256("HelloRetryRequest"). */
static const uint8_t hrr_random[32] = {
    0xcf, 0x21, 0xad, 0x74, 0xe5, 0x9a, 0x61, 0x11, 0xbe, 0x1d, 0x8c, 0x02, 0x1e, 0x65, 0xb8, 0x91,
    0xc2, 0xa2, 0x11, 0x16, 0x7a, 0xbb, 0x8c, 0x5e, 0x07, 0x9e, 0x09, 0xe2, 0xc8, 0xa8, 0x33, 0x9c,
};

/* TLS 1.0 (0x0301) to 1.3 (0x0304) in a record header; a ServerHello says at most 1.2. */
static int version_ok(uint8_t major, uint8_t minor, uint8_t top)
{
	return major == 3 && minor >= 1 && minor <= top;
}

static int need_more(size_t len, size_t max)
{
	return len >= max ? TLS_SERVER_ERR_TOO_LARGE : TLS_SERVER_NEED_MORE;
}

int tls_server_first(const uint8_t *buf, size_t len, size_t max)
{
	uint8_t hs[SH_PREFIX];
	size_t have = 0, off = 0;
	size_t window = len < max ? len : max;

	if (buf == NULL && len > 0)
		return TLS_SERVER_ERR_MALFORMED;
	for (;;) {
		/* The record header, judged byte by byte so garbage is refused at its first byte.
		 */
		size_t h = window - off < REC_HDR ? window - off : REC_HDR;
		if (h >= 1 && buf[off] != CT_HANDSHAKE && !(off == 0 && buf[off] == CT_ALERT))
			return TLS_SERVER_ERR_MALFORMED; /* §5.1: no other type inside a handshake
			                                    message */
		if (h >= 2 && buf[off + 1] != 3)
			return TLS_SERVER_ERR_MALFORMED;
		if (h >= 3 && !version_ok(buf[off + 1], buf[off + 2], 4))
			return TLS_SERVER_ERR_MALFORMED;
		if (h < REC_HDR)
			return need_more(len, max);
		size_t rlen = (size_t)buf[off + 3] << 8 | buf[off + 4];
		if (buf[off] == CT_ALERT)
			return rlen == 2 ? TLS_SERVER_ALERT : TLS_SERVER_ERR_MALFORMED; /* §6 */
		if (rlen == 0 || rlen > REC_MAX)
			return TLS_SERVER_ERR_MALFORMED;
		size_t start = off + REC_HDR, end = start + rlen;
		size_t avail = (end < window ? end : window) - start;
		for (size_t i = 0; i < avail && have < SH_PREFIX; i++) {
			hs[have++] = buf[start + i];
			if (have == 1 && hs[0] != HS_SERVER_HELLO)
				return TLS_SERVER_ERR_MALFORMED;
			if (have == HS_HDR + 2 && !version_ok(hs[4], hs[5], 3))
				return TLS_SERVER_ERR_MALFORMED;
		}
		if (have == SH_PREFIX)
			return memcmp(hs + HS_HDR + 2, hrr_random, sizeof(hrr_random)) == 0
			           ? TLS_SERVER_RETRY
			           : TLS_SERVER_HELLO;
		if (end > window)
			return need_more(len, max);
		off = end;
	}
}

const char *tls_server_status_str(int status)
{
	switch (status) {
	case TLS_SERVER_NEED_MORE:
		return "need_more";
	case TLS_SERVER_HELLO:
		return "server_hello";
	case TLS_SERVER_RETRY:
		return "hello_retry_request";
	case TLS_SERVER_ALERT:
		return "alert";
	case TLS_SERVER_ERR_MALFORMED:
		return "malformed";
	case TLS_SERVER_ERR_TOO_LARGE:
		return "too_large";
	default:
		return "unknown";
	}
}
