/* libFuzzer target for the server's first flight (tls_server_first) and the client's interlude. */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tls_hello.h"
#include "tls_server.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/*
 * Invariants checked on every input (abort() on a breach):
 *  1. tls_server_first answers a known status, and every prefix answers
 *     NEED_MORE up to one point and the final answer from there on;
 *  2. a verdict other than TOO_LARGE does not depend on max once max covers
 *     the deciding byte; nothing past max is needed;
 *  3. a HELLO or RETRY verdict is what an independent walk says: handshake
 *     records whose payloads start with a server_hello whose random is (or
 *     is not) the HelloRetryRequest value;
 *  4. tls_skip_interlude: known status, off <= len, the skipped bytes are
 *     change_cipher_spec / application_data records only, and every prefix
 *     is consistent in the same way.
 */

/* Prefixes: all up to this length, then a bounded sample (keeps every input O(n)). */
#define ALL_PREFIXES 256
#define SAMPLES      64

static const uint8_t hrr_random[32] = {
    0xcf, 0x21, 0xad, 0x74, 0xe5, 0x9a, 0x61, 0x11, 0xbe, 0x1d, 0x8c, 0x02, 0x1e, 0x65, 0xb8, 0x91,
    0xc2, 0xa2, 0x11, 0x16, 0x7a, 0xbb, 0x8c, 0x5e, 0x07, 0x9e, 0x09, 0xe2, 0xc8, 0xa8, 0x33, 0x9c,
};

static void check(bool ok, const char *what)
{
	if (!ok) {
		fprintf(stderr, "tls_server invariant broken: %s\n", what);
		abort();
	}
}

/* The prefix lengths to try: all short ones, a sample of the rest, and the whole. */
static size_t prefix_at(size_t i, size_t size)
{
	if (size <= ALL_PREFIXES + SAMPLES)
		return i;
	if (i < ALL_PREFIXES)
		return i;
	return ALL_PREFIXES + (size - ALL_PREFIXES) * (i - ALL_PREFIXES) / SAMPLES;
}

static size_t n_prefixes(size_t size)
{
	return size <= ALL_PREFIXES + SAMPLES ? size + 1 : ALL_PREFIXES + SAMPLES + 1;
}

/* Independent walk: the first 38 handshake bytes gathered across handshake records. */
static int walk(const uint8_t *b, size_t n)
{
	uint8_t hs[38];
	size_t have = 0, off = 0;
	while (off + 5 <= n && have < 38) {
		size_t rlen = (size_t)b[off + 3] << 8 | b[off + 4];
		if (b[off] != 22 || off + 5 + rlen > n)
			return -1;
		size_t take = rlen < 38 - have ? rlen : 38 - have;
		memcpy(hs + have, b + off + 5, take);
		have += take;
		off += 5 + rlen;
	}
	if (have < 38 || hs[0] != 2)
		return -1;
	return memcmp(hs + 6, hrr_random, 32) == 0 ? TLS_SERVER_RETRY : TLS_SERVER_HELLO;
}

static void server_side(const uint8_t *data, size_t size, size_t max)
{
	int final = tls_server_first(data, size, max);
	check(final >= TLS_SERVER_ERR_TOO_LARGE && final <= TLS_SERVER_ALERT, "unknown status");
	bool decided = false;
	for (size_t i = 0; i < n_prefixes(size); i++) {
		size_t k = prefix_at(i, size);
		int r = tls_server_first(data, k, max);
		if (decided) {
			check(r == final, "a longer prefix changed the verdict");
		} else if (r != TLS_SERVER_NEED_MORE) {
			check(r == final, "a prefix decided differently");
			decided = true;
		}
	}
	if (final == TLS_SERVER_HELLO || final == TLS_SERVER_RETRY) {
		int w = walk(data, size);
		/* The walk needs whole records; the parser only the first 38 bytes of the message.
		 */
		check(w < 0 || w == final, "the verdict is not what the records say");
		/* A larger max never changes a verdict reached within the smaller one. */
		check(tls_server_first(data, size, max * 2) == final, "max changed the verdict");
	}
}

static void interlude(const uint8_t *data, size_t size, bool early)
{
	size_t off = 0;
	int final = tls_skip_interlude(data, size, early, 4096, &off);
	check(final == 1 || final == TLS_NEED_MORE || final == TLS_ERR_MALFORMED ||
	          final == TLS_ERR_TOO_LARGE,
	      "interlude: unknown status");
	if (final == 1) {
		check(off < size && data[off] != 20 && data[off] != 23,
		      "interlude: stopped on a skipped type");
		for (size_t at = 0; at < off;) {
			check(data[at] == 20 || (early && data[at] == 23),
			      "interlude: skipped a record it must not");
			at += 5 + ((size_t)data[at + 3] << 8 | data[at + 4]);
		}
	}
	bool decided = false;
	for (size_t i = 0; i < n_prefixes(size); i++) {
		size_t k = prefix_at(i, size), o = 0;
		int r = tls_skip_interlude(data, k, early, 4096, &o);
		if (decided) {
			check(r == final && (r != 1 || o == off),
			      "interlude: a longer prefix changed the answer");
		} else if (r != TLS_NEED_MORE) {
			check(r == final && (r != 1 || o == off),
			      "interlude: a prefix decided differently");
			decided = true;
		}
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	server_side(data, size, 16389);
	server_side(data, size, 64);
	interlude(data, size, false);
	interlude(data, size, true);
	return 0;
}
