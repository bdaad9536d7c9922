/* JA4 TLS client fingerprint (FoxIO JA4, BSD-3-Clause; not JA4+) of a parsed ClientHello. */
#ifndef PORTCULLIS_JA4_H
#define PORTCULLIS_JA4_H

#include <stddef.h>

#include "tls_hello.h"

/* "t13d1516h2_8daaf6152771_e5627efa2ab1": 10 + 1 + 12 + 1 + 12 characters. */
#define JA4_LEN 36

/*
 * The JA4 fingerprint of a ClientHello that tls_hello_parse accepted, over
 * TCP ("t"; portcullis sees no QUIC or DTLS), into out as lowercase text.
 * Pure: no clock, no I/O; may allocate (a hello with more than 512 cipher
 * suites).  0, or -1 (out of memory, or a hash failed; out is "").
 *
 *   a: "t", the version (the highest non-GREASE supported_versions entry,
 *      else legacy_version; "13", "12", "11", "10", "s3", "00" unknown),
 *      "d" with an SNI / "i" without, two-digit counts of cipher suites and
 *      of extensions without GREASE (99 at most), and the first and last
 *      character of the first ALPN protocol ("00" without ALPN; the first
 *      and last hex digit of its bytes when either end is not ASCII
 *      alphanumeric);
 *   b: the first 12 hex digits of SHA-256 over the cipher suites without
 *      GREASE, sorted, as 4-digit hex joined by ",";
 *   c: the same over the extension types without GREASE, SNI (0000) and
 *      ALPN (0010), sorted, then "_" and the signature algorithms (without
 *      GREASE) in wire order when there are any.
 * An empty list hashes to "000000000000".
 */
int ja4_fingerprint(const struct tls_hello *h, char out[JA4_LEN + 1])
    __attribute__((warn_unused_result));

/* policy_ja4_valid (policy.h) checks a value's shape. */

#endif
