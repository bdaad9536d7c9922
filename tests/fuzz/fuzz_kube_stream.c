/* libFuzzer target for the list-page and watch-stream splitter, with invariants. */
#include "kube_json.h"
#include "kube_stream.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/*
 * The first byte picks the mode and the piece size; the rest is the stream.
 * Invariants (abort() on a breach):
 *  1. a known status; the same bytes fed in one piece or in pieces give the
 *     same status, the same units (bytes, skipped or not, the fields read on
 *     the way) and the same skeleton;
 *  2. a unit handed over whole is at most the bound and as long as its
 *     bytes; a skipped one is over the bound; fields read on the way are
 *     NUL-terminated;
 *  3. the skeleton is within its bound.
 * Units handed over whole go through the full parsers (kube_parse_pod /
 * kube_parse_event), which must not crash whatever they hold.
 */

#define BOUND     96
#define MAX_UNITS 64

struct rec {
	size_t n;
	size_t bytes[MAX_UNITS];
	bool skipped[MAX_UNITS];
	uint64_t sum; /* of the fields read on the way */
};

static struct kube_event ev;

static void check(bool ok, const char *what)
{
	if (!ok) {
		fprintf(stderr, "kube_stream invariant broken: %s\n", what);
		abort();
	}
}

static uint64_t hash(const char *s, size_t cap)
{
	check(memchr(s, '\0', cap) != NULL, "field not terminated");
	uint64_t h = 1469598103934665603ull;
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ull;
	return h;
}

static int on_unit(void *arg, const struct kube_unit *u)
{
	struct rec *r = arg;
	if (u->p != NULL) {
		check(u->len <= BOUND && u->len == u->bytes, "a whole unit over the bound");
		int e = kube_parse_event(u->p, u->len, &ev, NULL, 0);
		int q = kube_parse_pod(u->p, u->len, &ev.pod, NULL, 0);
		check(e <= 0 && q <= 0, "parser status");
	} else {
		check(u->bytes > BOUND, "a skipped unit within the bound");
	}
	r->sum += hash(u->type, sizeof(u->type)) ^ hash(u->ns, sizeof(u->ns)) ^
	          hash(u->name, sizeof(u->name)) * 3 ^ hash(u->uid, sizeof(u->uid)) * 5 ^
	          hash(u->resource_version, sizeof(u->resource_version)) * 7;
	if (r->n < MAX_UNITS) {
		r->bytes[r->n] = u->bytes;
		r->skipped[r->n] = u->p == NULL;
	}
	r->n++;
	return 0;
}

static int run(enum kube_stream_mode mode, const char *p, size_t n, size_t piece, struct rec *r,
               char *skel, size_t *skel_len)
{
	struct kube_stream *s = kube_stream_new(mode, BOUND);
	if (s == NULL)
		return 1;
	memset(r, 0, sizeof(*r));
	int rc = 0;
	for (size_t at = 0; at < n && rc == 0; at += piece) {
		size_t k = piece < n - at ? piece : n - at;
		rc = kube_stream_feed(s, p + at, k, on_unit, r, NULL, 0);
	}
	*skel_len = 0;
	if (rc == 0) {
		const char *sk;
		size_t units;
		rc = kube_stream_end(s, &sk, skel_len, &units, NULL, 0);
		if (rc == 0 && sk != NULL) {
			check(*skel_len <= KUBE_STREAM_MAX_SKELETON, "skeleton over its bound");
			memcpy(skel, sk, *skel_len);
		}
		if (rc == 0)
			check(units == r->n, "unit count");
	}
	check(rc >= KUBE_STREAM_ERR_NOMEM && rc <= 0, "unknown status");
	kube_stream_free(s);
	return rc;
}

static char skel_a[KUBE_STREAM_MAX_SKELETON], skel_b[KUBE_STREAM_MAX_SKELETON];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	enum kube_stream_mode mode = data[0] & 1 ? KUBE_STREAM_WATCH : KUBE_STREAM_LIST;
	size_t piece = (data[0] >> 1) + 1;
	const char *p = (const char *)data + 1;
	size_t n = size - 1;
	struct rec a, b;
	size_t la, lb;
	int ra = run(mode, p, n, n ? n : 1, &a, skel_a, &la);
	int rb = run(mode, p, n, piece, &b, skel_b, &lb);
	check(ra == rb, "status depends on how the bytes were cut");
	if (ra == 0) {
		check(a.n == b.n && a.sum == b.sum, "units depend on how the bytes were cut");
		size_t m = a.n < MAX_UNITS ? a.n : MAX_UNITS;
		check(memcmp(a.bytes, b.bytes, m * sizeof(a.bytes[0])) == 0 &&
		          memcmp(a.skipped, b.skipped, m * sizeof(a.skipped[0])) == 0,
		      "unit sizes depend on how the bytes were cut");
		check(la == lb && memcmp(skel_a, skel_b, la) == 0, "skeleton depends on the cut");
	}
	return 0;
}
