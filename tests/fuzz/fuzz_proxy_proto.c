/* libFuzzer target for the PROXY protocol header parser (proxy_proto_parse). */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proxy_proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/*
 * Invariants checked on every input (abort() on a breach), for each of the
 * three accept sets (v1, v2, either):
 *  1. a known status; every prefix answers NEED_MORE up to one point and
 *     the whole input's answer from there on; a header of n bytes answers
 *     NEED_MORE for every shorter prefix and n for every longer one;
 *  2. a header is what an independent look says: v1 starts "PROXY ", ends at
 *     its first CRLF, within 107 bytes, printable in between; v2 starts with
 *     the signature, version 2, and is 16 + its len field long, within
 *     PP_MAX_HEADER; a non-local one has an address of its version's family;
 *  3. either takes exactly what v1 or v2 alone takes, with the same result;
 *  4. the VPC endpoint ID is NUL-terminated, letters, digits and '-'.
 * Each prefix is parsed from an exact-size copy, so ASan sees any over-read.
 */

/* Prefixes: all up to this length, then a bounded sample (keeps every input O(n)). */
#define ALL_PREFIXES 112
#define SAMPLES      32

static const uint8_t sig[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};

static void check(bool ok, const char *what)
{
	if (!ok) {
		fprintf(stderr, "proxy_proto invariant broken: %s\n", what);
		abort();
	}
}

static int parse_copy(const uint8_t *data, size_t n, unsigned accept, struct pp_header *h)
{
	uint8_t *cp = malloc(n ? n : 1);
	check(cp != NULL, "malloc");
	memcpy(cp, data, n);
	int r = proxy_proto_parse(cp, n, accept, h);
	free(cp);
	return r;
}

static void check_header(const uint8_t *d, size_t n, const struct pp_header *h)
{
	check(n <= PP_MAX_HEADER, "header over PP_MAX_HEADER");
	if (h->version == 1) {
		check(n <= PP_V1_MAX && n >= 8, "v1 length");
		check(memcmp(d, "PROXY ", 6) == 0, "v1 start");
		check(d[n - 2] == '\r' && d[n - 1] == '\n', "v1 ends in CRLF");
		for (size_t i = 0; i + 2 < n; i++)
			check(d[i] >= 0x20 && d[i] <= 0x7e, "v1 printable");
		if (!h->local)
			check(memcmp(d + 6, d[9] == '4' ? "TCP4 " : "TCP6 ", 5) == 0 &&
			          h->src.family == (d[9] == '4' ? 4 : 6) &&
			          h->dst.family == h->src.family,
			      "v1 family");
	} else {
		check(h->version == 2, "version is 1 or 2");
		check(n >= 16 && memcmp(d, sig, 12) == 0 && (d[12] >> 4) == 2, "v2 start");
		check(n == 16u + (((size_t)d[14] << 8) | d[15]), "v2 length");
		check(h->local == ((d[12] & 0x0f) == 0), "v2 LOCAL");
		if (!h->local)
			check(h->src.family == (d[13] == 0x11 ? 4 : 6) &&
			          (d[13] == 0x11 || d[13] == 0x21),
			      "v2 family");
	}
	size_t v = strnlen(h->vpce, sizeof(h->vpce));
	check(v < sizeof(h->vpce), "vpce terminated");
	for (size_t i = 0; i < v; i++) {
		char c = h->vpce[i];
		check((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		          c == '-',
		      "vpce characters");
	}
	check(v == 0 || h->version == 2, "vpce only in v2");
}

static bool known(int r)
{
	return r > 0 || (r <= 0 && r >= PP_ERR_V2_CRC);
}

static int one_accept(const uint8_t *data, size_t size, unsigned accept)
{
	struct pp_header h;
	int final = parse_copy(data, size, accept, &h);
	check(known(final), "known status");
	if (final > 0)
		check_header(data, (size_t) final, &h);
	bool decided = false;
	for (size_t n = 0; n <= size; n++) {
		if (n > ALL_PREFIXES && (n % (size / SAMPLES + 1)) != 0 && n != size)
			continue;
		int r = parse_copy(data, n, accept, &h);
		if (r == PP_NEED_MORE) {
			check(!decided, "need_more after an answer");
			check(final <= 0 || n < (size_t) final, "need_more with the whole header");
			continue;
		}
		decided = true;
		check(r == final, "a prefix answers otherwise than the whole input");
	}
	return final;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	int r1 = one_accept(data, size, PP_ACCEPT_V1);
	int r2 = one_accept(data, size, PP_ACCEPT_V2);
	int re = one_accept(data, size, PP_ACCEPT_V1 | PP_ACCEPT_V2);
	if (r1 > 0 || (r1 < 0 && r1 != PP_ERR_VERSION))
		check(re == r1, "either = v1 on a v1 header");
	else if (r2 > 0 || (r2 < 0 && r2 != PP_ERR_VERSION))
		check(re == r2, "either = v2 on a v2 header");
	else
		check(re <= 0, "either takes what neither takes");
	return 0;
}
