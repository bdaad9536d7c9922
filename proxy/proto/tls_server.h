/* The start of a TLS server's first flight: a ServerHello, or a HelloRetryRequest (RFC 8446
 * §4.1.3).  Pure. */
#ifndef PORTCULLIS_TLS_SERVER_H
#define PORTCULLIS_TLS_SERVER_H

#include <stddef.h>
#include <stdint.h>

enum tls_server_status {
	TLS_SERVER_NEED_MORE = 0,
	TLS_SERVER_HELLO = 1, /* a ServerHello (any version) that is not a retry request */
	TLS_SERVER_RETRY = 2, /* a HelloRetryRequest: §4.1.3's special random */
	TLS_SERVER_ALERT = 3, /* the first record is an alert: the server refused */
	TLS_SERVER_ERR_MALFORMED =
	    -1, /* not TLS records, or the first message is not a ServerHello */
	TLS_SERVER_ERR_TOO_LARGE = -2, /* no verdict within max bytes */
};

/*
 * Classify the server's byte stream buf[0..len) from its first byte: the
 * record layer (RFC 8446 §5.1) is walked and the first handshake message is
 * reassembled across records (split at any byte) as far as its random.
 * An alert record first is TLS_SERVER_ALERT; handshake records must carry a
 * server_hello (§4: the first message of a server), with a TLS 1.0-1.2
 * legacy_version; any other record type before the random is MALFORMED.
 *
 * Stateless and split-invariant: call again as bytes arrive (O(min(len,
 * max)) per call); once a prefix gets an answer other than NEED_MORE, every
 * longer prefix gets the same one.  Bytes past the random or past max are
 * never read; needing one past max is TOO_LARGE.
 */
int tls_server_first(const uint8_t *buf, size_t len, size_t max)
    __attribute__((warn_unused_result));

/* Stable snake_case name of a tls_server_first result ("unknown" otherwise). */
const char *tls_server_status_str(int status);

#endif
