/* Unit tests for the HTTP/1.1 request-head parser (proxy/http_parse.c). */
#include "http_parse.h"

#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

/* "whole input is the head" marker for the table's expect column. */
#define FULL INT_MAX
/* A string literal and its length, NULs included. */
#define S(lit) lit, sizeof(lit) - 1

#define RL "CONNECT example.com:443 HTTP/1.1\r\n"

/* ---- helpers ------------------------------------------------------------- */

/* Parse n bytes of s from an exact-size heap copy, so ASan flags any read past n. */
static int parse_exact(const char *s, size_t n, const struct http_limits *lim)
{
	struct http_req r;
	char *copy = malloc(n ? n : 1);
	assert_non_null(copy);
	if (n)
		memcpy(copy, s, n);
	int rc = http_parse_request(copy, n, lim, &r);
	free(copy);
	return rc;
}

/*
 * Feed s byte by byte (every prefix, each in an exact-size buffer).  Every
 * prefix must answer NEED_MORE or the final answer, and once final it must
 * stay final.  Returns the shortest prefix length that gave a final answer,
 * or 0 if none did.
 */
static size_t check_prefixes(const char *s, size_t n, const struct http_limits *lim, int expect)
{
	size_t first = 0;
	for (size_t k = 0; k <= n; k++) {
		int rc = parse_exact(s, k, lim);
		if (rc == HTTP_NEED_MORE) {
			if (first != 0)
				fail_msg("prefix %zu: need_more after final at %zu", k, first);
			continue;
		}
		if (rc != expect)
			fail_msg("prefix %zu: got %d (%s), want %d (%s)", k, rc,
			         http_status_str(rc), expect, http_status_str(expect));
		if (rc > 0)
			assert_true((size_t)rc <= k);
		if (first == 0)
			first = k;
	}
	return first;
}

static void assert_view(struct http_view v, const char *want)
{
	assert_non_null(v.p);
	if (v.len != strlen(want) || memcmp(v.p, want, v.len) != 0)
		fail_msg("view \"%.*s\" != \"%s\"", (int)v.len, v.p, want);
}

static void assert_view_inside(struct http_view v, const char *buf, size_t len)
{
	assert_true(v.p >= buf);
	assert_true(v.p + v.len <= buf + len);
}

static char *xmalloc(size_t n)
{
	char *p = malloc(n ? n : 1);
	assert_non_null(p);
	return p;
}

/* "CONNECT <target> HTTP/1.1\r\n" exactly line_len bytes long (target of 'a's). */
static size_t put_request_line(char *buf, size_t line_len)
{
	const char *pre = "CONNECT ", *post = " HTTP/1.1\r\n";
	size_t fixed = strlen(pre) + strlen(post);
	assert_true(line_len > fixed);
	memcpy(buf, pre, strlen(pre));
	memset(buf + strlen(pre), 'a', line_len - fixed);
	memcpy(buf + line_len - strlen(post), post, strlen(post));
	return line_len;
}

/* "X-Pad: <a...>\r\n" exactly line_len bytes long (line_len >= 8). */
static size_t put_field_line(char *buf, size_t line_len)
{
	assert_true(line_len >= 8);
	memcpy(buf, "X-Pad:", 6);
	memset(buf + 6, 'v', line_len - 8);
	memcpy(buf + line_len - 2, "\r\n", 2);
	return line_len;
}

/*
 * A complete head of exactly total bytes: the request line RL, then padding
 * field lines of at most line_max bytes each, then the empty line.
 */
static char *make_head(size_t total, size_t line_max, size_t *n_fields)
{
	char *buf = xmalloc(total);
	size_t pos = strlen(RL), left;
	assert_true(total >= pos + 2);
	memcpy(buf, RL, pos);
	left = total - pos - 2;
	*n_fields = 0;
	while (left > 0) {
		size_t chunk = left < line_max ? left : line_max;
		if (left - chunk > 0 && left - chunk < 8)
			chunk = left - 8;
		assert_true(chunk >= 8);
		pos += put_field_line(buf + pos, chunk);
		left -= chunk;
		(*n_fields)++;
	}
	memcpy(buf + pos, "\r\n", 2);
	assert_int_equal(pos + 2, total);
	return buf;
}

/* RL followed by n_fields lines "X: a\r\n" and the empty line. */
static char *make_fields(size_t n_fields, size_t *len)
{
	size_t total = strlen(RL) + 6 * n_fields + 2, pos = strlen(RL);
	char *buf = xmalloc(total);
	memcpy(buf, RL, pos);
	for (size_t i = 0; i < n_fields; i++, pos += 6)
		memcpy(buf + pos, "X: a\r\n", 6);
	memcpy(buf + pos, "\r\n", 2);
	*len = total;
	return buf;
}

/* ---- the table ----------------------------------------------------------- */

struct tcase {
	const char *name;
	const char *in;
	size_t len;
	int expect; /* FULL: whole input is the head */
	size_t at;  /* when non-zero: the shortest prefix that gives the answer */
};

static const struct tcase cases[] = {
    /* valid */
    {"connect authority", S(RL "Host: example.com:443\r\n\r\n"), FULL, 0},
    {"connect [v6]:port",
     S("CONNECT [2001:db8::1]:443 HTTP/1.1\r\nHost: [2001:db8::1]:443\r\n\r\n"), FULL, 0},
    {"connect http/1.0 no fields", S("CONNECT example.com:443 HTTP/1.0\r\n\r\n"), FULL, 0},
    {"curl style",
     S(RL
       "Host: example.com:443\r\nUser-Agent: curl/8.5.0\r\nProxy-Connection: Keep-Alive\r\n\r\n"),
     FULL, 0},
    {"absolute-form GET", S("GET http://example.com/a?b=c#d HTTP/1.1\r\nHost: example.com\r\n\r\n"),
     FULL, 0},
    {"asterisk-form", S("OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n"), FULL, 0},
    {"every tchar in method", S("!#$%&'*+-.^_`|~09azAZ / HTTP/1.1\r\n\r\n"), FULL, 0},
    {"every tchar in name", S(RL "!#$%&'*+-.^_`|~09azAZ: v\r\n\r\n"), FULL, 0},
    {"empty value", S(RL "X-Empty:\r\n\r\n"), FULL, 0},
    {"empty value with OWS", S(RL "X-Empty: \t \r\n\r\n"), FULL, 0},
    {"obs-text in value", S(RL "X-Name: caf\xc3\xa9 \x80\xff\r\n\r\n"), FULL, 0},
    {"HTAB inside value", S(RL "X: a\tb\r\n\r\n"), FULL, 0},
    {"colons in value", S(RL "X: a:b::\r\n\r\n"), FULL, 0},
    {"all VCHAR in target", S("GET !\"#$%&'()*+,-./09:;<=>?@AZ[\\]^_`az{|}~ HTTP/1.1\r\n\r\n"),
     FULL, 0},
    /* incomplete */
    {"empty input", S(""), HTTP_NEED_MORE, 0},
    {"request line only", S(RL), HTTP_NEED_MORE, 0},
    {"ends in CR", S(RL "Host: a\r\n\r"), HTTP_NEED_MORE, 0},
    {"ends in field CR", S(RL "Host: a\r"), HTTP_NEED_MORE, 0},
    /* line endings (RFC 9112 §2.2) */
    {"leading CRLF", S("\r\nCONNECT a:1 HTTP/1.1\r\n\r\n"), HTTP_ERR_SYNTAX, 1},
    {"leading LF", S("\nCONNECT a:1 HTTP/1.1\r\n\r\n"), HTTP_ERR_BARE_LF, 1},
    {"bare LF ends request line", S("CONNECT a:1 HTTP/1.1\nHost: a\r\n\r\n"), HTTP_ERR_BARE_LF, 21},
    {"bare LF ends field", S(RL "Host: a\n\r\n"), HTTP_ERR_BARE_LF, 34 + 8},
    {"bare LF as empty line", S(RL "Host: a\r\n\n"), HTTP_ERR_BARE_LF, 34 + 10},
    {"LF LF", S("CONNECT a:1 HTTP/1.1\n\n"), HTTP_ERR_BARE_LF, 21},
    {"bare LF in value", S(RL "X: a\nb\r\n\r\n"), HTTP_ERR_BARE_LF, 34 + 5},
    {"bare CR in request line", S("CONNECT a:1\rHTTP/1.1\r\n\r\n"), HTTP_ERR_SYNTAX, 13},
    {"bare CR in value", S(RL "X: a\rb\r\n\r\n"), HTTP_ERR_SYNTAX, 34 + 6},
    {"CR CR LF", S(RL "X: a\r\r\n\r\n"), HTTP_ERR_SYNTAX, 34 + 6},
    {"bare CR as empty line", S(RL "\rX"), HTTP_ERR_SYNTAX, 34 + 2},
    /* control bytes (RFC 9110 §5.5) */
    {"NUL in value", S(RL "X: a\0b\r\n\r\n"), HTTP_ERR_BAD_CHAR, 34 + 5},
    {"NUL in name", S(RL "X\0: a\r\n\r\n"), HTTP_ERR_BAD_CHAR, 34 + 2},
    {"NUL in method", S("CON\0NECT a:1 HTTP/1.1\r\n\r\n"), HTTP_ERR_BAD_CHAR, 4},
    {"NUL in target", S("CONNECT a\0:1 HTTP/1.1\r\n\r\n"), HTTP_ERR_BAD_CHAR, 10},
    {"NUL first", S("\0"), HTTP_ERR_BAD_CHAR, 1},
    {"DEL in value", S(RL "X: a\x7f\r\n\r\n"), HTTP_ERR_BAD_CHAR, 34 + 5},
    {"DEL in target", S("CONNECT a\x7f:1 HTTP/1.1\r\n\r\n"), HTTP_ERR_BAD_CHAR, 10},
    {"VT in value", S(RL "X: a\x0b\r\n\r\n"), HTTP_ERR_BAD_CHAR, 34 + 5},
    {"ESC in value", S(RL "X: \x1b[31m\r\n\r\n"), HTTP_ERR_BAD_CHAR, 34 + 4},
    {"0x01 in version", S("CONNECT a:1 HTTP/1.1\x01\r\n\r\n"), HTTP_ERR_BAD_CHAR, 21},
    {"TLS ClientHello to plain port", S("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"),
     HTTP_ERR_BAD_CHAR, 1},
    /* request line (RFC 9112 §3) */
    {"HTAB as separator", S("CONNECT\ta:1 HTTP/1.1\r\n\r\n"), HTTP_ERR_SYNTAX, 0},
    {"HTAB in target", S("CONNECT a:1\t HTTP/1.1\r\n\r\n"), HTTP_ERR_SYNTAX, 0},
    {"HTAB before version", S("CONNECT a:1\tHTTP/1.1\r\n\r\n"), HTTP_ERR_SYNTAX, 0},
    {"double SP after method", S("CONNECT  a:1 HTTP/1.1\r\n\r\n"), HTTP_ERR_SYNTAX, 0},
    {"double SP before version", S("CONNECT a:1  HTTP/1.1\r\n\r\n"), HTTP_ERR_SYNTAX, 0},
    {"leading SP", S(" CONNECT a:1 HTTP/1.1\r\n\r\n"), HTTP_ERR_SYNTAX, 0},
    {"empty method", S(" / HTTP/1.1\r\n\r\n"), HTTP_ERR_SYNTAX, 0},
    {"empty target", S("CONNECT  HTTP/1.1\r\n\r\n"), HTTP_ERR_SYNTAX, 0},
    {"empty version", S("CONNECT a:1 \r\n\r\n"), HTTP_ERR_SYNTAX, 0},
    {"trailing SP after version", S("CONNECT a:1 HTTP/1.1 \r\n\r\n"), HTTP_ERR_SYNTAX, 0},
    {"no version", S("CONNECT a:1\r\n\r\n"), HTTP_ERR_SYNTAX, 0},
    {"no target", S("CONNECT HTTP/1.1\r\n\r\n"), HTTP_ERR_SYNTAX, 0},
    {"HTTP/0.9 style", S("GET /\r\n\r\n"), HTTP_ERR_SYNTAX, 0},
    {"empty request line", S("\r\n"), HTTP_ERR_SYNTAX, 1},
    {"SP only", S(" \r\n\r\n"), HTTP_ERR_SYNTAX, 0},
    {"method non-token", S("CON(NECT a:1 HTTP/1.1\r\n\r\n"), HTTP_ERR_SYNTAX, 0},
    {"method obs-text",
     S("CONN\xc3\x89"
       "CT a:1 HTTP/1.1\r\n\r\n"),
     HTTP_ERR_SYNTAX, 0},
    {"target obs-text", S("CONNECT caf\xc3\xa9:443 HTTP/1.1\r\n\r\n"), HTTP_ERR_SYNTAX, 0},
    {"three SP-separated words too many", S("CONNECT a:1 b HTTP/1.1\r\n\r\n"), HTTP_ERR_SYNTAX, 0},
    {"lowercase http", S("CONNECT a:1 http/1.1\r\n\r\n"), HTTP_ERR_SYNTAX, 0},
    {"HTTP/2", S("CONNECT a:1 HTTP/2\r\n\r\n"), HTTP_ERR_SYNTAX, 0},
    {"HTTP/1.10", S("CONNECT a:1 HTTP/1.10\r\n\r\n"), HTTP_ERR_SYNTAX, 0},
    {"HTTP/1,1", S("CONNECT a:1 HTTP/1,1\r\n\r\n"), HTTP_ERR_SYNTAX, 0},
    {"HTTPS/1.1", S("CONNECT a:1 HTTPS/1.1\r\n\r\n"), HTTP_ERR_SYNTAX, 0},
    {"HTTP/a.1", S("CONNECT a:1 HTTP/a.1\r\n\r\n"), HTTP_ERR_SYNTAX, 0},
    {"HTTP/2.0", S("CONNECT a:1 HTTP/2.0\r\n\r\n"), HTTP_ERR_VERSION, 0},
    {"HTTP/1.2", S("CONNECT a:1 HTTP/1.2\r\n\r\n"), HTTP_ERR_VERSION, 0},
    {"HTTP/0.9", S("CONNECT a:1 HTTP/0.9\r\n\r\n"), HTTP_ERR_VERSION, 0},
    {"HTTP/3.0", S("CONNECT a:1 HTTP/3.0\r\n\r\n"), HTTP_ERR_VERSION, 0},
    {"version error before CRLF known", S("CONNECT a:1 HTTP/2.0\r\n"), HTTP_ERR_VERSION, 22},
    /* field lines (RFC 9112 §5) */
    {"empty field name", S(RL ": x\r\n\r\n"), HTTP_ERR_SYNTAX, 0},
    {"no colon", S(RL "Host example.com\r\n\r\n"), HTTP_ERR_SYNTAX, 0},
    {"SP before colon", S(RL "Host : example.com\r\n\r\n"), HTTP_ERR_SYNTAX, 0},
    {"HTAB before colon", S(RL "Host\t: example.com\r\n\r\n"), HTTP_ERR_SYNTAX, 0},
    {"SP inside name", S(RL "X Y: a\r\n\r\n"), HTTP_ERR_SYNTAX, 0},
    {"obs-text in name", S(RL "X\xff: a\r\n\r\n"), HTTP_ERR_SYNTAX, 0},
    {"separator in name", S(RL "X/Y: a\r\n\r\n"), HTTP_ERR_SYNTAX, 0},
    {"obs-fold SP", S(RL "X: a\r\n b\r\n\r\n"), HTTP_ERR_OBS_FOLD, 34 + 7},
    {"obs-fold HTAB", S(RL "X: a\r\n\tb\r\n\r\n"), HTTP_ERR_OBS_FOLD, 34 + 7},
    {"SP line after request line", S(RL " Host: a\r\n\r\n"), HTTP_ERR_OBS_FOLD, 34 + 1},
    {"duplicate Host", S(RL "Host: a\r\nHost: a\r\n\r\n"), HTTP_ERR_DUP_HOST, 0},
    {"duplicate Host other case", S(RL "Host: a\r\nhOsT: b\r\n\r\n"), HTTP_ERR_DUP_HOST, 0},
    {"duplicate empty Host", S(RL "HOST:\r\nhost:\r\n\r\n"), HTTP_ERR_DUP_HOST, 0},
    {"duplicate Host found before empty line", S(RL "Host: a\r\nHost: b\r\n"), HTTP_ERR_DUP_HOST,
     34 + 18},
    /* errors are sticky: what follows the first error does not matter */
    {"bad char then bare LF", S(RL "X: \0\n"), HTTP_ERR_BAD_CHAR, 34 + 4},
    {"bare LF then bad char", S(RL "X: \n\0"), HTTP_ERR_BARE_LF, 34 + 4},
};

static void test_table(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct tcase *c = &cases[i];
		int want = c->expect == FULL ? (int)c->len : c->expect;
		struct http_req r;
		int rc = http_parse_request(c->in, c->len, NULL, &r);
		if (rc != want)
			fail_msg("case \"%s\": got %d (%s), want %d (%s)", c->name, rc,
			         http_status_str(rc), want, http_status_str(want));
		size_t first = check_prefixes(c->in, c->len, NULL, want);
		if (c->expect == FULL && first != c->len)
			fail_msg("case \"%s\": complete at prefix %zu, want %zu", c->name, first,
			         c->len);
		if (c->at != 0 && first != c->at)
			fail_msg("case \"%s\": answered at prefix %zu, want %zu", c->name, first,
			         c->at);
	}
}

/* ---- every byte in every position --------------------------------------- */

/* Oracles written from the RFCs, independent of the parser's own tables. */
static int is_tchar_rfc(unsigned c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	       (c != 0 && strchr("!#$%&'*+-.^_`|~", (int)c) != NULL);
}

/* What a byte that breaks the line structure or is a control byte gives; 0 if neither. */
static int line_level_error(unsigned c)
{
	if (c == '\n')
		return HTTP_ERR_BARE_LF;
	if (c == '\r')
		return HTTP_ERR_SYNTAX; /* followed by a non-LF in these tests */
	if ((c < 0x20 && c != '\t') || c == 0x7f)
		return HTTP_ERR_BAD_CHAR;
	return 0;
}

static void expect_byte(const char *fmt_pre, unsigned b, const char *post, int want)
{
	char buf[128];
	size_t n = strlen(fmt_pre);
	memcpy(buf, fmt_pre, n);
	buf[n++] = (char)b;
	memcpy(buf + n, post, strlen(post));
	n += strlen(post);
	int w = want == FULL ? (int)n : want;
	int rc = parse_exact(buf, n, NULL);
	if (rc != w)
		fail_msg("byte 0x%02x after \"%s\": got %d (%s), want %d (%s)", b, fmt_pre, rc,
		         http_status_str(rc), w, http_status_str(w));
	check_prefixes(buf, n, NULL, w);
}

static void test_every_byte(void **state)
{
	(void)state;
	for (unsigned b = 0; b < 256; b++) {
		int le = line_level_error(b);
		/* in a field value: HTAB, SP, VCHAR and obs-text are allowed (RFC 9110 §5.5) */
		expect_byte(RL "X: a", b, "b\r\n\r\n", le ? le : FULL);
		/* in a field name: tchar only; ':' just ends the name early */
		expect_byte(RL "X", b, "Y: a\r\n\r\n",
		            le                              ? le
		            : (is_tchar_rfc(b) || b == ':') ? FULL
		                                            : HTTP_ERR_SYNTAX);
		/* in the method: tchar only */
		expect_byte("G", b, "T / HTTP/1.1\r\n\r\n",
		            le                ? le
		            : is_tchar_rfc(b) ? FULL
		                              : HTTP_ERR_SYNTAX);
		/* in the request-target: VCHAR only */
		expect_byte("GET /", b, "/ HTTP/1.1\r\n\r\n",
		            le                       ? le
		            : (b > 0x20 && b < 0x7f) ? FULL
		                                     : HTTP_ERR_SYNTAX);
	}
}

/* ---- what a valid request yields ---------------------------------------- */

static void test_connect_fields(void **state)
{
	(void)state;
	static const char req[] = RL "Host: example.com:443\r\n"
	                             "User-Agent: curl/8.5.0\r\n"
	                             "Proxy-Connection: Keep-Alive\r\n\r\n";
	struct http_req r;
	assert_int_equal(http_parse_request(req, sizeof(req) - 1, NULL, &r), sizeof(req) - 1);
	assert_int_equal(r.method_kind, HTTP_M_CONNECT);
	assert_view(r.method, "CONNECT");
	assert_view(r.target, "example.com:443");
	assert_int_equal(r.version_minor, 1);
	assert_int_equal(r.n_headers, 3);
	assert_view(r.headers[0].name, "Host");
	assert_view(r.headers[0].value, "example.com:443");
	assert_view(r.headers[1].name, "User-Agent");
	assert_view(r.headers[1].value, "curl/8.5.0");
	assert_view(r.headers[2].name, "Proxy-Connection");
	assert_view(r.headers[2].value, "Keep-Alive");
	assert_true(r.has_host);
	assert_view(r.host, "example.com:443");
	assert_ptr_equal(r.host.p, r.headers[0].value.p);
	assert_false(r.has_proxy_authorization);
	assert_int_equal(r.n_content_length, 0);
	assert_null(r.content_length.p);
	assert_int_equal(r.n_transfer_encoding, 0);
	assert_null(r.transfer_encoding.p);
	assert_false(r.connection_close);
	/* views are into the caller's buffer, not copies */
	assert_view_inside(r.method, req, sizeof(req) - 1);
	assert_view_inside(r.target, req, sizeof(req) - 1);
	for (size_t i = 0; i < r.n_headers; i++) {
		assert_view_inside(r.headers[i].name, req, sizeof(req) - 1);
		assert_view_inside(r.headers[i].value, req, sizeof(req) - 1);
	}
	/* entries past n_headers stay zero */
	assert_null(r.headers[3].name.p);
	assert_int_equal(r.headers[3].value.len, 0);
}

static void test_connect_v6(void **state)
{
	(void)state;
	static const char req[] = "CONNECT [2001:db8::1]:8443 HTTP/1.1\r\n"
	                          "Host: [2001:db8::1]:8443\r\n\r\n";
	struct http_req r;
	assert_int_equal(http_parse_request(req, sizeof(req) - 1, NULL, &r), sizeof(req) - 1);
	assert_int_equal(r.method_kind, HTTP_M_CONNECT);
	assert_view(r.target, "[2001:db8::1]:8443");
	assert_view(r.host, "[2001:db8::1]:8443");
}

/* openssl s_client -proxy sends an HTTP/1.0 CONNECT without Host. */
static void test_http10_without_host(void **state)
{
	(void)state;
	static const char req[] = "CONNECT example.com:443 HTTP/1.0\r\n\r\n";
	struct http_req r;
	assert_int_equal(http_parse_request(req, sizeof(req) - 1, NULL, &r), sizeof(req) - 1);
	assert_int_equal(r.method_kind, HTTP_M_CONNECT);
	assert_int_equal(r.version_minor, 0);
	assert_int_equal(r.n_headers, 0);
	assert_false(r.has_host);
	assert_null(r.host.p);
}

static void test_method_kind(void **state)
{
	(void)state;
	static const struct {
		const char *req;
		enum http_method_kind kind;
	} t[] = {
	    {"CONNECT a:1 HTTP/1.1\r\n\r\n", HTTP_M_CONNECT},
	    {"connect a:1 HTTP/1.1\r\n\r\n", HTTP_M_OTHER},
	    {"Connect a:1 HTTP/1.1\r\n\r\n", HTTP_M_OTHER},
	    {"CONNECTX a:1 HTTP/1.1\r\n\r\n", HTTP_M_OTHER},
	    {"CONNEC a:1 HTTP/1.1\r\n\r\n", HTTP_M_OTHER},
	    {"GET http://a/ HTTP/1.1\r\n\r\n", HTTP_M_OTHER},
	};
	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		struct http_req r;
		size_t n = strlen(t[i].req);
		assert_int_equal(http_parse_request(t[i].req, n, NULL, &r), n);
		if (r.method_kind != t[i].kind)
			fail_msg("\"%s\": kind %d, want %d", t[i].req, r.method_kind, t[i].kind);
	}
}

static void test_ows_trimmed(void **state)
{
	(void)state;
	static const char req[] = RL "Host: \t example.com:443 \t \r\n"
	                             "X-Inner:  a  b  \r\n"
	                             "X-Empty:   \r\n"
	                             "X-None:\r\n\r\n";
	struct http_req r;
	assert_int_equal(http_parse_request(req, sizeof(req) - 1, NULL, &r), sizeof(req) - 1);
	assert_int_equal(r.n_headers, 4);
	assert_view(r.host, "example.com:443");
	assert_view(r.headers[1].value, "a  b");
	assert_int_equal(r.headers[2].value.len, 0);
	assert_non_null(r.headers[2].value.p);
	assert_view_inside(r.headers[2].value, req, sizeof(req) - 1);
	assert_int_equal(r.headers[3].value.len, 0);
	assert_view_inside(r.headers[3].value, req, sizeof(req) - 1);
}

static void test_obs_text_value(void **state)
{
	(void)state;
	static const char req[] = RL "X-Name: caf\xc3\xa9 \x80\xff\r\n\r\n";
	struct http_req r;
	assert_int_equal(http_parse_request(req, sizeof(req) - 1, NULL, &r), sizeof(req) - 1);
	assert_view(r.headers[0].value, "caf\xc3\xa9 \x80\xff");
}

static void test_empty_host(void **state)
{
	(void)state;
	static const char req[] = RL "Host:\r\n\r\n";
	struct http_req r;
	assert_int_equal(http_parse_request(req, sizeof(req) - 1, NULL, &r), sizeof(req) - 1);
	assert_true(r.has_host);
	assert_int_equal(r.host.len, 0);
}

static void test_proxy_authorization(void **state)
{
	(void)state;
	static const char req[] = RL "Host: example.com:443\r\n"
	                             "proxy-AUTHORIZATION: Basic dXNlcjpwYXNz\r\n\r\n";
	struct http_req r;
	assert_int_equal(http_parse_request(req, sizeof(req) - 1, NULL, &r), sizeof(req) - 1);
	assert_true(r.has_proxy_authorization);
	assert_view(r.headers[1].value, "Basic dXNlcjpwYXNz");

	static const char near[] =
	    RL "Proxy-Authorization-X: a\r\nX-Proxy-Authorization: b\r\n\r\n";
	assert_int_equal(http_parse_request(near, sizeof(near) - 1, NULL, &r), sizeof(near) - 1);
	assert_false(r.has_proxy_authorization);
}

static void test_body_framing_fields(void **state)
{
	(void)state;
	static const char req[] = RL "Content-Length: 5\r\n"
	                             "content-length:  6 \r\n"
	                             "Transfer-Encoding: chunked\r\n\r\n";
	struct http_req r;
	assert_int_equal(http_parse_request(req, sizeof(req) - 1, NULL, &r), sizeof(req) - 1);
	assert_int_equal(r.n_content_length, 2);
	assert_view(r.content_length, "5");
	assert_int_equal(r.n_transfer_encoding, 1);
	assert_view(r.transfer_encoding, "chunked");

	static const char te2[] =
	    RL "TRANSFER-ENCODING: gzip\r\nTransfer-Encoding: chunked\r\n\r\n";
	assert_int_equal(http_parse_request(te2, sizeof(te2) - 1, NULL, &r), sizeof(te2) - 1);
	assert_int_equal(r.n_content_length, 0);
	assert_null(r.content_length.p);
	assert_int_equal(r.n_transfer_encoding, 2);
	assert_view(r.transfer_encoding, "gzip");
}

static void test_connection_close(void **state)
{
	(void)state;
	static const struct {
		const char *fields;
		int close;
	} t[] = {
	    {"Connection: close\r\n", 1},
	    {"connection: keep-alive, Close\r\n", 1},
	    {"Connection: ,, close ,\r\n", 1},
	    {"Connection: keep-alive\r\nConnection: \tCLOSE\t\r\n", 1},
	    {"Connection: closed\r\n", 0},
	    {"Connection: keep-alive\r\n", 0},
	    {"Connection: clo se\r\n", 0},
	    {"Connection:\r\n", 0},
	    {"Proxy-Connection: close\r\n", 0},
	    {"X: close\r\n", 0},
	};
	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		char buf[256];
		struct http_req r;
		int n = snprintf(buf, sizeof(buf), RL "%s\r\n", t[i].fields);
		assert_true(n > 0 && (size_t)n < sizeof(buf));
		assert_int_equal(http_parse_request(buf, (size_t)n, NULL, &r), n);
		if (r.connection_close != t[i].close)
			fail_msg("\"%s\": connection_close %d", t[i].fields, r.connection_close);
	}
}

/* ---- resumability --------------------------------------------------------- */

static void test_byte_by_byte_with_tunnel_bytes(void **state)
{
	(void)state;
	/* A TLS ClientHello start pipelined behind the head, with bytes that
	 * would be errors if the parser looked at them. */
	static const char head[] = RL "Host: example.com:443\r\n\r\n";
	static const char tail[] = "\x16\x03\x01\x00\xa5\x01\x00\n\0\r ";
	size_t hn = sizeof(head) - 1, tn = sizeof(tail) - 1;
	char *all = xmalloc(hn + tn);
	memcpy(all, head, hn);
	memcpy(all + hn, tail, tn);

	for (size_t k = 0; k <= hn + tn; k++) {
		int rc = parse_exact(all, k, NULL);
		if (k < hn)
			assert_int_equal(rc, HTTP_NEED_MORE);
		else
			assert_int_equal(rc, (int)hn);
	}
	/* the views of a head parsed with tunnel bytes behind it are the same */
	struct http_req r;
	assert_int_equal(http_parse_request(all, hn + tn, NULL, &r), hn);
	assert_view(r.host, "example.com:443");
	assert_true(r.host.p + r.host.len <= all + hn);
	free(all);
}

static void test_repeat_call_same_answer(void **state)
{
	(void)state;
	static const char req[] = RL "Host: a\r\nX: b\r\n\r\n";
	struct http_req a, b;
	assert_int_equal(http_parse_request(req, sizeof(req) - 1, NULL, &a), sizeof(req) - 1);
	memset(&b, 0x5a, sizeof(b));
	assert_int_equal(http_parse_request(req, sizeof(req) - 1, NULL, &b), sizeof(req) - 1);
	assert_int_equal(a.n_headers, b.n_headers);
	assert_ptr_equal(a.host.p, b.host.p);
	assert_memory_equal(a.headers, b.headers, sizeof(a.headers));
}

static void test_out_zeroed_unless_complete(void **state)
{
	(void)state;
	struct http_req r, zero;
	memset(&zero, 0, sizeof(zero));

	static const char bad[] = RL "Host: a\r\nX: \0\r\n\r\n";
	memset(&r, 0xa5, sizeof(r));
	assert_int_equal(http_parse_request(bad, sizeof(bad) - 1, NULL, &r), HTTP_ERR_BAD_CHAR);
	assert_memory_equal(&r, &zero, sizeof(r));

	static const char part[] = RL "Host: a\r\n";
	memset(&r, 0xa5, sizeof(r));
	assert_int_equal(http_parse_request(part, sizeof(part) - 1, NULL, &r), HTTP_NEED_MORE);
	assert_memory_equal(&r, &zero, sizeof(r));
}

static void test_null_arguments(void **state)
{
	(void)state;
	struct http_req r;
	assert_int_equal(http_parse_request("GET", 3, NULL, NULL), HTTP_ERR_SYNTAX);
	assert_int_equal(http_parse_request(NULL, 0, NULL, &r), HTTP_NEED_MORE);
	assert_int_equal(http_parse_request(NULL, 5, NULL, &r), HTTP_ERR_SYNTAX);
}

/* ---- limits --------------------------------------------------------------- */

static void test_limits_default(void **state)
{
	(void)state;
	struct http_limits l;
	memset(&l, 0xff, sizeof(l));
	http_limits_default(&l);
	assert_int_equal(l.max_head_bytes, 8192);
	assert_int_equal(l.max_line_bytes, 4096);
	assert_int_equal(l.max_headers, 100);
	assert_true(l.max_headers <= HTTP_MAX_HEADERS_HARD);
}

/* Request line of exactly max_line bytes (CRLF included) passes; one more is 414. */
static void request_line_bound(const struct http_limits *lim, size_t max_line)
{
	for (size_t line = max_line; line <= max_line + 1; line++) {
		char *buf = xmalloc(line + 2);
		put_request_line(buf, line);
		memcpy(buf + line, "\r\n", 2);
		int want = line <= max_line ? (int)(line + 2) : HTTP_ERR_URI_TOO_LONG;
		assert_int_equal(parse_exact(buf, line + 2, lim), want);
		size_t first = check_prefixes(buf, line + 2, lim, want);
		/* one byte over: known when the last content byte arrives,
		 * before its CRLF (line - 2 content bytes cannot fit). */
		if (line > max_line)
			assert_int_equal(first, line - 2);
		free(buf);
	}
}

static void test_request_line_limit(void **state)
{
	(void)state;
	struct http_limits small = {1024, 64, 4};
	request_line_bound(&small, 64);
	request_line_bound(NULL, 4096);
}

/* Field line of exactly max_line bytes passes; one more is 431 (line). */
static void field_line_bound(const struct http_limits *lim, size_t max_line)
{
	size_t rl = strlen(RL);
	for (size_t line = max_line; line <= max_line + 1; line++) {
		size_t n = rl + line + 2;
		char *buf = xmalloc(n);
		memcpy(buf, RL, rl);
		put_field_line(buf + rl, line);
		memcpy(buf + rl + line, "\r\n", 2);
		int want = line <= max_line ? (int)n : HTTP_ERR_LINE_TOO_LONG;
		assert_int_equal(parse_exact(buf, n, lim), want);
		size_t first = check_prefixes(buf, n, lim, want);
		if (line > max_line)
			assert_int_equal(first, rl + line - 2);
		if (line == max_line) {
			struct http_req r;
			assert_int_equal(http_parse_request(buf, n, lim, &r), n);
			assert_int_equal(r.headers[0].value.len, line - 8);
		}
		free(buf);
	}
}

static void test_field_line_limit(void **state)
{
	(void)state;
	struct http_limits small = {1024, 64, 4};
	field_line_bound(&small, 64);
	field_line_bound(NULL, 4096);
}

/* A client that never ends its line is cut at the line limit, not later. */
static void test_endless_lines(void **state)
{
	(void)state;
	size_t n = 20000;
	char *buf = xmalloc(n);

	memcpy(buf, "CONNECT ", 8);
	memset(buf + 8, 'a', n - 8);
	assert_int_equal(parse_exact(buf, 4094, NULL), HTTP_NEED_MORE);
	assert_int_equal(parse_exact(buf, 4095, NULL), HTTP_ERR_URI_TOO_LONG);
	assert_int_equal(parse_exact(buf, n, NULL), HTTP_ERR_URI_TOO_LONG);

	size_t rl = strlen(RL);
	memcpy(buf, RL, rl);
	memcpy(buf + rl, "X: ", 3);
	memset(buf + rl + 3, 'v', n - rl - 3);
	assert_int_equal(parse_exact(buf, rl + 4094, NULL), HTTP_NEED_MORE);
	assert_int_equal(parse_exact(buf, rl + 4095, NULL), HTTP_ERR_LINE_TOO_LONG);
	assert_int_equal(parse_exact(buf, n, NULL), HTTP_ERR_LINE_TOO_LONG);
	free(buf);
}

static void test_long_valid_value(void **state)
{
	(void)state;
	/* a 4000-byte value: line "X-Pad:" + 4000 + CRLF = 4008 <= 4096 */
	size_t fields;
	char *buf = make_head(strlen(RL) + 4008 + 2, 4096, &fields);
	struct http_req r;
	size_t n = strlen(RL) + 4010;
	assert_int_equal(fields, 1);
	assert_int_equal(http_parse_request(buf, n, NULL, &r), n);
	assert_int_equal(r.headers[0].value.len, 4000);
	assert_int_equal(r.headers[0].value.p[3999], 'v');
	free(buf);
}

/* A head of exactly max_head_bytes passes; one more byte is 431, at once. */
static void head_bound(const struct http_limits *lim, size_t max_head, size_t max_line)
{
	size_t fields;
	char *buf = make_head(max_head, max_line, &fields);
	assert_int_equal(check_prefixes(buf, max_head, lim, (int)max_head), max_head);
	free(buf);

	buf = make_head(max_head + 1, max_line, &fields);
	assert_int_equal(parse_exact(buf, max_head + 1, lim), HTTP_ERR_TOO_LARGE);
	/* the first max_head bytes are a well-formed partial head */
	assert_int_equal(check_prefixes(buf, max_head + 1, lim, HTTP_ERR_TOO_LARGE), max_head + 1);
	free(buf);
}

static void test_head_limit(void **state)
{
	(void)state;
	struct http_limits small = {256, 64, 100};
	head_bound(&small, 256, 64);
	head_bound(NULL, 8192, 4096);
}

static void test_head_limit_with_tunnel_bytes(void **state)
{
	(void)state;
	/* The head fills max_head_bytes exactly; what follows is the tunnel's. */
	struct http_limits lim = {100, 4096, 100};
	size_t fields;
	char *head = make_head(100, 4096, &fields);
	char *buf = xmalloc(400);
	memcpy(buf, head, 100);
	memset(buf + 100, '\n', 300);
	assert_int_equal(check_prefixes(buf, 400, &lim, 100), 100);
	free(head);
	free(buf);
}

static void test_header_count_limit(void **state)
{
	(void)state;
	size_t n;
	char *buf;

	buf = make_fields(100, &n);
	assert_int_equal(parse_exact(buf, n, NULL), n);
	free(buf);

	buf = make_fields(101, &n);
	assert_int_equal(parse_exact(buf, n, NULL), HTTP_ERR_TOO_MANY);
	/* cut when the 101st field's first byte arrives */
	assert_int_equal(check_prefixes(buf, n, NULL, HTTP_ERR_TOO_MANY), strlen(RL) + 6 * 100 + 1);
	free(buf);

	/* the 100 fields are all recorded */
	struct http_req r;
	buf = make_fields(100, &n);
	assert_int_equal(http_parse_request(buf, n, NULL, &r), n);
	assert_int_equal(r.n_headers, 100);
	assert_view(r.headers[99].name, "X");
	assert_view(r.headers[99].value, "a");
	free(buf);
}

static void test_header_count_custom_and_clamped(void **state)
{
	(void)state;
	size_t n;
	char *buf;
	struct http_limits zero = {8192, 4096, 0};
	struct http_limits huge = {8192, 4096, 100000};

	buf = make_fields(0, &n);
	assert_int_equal(parse_exact(buf, n, &zero), n);
	free(buf);
	buf = make_fields(1, &n);
	assert_int_equal(parse_exact(buf, n, &zero), HTTP_ERR_TOO_MANY);
	free(buf);

	buf = make_fields(HTTP_MAX_HEADERS_HARD, &n);
	assert_int_equal(parse_exact(buf, n, &huge), n);
	free(buf);
	buf = make_fields(HTTP_MAX_HEADERS_HARD + 1, &n);
	assert_int_equal(parse_exact(buf, n, &huge), HTTP_ERR_TOO_MANY);
	/* the clamped limit also cuts at the first byte of the field too many */
	assert_int_equal(check_prefixes(buf, n, &huge, HTTP_ERR_TOO_MANY),
	                 strlen(RL) + 6 * HTTP_MAX_HEADERS_HARD + 1);
	free(buf);
}

/* An empty line ends the head even when the field count is at its maximum. */
static void test_header_count_at_max_then_obs_fold(void **state)
{
	(void)state;
	struct http_limits one = {8192, 4096, 1};
	static const char fold[] = RL "X: a\r\n b\r\n\r\n";
	static const char ok[] = RL "X: a\r\n\r\n";
	assert_int_equal(parse_exact(fold, sizeof(fold) - 1, &one), HTTP_ERR_OBS_FOLD);
	assert_int_equal(parse_exact(ok, sizeof(ok) - 1, &one), sizeof(ok) - 1);
}

/* ---- names ---------------------------------------------------------------- */

static void test_status_names(void **state)
{
	(void)state;
	static const struct {
		int status;
		const char *name;
		int code;
	} t[] = {
	    {HTTP_NEED_MORE, "need_more", 0},
	    {HTTP_ERR_SYNTAX, "syntax", 400},
	    {HTTP_ERR_TOO_LARGE, "head_too_large", 431},
	    {HTTP_ERR_LINE_TOO_LONG, "line_too_long", 431},
	    {HTTP_ERR_TOO_MANY, "too_many_headers", 431},
	    {HTTP_ERR_BAD_CHAR, "bad_char", 400},
	    {HTTP_ERR_BARE_LF, "bare_lf", 400},
	    {HTTP_ERR_DUP_HOST, "duplicate_host", 400},
	    {HTTP_ERR_VERSION, "version_not_supported", 505},
	    {HTTP_ERR_OBS_FOLD, "obs_fold", 400},
	    {HTTP_ERR_URI_TOO_LONG, "uri_too_long", 414},
	};
	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		assert_string_equal(http_status_str(t[i].status), t[i].name);
		assert_int_equal(http_status_code(t[i].status), t[i].code);
	}
	assert_string_equal(http_status_str(1), "complete");
	assert_string_equal(http_status_str(8192), "complete");
	assert_string_equal(http_status_str(-11), "unknown");
	assert_string_equal(http_status_str(INT_MIN), "unknown");
	assert_int_equal(http_status_code(42), 0);
	assert_int_equal(http_status_code(-11), 0);
}

/*
 * A head dripped one byte per read: the watch says "parse" O(log n) times and
 * searches linearly, however long the head (a return to a parse per read, or
 * to a search from the start, fails here).
 */
static void test_head_watch_linear(void **state)
{
	(void)state;
	size_t n = 65536;
	char *head = malloc(n);
	assert_non_null(head);
	static const char first[] = "GET http://a.example/ HTTP/1.1\r\nHost: a.example\r\n";
	memcpy(head, first, sizeof(first) - 1);
	for (size_t i = sizeof(first) - 1; i < n - 4; i++)
		head[i] = (i % 64 == 63) ? '\n' : (i % 64 == 62) ? '\r' : 'x';
	memcpy(head + n - 4, "\r\n\r\n", 4);
	struct http_head_watch w;
	memset(&w, 0, sizeof(w));
	size_t parses = 0;
	bool last = false;
	for (size_t len = 1; len <= n; len++) {
		last = http_head_worth_parsing(&w, head, len, n);
		parses += last;
	}
	assert_true(last); /* the complete head is parsed */
	assert_true(parses <= 20);
	assert_true(w.work <= 2 * n);
	/* Past the limit it always says parse (the parser refuses it). */
	assert_true(http_head_worth_parsing(&w, head, n, n - 1));
	free(head);
	/* A fresh watch parses at once; an empty line anywhere makes a parse due. */
	memset(&w, 0, sizeof(w));
	static const char h[] = "GET /aaaaaaaaaa HTTP/1.1\r\n\r\n";
	assert_true(http_head_worth_parsing(&w, h, 15, 100));
	assert_false(http_head_worth_parsing(&w, h, 20, 100));
	assert_false(http_head_worth_parsing(&w, h, 27, 100));
	assert_true(http_head_worth_parsing(&w, h, 28, 100)); /* the empty line is here */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_table),
	    cmocka_unit_test(test_every_byte),
	    cmocka_unit_test(test_connect_fields),
	    cmocka_unit_test(test_connect_v6),
	    cmocka_unit_test(test_http10_without_host),
	    cmocka_unit_test(test_method_kind),
	    cmocka_unit_test(test_ows_trimmed),
	    cmocka_unit_test(test_obs_text_value),
	    cmocka_unit_test(test_empty_host),
	    cmocka_unit_test(test_proxy_authorization),
	    cmocka_unit_test(test_body_framing_fields),
	    cmocka_unit_test(test_connection_close),
	    cmocka_unit_test(test_byte_by_byte_with_tunnel_bytes),
	    cmocka_unit_test(test_repeat_call_same_answer),
	    cmocka_unit_test(test_out_zeroed_unless_complete),
	    cmocka_unit_test(test_null_arguments),
	    cmocka_unit_test(test_limits_default),
	    cmocka_unit_test(test_request_line_limit),
	    cmocka_unit_test(test_field_line_limit),
	    cmocka_unit_test(test_endless_lines),
	    cmocka_unit_test(test_long_valid_value),
	    cmocka_unit_test(test_head_limit),
	    cmocka_unit_test(test_head_limit_with_tunnel_bytes),
	    cmocka_unit_test(test_header_count_limit),
	    cmocka_unit_test(test_header_count_custom_and_clamped),
	    cmocka_unit_test(test_header_count_at_max_then_obs_fold),
	    cmocka_unit_test(test_head_watch_linear),
	    cmocka_unit_test(test_status_names),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
