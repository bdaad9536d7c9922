/* libFuzzer target for plain-HTTP forwarding: targets, framing, chunked bodies, head rewriting. */
#include "http_msg.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/*
 * Every input is read four ways: as a request (head, target, framing,
 * rewrite, then a chunked body after the head), as a response (the same),
 * as a chunked body on its own, and as a request-target on its own.
 */

#define OUT_MAX 65536

static void fail(const char *what)
{
	fprintf(stderr, "http_msg invariant broken: %s\n", what);
	abort();
}

static void check(bool ok, const char *what)
{
	if (!ok)
		fail(what);
}

static bool ieq(struct http_view v, const char *lower)
{
	return http_token_ieq(v, lower);
}

/* Same name, ASCII case-insensitively (an oracle apart from the code under test). */
static bool names_eq(struct http_view a, struct http_view b)
{
	if (a.len != b.len)
		return false;
	for (size_t i = 0; i < a.len; i++) {
		char x = a.p[i], y = b.p[i];
		if (x >= 'A' && x <= 'Z')
			x = (char)(x + 32);
		if (y >= 'A' && y <= 'Z')
			y = (char)(y + 32);
		if (x != y)
			return false;
	}
	return true;
}

static bool is_hop_by_hop(struct http_view name)
{
	static const char *const hop[] = {
	    "connection", "proxy-connection", "keep-alive",          "te",
	    "trailer",    "upgrade",          "proxy-authorization", "proxy-authenticate"};
	for (size_t i = 0; i < sizeof(hop) / sizeof(hop[0]); i++) {
		if (ieq(name, hop[i]))
			return true;
	}
	return false;
}

/* Is name listed by a Connection field of hs? */
static bool listed(const struct http_header *hs, size_t n, struct http_view name)
{
	for (size_t i = 0; i < n; i++) {
		if (!ieq(hs[i].name, "connection"))
			continue;
		struct http_view e;
		size_t pos = 0;
		while (http_list_next(hs[i].value, &pos, &e)) {
			if (names_eq(e, name))
				return true;
		}
	}
	return false;
}

/* Fields the rewrite must copy unchanged, in order. */
static bool kept(const struct http_header *hs, size_t n, const struct http_header *h,
                 enum http_conn_mode mode, bool request)
{
	if (mode == HTTP_CONN_UPGRADE && ieq(h->name, "upgrade"))
		return true;
	if (is_hop_by_hop(h->name) || ieq(h->name, "content-length") ||
	    ieq(h->name, "transfer-encoding") || ieq(h->name, "via") ||
	    (request && ieq(h->name, "host")))
		return false;
	return !listed(hs, n, h->name);
}

static bool view_same(struct http_view a, struct http_view b)
{
	return a.len == b.len && (a.len == 0 || memcmp(a.p, b.p, a.len) == 0);
}

static const char *mode_str(enum http_conn_mode m)
{
	return m == HTTP_CONN_CLOSE ? "close" : m == HTTP_CONN_UPGRADE ? "upgrade" : "keep-alive";
}

/*
 * What a rewritten head must hold, whichever way it was produced: the kept
 * fields of the original in order, one Via ending in our entry, the single
 * Connection we wrote (if any), no other hop-by-hop field, Upgrade only in
 * upgrade mode, and for a request exactly one Host.
 */
static void check_fields(const struct http_header *orig, size_t n_orig,
                         const struct http_header *out, size_t n_out, enum http_conn_mode mode,
                         const char *conn, bool request, int minor)
{
	size_t k = 0, hosts = 0, vias = 0, conns = 0;
	for (size_t i = 0; i < n_out; i++) {
		const struct http_header *h = &out[i];
		if (ieq(h->name, "host") && request) {
			hosts++;
			continue;
		}
		if (ieq(h->name, "content-length") || ieq(h->name, "transfer-encoding"))
			continue; /* compared through the framing */
		if (ieq(h->name, "via")) {
			vias++;
			const char *own = minor == 0 ? "1.0 portcullis" : "1.1 portcullis";
			size_t ol = strlen(own);
			check(h->value.len >= ol &&
			          memcmp(h->value.p + h->value.len - ol, own, ol) == 0,
			      "Via does not end with our entry");
			continue;
		}
		if (ieq(h->name, "connection")) {
			conns++;
			check(conn != NULL && ieq(h->value, conn), "Connection value");
			continue;
		}
		if (ieq(h->name, "upgrade") && mode == HTTP_CONN_UPGRADE) {
			/* kept Upgrade fields are matched in order like any other */
		} else {
			check(!is_hop_by_hop(h->name), "hop-by-hop field forwarded");
		}
		while (k < n_orig && !kept(orig, n_orig, &orig[k], mode, request))
			k++;
		check(k < n_orig, "a field appeared from nowhere");
		check(view_same(orig[k].name, h->name) && view_same(orig[k].value, h->value),
		      "kept field changed");
		k++;
	}
	while (k < n_orig && !kept(orig, n_orig, &orig[k], mode, request))
		k++;
	check(k == n_orig, "a kept field went missing");
	check(!request || hosts == 1, "not exactly one Host");
	check(vias == 1, "not exactly one Via");
	check(conns == (conn != NULL ? 1u : 0u), "Connection count");
}

/* ---- chunked ----------------------------------------------------------- */

static int feed_split(const char *buf, size_t len, const size_t *cuts, size_t n_cuts, size_t *total)
{
	struct chunked_state s;
	size_t pos = 0, used;
	int rc = CHUNKED_MORE;

	chunked_init(&s);
	*total = 0;
	for (size_t i = 0; i <= n_cuts && rc == CHUNKED_MORE; i++) {
		size_t end = i < n_cuts ? cuts[i] : len;
		if (end < pos)
			end = pos;
		if (end > len)
			end = len;
		rc = chunked_feed(&s, buf + pos, end - pos, &used);
		check(used <= end - pos, "consumed more than given");
		check(rc != CHUNKED_MORE || used == end - pos, "MORE without consuming all");
		*total += used;
		pos = end;
	}
	return rc;
}

static void check_chunked(const char *buf, size_t len, uint32_t seed)
{
	size_t whole, other, used;
	struct chunked_state s;

	chunked_init(&s);
	int r = chunked_feed(&s, buf, len, &whole);
	check(r == CHUNKED_MORE || r == CHUNKED_DONE ||
	          (r <= CHUNKED_ERR_SIZE && r >= CHUNKED_ERR_TRAILER_TOO_LARGE),
	      "chunked: unknown result");
	check(r != CHUNKED_MORE || whole == len, "chunked: MORE not all consumed");
	/* a final answer is sticky */
	if (r != CHUNKED_MORE)
		check(chunked_feed(&s, buf, len, &used) == r && used == 0, "chunked: not sticky");

	/* byte at a time */
	chunked_init(&s);
	size_t total = 0;
	int rb = CHUNKED_MORE;
	for (size_t i = 0; i < len && rb == CHUNKED_MORE; i++) {
		rb = chunked_feed(&s, buf + i, 1, &used);
		total += used;
	}
	check(rb == r && total == whole, "chunked: byte at a time differs");

	/* pseudo-random cuts */
	size_t cuts[8];
	uint32_t x = seed | 1;
	for (int round = 0; round < 4; round++) {
		size_t at = 0;
		for (size_t i = 0; i < 8; i++) {
			x ^= x << 13;
			x ^= x >> 17;
			x ^= x << 5;
			at += len ? x % (len / 4 + 2) : 0;
			cuts[i] = at;
		}
		check(feed_split(buf, len, cuts, 8, &other) == r && other == whole,
		      "chunked: split differs");
	}

	/*
	 * chunked_decode: the same verdict and consumed total as chunked_feed, its
	 * payload always inside the consumed bytes, and the same payload (compared
	 * by a running hash) whole and byte at a time.
	 */
	uint64_t h_whole = 0, h_bytes = 0;
	size_t p_whole = 0, p_bytes = 0;
	for (int byte = 0; byte < 2; byte++) {
		chunked_init(&s);
		size_t pos = 0;
		int rd = CHUNKED_MORE;
		uint64_t *h = byte ? &h_bytes : &h_whole;
		size_t *pl = byte ? &p_bytes : &p_whole;
		while (pos < len && rd == CHUNKED_MORE) {
			size_t n = byte ? 1 : len - pos;
			struct http_view d;
			rd = chunked_decode(&s, buf + pos, n, &used, &d);
			check(used <= n, "decode: consumed more than given");
			check(d.len == 0 || (d.p >= buf + pos && d.p + d.len <= buf + pos + used),
			      "decode: payload outside the consumed bytes");
			for (size_t i = 0; i < d.len; i++)
				*h = (*h ^ (unsigned char)d.p[i]) * 0x100000001b3ull;
			*pl += d.len;
			pos += used;
			if (rd == CHUNKED_MORE && used == 0)
				break;
		}
		check(rd == r && pos == whole, "decode: verdict or consumed differs from feed");
	}
	check(h_whole == h_bytes && p_whole == p_bytes, "decode: payload depends on the split");

	/* the verdict sits exactly at the consumed boundary */
	if (r == CHUNKED_DONE) {
		check(feed_split(buf, whole, NULL, 0, &other) == CHUNKED_DONE && other == whole,
		      "chunked: done prefix");
		check(feed_split(buf, whole - 1, NULL, 0, &other) == CHUNKED_MORE,
		      "chunked: done early");
		check(whole >= 5 && memcmp(buf + whole - 2, "\r\n", 2) == 0,
		      "chunked: done not at CRLF");
	} else if (r < 0) {
		check(whole < len, "chunked: error past the input");
		check(feed_split(buf, whole, NULL, 0, &other) == CHUNKED_MORE && other == whole,
		      "chunked: error earlier than its byte");
		check(feed_split(buf, whole + 1, NULL, 0, &other) == r && other == whole,
		      "chunked: error not at its byte");
	}
}

/* ---- request ------------------------------------------------------------ */

static void check_target(const char *t, size_t len)
{
	struct http_target tg;
	int rc = http_target_parse(t, len, &tg);
	check(rc <= 0 && rc >= HTTP_TARGET_BAD_PATH, "target: unknown result");
	if (rc < 0)
		return;
	check(tg.path.len > 0 && tg.path.p[0] == '/', "target: path not absolute");
	check(tg.query.len == 0 || tg.query.p[0] == '?', "target: query");
	check(tg.port != 0, "target: port 0");
	for (size_t i = 0; i < tg.authority.len; i++) {
		char c = tg.authority.p[i];
		check(c != '@' && c != '\\' && c != '%' && c != '#' && c != '/' && c != '?',
		      "target: authority byte");
	}
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)t[i];
		check(c > 0x20 && c < 0x7f && c != '#' && c != '\\', "target: byte accepted");
	}
	/* the canonical host canonicalises to itself */
	struct pc_host again;
	check(host_canon(tg.host.name, tg.host.len, &again) == HOST_OK &&
	          again.len == tg.host.len && memcmp(again.name, tg.host.name, again.len) == 0,
	      "target: host not canonical");
}

static void check_request(const char *buf, size_t len, uint32_t seed)
{
	static struct http_req req, re;
	static char out[OUT_MAX];
	static const struct http_limits unbounded = {SIZE_MAX, SIZE_MAX, SIZE_MAX};
	struct http_target t, t2;
	struct http_framing f, f2;

	int head = http_parse_request(buf, len, NULL, &req);
	if (head <= 0)
		return;
	check_target(req.target.p, req.target.len);
	if (http_target_parse(req.target.p, req.target.len, &t) != 0) {
		/* An origin-form request inside an intercepted tunnel: the CONNECT's authority. */
		struct pc_host oh;
		if (host_canon("origin.example", 14, &oh) != HOST_OK)
			return;
		uint16_t port = (seed & 1) ? 443 : 8443;
		int rc = http_origin_target_parse(req.target.p, req.target.len, &oh, port, &t);
		check(rc == 0 || rc == HTTP_TARGET_BAD || rc == HTTP_TARGET_BAD_PATH,
		      "origin target: unknown result");
		if (rc != 0)
			return;
		check(req.target.p[0] == '/' && t.https && t.port == port &&
		          t.path.len + t.query.len == req.target.len,
		      "origin target: not the request's path and query");
	}
	(void)http_host_header_matches(&req, &t);
	int fr = http_req_framing(&req, &f);
	check(fr == 0 || (fr <= HTTP_FRAMING_ERR_TE_AND_CL && fr >= HTTP_FRAMING_ERR_CL_MISMATCH),
	      "req framing: unknown result");
	if (fr < 0) {
		check(f.kind == HTTP_FRAMING_NONE, "req framing: kind on error");
		return;
	}
	check(f.kind != HTTP_FRAMING_CLOSE, "req framing: close-delimited request");
	check(f.kind != HTTP_FRAMING_CHUNKED || req.version_minor == 1, "req framing: TE in 1.0");
	check(!(req.n_transfer_encoding > 0 && req.n_content_length > 0), "req framing: TE+CL");

	for (int m = HTTP_CONN_KEEP_ALIVE; m <= HTTP_CONN_UPGRADE; m++) {
		enum http_conn_mode mode = (enum http_conn_mode)m;
		size_t n = http_forward_request_head(&req, &t, &f, mode, out, sizeof(out));
		if (mode == HTTP_CONN_UPGRADE && !http_req_has_upgrade(&req)) {
			check(n == 0, "upgrade mode without Upgrade");
			continue;
		}
		/* The proxy refuses such a head before it rewrites it; the rewrite refuses too. */
		if (http_connection_options(req.headers, req.n_headers) > HTTP_MAX_CONNECTION_OPTIONS) {
			check(n == 0, "request rewrite with too many connection options");
			continue;
		}
		check(n > 0, "request rewrite did not fit 64 KiB");
		check(http_forward_request_head(&req, &t, &f, mode, out, n - 1) == 0,
		      "request rewrite fits one byte short");
		check(http_forward_request_head(&req, &t, &f, mode, out, seed % n) == 0,
		      "request rewrite fits short");
		check(http_forward_request_head(&req, &t, &f, mode, out, n) == n,
		      "request rewrite length changes");
		check(http_parse_request(out, n, &unbounded, &re) == (int)n,
		      "rewritten request does not re-parse");
		check(re.version_minor == 1 && view_same(re.method, req.method),
		      "rewritten request line");
		check(http_target_parse(re.target.p, re.target.len, &t2) == HTTP_TARGET_ORIGIN_FORM,
		      "rewritten target not origin-form");
		check(re.target.len == t.path.len + t.query.len &&
		          memcmp(re.target.p, t.path.p, t.path.len) == 0 &&
		          (t.query.len == 0 ||
		           memcmp(re.target.p + t.path.len, t.query.p, t.query.len) == 0),
		      "rewritten target is not path + query");
		check(re.has_host && http_host_header_matches(&re, &t), "rewritten Host");
		check(!re.has_proxy_authorization, "Proxy-Authorization forwarded");
		check(http_req_framing(&re, &f2) == 0 && f2.kind == f.kind && f2.length == f.length,
		      "rewritten request framing differs");
		check_fields(req.headers, req.n_headers, re.headers, re.n_headers, mode,
		             mode_str(mode), true, req.version_minor);
	}
	if (f.kind == HTTP_FRAMING_CHUNKED)
		check_chunked(buf + head, len - (size_t)head, seed);
}

/* ---- response ----------------------------------------------------------- */

static void check_response_prefixes(const char *buf, size_t len, int r, uint32_t seed)
{
	static struct http_resp part;
	size_t step = len < 512 ? 1 : len / 64 + (seed % 7);
	bool final = false;
	for (size_t k = 0; k <= len; k += step) {
		int rk = http_parse_response(buf, k, NULL, &part);
		if (rk == HTTP_NEED_MORE) {
			check(!final, "response: need_more after a final answer");
			continue;
		}
		check(rk == r, "response: prefix answer differs");
		final = true;
	}
}

static void check_response(const char *buf, size_t len, uint32_t seed)
{
	static struct http_resp resp, re;
	static char out[OUT_MAX];
	static const struct http_limits unbounded = {SIZE_MAX, SIZE_MAX, SIZE_MAX};
	struct http_framing f, f2;

	int head = http_parse_response(buf, len, NULL, &resp);
	check_response_prefixes(buf, len, head, seed);
	if (head <= 0)
		return;
	check(resp.status >= 100 && resp.status <= 599, "response: status");
	for (int was_head = 0; was_head <= 1; was_head++) {
		int fr = http_resp_framing(&resp, was_head, &f);
		check(fr == 0 ||
		          (fr <= HTTP_FRAMING_ERR_TE_AND_CL && fr >= HTTP_FRAMING_ERR_CL_MISMATCH),
		      "resp framing: unknown result");
		if (fr < 0)
			continue;
		bool bodiless =
		    was_head || resp.status < 200 || resp.status == 204 || resp.status == 304;
		check(bodiless == (f.kind == HTTP_FRAMING_NONE), "resp framing: NONE");
		(void)http_resp_keep_alive(&resp, &f);
		for (int m = HTTP_CONN_KEEP_ALIVE; m <= HTTP_CONN_UPGRADE; m++) {
			enum http_conn_mode mode = (enum http_conn_mode)m;
			size_t n = http_forward_response_head(&resp, &f, mode, out, sizeof(out));
			if (mode == HTTP_CONN_UPGRADE && !resp.has_upgrade) {
				check(n == 0, "upgrade mode without Upgrade");
				continue;
			}
			if (http_connection_options(resp.headers, resp.n_headers) >
			    HTTP_MAX_CONNECTION_OPTIONS) {
				check(n == 0, "response rewrite with too many connection options");
				continue;
			}
			check(n > 0, "response rewrite did not fit 64 KiB");
			check(http_forward_response_head(&resp, &f, mode, out, n - 1) == 0,
			      "response rewrite fits one byte short");
			check(http_forward_response_head(&resp, &f, mode, out, n) == n,
			      "response rewrite length changes");
			check(http_parse_response(out, n, &unbounded, &re) == (int)n,
			      "rewritten response does not re-parse");
			check(re.status == resp.status && re.version_minor == 1 &&
			          view_same(re.reason, resp.reason),
			      "rewritten status line");
			check(http_resp_framing(&re, was_head, &f2) == 0 && f2.kind == f.kind &&
			          f2.length == f.length,
			      "rewritten response framing differs");
			const char *conn = NULL;
			if (resp.status >= 200 || resp.status == 101)
				conn = f.kind == HTTP_FRAMING_CLOSE ? "close" : mode_str(mode);
			check_fields(resp.headers, resp.n_headers, re.headers, re.n_headers, mode,
			             conn, false, resp.version_minor);
		}
		if (!was_head && f.kind == HTTP_FRAMING_CHUNKED)
			check_chunked(buf + head, len - (size_t)head, seed);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *buf = (const char *)data;
	uint32_t seed = 2166136261u; /* FNV-1a of the input: reproducible split points */
	for (size_t i = 0; i < size; i++)
		seed = (seed ^ data[i]) * 16777619u;

	check_request(buf, size, seed);
	check_response(buf, size, seed);
	check_chunked(buf, size, seed);
	check_target(buf, size);
	return 0;
}
