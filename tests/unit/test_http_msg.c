/* Unit tests for plain-HTTP forwarding (proxy/http_msg.c) and the response-head parser. */
#include "http_msg.h"

#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

/* A string literal and its length, NULs included. */
#define S(lit) lit, sizeof(lit) - 1
#define N(a) (sizeof(a) / sizeof((a)[0]))

/* 4 KiB each: kept off the stack and reused. */
static struct http_req g_req, g_req2;
static struct http_resp g_resp, g_resp2;

static void assert_view(struct http_view v, const char *want)
{
	if (want == NULL) {
		if (v.len != 0)
			fail_msg("view \"%.*s\" should be empty", (int)v.len, v.p);
		return;
	}
	if (v.len != strlen(want) || (v.len > 0 && memcmp(v.p, want, v.len) != 0))
		fail_msg("view \"%.*s\" != \"%s\"", (int)v.len, v.p ? v.p : "", want);
}

/* Parse a complete request head (the whole string). */
static const struct http_req *req_of(const char *head)
{
	int rc = http_parse_request(head, strlen(head), NULL, &g_req);
	if (rc != (int)strlen(head))
		fail_msg("request head did not parse (%d %s): %s", rc, http_status_str(rc), head);
	return &g_req;
}

static const struct http_resp *resp_of(const char *head)
{
	int rc = http_parse_response(head, strlen(head), NULL, &g_resp);
	if (rc != (int)strlen(head))
		fail_msg("response head did not parse (%d %s): %s", rc, http_status_str(rc), head);
	return &g_resp;
}

/* ---- request-target ----------------------------------------------------- */

struct target_case {
	const char *in;
	int expect;
	const char *host; /* canonical */
	uint16_t port;
	const char *path;
	const char *query;
};

static const struct target_case target_cases[] = {
    /* valid absolute-form (RFC 9112 §3.2.2) */
    {"http://example.com/", 0, "example.com", 80, "/", NULL},
    {"http://example.com", 0, "example.com", 80, "/", NULL}, /* §3.2.1: empty path → "/" */
    {"http://example.com?q=1", 0, "example.com", 80, "/", "?q=1"},
    {"http://example.com/a/b?c=d&e", 0, "example.com", 80, "/a/b", "?c=d&e"},
    {"http://example.com/a?b?c", 0, "example.com", 80, "/a", "?b?c"},
    {"http://example.com/?", 0, "example.com", 80, "/", "?"},
    {"HTTP://Example.COM./x", 0, "example.com", 80, "/x", NULL}, /* RFC 3986 §3.1 */
    {"hTtP://example.com:8080/x", 0, "example.com", 8080, "/x", NULL},
    {"http://example.com:80/x", 0, "example.com", 80, "/x", NULL},
    {"http://[::1]:80/", 0, "::1", 80, "/", NULL},
    {"http://[2001:DB8::1]/", 0, "2001:db8::1", 80, "/", NULL},
    {"http://127.0.0.1:8000/", 0, "127.0.0.1", 8000, "/", NULL},
    {"http://0x7f.1/", 0, "127.0.0.1", 80, "/", NULL}, /* decided as the address it is */
    {"http://deb.debian.org/debian/dists/bookworm/InRelease", 0, "deb.debian.org", 80,
     "/debian/dists/bookworm/InRelease", NULL},
    {"http://a/%2e%2E/%41?x=%20", 0, "a", 80, "/%2e%2E/%41", "?x=%20"}, /* %XX fine in path */
    {"http://a/@x:y;z=1,2+3$!~*'()", 0, "a", 80, "/@x:y;z=1,2+3$!~*'()", NULL},
    {"http://a/p|q{r}^`[]\"<>", 0, "a", 80, "/p|q{r}^`[]\"<>", NULL}, /* relayed as sent */
    {"http://a//x", 0, "a", 80, "//x", NULL},
    /* origin-form, https, other forms */
    {"/", HTTP_TARGET_ORIGIN_FORM, NULL, 0, NULL, NULL},
    {"/x?y", HTTP_TARGET_ORIGIN_FORM, NULL, 0, NULL, NULL},
    {"//example.com/x", HTTP_TARGET_ORIGIN_FORM, NULL, 0, NULL, NULL},
    {"https://example.com/", HTTP_TARGET_HTTPS, NULL, 0, NULL, NULL},
    {"HTTPS://example.com/", HTTP_TARGET_HTTPS, NULL, 0, NULL, NULL},
    {"https:", HTTP_TARGET_HTTPS, NULL, 0, NULL, NULL},
    {"https://", HTTP_TARGET_HTTPS, NULL, 0, NULL, NULL},
    {"ftp://example.com/", HTTP_TARGET_BAD, NULL, 0, NULL, NULL},
    {"ws://example.com/", HTTP_TARGET_BAD, NULL, 0, NULL, NULL},
    {"httpx://example.com/", HTTP_TARGET_BAD, NULL, 0, NULL, NULL},
    {"http+unix://x/", HTTP_TARGET_BAD, NULL, 0, NULL, NULL},
    {"example.com:80", HTTP_TARGET_BAD, NULL, 0, NULL, NULL}, /* authority-form */
    {"example.com", HTTP_TARGET_BAD, NULL, 0, NULL, NULL},
    {"*", HTTP_TARGET_BAD, NULL, 0, NULL, NULL}, /* asterisk-form */
    {"http:/x", HTTP_TARGET_BAD, NULL, 0, NULL, NULL},
    {"http:x", HTTP_TARGET_BAD, NULL, 0, NULL, NULL},
    {"http:", HTTP_TARGET_BAD, NULL, 0, NULL, NULL},
    {"http", HTTP_TARGET_BAD, NULL, 0, NULL, NULL},
    {"http:\\\\example.com/", HTTP_TARGET_BAD, NULL, 0, NULL, NULL},
    {"1http://a/", HTTP_TARGET_BAD, NULL, 0, NULL, NULL},
    {"", HTTP_TARGET_BAD, NULL, 0, NULL, NULL},
    /* the authority */
    {"http://", HTTP_TARGET_BAD_AUTHORITY, NULL, 0, NULL, NULL},
    {"http:///x", HTTP_TARGET_BAD_AUTHORITY, NULL, 0, NULL, NULL},
    {"http://?x", HTTP_TARGET_BAD_AUTHORITY, NULL, 0, NULL, NULL},
    {"http://a@b/", HTTP_TARGET_BAD_AUTHORITY, NULL, 0, NULL, NULL},
    {"http://a:b@c/", HTTP_TARGET_BAD_AUTHORITY, NULL, 0, NULL, NULL},
    {"http://@c/", HTTP_TARGET_BAD_AUTHORITY, NULL, 0, NULL, NULL},
    {"http://allowed.com@evil.com/", HTTP_TARGET_BAD_AUTHORITY, NULL, 0, NULL, NULL},
    {"http://evil.com\\@allowed.com/", HTTP_TARGET_BAD_AUTHORITY, NULL, 0, NULL, NULL},
    {"http://evil.com\\.allowed.com/", HTTP_TARGET_BAD_AUTHORITY, NULL, 0, NULL, NULL},
    {"http://evil.com#@allowed.com/", HTTP_TARGET_BAD_AUTHORITY, NULL, 0, NULL, NULL},
    {"http://evil.com#/", HTTP_TARGET_BAD_AUTHORITY, NULL, 0, NULL, NULL},
    {"http://ex%61mple.com/", HTTP_TARGET_BAD_AUTHORITY, NULL, 0, NULL, NULL},
    {"http://%2e/", HTTP_TARGET_BAD_AUTHORITY, NULL, 0, NULL, NULL},
    {"http://a%2ecom/", HTTP_TARGET_BAD_AUTHORITY, NULL, 0, NULL, NULL},
    {"http://a:%38%30/", HTTP_TARGET_BAD_AUTHORITY, NULL, 0, NULL, NULL},
    {"http://[fe80::1%25eth0]/", HTTP_TARGET_BAD_AUTHORITY, NULL, 0, NULL, NULL},
    {"http://a b/", HTTP_TARGET_BAD_AUTHORITY, NULL, 0, NULL, NULL},
    {"http://a\tb/", HTTP_TARGET_BAD_AUTHORITY, NULL, 0, NULL, NULL},
    {"http://caf\xc3\xa9.com/", HTTP_TARGET_BAD_AUTHORITY, NULL, 0, NULL, NULL},
    {"http://host:0/", HTTP_TARGET_BAD_AUTHORITY, NULL, 0, NULL, NULL},
    {"http://host:65536/", HTTP_TARGET_BAD_AUTHORITY, NULL, 0, NULL, NULL},
    {"http://host:080/", HTTP_TARGET_BAD_AUTHORITY, NULL, 0, NULL, NULL},
    {"http://host:+80/", HTTP_TARGET_BAD_AUTHORITY, NULL, 0, NULL, NULL},
    {"http://host:/", HTTP_TARGET_BAD_AUTHORITY, NULL, 0, NULL, NULL},
    {"http://host:80:80/", HTTP_TARGET_BAD_AUTHORITY, NULL, 0, NULL, NULL},
    {"http://host:http/", HTTP_TARGET_BAD_AUTHORITY, NULL, 0, NULL, NULL},
    {"http://:80/", HTTP_TARGET_BAD_AUTHORITY, NULL, 0, NULL, NULL},
    {"http://::1/", HTTP_TARGET_BAD_AUTHORITY, NULL, 0, NULL, NULL},
    {"http://[::1/", HTTP_TARGET_BAD_AUTHORITY, NULL, 0, NULL, NULL},
    {"http://a..b/", HTTP_TARGET_BAD_AUTHORITY, NULL, 0, NULL, NULL},
    {"http://-a.com/", HTTP_TARGET_BAD_AUTHORITY, NULL, 0, NULL, NULL},
    {"http://256.1.1.1/", HTTP_TARGET_BAD_AUTHORITY, NULL, 0, NULL, NULL},
    /* the path and query */
    {"http://a/#frag", HTTP_TARGET_BAD_PATH, NULL, 0, NULL, NULL},
    {"http://a/x?y#z", HTTP_TARGET_BAD_PATH, NULL, 0, NULL, NULL},
    {"http://a?#", HTTP_TARGET_BAD_PATH, NULL, 0, NULL, NULL},
    {"http://a/x\\y", HTTP_TARGET_BAD_PATH, NULL, 0, NULL, NULL},
    {"http://a/x y", HTTP_TARGET_BAD_PATH, NULL, 0, NULL, NULL},
    {"http://a/x\x01y", HTTP_TARGET_BAD_PATH, NULL, 0, NULL, NULL},
    {"http://a/x\x7f", HTTP_TARGET_BAD_PATH, NULL, 0, NULL, NULL},
    {"http://a/caf\xc3\xa9", HTTP_TARGET_BAD_PATH, NULL, 0, NULL, NULL},
    {"http://a/%", HTTP_TARGET_BAD_PATH, NULL, 0, NULL, NULL},
    {"http://a/%4", HTTP_TARGET_BAD_PATH, NULL, 0, NULL, NULL},
    {"http://a/%zz", HTTP_TARGET_BAD_PATH, NULL, 0, NULL, NULL},
    {"http://a/?%g0", HTTP_TARGET_BAD_PATH, NULL, 0, NULL, NULL},
};

static void test_target_table(void **state)
{
	(void)state;
	for (size_t i = 0; i < N(target_cases); i++) {
		const struct target_case *c = &target_cases[i];
		struct http_target t;
		size_t len = strlen(c->in);
		/* an exact-size copy: ASan sees any read past the target */
		char *copy = malloc(len ? len : 1);
		assert_non_null(copy);
		memcpy(copy, c->in, len);
		int rc = http_target_parse(copy, len, &t);
		if (rc != c->expect)
			fail_msg("%s: got %d (%s), want %d (%s)", c->in, rc, http_msg_status_str(rc),
			         c->expect, http_msg_status_str(c->expect));
		if (rc == 0) {
			assert_string_equal(t.host.name, c->host);
			assert_int_equal(t.port, c->port);
			assert_view(t.path, c->path);
			assert_view(t.query, c->query);
			/* the authority view is the text between "//" and the path */
			assert_ptr_equal(t.authority.p, copy + strcspn(c->in, ":") + 3);
		} else {
			static const struct http_target zero;
			assert_memory_equal(&t, &zero, sizeof(t));
		}
		free(copy);
	}
}

static void test_target_embedded_nul(void **state)
{
	(void)state;
	struct http_target t;
	assert_int_equal(http_target_parse(S("http://a\0b/"), &t), HTTP_TARGET_BAD_AUTHORITY);
	assert_int_equal(http_target_parse(S("http://a/\0"), &t), HTTP_TARGET_BAD_PATH);
	assert_int_equal(http_target_parse(NULL, 0, &t), HTTP_TARGET_BAD);
	assert_int_equal(http_target_parse(S("http://a/"), NULL), HTTP_TARGET_BAD);
}

/* An origin-form target inside an intercepted tunnel: the path is checked like an absolute one's,
 * the authority is the CONNECT's, and an https Host defaults to port 443. */
static void test_origin_target(void **state)
{
	(void)state;
	struct pc_host h;
	struct http_target t;
	assert_int_equal(host_canon("github.com", 10, &h), HOST_OK);
	assert_int_equal(http_origin_target_parse(S("/org/repo.git/info/refs?service=x"), &h, 443, &t),
	                 0);
	assert_true(t.https);
	assert_int_equal(t.port, 443);
	assert_view(t.path, "/org/repo.git/info/refs");
	assert_view(t.query, "?service=x");
	static const char *const bad_form[] = {"http://github.com/", "https://github.com/", "*",
	                                       "github.com:443", "x/y"};
	for (size_t i = 0; i < N(bad_form); i++)
		assert_int_equal(http_origin_target_parse(bad_form[i], strlen(bad_form[i]), &h, 443, &t),
		                 HTTP_TARGET_BAD);
	static const char *const bad_path[] = {"/a#b", "/a\\b", "/%zz", "/%4", "/a b", "/\x80"};
	for (size_t i = 0; i < N(bad_path); i++)
		assert_int_equal(http_origin_target_parse(bad_path[i], strlen(bad_path[i]), &h, 443, &t),
		                 HTTP_TARGET_BAD_PATH);
	assert_int_equal(http_origin_target_parse(NULL, 0, &h, 443, &t), HTTP_TARGET_BAD);
	/* Host: port 443 is the default; any other port, or host, disagrees */
	static const struct {
		const char *host_line;
		uint16_t port;
		bool expect;
	} hc[] = {
	    {"Host: github.com\r\n", 443, true},      {"Host: GitHub.com.:443\r\n", 443, true},
	    {"Host: github.com:8443\r\n", 8443, true}, {"Host: github.com\r\n", 8443, false},
	    {"Host: github.com:80\r\n", 443, false},  {"Host: evil.example\r\n", 443, false},
	    {"Host: github.com:8443\r\n", 443, false},
	};
	char head[256];
	for (size_t i = 0; i < N(hc); i++) {
		snprintf(head, sizeof(head), "GET /x HTTP/1.1\r\n%s\r\n", hc[i].host_line);
		const struct http_req *r = req_of(head);
		assert_int_equal(http_origin_target_parse(r->target.p, r->target.len, &h, hc[i].port, &t),
		                 0);
		if (http_host_header_matches(r, &t) != hc[i].expect)
			fail_msg("\"%s\" for port %u: want %d", hc[i].host_line, hc[i].port,
			         hc[i].expect);
		/* the rewrite names the port only when it is not 443 */
		struct http_framing f;
		assert_int_equal(http_req_framing(r, &f), 0);
		char out[512];
		size_t n = http_forward_request_head(r, &t, &f, HTTP_CONN_KEEP_ALIVE, out, sizeof(out));
		assert_true(n > 0);
		out[n] = '\0';
		assert_non_null(strstr(out, hc[i].port == 443 ? "Host: github.com\r\n"
		                                              : "Host: github.com:8443\r\n"));
	}
}

/* ---- Host header vs target ---------------------------------------------- */

struct host_case {
	const char *target;
	const char *host_line; /* "Host: ...\r\n" or "" */
	bool expect;
};

static const struct host_case host_cases[] = {
    {"http://example.com/", "", true}, /* no Host: nothing to disagree */
    {"http://example.com/", "Host: example.com\r\n", true},
    {"http://example.com/", "Host: example.com:80\r\n", true},
    {"http://example.com/", "Host: Example.COM.:80\r\n", true},
    {"http://example.com:80/", "Host: example.com\r\n", true},
    {"http://example.com:8080/", "Host: example.com:8080\r\n", true},
    {"http://[::1]/", "Host: [0:0::1]\r\n", true},
    {"http://127.0.0.1/", "Host: 0x7f.0.0.1\r\n", true},
    {"http://example.com/", "Host: other.com\r\n", false},
    {"http://example.com/", "Host: example.com:8080\r\n", false},
    {"http://example.com:8080/", "Host: example.com\r\n", false},
    {"http://example.com/", "Host: sub.example.com\r\n", false},
    {"http://example.com/", "Host: example.com.evil\r\n", false},
    {"http://example.com/", "Host:\r\n", false},
    {"http://example.com/", "Host: example.com:\r\n", false},
    {"http://example.com/", "Host: user@example.com\r\n", false},
    {"http://example.com/", "Host: example.com/x\r\n", false},
    {"http://example.com/", "Host: ex%61mple.com\r\n", false},
    {"http://example.com/", "Host: example.com, evil.com\r\n", false},
    {"http://127.0.0.1/", "Host: [::ffff:127.0.0.1]\r\n", false},
    {"http://[::1]/", "Host: ::1\r\n", false},
};

static void test_host_header_matches(void **state)
{
	(void)state;
	char head[256];
	for (size_t i = 0; i < N(host_cases); i++) {
		const struct host_case *c = &host_cases[i];
		struct http_target t;
		snprintf(head, sizeof(head), "GET %s HTTP/1.1\r\n%s\r\n", c->target, c->host_line);
		const struct http_req *r = req_of(head);
		assert_int_equal(http_target_parse(r->target.p, r->target.len, &t), 0);
		if (http_host_header_matches(r, &t) != c->expect)
			fail_msg("%s with \"%s\": want %d", c->target, c->host_line, c->expect);
	}
	/* two Host lines never get this far: the head parser refuses them */
	const char *dup = "GET http://a/ HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n";
	assert_int_equal(http_parse_request(dup, strlen(dup), NULL, &g_req), HTTP_ERR_DUP_HOST);
}

/* ---- request framing (RFC 9112 §6) -------------------------------------- */

struct framing_case {
	const char *fields; /* field lines after the request line */
	int expect;
	enum http_framing_kind kind;
	uint64_t length;
	int minor; /* 0: HTTP/1.0 */
};

#define CHUNKED HTTP_FRAMING_CHUNKED
#define LENGTH HTTP_FRAMING_LENGTH
#define NONE HTTP_FRAMING_NONE
#define CLOSE HTTP_FRAMING_CLOSE

static const struct framing_case req_framing_cases[] = {
    {"", 0, NONE, 0, 1},
    {"", 0, NONE, 0, 0},
    {"Content-Length: 0\r\n", 0, LENGTH, 0, 1},
    {"Content-Length: 5\r\n", 0, LENGTH, 5, 1},
    {"Content-Length: 5\r\n", 0, LENGTH, 5, 0},
    {"content-LENGTH:    5   \r\n", 0, LENGTH, 5, 1}, /* OWS is not part of the value */
    {"Content-Length: 5 \r\n", 0, LENGTH, 5, 1},
    {"Content-Length: 005\r\n", 0, LENGTH, 5, 1}, /* 1*DIGIT */
    {"Content-Length: 5, 5\r\n", 0, LENGTH, 5, 1}, /* RFC 9110 §8.6 */
    {"Content-Length: 5,5,5\r\n", 0, LENGTH, 5, 1},
    {"Content-Length: 5\r\nContent-Length: 5\r\n", 0, LENGTH, 5, 1},
    {"Content-Length: 5\r\nContent-Length: 05\r\n", 0, LENGTH, 5, 1},
    {"Content-Length: 4611686018427387904\r\n", 0, LENGTH, UINT64_C(1) << 62, 1},
    {"Transfer-Encoding: chunked\r\n", 0, CHUNKED, 0, 1},
    {"Transfer-Encoding: CHUNKED\r\n", 0, CHUNKED, 0, 1}, /* RFC 9112 §7: case-insensitive */
    {"transfer-encoding:chunked\r\n", 0, CHUNKED, 0, 1},
    /* Content-Length not plain digits (§6.3 rule 5) */
    {"Content-Length: +5\r\n", HTTP_FRAMING_ERR_CL_INVALID, NONE, 0, 1},
    {"Content-Length: -5\r\n", HTTP_FRAMING_ERR_CL_INVALID, NONE, 0, 1},
    {"Content-Length: 0x5\r\n", HTTP_FRAMING_ERR_CL_INVALID, NONE, 0, 1},
    {"Content-Length: 5.0\r\n", HTTP_FRAMING_ERR_CL_INVALID, NONE, 0, 1},
    {"Content-Length: 5 6\r\n", HTTP_FRAMING_ERR_CL_INVALID, NONE, 0, 1},
    {"Content-Length: 5\t5\r\n", HTTP_FRAMING_ERR_CL_INVALID, NONE, 0, 1},
    {"Content-Length: \r\n", HTTP_FRAMING_ERR_CL_INVALID, NONE, 0, 1},
    {"Content-Length: 5,\r\n", HTTP_FRAMING_ERR_CL_INVALID, NONE, 0, 1},
    {"Content-Length: ,5\r\n", HTTP_FRAMING_ERR_CL_INVALID, NONE, 0, 1},
    {"Content-Length: 5,,5\r\n", HTTP_FRAMING_ERR_CL_INVALID, NONE, 0, 1},
    {"Content-Length: \"5\"\r\n", HTTP_FRAMING_ERR_CL_INVALID, NONE, 0, 1},
    {"Content-Length: 5;x\r\n", HTTP_FRAMING_ERR_CL_INVALID, NONE, 0, 1},
    {"Content-Length: \xd9\xa5\r\n", HTTP_FRAMING_ERR_CL_INVALID, NONE, 0, 1}, /* Arabic 5 */
    {"Content-Length: 99999999999999999999\r\n", HTTP_FRAMING_ERR_CL_INVALID, NONE, 0, 1},
    {"Content-Length: 18446744073709551616\r\n", HTTP_FRAMING_ERR_CL_INVALID, NONE, 0, 1},
    {"Content-Length: 4611686018427387905\r\n", HTTP_FRAMING_ERR_CL_INVALID, NONE, 0, 1},
    {"Content-Length: 5\r\nContent-Length: \r\n", HTTP_FRAMING_ERR_CL_INVALID, NONE, 0, 1},
    /* several differing values */
    {"Content-Length: 5,6\r\n", HTTP_FRAMING_ERR_CL_MISMATCH, NONE, 0, 1},
    {"Content-Length: 5, 6\r\n", HTTP_FRAMING_ERR_CL_MISMATCH, NONE, 0, 1},
    {"Content-Length: 5\r\nContent-Length: 6\r\n", HTTP_FRAMING_ERR_CL_MISMATCH, NONE, 0, 1},
    {"Content-Length: 0\r\nContent-Length: 44\r\n", HTTP_FRAMING_ERR_CL_MISMATCH, NONE, 0, 1},
    /* TE together with CL (§6.3 rule 3): the classic CL.TE / TE.CL */
    {"Transfer-Encoding: chunked\r\nContent-Length: 4\r\n", HTTP_FRAMING_ERR_TE_AND_CL, NONE, 0,
     1},
    {"Content-Length: 4\r\nTransfer-Encoding: chunked\r\n", HTTP_FRAMING_ERR_TE_AND_CL, NONE, 0,
     1},
    {"Content-Length: x\r\nTransfer-Encoding: chunked\r\n", HTTP_FRAMING_ERR_TE_AND_CL, NONE, 0,
     1},
    {"Transfer-Encoding: xchunked\r\nContent-Length: 4\r\n", HTTP_FRAMING_ERR_TE_AND_CL, NONE,
     0, 1},
    /* TE in HTTP/1.0 (§6.1) */
    {"Transfer-Encoding: chunked\r\n", HTTP_FRAMING_ERR_TE_HTTP10, NONE, 0, 0},
    {"Transfer-Encoding: chunked\r\nContent-Length: 4\r\n", HTTP_FRAMING_ERR_TE_HTTP10, NONE, 0,
     0},
    /* TE other than exactly a final chunked */
    {"Transfer-Encoding: xchunked\r\n", HTTP_FRAMING_ERR_TE, NONE, 0, 1},
    {"Transfer-Encoding: chunkedx\r\n", HTTP_FRAMING_ERR_TE, NONE, 0, 1},
    {"Transfer-Encoding: chunked, identity\r\n", HTTP_FRAMING_ERR_TE, NONE, 0, 1},
    {"Transfer-Encoding: gzip, chunked\r\n", HTTP_FRAMING_ERR_TE, NONE, 0, 1},
    {"Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n", HTTP_FRAMING_ERR_TE, NONE, 0,
     1},
    {"Transfer-Encoding: chunked, chunked\r\n", HTTP_FRAMING_ERR_TE, NONE, 0, 1},
    {"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n", HTTP_FRAMING_ERR_TE, NONE,
     0, 1},
    {"Transfer-Encoding: identity\r\n", HTTP_FRAMING_ERR_TE, NONE, 0, 1},
    {"Transfer-Encoding: gzip\r\n", HTTP_FRAMING_ERR_TE, NONE, 0, 1},
    {"Transfer-Encoding: \r\n", HTTP_FRAMING_ERR_TE, NONE, 0, 1},
    {"Transfer-Encoding: chunked,\r\n", HTTP_FRAMING_ERR_TE, NONE, 0, 1},
    {"Transfer-Encoding: ,chunked\r\n", HTTP_FRAMING_ERR_TE, NONE, 0, 1},
    {"Transfer-Encoding: chunked;q=1\r\n", HTTP_FRAMING_ERR_TE, NONE, 0, 1},
    {"Transfer-Encoding: \"chunked\"\r\n", HTTP_FRAMING_ERR_TE, NONE, 0, 1},
    {"Transfer-Encoding: chunked\t, \r\n", HTTP_FRAMING_ERR_TE, NONE, 0, 1},
    {"Transfer-Encoding: ch\xc3\xbcnked\r\n", HTTP_FRAMING_ERR_TE, NONE, 0, 1},
};

static void test_req_framing_table(void **state)
{
	(void)state;
	char head[512];
	for (size_t i = 0; i < N(req_framing_cases); i++) {
		const struct framing_case *c = &req_framing_cases[i];
		struct http_framing f = {HTTP_FRAMING_CLOSE, 99};
		snprintf(head, sizeof(head), "POST http://a/ HTTP/1.%d\r\n%s\r\n", c->minor,
		         c->fields);
		int rc = http_req_framing(req_of(head), &f);
		if (rc != c->expect)
			fail_msg("%s(1.%d): got %d (%s), want %d (%s)", c->fields, c->minor, rc,
			         http_msg_status_str(rc), c->expect, http_msg_status_str(c->expect));
		assert_int_equal(f.kind, c->kind); /* NONE on error */
		assert_true(f.length == c->length);
	}
}

/* Smuggling shapes the head parser already refuses, before framing is looked at. */
static void test_req_framing_head_parser_refuses(void **state)
{
	(void)state;
	static const struct {
		const char *head;
		int expect;
	} cases[] = {
	    {"POST http://a/ HTTP/1.1\r\nTransfer-Encoding : chunked\r\n\r\n", HTTP_ERR_SYNTAX},
	    {"POST http://a/ HTTP/1.1\r\nTransfer-Encoding:\r\n chunked\r\n\r\n",
	     HTTP_ERR_OBS_FOLD},
	    {"POST http://a/ HTTP/1.1\r\nContent-Length: 5\n\r\n", HTTP_ERR_BARE_LF},
	    {"POST http://a/ HTTP/1.1\r\nContent-Length\t: 5\r\n\r\n", HTTP_ERR_SYNTAX},
	    {"POST http://a/ HTTP/1.1\r\n Transfer-Encoding: chunked\r\n\r\n", HTTP_ERR_OBS_FOLD},
	    {"POST http://a/ HTTP/1.1\r\nTransfer-Encoding: \x0b"
	     "chunked\r\n\r\n",
	     HTTP_ERR_BAD_CHAR},
	};
	for (size_t i = 0; i < N(cases); i++) {
		int rc = http_parse_request(cases[i].head, strlen(cases[i].head), NULL, &g_req);
		assert_int_equal(rc, cases[i].expect);
	}
}

/* ---- response head parser ----------------------------------------------- */

struct resp_case {
	const char *in;
	size_t len;
	int expect; /* INT_MAX: the whole input */
	int status;
	const char *reason;
};

#define FULL INT_MAX

static const struct resp_case resp_cases[] = {
    {S("HTTP/1.1 200 OK\r\n\r\n"), FULL, 200, "OK"},
    {S("HTTP/1.0 404 Not Found\r\nServer: x\r\n\r\n"), FULL, 404, "Not Found"},
    {S("HTTP/1.1 200 \r\n\r\n"), FULL, 200, NULL},
    {S("HTTP/1.1 200\r\n\r\n"), FULL, 200, NULL}, /* tolerated: missing SP before empty reason */
    {S("HTTP/1.1 100 Continue\r\n\r\n"), FULL, 100, "Continue"},
    {S("HTTP/1.1 599 x\r\n\r\n"), FULL, 599, "x"},
    {S("HTTP/1.1 200 O\tK \xc3\xa9\r\n\r\n"), FULL, 200, "O\tK \xc3\xa9"},
    {S("HTTP/1.1 200  two spaces\r\n\r\n"), FULL, 200, " two spaces"},
    {S("HTTP/1.1 200 OK\r\n"), HTTP_NEED_MORE, 0, NULL},
    {S("HTTP/1.1 2"), HTTP_NEED_MORE, 0, NULL},
    {S(""), HTTP_NEED_MORE, 0, NULL},
    {S("HTTP/1.1 099 x\r\n\r\n"), HTTP_ERR_SYNTAX, 0, NULL},
    {S("HTTP/1.1 600 x\r\n\r\n"), HTTP_ERR_SYNTAX, 0, NULL},
    {S("HTTP/1.1 20 OK\r\n\r\n"), HTTP_ERR_SYNTAX, 0, NULL},
    {S("HTTP/1.1 2000 OK\r\n\r\n"), HTTP_ERR_SYNTAX, 0, NULL},
    {S("HTTP/1.1 20x OK\r\n\r\n"), HTTP_ERR_SYNTAX, 0, NULL},
    {S("HTTP/1.1  200 OK\r\n\r\n"), HTTP_ERR_SYNTAX, 0, NULL},
    {S("HTTP/1.1\t200 OK\r\n\r\n"), HTTP_ERR_SYNTAX, 0, NULL},
    {S("HTTP/1.1 200\tOK\r\n\r\n"), HTTP_ERR_SYNTAX, 0, NULL},
    {S("http/1.1 200 OK\r\n\r\n"), HTTP_ERR_SYNTAX, 0, NULL},
    {S("HTTP/2 200\r\n\r\n"), HTTP_ERR_SYNTAX, 0, NULL},
    {S("HTTP/2.0 200 OK\r\n\r\n"), HTTP_ERR_VERSION, 0, NULL},
    {S("HTTP/1.2 200 OK\r\n\r\n"), HTTP_ERR_VERSION, 0, NULL},
    {S("ICY 200 OK\r\n\r\n"), HTTP_ERR_SYNTAX, 0, NULL},
    {S("\r\nHTTP/1.1 200 OK\r\n\r\n"), HTTP_ERR_SYNTAX, 0, NULL},
    {S("HTTP/1.1 200 OK\n\r\n"), HTTP_ERR_BARE_LF, 0, NULL},
    {S("HTTP/1.1 200 OK\r\nX: a\n\r\n"), HTTP_ERR_BARE_LF, 0, NULL},
    {S("HTTP/1.1 200 OK\r\nX: a\rb\r\n\r\n"), HTTP_ERR_SYNTAX, 0, NULL},
    {S("HTTP/1.1 200 OK\r\nX: a\0b\r\n\r\n"), HTTP_ERR_BAD_CHAR, 0, NULL},
    {S("HTTP/1.1 200 O\x01K\r\n\r\n"), HTTP_ERR_BAD_CHAR, 0, NULL},
    {S("HTTP/1.1 200 OK\r\nX: a\r\n b\r\n\r\n"), HTTP_ERR_OBS_FOLD, 0, NULL},
    {S("HTTP/1.1 200 OK\r\nContent-Length : 5\r\n\r\n"), HTTP_ERR_SYNTAX, 0, NULL},
    {S("HTTP/1.1 200 OK\r\n: v\r\n\r\n"), HTTP_ERR_SYNTAX, 0, NULL},
    {S("HTTP/1.1 200 OK\r\nNoColon\r\n\r\n"), HTTP_ERR_SYNTAX, 0, NULL},
    {S("HTTP/1.1 200 OK\r\nHost: a\r\nHost: b\r\n\r\n"), FULL, 200, "OK"}, /* not a request */
};

static void test_resp_parse_table(void **state)
{
	(void)state;
	for (size_t i = 0; i < N(resp_cases); i++) {
		const struct resp_case *c = &resp_cases[i];
		size_t len = c->len;
		int want = c->expect == FULL ? (int)len : c->expect;
		int first = -1;
		/* every prefix, each from an exact-size copy: NEED_MORE, then the answer */
		for (size_t k = 0; k <= len; k++) {
			char *copy = malloc(k ? k : 1);
			assert_non_null(copy);
			memcpy(copy, c->in, k);
			int rc = http_parse_response(copy, k, NULL, &g_resp);
			free(copy);
			if (rc == HTTP_NEED_MORE && first < 0)
				continue;
			if (rc != want)
				fail_msg("%s prefix %zu: got %d (%s), want %d", c->in, k, rc,
				         http_status_str(rc), want);
			if (first < 0)
				first = (int)k;
		}
		if (c->expect == HTTP_NEED_MORE) {
			assert_int_equal(first, -1);
			continue;
		}
		int rc = http_parse_response(c->in, len, NULL, &g_resp);
		assert_int_equal(rc, want);
		if (rc > 0) {
			assert_int_equal(first, rc); /* complete exactly at its last byte */
			assert_int_equal(g_resp.status, c->status);
			assert_view(g_resp.reason, c->reason);
			assert_int_equal(g_resp.version_minor, c->in[7] - '0');
		}
	}
}

static void test_resp_parse_fields(void **state)
{
	(void)state;
	const struct http_resp *r =
	    resp_of("HTTP/1.1 101 Switching Protocols\r\n"
	            "Connection: Keep-Alive, UPGRADE\r\nconnection: close\r\nUpgrade: websocket\r\n"
	            "Content-Length: 5\r\nContent-Length: 6\r\nTransfer-Encoding: gzip\r\n"
	            "X-Empty:\r\n\r\n");
	assert_int_equal(r->status, 101);
	assert_int_equal(r->n_headers, 7);
	assert_true(r->connection_close && r->connection_keep_alive && r->connection_upgrade);
	assert_true(r->has_upgrade);
	assert_int_equal(r->n_content_length, 2);
	assert_view(r->content_length, "5");
	assert_int_equal(r->n_transfer_encoding, 1);
	assert_view(r->transfer_encoding, "gzip");
	assert_view(r->headers[6].name, "X-Empty");
	assert_view(r->headers[6].value, NULL);

	r = resp_of("HTTP/1.0 200 OK\r\nConnection: keep-alive-ish, x-close\r\n\r\n");
	assert_false(r->connection_close || r->connection_keep_alive || r->connection_upgrade);
	assert_false(r->has_upgrade);

	/* limits apply as for requests */
	struct http_limits small = {64, 32, 2};
	const char *many = "HTTP/1.1 200 OK\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n";
	assert_int_equal(http_parse_response(many, strlen(many), &small, &g_resp),
	                 HTTP_ERR_TOO_MANY);
	const char *longline = "HTTP/1.1 200 OK OK OK OK OK OK OK OK OK\r\n\r\n";
	assert_int_equal(http_parse_response(longline, strlen(longline), &small, &g_resp),
	                 HTTP_ERR_LINE_TOO_LONG);
	char big[100];
	memset(big, 'a', sizeof(big));
	memcpy(big, "HTTP/1.1 200 OK\r\nX: ", 20);
	assert_int_equal(http_parse_response(big, sizeof(big), &small, &g_resp),
	                 HTTP_ERR_LINE_TOO_LONG);
	assert_int_equal(http_parse_response(NULL, 0, NULL, &g_resp), HTTP_NEED_MORE);
	assert_int_equal(http_parse_response(NULL, 1, NULL, &g_resp), HTTP_ERR_SYNTAX);
	assert_int_equal(http_parse_response("x", 1, NULL, NULL), HTTP_ERR_SYNTAX);
	/* bytes after the head (a body) are not read */
	const char *withbody = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi";
	assert_int_equal(http_parse_response(withbody, strlen(withbody), NULL, &g_resp),
	                 (int)strlen(withbody) - 2);
}

/* ---- response framing (RFC 9112 §6.3) ----------------------------------- */

struct resp_framing_case {
	const char *head;
	bool was_head;
	int expect;
	enum http_framing_kind kind;
	uint64_t length;
};

static const struct resp_framing_case resp_framing_cases[] = {
    /* rule 1: never a body */
    {"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", true, 0, NONE, 0},
    {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", true, 0, NONE, 0},
    {"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n", true, 0, NONE, 0},
    {"HTTP/1.1 200 OK\r\n\r\n", true, 0, NONE, 0},
    {"HTTP/1.1 100 Continue\r\n\r\n", false, 0, NONE, 0},
    {"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n", false, 0, NONE, 0},
    {"HTTP/1.1 103 Early Hints\r\nContent-Length: 5\r\n\r\n", false, 0, NONE, 0},
    {"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n", false, 0, NONE, 0},
    {"HTTP/1.1 204 No Content\r\nTransfer-Encoding: chunked\r\n\r\n", false, 0, NONE, 0},
    {"HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\n", false, 0, NONE, 0},
    {"HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n",
     false, 0, NONE, 0},
    /* rule 3: both → error */
    {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n", false,
     HTTP_FRAMING_ERR_TE_AND_CL, NONE, 0},
    {"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\nContent-Length: 5\r\n\r\n", false,
     HTTP_FRAMING_ERR_TE_AND_CL, NONE, 0},
    /* §6.1: TE in HTTP/1.0 */
    {"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", false, HTTP_FRAMING_ERR_TE_HTTP10,
     NONE, 0},
    /* rule 4: TE */
    {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", false, 0, CHUNKED, 0},
    {"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", false, 0, CHUNKED, 0},
    {"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: Chunked\r\n\r\n", false,
     0, CHUNKED, 0},
    {"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", false, 0, CLOSE, 0},
    {"HTTP/1.1 200 OK\r\nTransfer-Encoding: x-unknown\r\n\r\n", false, 0, CLOSE, 0},
    {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", false, HTTP_FRAMING_ERR_TE,
     NONE, 0},
    {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, chunked\r\n\r\n", false,
     HTTP_FRAMING_ERR_TE, NONE, 0},
    {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked;x=1\r\n\r\n", false, HTTP_FRAMING_ERR_TE,
     NONE, 0},
    {"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip;q=1, chunked\r\n\r\n", false,
     HTTP_FRAMING_ERR_TE, NONE, 0},
    {"HTTP/1.1 200 OK\r\nTransfer-Encoding: \r\n\r\n", false, HTTP_FRAMING_ERR_TE, NONE, 0},
    {"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip,, chunked\r\n\r\n", false, HTTP_FRAMING_ERR_TE,
     NONE, 0},
    /* rule 5: Content-Length */
    {"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", false, 0, LENGTH, 5},
    {"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", false, 0, LENGTH, 0},
    {"HTTP/1.0 200 OK\r\nContent-Length: 5, 5\r\n\r\n", false, 0, LENGTH, 5},
    {"HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\n\r\n", false, 0, LENGTH, 9},
    {"HTTP/1.1 200 OK\r\nContent-Length: 5, 6\r\n\r\n", false, HTTP_FRAMING_ERR_CL_MISMATCH,
     NONE, 0},
    {"HTTP/1.1 200 OK\r\nContent-Length: +5\r\n\r\n", false, HTTP_FRAMING_ERR_CL_INVALID, NONE,
     0},
    {"HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\n", false,
     HTTP_FRAMING_ERR_CL_INVALID, NONE, 0},
    /* rule 8: neither → read until close */
    {"HTTP/1.1 200 OK\r\n\r\n", false, 0, CLOSE, 0},
    {"HTTP/1.0 200 OK\r\n\r\n", false, 0, CLOSE, 0},
    {"HTTP/1.1 500 Oops\r\nConnection: keep-alive\r\n\r\n", false, 0, CLOSE, 0},
};

static void test_resp_framing_matrix(void **state)
{
	(void)state;
	for (size_t i = 0; i < N(resp_framing_cases); i++) {
		const struct resp_framing_case *c = &resp_framing_cases[i];
		struct http_framing f = {HTTP_FRAMING_CHUNKED, 7};
		int rc = http_resp_framing(resp_of(c->head), c->was_head, &f);
		if (rc != c->expect || f.kind != c->kind || f.length != c->length)
			fail_msg("case %zu %s(HEAD=%d): got %d (%s) kind %d len %llu", i, c->head,
			         c->was_head, rc, http_msg_status_str(rc), f.kind,
			         (unsigned long long)f.length);
	}
}

static void test_keep_alive(void **state)
{
	(void)state;
	assert_true(http_req_keep_alive(req_of("GET http://a/ HTTP/1.1\r\n\r\n")));
	assert_false(http_req_keep_alive(req_of("GET http://a/ HTTP/1.1\r\nConnection: close\r\n\r\n")));
	assert_false(http_req_keep_alive(req_of("GET http://a/ HTTP/1.0\r\n\r\n")));
	assert_false(
	    http_req_keep_alive(req_of("GET http://a/ HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")));

	struct http_framing len5 = {HTTP_FRAMING_LENGTH, 5}, close = {HTTP_FRAMING_CLOSE, 0};
	assert_true(http_resp_keep_alive(resp_of("HTTP/1.1 200 OK\r\n\r\n"), &len5));
	assert_false(http_resp_keep_alive(resp_of("HTTP/1.1 200 OK\r\n\r\n"), &close));
	assert_false(
	    http_resp_keep_alive(resp_of("HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n"), &len5));
	assert_false(http_resp_keep_alive(resp_of("HTTP/1.0 200 OK\r\n\r\n"), &len5));
	assert_true(
	    http_resp_keep_alive(resp_of("HTTP/1.0 200 OK\r\nConnection: keep-alive\r\n\r\n"), &len5));

	assert_true(http_req_has_upgrade(req_of("GET http://a/ HTTP/1.1\r\nupgrade: x\r\n\r\n")));
	assert_false(http_req_has_upgrade(req_of("GET http://a/ HTTP/1.1\r\nConnection: upgrade\r\n\r\n")));
}

/* ---- chunked (RFC 9112 §7.1) --------------------------------------------- */

struct chunk_case {
	const char *in;
	size_t len;
	int expect;
	size_t consumed; /* SIZE_MAX: all of in */
};

#define ALL SIZE_MAX

static const struct chunk_case chunk_cases[] = {
    /* complete bodies */
    {S("0\r\n\r\n"), CHUNKED_DONE, ALL},
    {S("5\r\nhello\r\n0\r\n\r\n"), CHUNKED_DONE, ALL},
    {S("5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"), CHUNKED_DONE, ALL},
    {S("A\r\n0123456789\r\na\r\n0123456789\r\n0\r\n\r\n"), CHUNKED_DONE, ALL},
    {S("00000\r\n\r\n"), CHUNKED_DONE, ALL}, /* last-chunk = 1*("0") */
    {S("005\r\nhello\r\n0\r\n\r\n"), CHUNKED_DONE, ALL},
    {S("5\r\nh\r\n\0\n\r\n0\r\n\r\n"), CHUNKED_DONE, ALL}, /* data is opaque */
    {S("5;ext\r\nhello\r\n0\r\n\r\n"), CHUNKED_DONE, ALL},
    {S("5;a=b;c;d=\"q \\\"x\\\\\"\r\nhello\r\n0;last\r\n\r\n"), CHUNKED_DONE, ALL},
    {S("5;a=\"\"\r\nhello\r\n0\r\n\r\n"), CHUNKED_DONE, ALL},
    {S("0\r\nExpires: never\r\nX-Sum: abc\t def \xc3\xa9\r\n\r\n"), CHUNKED_DONE, ALL},
    {S("0\r\nX:\r\n\r\n"), CHUNKED_DONE, ALL},
    /* bytes after the body belong to the next message */
    {S("0\r\n\r\nHTTP/1.1 200 OK\r\n"), CHUNKED_DONE, 5},
    {S("1\r\nx\r\n0\r\nT: v\r\n\r\nGET / HTTP/1.1\r\n"), CHUNKED_DONE, 17},
    /* incomplete */
    {S(""), CHUNKED_MORE, ALL},
    {S("5"), CHUNKED_MORE, ALL},
    {S("5\r\nhel"), CHUNKED_MORE, ALL},
    {S("5\r\nhello"), CHUNKED_MORE, ALL},
    {S("5\r\nhello\r\n"), CHUNKED_MORE, ALL},
    {S("0\r\n"), CHUNKED_MORE, ALL},
    {S("0\r\n\r"), CHUNKED_MORE, ALL}, /* missing final LF */
    {S("0\r\nX: y\r\n"), CHUNKED_MORE, ALL}, /* missing final CRLF */
    {S("4000000000000000\r\n"), CHUNKED_MORE, ALL}, /* 2^62: the largest size */
    {S("5;a=\"x"), CHUNKED_MORE, ALL},
    /* chunk-size */
    {S("\r\n"), CHUNKED_ERR_SIZE, 0},
    {S("0x5\r\nhello\r\n0\r\n\r\n"), CHUNKED_ERR_SIZE, 1},
    {S("-1\r\n"), CHUNKED_ERR_SIZE, 0},
    {S("+5\r\n"), CHUNKED_ERR_SIZE, 0},
    {S(" 5\r\n"), CHUNKED_ERR_SIZE, 0},
    {S("5 \r\nhello\r\n0\r\n\r\n"), CHUNKED_ERR_SIZE, 1},
    {S("5 ;ext\r\nhello\r\n0\r\n\r\n"), CHUNKED_ERR_SIZE, 1}, /* BWS not taken */
    {S("5\t;ext\r\n"), CHUNKED_ERR_SIZE, 1},
    {S("g\r\n"), CHUNKED_ERR_SIZE, 0},
    {S("5g\r\n"), CHUNKED_ERR_SIZE, 1},
    {S("\xef\xbc\x95\r\n"), CHUNKED_ERR_SIZE, 0}, /* fullwidth 5 */
    {S("5\0\r\n"), CHUNKED_ERR_SIZE, 1},
    {S("4000000000000001\r\n"), CHUNKED_ERR_SIZE_OVERFLOW, 15},
    {S("10000000000000000\r\n"), CHUNKED_ERR_SIZE_OVERFLOW, 16},
    {S("ffffffffffffffffffff\r\n"), CHUNKED_ERR_SIZE_OVERFLOW, 15},
    {S("00000000000000000000000000004000000000000000\r\n"), CHUNKED_MORE, ALL},
    /* line endings */
    {S("5\nhello\r\n0\r\n\r\n"), CHUNKED_ERR_BARE_LF, 1},
    {S("5;x\nhello\r\n"), CHUNKED_ERR_BARE_LF, 3},
    {S("5\rhello\r\n"), CHUNKED_ERR_BARE_CR, 2},
    {S("0\r\n\n"), CHUNKED_ERR_BARE_LF, 3},
    {S("0\r\n\r\r\n"), CHUNKED_ERR_BARE_CR, 4},
    {S("0\r\nX: y\n\r\n"), CHUNKED_ERR_BARE_LF, 7},
    {S("0\r\nX: y\rz\r\n\r\n"), CHUNKED_ERR_BARE_CR, 8},
    /* chunk-data must be followed by exactly CRLF */
    {S("5\r\nhello0\r\n\r\n"), CHUNKED_ERR_DATA_CRLF, 8},
    {S("5\r\nhello\n0\r\n\r\n"), CHUNKED_ERR_DATA_CRLF, 8},
    {S("5\r\nhello\r0\r\n\r\n"), CHUNKED_ERR_DATA_CRLF, 9},
    {S("3\r\nhello\r\n0\r\n\r\n"), CHUNKED_ERR_DATA_CRLF, 6}, /* size too small */
    {S("5\r\nhello \r\n"), CHUNKED_ERR_DATA_CRLF, 8},
    /* chunk-ext */
    {S("5;\r\n"), CHUNKED_ERR_EXT, 2},
    {S("5; a\r\n"), CHUNKED_ERR_EXT, 2},
    {S("5;a \r\n"), CHUNKED_ERR_EXT, 3},
    {S("5;a=\r\n"), CHUNKED_ERR_EXT, 4},
    {S("5;a=b=c\r\n"), CHUNKED_ERR_EXT, 5},
    {S("5;a=\"x\r\n"), CHUNKED_ERR_EXT, 6},
    {S("5;a=\"x\"y\r\n"), CHUNKED_ERR_EXT, 7},
    {S("5;a=\"\x01\"\r\n"), CHUNKED_ERR_EXT, 5},
    {S("5;a=\"\xc3\xa9\"\r\n"), CHUNKED_ERR_EXT, 5},
    {S("5;a=\"\\\x01\"\r\n"), CHUNKED_ERR_EXT, 6},
    {S("5;a\x7f\r\n"), CHUNKED_ERR_EXT, 3},
    {S("5;a\0\r\n"), CHUNKED_ERR_EXT, 3},
    {S("5;\"a\"\r\n"), CHUNKED_ERR_EXT, 2},
    {S("5;;\r\n"), CHUNKED_ERR_EXT, 2},
    {S("5,a\r\n"), CHUNKED_ERR_SIZE, 1},
    /* trailers */
    {S("0\r\n X: y\r\n\r\n"), CHUNKED_ERR_TRAILER, 3},
    {S("0\r\n\tX: y\r\n\r\n"), CHUNKED_ERR_TRAILER, 3},
    {S("0\r\nX: y\r\n z\r\n\r\n"), CHUNKED_ERR_TRAILER, 9}, /* obs-fold */
    {S("0\r\nX : y\r\n\r\n"), CHUNKED_ERR_TRAILER, 4},
    {S("0\r\nX\r\n\r\n"), CHUNKED_ERR_TRAILER, 4},
    {S("0\r\n: y\r\n\r\n"), CHUNKED_ERR_TRAILER, 3},
    {S("0\r\nX: a\0b\r\n\r\n"), CHUNKED_ERR_TRAILER, 7},
    {S("0\r\nX: a\x7f\r\n\r\n"), CHUNKED_ERR_TRAILER, 7},
    {S("0\r\nX(: y\r\n\r\n"), CHUNKED_ERR_TRAILER, 4},
    {S("0\r\nHTTP/1.1 200 OK\r\n\r\n"), CHUNKED_ERR_TRAILER, 7},
};

/* Feed in pieces of the given size (0: one call), return the result and the total consumed. */
static int feed_pieces(const char *in, size_t len, size_t piece, size_t *total)
{
	struct chunked_state s;
	chunked_init(&s);
	*total = 0;
	size_t pos = 0;
	int rc = CHUNKED_MORE;
	do {
		size_t n = piece == 0 || len - pos < piece ? len - pos : piece;
		/* each piece from an exact-size copy */
		char *copy = malloc(n ? n : 1);
		assert_non_null(copy);
		memcpy(copy, in + pos, n);
		size_t used = 99;
		rc = chunked_feed(&s, copy, n, &used);
		free(copy);
		assert_true(used <= n);
		if (rc == CHUNKED_MORE)
			assert_int_equal(used, n);
		*total += used;
		pos += n;
	} while (rc == CHUNKED_MORE && pos < len);
	return rc;
}

static void test_chunked_table(void **state)
{
	(void)state;
	for (size_t i = 0; i < N(chunk_cases); i++) {
		const struct chunk_case *c = &chunk_cases[i];
		size_t want = c->consumed == ALL ? c->len : c->consumed;
		size_t total;
		/* whole, then byte at a time, then every piece size: all identical */
		for (size_t piece = 0; piece <= c->len + 1; piece++) {
			int rc = feed_pieces(c->in, c->len, piece, &total);
			if (rc != c->expect || total != want)
				fail_msg("case %zu \"%s\" piece %zu: got %d (%s) consumed %zu, want %d "
				         "(%s) %zu",
				         i, c->in, piece, rc, http_msg_status_str(rc), total, c->expect,
				         http_msg_status_str(c->expect), want);
		}
	}
}

/* Every two-way split of the input: the same result as whole. */
static void test_chunked_every_split(void **state)
{
	(void)state;
	static const char body[] = "1a;n=\"v;\\\"\"\r\nabcdefghijklmnopqrstuvwxyz\r\n"
	                           "4\r\n\r\n\r\n\r\n0;z\r\nA: 1\r\nB-b: two  words\r\n\r\nNEXT";
	size_t len = sizeof(body) - 1;
	for (size_t cut = 0; cut <= len; cut++) {
		struct chunked_state s;
		size_t a = 0, b = 0;
		chunked_init(&s);
		int rc = chunked_feed(&s, body, cut, &a);
		if (rc == CHUNKED_MORE)
			rc = chunked_feed(&s, body + cut, len - cut, &b);
		assert_int_equal(rc, CHUNKED_DONE);
		assert_int_equal(a + b, len - 4);
	}
}

/* Decode in pieces of the given size (0: one call): the result, total consumed and payload. */
static int decode_pieces(const char *in, size_t len, size_t piece, size_t *total, char *payload,
                         size_t *plen)
{
	struct chunked_state s;
	chunked_init(&s);
	*total = *plen = 0;
	size_t pos = 0;
	int rc = CHUNKED_MORE;
	do {
		size_t n = piece == 0 || len - pos < piece ? len - pos : piece;
		size_t off = 0;
		do {
			size_t used = 99;
			struct http_view d = {NULL, 99};
			rc = chunked_decode(&s, in + pos + off, n - off, &used, &d);
			assert_true(used <= n - off);
			/* the payload is inside what was consumed */
			if (d.len > 0) {
				assert_true(d.p >= in + pos + off && d.p + d.len <= in + pos + off + used);
				memcpy(payload + *plen, d.p, d.len);
				*plen += d.len;
			} else {
				assert_null(d.p);
			}
			off += used;
			*total += used;
		} while (rc == CHUNKED_MORE && off < n);
		pos += n;
	} while (rc == CHUNKED_MORE && pos < len);
	return rc;
}

/* chunked_decode validates exactly as chunked_feed, and hands back the same payload however split. */
static void test_chunked_decode(void **state)
{
	(void)state;
	static char payload[256], first[256];
	for (size_t i = 0; i < N(chunk_cases); i++) {
		const struct chunk_case *c = &chunk_cases[i];
		size_t want = c->consumed == ALL ? c->len : c->consumed;
		size_t total, plen, first_len = 0;
		for (size_t piece = 0; piece <= c->len + 1; piece++) {
			int rc = decode_pieces(c->in, c->len, piece, &total, payload, &plen);
			if (rc != c->expect || total != want)
				fail_msg("case %zu \"%s\" piece %zu: decode got %d consumed %zu, want %d %zu",
				         i, c->in, piece, rc, total, c->expect, want);
			if (piece == 0) {
				memcpy(first, payload, plen);
				first_len = plen;
			} else if (plen != first_len || memcmp(payload, first, plen) != 0) {
				fail_msg("case %zu piece %zu: payload differs from the whole-input decode", i,
				         piece);
			}
		}
	}
	/* The payload of a known body, whatever the split. */
	static const char body[] = "1a;n=\"v;\\\"\"\r\nabcdefghijklmnopqrstuvwxyz\r\n"
	                           "4\r\n\r\n\r\n\r\n0;z\r\nA: 1\r\n\r\nNEXT";
	size_t len = sizeof(body) - 1, total, plen;
	for (size_t piece = 0; piece <= len; piece++) {
		assert_int_equal(decode_pieces(body, len, piece, &total, payload, &plen), CHUNKED_DONE);
		assert_int_equal(total, len - 4);
		assert_int_equal(plen, 30);
		assert_memory_equal(payload, "abcdefghijklmnopqrstuvwxyz\r\n\r\n", 30);
	}
	assert_string_equal(chunked_status_str(CHUNKED_ERR_EXT), "bad_chunk_ext");
	assert_string_equal(http_msg_status_str(CHUNKED_ERR_EXT), "bad_chunk_ext");
	assert_string_equal(chunked_status_str(HTTP_TARGET_HTTPS), "unknown");
}

static void test_chunked_sticky(void **state)
{
	(void)state;
	struct chunked_state s;
	size_t used = 99;
	chunked_init(&s);
	assert_int_equal(chunked_feed(&s, S("0\r\n\r\n"), &used), CHUNKED_DONE);
	assert_int_equal(used, 5);
	assert_int_equal(chunked_feed(&s, S("5\r\nhello"), &used), CHUNKED_DONE);
	assert_int_equal(used, 0);
	chunked_init(&s);
	assert_int_equal(chunked_feed(&s, S("x"), &used), CHUNKED_ERR_SIZE);
	assert_int_equal(chunked_feed(&s, S("0\r\n\r\n"), &used), CHUNKED_ERR_SIZE);
	assert_int_equal(used, 0);
	/* a zeroed state is a fresh one */
	struct chunked_state z;
	memset(&z, 0, sizeof(z));
	assert_int_equal(chunked_feed(&z, S("0\r\n\r\n"), &used), CHUNKED_DONE);
	/* no bytes: no change */
	chunked_init(&s);
	assert_int_equal(chunked_feed(&s, NULL, 0, &used), CHUNKED_MORE);
	assert_int_equal(used, 0);
}

static void test_chunked_limits(void **state)
{
	(void)state;
	char buf[CHUNKED_MAX_TRAILER + 64];
	size_t total;

	/* a chunk line of exactly CHUNKED_MAX_LINE bytes, then one more */
	for (size_t extra = 0; extra <= 1; extra++) {
		size_t n = 0;
		buf[n++] = '1';
		buf[n++] = ';';
		while (n < CHUNKED_MAX_LINE + extra)
			buf[n++] = 'e';
		memcpy(buf + n, "\r\nx\r\n0\r\n\r\n", 10);
		n += 10;
		int rc = feed_pieces(buf, n, 0, &total);
		if (extra == 0) {
			assert_int_equal(rc, CHUNKED_DONE);
			assert_int_equal(total, n);
		} else {
			assert_int_equal(rc, CHUNKED_ERR_LINE_TOO_LONG);
			assert_int_equal(total, CHUNKED_MAX_LINE); /* cut at the limit */
		}
		assert_int_equal(feed_pieces(buf, n, 1, &total), rc);
	}
	/* leading zeros count towards the line too */
	memset(buf, '0', CHUNKED_MAX_LINE + 1);
	assert_int_equal(feed_pieces(buf, CHUNKED_MAX_LINE + 1, 0, &total),
	                 CHUNKED_ERR_LINE_TOO_LONG);

	/* a trailer section of exactly CHUNKED_MAX_TRAILER bytes (final CRLF included), then one more */
	for (size_t extra = 0; extra <= 1; extra++) {
		size_t n = 0;
		memcpy(buf, "0\r\nX: ", 6);
		n = 6;
		while (n < 3 + CHUNKED_MAX_TRAILER + extra - 4)
			buf[n++] = 'v';
		memcpy(buf + n, "\r\n\r\n", 4);
		n += 4;
		int rc = feed_pieces(buf, n, 0, &total);
		if (extra == 0) {
			assert_int_equal(rc, CHUNKED_DONE);
			assert_int_equal(total, n);
		} else {
			assert_int_equal(rc, CHUNKED_ERR_TRAILER_TOO_LARGE);
			assert_int_equal(total, 3 + CHUNKED_MAX_TRAILER);
		}
		assert_int_equal(feed_pieces(buf, n, 7, &total), rc);
	}

	/* a huge chunk is streamed, not buffered: 2^62 bytes are just counted */
	struct chunked_state s;
	size_t used;
	chunked_init(&s);
	assert_int_equal(chunked_feed(&s, S("4000000000000000\r\n"), &used), CHUNKED_MORE);
	memset(buf, 'd', sizeof(buf));
	for (int i = 0; i < 100; i++) {
		assert_int_equal(chunked_feed(&s, buf, sizeof(buf), &used), CHUNKED_MORE);
		assert_int_equal(used, sizeof(buf));
	}
}

/* ---- head rewriting ----------------------------------------------------- */

/* Rewrite a request, check the exact output and that every shorter buffer gives 0. */
static void check_fwd_req(const char *head, enum http_conn_mode mode, const char *want)
{
	struct http_target t;
	struct http_framing f;
	char out[2048];
	const struct http_req *r = req_of(head);

	assert_int_equal(http_target_parse(r->target.p, r->target.len, &t), 0);
	assert_int_equal(http_req_framing(r, &f), 0);
	size_t n = http_forward_request_head(r, &t, &f, mode, out, sizeof(out));
	if (n != strlen(want) || memcmp(out, want, n) != 0)
		fail_msg("rewrote\n%s\ninto\n%.*s\nwant\n%s", head, (int)n, out, want);
	for (size_t k = 0; k < n; k++) {
		char *small = malloc(k ? k : 1);
		assert_non_null(small);
		assert_int_equal(http_forward_request_head(r, &t, &f, mode, small, k), 0);
		free(small);
	}
	/* it re-parses as a request with origin-form and the same framing */
	struct http_framing f2;
	assert_int_equal(http_parse_request(out, n, NULL, &g_req2), (int)n);
	assert_int_equal(http_target_parse(g_req2.target.p, g_req2.target.len, &t),
	                 HTTP_TARGET_ORIGIN_FORM);
	assert_int_equal(http_req_framing(&g_req2, &f2), 0);
	assert_int_equal(f2.kind, f.kind);
	assert_true(f2.length == f.length);
}

static void test_forward_request(void **state)
{
	(void)state;
	check_fwd_req("GET http://Example.COM./a/b?c=d HTTP/1.1\r\n"
	              "Host: example.com\r\nUser-Agent: curl/8.5.0\r\nAccept: */*\r\n"
	              "Proxy-Connection: Keep-Alive\r\n\r\n",
	              HTTP_CONN_KEEP_ALIVE,
	              "GET /a/b?c=d HTTP/1.1\r\nHost: example.com\r\nUser-Agent: curl/8.5.0\r\n"
	              "Accept: */*\r\nVia: 1.1 portcullis\r\nConnection: keep-alive\r\n\r\n");
	/* every hop-by-hop field, those named by Connection, Proxy-Authorization */
	check_fwd_req("POST http://a:8080?q HTTP/1.1\r\n"
	              "Connection: X-Secret, keep-alive\r\nconnection: x-other\r\n"
	              "Keep-Alive: timeout=5\r\nTE: trailers\r\nTrailer: X-Sum\r\n"
	              "Upgrade: websocket\r\nProxy-Authorization: Basic Zm9vOmJhcg==\r\n"
	              "Proxy-Authenticate: Basic\r\nProxy-Connection: close\r\n"
	              "X-SECRET: 1\r\nX-Other: 2\r\nX-Kept: 3\r\nHost: a:8080\r\n"
	              "Content-Length: 5, 5\r\nContent-Length: 005\r\n\r\n",
	              HTTP_CONN_CLOSE,
	              "POST /?q HTTP/1.1\r\nHost: a:8080\r\nX-Kept: 3\r\n"
	              "Content-Length: 5\r\nVia: 1.1 portcullis\r\nConnection: close\r\n\r\n");
	/* Via appended to the received list; HTTP/1.0 received → "1.0 portcullis" */
	check_fwd_req("GET http://[::1]:81/ HTTP/1.0\r\nVia: 1.0 fred, 1.1 p.example.net\r\n"
	              "X: y\r\nVia:\r\nvia: 1.1 nowhere (comment)\r\n\r\n",
	              HTTP_CONN_CLOSE,
	              "GET / HTTP/1.1\r\nHost: [::1]:81\r\nX: y\r\n"
	              "Via: 1.0 fred, 1.1 p.example.net, 1.1 nowhere (comment), 1.0 portcullis\r\n"
	              "Connection: close\r\n\r\n");
	/* a Via named by Connection is dropped; chunked re-emitted canonically */
	check_fwd_req("PUT http://10.1.2.3/up HTTP/1.1\r\nVia: 1.1 inner\r\nConnection: via\r\n"
	              "transfer-encoding: CHUNKED\r\n\r\n",
	              HTTP_CONN_KEEP_ALIVE,
	              "PUT /up HTTP/1.1\r\nHost: 10.1.2.3\r\nTransfer-Encoding: chunked\r\n"
	              "Via: 1.1 portcullis\r\nConnection: keep-alive\r\n\r\n");
	/* hop-by-hop abuse: naming the framing or Host in Connection changes nothing */
	check_fwd_req("POST http://a/ HTTP/1.1\r\nConnection: content-length, host, "
	              "transfer-encoding\r\nContent-Length: 3\r\nHost: a\r\n\r\n",
	              HTTP_CONN_KEEP_ALIVE,
	              "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n"
	              "Via: 1.1 portcullis\r\nConnection: keep-alive\r\n\r\n");
	/* upgrade mode keeps Upgrade even though Connection names it */
	check_fwd_req("GET http://a/ws HTTP/1.1\r\nConnection: Upgrade, HTTP2-Settings\r\n"
	              "Upgrade: websocket\r\nHTTP2-Settings: x\r\nSec-WebSocket-Key: k\r\n\r\n",
	              HTTP_CONN_UPGRADE,
	              "GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nSec-WebSocket-Key: k\r\n"
	              "Via: 1.1 portcullis\r\nConnection: upgrade\r\n\r\n");
	/* obs-text and empty values are copied as received */
	check_fwd_req("GET http://a/ HTTP/1.1\r\nX-A: caf\xc3\xa9\r\nX-B:\r\n\r\n",
	              HTTP_CONN_KEEP_ALIVE,
	              "GET / HTTP/1.1\r\nHost: a\r\nX-A: caf\xc3\xa9\r\nX-B: \r\n"
	              "Via: 1.1 portcullis\r\nConnection: keep-alive\r\n\r\n");
}

static void test_forward_request_refuses(void **state)
{
	(void)state;
	struct http_target t;
	struct http_framing f = {HTTP_FRAMING_CLOSE, 0};
	char out[512];
	const struct http_req *r = req_of("GET http://a/ HTTP/1.1\r\n\r\n");
	assert_int_equal(http_target_parse(r->target.p, r->target.len, &t), 0);
	/* a request is never close-delimited */
	assert_int_equal(http_forward_request_head(r, &t, &f, HTTP_CONN_KEEP_ALIVE, out, 512), 0);
	/* upgrade mode without an Upgrade field */
	f.kind = HTTP_FRAMING_NONE;
	assert_int_equal(http_forward_request_head(r, &t, &f, HTTP_CONN_UPGRADE, out, 512), 0);
	assert_int_equal(http_forward_request_head(r, &t, &f, HTTP_CONN_KEEP_ALIVE, NULL, 512), 0);
	assert_true(http_forward_request_head(r, &t, &f, HTTP_CONN_KEEP_ALIVE, out, 512) > 0);
}

/* At most HTTP_MAX_CONNECTION_OPTIONS connection options, over all Connection fields. */
static void test_connection_options_bounded(void **state)
{
	(void)state;
	char head[4096], out[8192];
	for (int k = 31; k <= 33; k++) {
		size_t n = (size_t)snprintf(head, sizeof(head), "GET http://a/ HTTP/1.1\r\nConnection: ,");
		for (int i = 0; i < k; i++)
			n += (size_t)snprintf(head + n, sizeof(head) - n, "%sx-%d", i == 16 ? "\r\nConnection: " :
			                      i ? ", " : "", i);
		n += (size_t)snprintf(head + n, sizeof(head) - n, "\r\nX-5: dropped\r\nX-99: kept\r\n\r\n");
		const struct http_req *r = req_of(head);
		struct http_target t;
		struct http_framing f = {HTTP_FRAMING_NONE, 0};
		assert_int_equal(http_target_parse(r->target.p, r->target.len, &t), 0);
		assert_int_equal(http_connection_options(r->headers, r->n_headers),
		                 k <= HTTP_MAX_CONNECTION_OPTIONS ? (size_t)k : HTTP_MAX_CONNECTION_OPTIONS + 1);
		size_t len = http_forward_request_head(r, &t, &f, HTTP_CONN_CLOSE, out, sizeof(out));
		if (k > HTTP_MAX_CONNECTION_OPTIONS) {
			assert_int_equal(len, 0);
			continue;
		}
		assert_true(len > 0);
		out[len] = '\0';
		assert_null(strstr(out, "X-5:"));
		assert_non_null(strstr(out, "X-99: kept"));
	}
}

static void check_fwd_resp(const char *head, bool was_head, enum http_conn_mode mode,
                           const char *want)
{
	struct http_framing f, f2;
	char out[2048];
	const struct http_resp *r = resp_of(head);

	assert_int_equal(http_resp_framing(r, was_head, &f), 0);
	size_t n = http_forward_response_head(r, &f, mode, out, sizeof(out));
	if (n != strlen(want) || memcmp(out, want, n) != 0)
		fail_msg("rewrote\n%s\ninto\n%.*s\nwant\n%s", head, (int)n, out, want);
	for (size_t k = 0; k < n; k++)
		assert_int_equal(http_forward_response_head(r, &f, mode, out, k), 0);
	n = http_forward_response_head(r, &f, mode, out, sizeof(out));
	assert_int_equal(http_parse_response(out, n, NULL, &g_resp2), (int)n);
	assert_int_equal(http_resp_framing(&g_resp2, was_head, &f2), 0);
	assert_int_equal(f2.kind, f.kind);
	assert_true(f2.length == f.length);
}

static void test_forward_response(void **state)
{
	(void)state;
	check_fwd_resp("HTTP/1.1 200 OK\r\nServer: x\r\nContent-Length: 5\r\n"
	               "Keep-Alive: timeout=5\r\nConnection: keep-alive, X-Hop\r\nX-Hop: 1\r\n"
	               "Proxy-Authenticate: Basic\r\nTrailer: X-Sum\r\n\r\n",
	               false, HTTP_CONN_KEEP_ALIVE,
	               "HTTP/1.1 200 OK\r\nServer: x\r\nContent-Length: 5\r\n"
	               "Via: 1.1 portcullis\r\nConnection: keep-alive\r\n\r\n");
	/* chunked with a coding we do not decode: relayed as received */
	check_fwd_resp("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\nVia: 1.1 cdn\r\n"
	               "transfer-encoding: chunked\r\n\r\n",
	               false, HTTP_CONN_KEEP_ALIVE,
	               "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n"
	               "Via: 1.1 cdn, 1.1 portcullis\r\nConnection: keep-alive\r\n\r\n");
	/* close-delimited forces close; HTTP/1.0 received */
	check_fwd_resp("HTTP/1.0 200\r\nX: y\r\n\r\n", false, HTTP_CONN_KEEP_ALIVE,
	               "HTTP/1.1 200 \r\nX: y\r\nVia: 1.0 portcullis\r\nConnection: close\r\n\r\n");
	check_fwd_resp("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", false,
	               HTTP_CONN_KEEP_ALIVE,
	               "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\nVia: 1.1 portcullis\r\n"
	               "Connection: close\r\n\r\n");
	/* HEAD: the announced length stays, normalised; TE goes */
	check_fwd_resp("HTTP/1.1 200 OK\r\nContent-Length: 42, 42\r\n\r\n", true,
	               HTTP_CONN_KEEP_ALIVE,
	               "HTTP/1.1 200 OK\r\nContent-Length: 42\r\nVia: 1.1 portcullis\r\n"
	               "Connection: keep-alive\r\n\r\n");
	check_fwd_resp("HTTP/1.1 200 OK\r\nContent-Length: 1, 2\r\nTransfer-Encoding: chunked\r\n\r\n",
	               true, HTTP_CONN_CLOSE,
	               "HTTP/1.1 200 OK\r\nVia: 1.1 portcullis\r\nConnection: close\r\n\r\n");
	check_fwd_resp("HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\nContent-Length: 7\r\n\r\n",
	               false, HTTP_CONN_KEEP_ALIVE,
	               "HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\nContent-Length: 7\r\n"
	               "Via: 1.1 portcullis\r\nConnection: keep-alive\r\n\r\n");
	/* 204 and 1xx MUST NOT carry Content-Length; an interim 1xx gets no Connection */
	check_fwd_resp("HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n", false,
	               HTTP_CONN_KEEP_ALIVE,
	               "HTTP/1.1 204 No Content\r\nVia: 1.1 portcullis\r\n"
	               "Connection: keep-alive\r\n\r\n");
	check_fwd_resp("HTTP/1.1 100 Continue\r\n\r\n", false, HTTP_CONN_KEEP_ALIVE,
	               "HTTP/1.1 100 Continue\r\nVia: 1.1 portcullis\r\n\r\n");
	check_fwd_resp("HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\n", false,
	               HTTP_CONN_CLOSE,
	               "HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n"
	               "Via: 1.1 portcullis\r\n\r\n");
	/* 101 with upgrades allowed */
	check_fwd_resp("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
	               "Connection: Upgrade\r\nSec-WebSocket-Accept: a\r\n\r\n",
	               false, HTTP_CONN_UPGRADE,
	               "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
	               "Sec-WebSocket-Accept: a\r\nVia: 1.1 portcullis\r\nConnection: upgrade\r\n\r\n");
	/* ... and without an Upgrade field, upgrade mode is refused */
	struct http_framing f = {HTTP_FRAMING_NONE, 0};
	char out[256];
	assert_int_equal(http_forward_response_head(resp_of("HTTP/1.1 101 S\r\n\r\n"), &f,
	                                            HTTP_CONN_UPGRADE, out, sizeof(out)),
	                 0);
}

static void test_status_strings(void **state)
{
	(void)state;
	static const int codes[] = {
	    HTTP_TARGET_ORIGIN_FORM,       HTTP_TARGET_HTTPS,
	    HTTP_TARGET_BAD,               HTTP_TARGET_BAD_AUTHORITY,
	    HTTP_TARGET_BAD_PATH,          HTTP_FRAMING_ERR_TE_AND_CL,
	    HTTP_FRAMING_ERR_TE_HTTP10,    HTTP_FRAMING_ERR_TE,
	    HTTP_FRAMING_ERR_CL_INVALID,   HTTP_FRAMING_ERR_CL_MISMATCH,
	    CHUNKED_ERR_SIZE,              CHUNKED_ERR_SIZE_OVERFLOW,
	    CHUNKED_ERR_DATA_CRLF,         CHUNKED_ERR_BARE_LF,
	    CHUNKED_ERR_BARE_CR,           CHUNKED_ERR_EXT,
	    CHUNKED_ERR_LINE_TOO_LONG,     CHUNKED_ERR_TRAILER,
	    CHUNKED_ERR_TRAILER_TOO_LARGE,
	};
	for (size_t i = 0; i < N(codes); i++) {
		const char *s = http_msg_status_str(codes[i]);
		assert_string_not_equal(s, "unknown");
		for (size_t j = 0; j < i; j++) {
			assert_int_not_equal(codes[i], codes[j]);
			assert_string_not_equal(s, http_msg_status_str(codes[j]));
		}
	}
	assert_string_equal(http_msg_status_str(0), "unknown");
	assert_string_equal(http_msg_status_str(-999), "unknown");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_target_table),
	    cmocka_unit_test(test_target_embedded_nul),
	    cmocka_unit_test(test_origin_target),
	    cmocka_unit_test(test_host_header_matches),
	    cmocka_unit_test(test_req_framing_table),
	    cmocka_unit_test(test_req_framing_head_parser_refuses),
	    cmocka_unit_test(test_resp_parse_table),
	    cmocka_unit_test(test_resp_parse_fields),
	    cmocka_unit_test(test_resp_framing_matrix),
	    cmocka_unit_test(test_keep_alive),
	    cmocka_unit_test(test_chunked_table),
	    cmocka_unit_test(test_chunked_every_split),
	    cmocka_unit_test(test_chunked_decode),
	    cmocka_unit_test(test_chunked_sticky),
	    cmocka_unit_test(test_chunked_limits),
	    cmocka_unit_test(test_forward_request),
	    cmocka_unit_test(test_forward_request_refuses),
	    cmocka_unit_test(test_connection_options_bounded),
	    cmocka_unit_test(test_forward_response),
	    cmocka_unit_test(test_status_strings),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
