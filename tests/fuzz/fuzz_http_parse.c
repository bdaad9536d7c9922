/* libFuzzer target for the HTTP request-head parser, with its consistency invariants. */
#include "http_parse.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Prefixes up to this length are also parsed from an exact-size copy, so
 * ASan sees a read past the prefix; longer inputs would make that O(n^2). */
#define EXACT_PREFIX_MAX 2048
/* Every prefix up to this length; beyond it a sample. */
#define ALL_PREFIXES 32
#define SAMPLES 8

static void die(const char *what, size_t k, int a, int b)
{
	fprintf(stderr, "http_parse invariant broken: %s (prefix %zu: %d %s vs %d %s)\n", what, k,
	        a, http_status_str(a), b, http_status_str(b));
	abort();
}

static void check(bool ok, const char *what)
{
	if (!ok)
		die(what, 0, 0, 0);
}

static bool tchar(unsigned char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	       (c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

static bool eq_lower(struct http_view v, const char *lower)
{
	size_t n = strlen(lower);
	if (v.len != n)
		return false;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)v.p[i];
		if (c >= 'A' && c <= 'Z')
			c = (unsigned char)(c + 32);
		if (c != (unsigned char)lower[i])
			return false;
	}
	return true;
}

static bool view_eq(struct http_view a, struct http_view b)
{
	return a.p == b.p && a.len == b.len;
}

static bool req_eq(const struct http_req *a, const struct http_req *b)
{
	if (a->method_kind != b->method_kind || !view_eq(a->method, b->method) ||
	    !view_eq(a->target, b->target) || a->version_minor != b->version_minor ||
	    a->n_headers != b->n_headers || !view_eq(a->host, b->host) ||
	    a->has_host != b->has_host ||
	    a->has_proxy_authorization != b->has_proxy_authorization ||
	    a->n_content_length != b->n_content_length ||
	    !view_eq(a->content_length, b->content_length) ||
	    a->n_transfer_encoding != b->n_transfer_encoding ||
	    !view_eq(a->transfer_encoding, b->transfer_encoding) ||
	    a->connection_close != b->connection_close)
		return false;
	for (size_t i = 0; i < a->n_headers && i < HTTP_MAX_HEADERS_HARD; i++) {
		if (!view_eq(a->headers[i].name, b->headers[i].name) ||
		    !view_eq(a->headers[i].value, b->headers[i].value))
			return false;
	}
	return true;
}

static bool is_zero(const struct http_req *r)
{
	static const struct http_req zero;
	return memcmp(r, &zero, sizeof(zero)) == 0;
}

static bool inside(struct http_view v, const char *buf, size_t len)
{
	return v.p != NULL && v.p >= buf && v.len <= len && (size_t)(v.p - buf) <= len - v.len;
}

/* What a complete head must look like, whatever the input was. */
static void check_complete(const char *buf, size_t head, const struct http_limits *l,
                           const struct http_req *r)
{
	size_t max_headers =
	    l->max_headers < HTTP_MAX_HEADERS_HARD ? l->max_headers : HTTP_MAX_HEADERS_HARD;
	check(head <= l->max_head_bytes, "head longer than max_head_bytes");
	check(head >= 4 && memcmp(buf + head - 4, "\r\n\r\n", 4) == 0, "head not CRLF CRLF");
	for (size_t i = 0; i < head; i++) {
		unsigned char c = (unsigned char)buf[i];
		check(c != '\n' || (i > 0 && buf[i - 1] == '\r'), "bare LF accepted");
		check(c != '\r' || (i + 1 < head && buf[i + 1] == '\n'), "bare CR accepted");
		check(!((c < 0x20 && c != '\t' && c != '\r' && c != '\n') || c == 0x7f),
		      "control byte accepted");
	}
	check(inside(r->method, buf, head) && r->method.p == buf && r->method.len > 0,
	      "method view");
	for (size_t i = 0; i < r->method.len; i++)
		check(tchar((unsigned char)r->method.p[i]), "method not a token");
	bool connect = r->method.len == 7 && memcmp(r->method.p, "CONNECT", 7) == 0;
	check(r->method_kind == (connect ? HTTP_M_CONNECT : HTTP_M_OTHER), "method_kind");
	check(inside(r->target, buf, head) && r->target.len > 0, "target view");
	for (size_t i = 0; i < r->target.len; i++) {
		unsigned char c = (unsigned char)r->target.p[i];
		check(c > 0x20 && c < 0x7f, "target byte");
	}
	check(r->version_minor == 0 || r->version_minor == 1, "version_minor");
	check(r->n_headers <= max_headers, "too many headers accepted");

	size_t hosts = 0, cl = 0, te = 0;
	bool pa = false;
	for (size_t i = 0; i < r->n_headers; i++) {
		const struct http_header *h = &r->headers[i];
		check(inside(h->name, buf, head) && h->name.len > 0, "name view");
		check(inside(h->value, buf, head), "value view");
		for (size_t j = 0; j < h->name.len; j++)
			check(tchar((unsigned char)h->name.p[j]), "name not a token");
		check(h->name.p[h->name.len] == ':', "name not followed by colon");
		if (h->value.len > 0) {
			unsigned char f = (unsigned char)h->value.p[0];
			unsigned char e = (unsigned char)h->value.p[h->value.len - 1];
			check(f != ' ' && f != '\t' && e != ' ' && e != '\t', "OWS not trimmed");
		}
		if (eq_lower(h->name, "host")) {
			hosts++;
			check(view_eq(r->host, h->value), "host view");
		}
		if (eq_lower(h->name, "content-length") && cl++ == 0)
			check(view_eq(r->content_length, h->value), "content_length view");
		if (eq_lower(h->name, "transfer-encoding") && te++ == 0)
			check(view_eq(r->transfer_encoding, h->value), "transfer_encoding view");
		if (eq_lower(h->name, "proxy-authorization"))
			pa = true;
	}
	check(hosts <= 1, "duplicate Host accepted");
	check((hosts == 1) == (r->has_host != 0), "has_host");
	check(hosts == 1 || r->host.p == NULL, "host set without Host");
	check(cl == r->n_content_length && te == r->n_transfer_encoding, "CL/TE counts");
	check(pa == (r->has_proxy_authorization != 0), "has_proxy_authorization");
}

/* NEED_MORE must mean no limit is exceeded yet: limits are enforced on partial input. */
static void check_need_more(const char *buf, size_t n, const struct http_limits *l)
{
	size_t max_headers =
	    l->max_headers < HTTP_MAX_HEADERS_HARD ? l->max_headers : HTTP_MAX_HEADERS_HARD;
	size_t lines = 0, start = 0;
	for (size_t i = 0; i < n; i++) {
		if (buf[i] == '\n') {
			lines++;
			start = i + 1;
		}
	}
	size_t content = n - start;
	if (content > 0 && buf[n - 1] == '\r')
		content--;
	check(content + 2 <= l->max_line_bytes, "need_more with a line over max_line_bytes");
	/* complete lines after the request line are fields; a started one counts too */
	size_t fields = lines > 0 ? lines - 1 : 0;
	if (lines > 0 && n > start && buf[start] != '\r')
		fields++;
	check(fields <= max_headers, "need_more with more than max_headers fields");
}

static int parse_prefix(const char *buf, size_t k, const struct http_limits *l,
                        struct http_req *out)
{
	if (k > EXACT_PREFIX_MAX)
		return http_parse_request(buf, k, l, out);
	char *copy = malloc(k ? k : 1);
	if (copy == NULL)
		abort();
	if (k)
		memcpy(copy, buf, k);
	int rc = http_parse_request(copy, k, l, out);
	free(copy);
	return rc;
}

/* deep: also the prefix walk (the costly part: the default and tiny limits get it). */
static void run(const char *buf, size_t n, const struct http_limits *l, bool deep)
{
	static struct http_req whole, part; /* 4 KiB each: off the stack */
	int r = http_parse_request(buf, n, l, &whole);

	if (r > 0) {
		check((size_t)r <= n, "head length > len");
		check_complete(buf, (size_t)r, l, &whole);
	} else {
		check(is_zero(&whole), "out not zeroed on a non-complete result");
		check(r != HTTP_NEED_MORE || n <= l->max_head_bytes, "need_more past max_head");
		if (r == HTTP_NEED_MORE)
			check_need_more(buf, n, l);
		check(r >= HTTP_ERR_URI_TOO_LONG, "unknown status");
	}

	/*
	 * Prefixes: NEED_MORE until the first final answer, then that answer.
	 * Checked at every short prefix and at a bounded sample of the rest,
	 * with the first final prefix found by bisection (the answers are
	 * monotone if the parser is right; the samples catch it if not): an
	 * input costs O(n log n) parses, not O(n^2), so the fuzzer runs fast.
	 */
	size_t lo = 0, hi = n; /* the first final prefix is in (lo, hi] */
	if (r == HTTP_NEED_MORE || !deep)
		lo = hi = n + 1;
	while (hi - lo > 1) {
		size_t mid = lo + (hi - lo) / 2;
		if (parse_prefix(buf, mid, l, &part) == HTTP_NEED_MORE)
			lo = mid;
		else
			hi = mid;
	}
	size_t first = hi;
	for (size_t i = 0; deep && i < ALL_PREFIXES + SAMPLES + 3; i++) {
		size_t k = i < ALL_PREFIXES ? i
		           : i < ALL_PREFIXES + SAMPLES ? n * (i - ALL_PREFIXES) / SAMPLES
		           : i == ALL_PREFIXES + SAMPLES ? first - 1
		           : i == ALL_PREFIXES + SAMPLES + 1 ? first : n;
		if (k > n)
			continue;
		int rk = parse_prefix(buf, k, l, &part);
		if (rk > 0 && (size_t)rk > k)
			die("head length > prefix", k, rk, r);
		if (k < first && rk != HTTP_NEED_MORE)
			die("a final answer before the first one", k, rk, r);
		if (k >= first && rk != r)
			die(rk == HTTP_NEED_MORE ? "need_more after a final answer"
			                         : "prefix answer differs from whole", k, rk, r);
	}
	if (deep && r > 0 && first != (size_t)r)
		die("head complete before its last byte", first, r, r);

	/* Bytes after the head are never examined. */
	if (r > 0 && (size_t)r < n) {
		char *mut = malloc(n);
		if (mut == NULL)
			abort();
		memcpy(mut, buf, n);
		for (size_t i = (size_t)r; i < n; i++)
			mut[i] = (char)(mut[i] ^ 0x5a);
		int rm = http_parse_request(mut, n, l, &part);
		if (rm != r)
			die("answer depends on bytes after the head", n, rm, r);
		/* same offsets into the other buffer */
		check(part.n_headers == whole.n_headers && part.method.len == whole.method.len &&
		          part.target.len == whole.target.len && part.host.len == whole.host.len,
		      "views depend on bytes after the head");
		free(mut);
		/* and the head alone gives the same views into the same buffer */
		rm = http_parse_request(buf, (size_t)r, l, &part);
		check(rm == r && req_eq(&part, &whole), "head alone differs");
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *buf = (const char *)data;
	struct http_limits def;
	http_limits_default(&def);
	const struct http_limits small = {256, 64, 4};
	const struct http_limits tiny = {40, 24, 1};
	/* no limits but the hard array bound; max_head clamped to INT_MAX */
	const struct http_limits unbounded = {SIZE_MAX, SIZE_MAX, SIZE_MAX};

	run(buf, size, &def, true);
	run(buf, size, &small, false);
	run(buf, size, &tiny, true);
	run(buf, size, &unbounded, false);
	/* NULL limits are the defaults */
	static struct http_req a, b;
	int ra = http_parse_request(buf, size, NULL, &a);
	int rb = http_parse_request(buf, size, &def, &b);
	check(ra == rb && req_eq(&a, &b), "NULL limits differ from defaults");
	return 0;
}
