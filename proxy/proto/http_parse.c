/* HTTP/1.1 request- and response-head parsers: resumable, I/O-free, with limits (RFC 9112). */
#include "http_parse.h"

#include <limits.h>
#include <stdbool.h>
#include <string.h>

/*
 * How it works.  The head is cut into lines by scan_line(), which reads one
 * byte at a time and refuses, at the first offending byte: a control byte
 * (BAD_CHAR), a bare LF (BARE_LF), a CR not followed by LF (SYNTAX) and a
 * line that can no longer fit max_line_bytes (LINE_TOO_LONG / URI_TOO_LONG).
 * Only a complete line is then parsed for its structure (request line, field
 * line).  Because every decision depends only on bytes already seen, and the
 * line structure only on a complete line, a longer buffer can never change a
 * result that a shorter one gave: errors are "sticky" and the head length is
 * fixed once the empty line has arrived.  Nothing past min(len,
 * max_head_bytes) is read; if that window holds no complete head and len is
 * beyond it, the answer is TOO_LARGE at once.
 *
 * Every call rescans from the start: O(min(len, max_head_bytes)).
 */

/* ---- character classes (RFC 9110 §5.6.2, RFC 5234 B.1) ------------------ */

static bool is_digit(unsigned char c)
{
	return c >= '0' && c <= '9';
}

static bool is_alpha(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

/* tchar = "!" / "#" / "$" / "%" / "&" / "'" / "*" / "+" / "-" / "." /
 *         "^" / "_" / "`" / "|" / "~" / DIGIT / ALPHA   (RFC 9110 §5.6.2) */
bool http_is_tchar(unsigned char c)
{
	if (is_alpha(c) || is_digit(c))
		return true;
	switch (c) {
	case '!':
	case '#':
	case '$':
	case '%':
	case '&':
	case '\'':
	case '*':
	case '+':
	case '-':
	case '.':
	case '^':
	case '_':
	case '`':
	case '|':
	case '~':
		return true;
	default:
		return false;
	}
}

/* VCHAR = %x21-7E (RFC 5234 B.1) */
static bool is_vchar(unsigned char c)
{
	return c >= 0x21 && c <= 0x7e;
}

/* OWS = *( SP / HTAB ) (RFC 9110 §5.6.3) */
static bool is_ows(unsigned char c)
{
	return c == ' ' || c == '\t';
}

/*
 * A control byte that may not appear anywhere in a head: every CTL but HTAB
 * (allowed in field values, RFC 9110 §5.5), CR and LF (line structure, RFC
 * 9112 §2.2, handled apart).  RFC 9110 §5.5: a field value containing CR, LF
 * or NUL MUST be rejected or those bytes replaced; we reject, and apply the
 * same to every other CTL and DEL, which no production of the head allows.
 */
static bool is_bad_ctl(unsigned char c)
{
	return (c < 0x20 && c != '\t' && c != '\r' && c != '\n') || c == 0x7f;
}

static unsigned char ascii_lower(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') ? (unsigned char)(c - 'A' + 'a') : c;
}

/* Field names are case-insensitive (RFC 9110 §5.1); lower is all lowercase. */
static bool view_equals_lower(struct http_view v, const char *lower)
{
	size_t n = strlen(lower);
	if (v.len != n)
		return false;
	for (size_t i = 0; i < n; i++) {
		if (ascii_lower((unsigned char)v.p[i]) != (unsigned char)lower[i])
			return false;
	}
	return true;
}

static struct http_view view(const char *p, size_t len)
{
	struct http_view v = {p, len};
	return v;
}

/* ---- lines (RFC 9112 §2.1, §2.2) ---------------------------------------- */

enum { LINE_FOUND = 1 };

/*
 * Find the CRLF that ends the line starting at buf[pos], reading no byte at
 * or after end.  Returns LINE_FOUND with *eol at the CR, HTTP_NEED_MORE if
 * end comes first, or an error at the first offending byte.  too_long is the
 * error for a line over max_line bytes (CRLF included); it is returned as
 * soon as the bytes seen prove the line cannot fit, so an endless line is
 * cut at the limit, not at its end.
 */
static int scan_line(const char *buf, size_t pos, size_t end, size_t max_line, int too_long,
                     size_t *eol)
{
	for (size_t i = pos; i < end; i++) {
		unsigned char c = (unsigned char)buf[i];
		if (c == '\r') {
			if (i - pos + 2 > max_line)
				return too_long;
			if (i + 1 >= end)
				return HTTP_NEED_MORE;
			/* §2.2: a bare CR is invalid; we reject rather than replace by SP. */
			if (buf[i + 1] != '\n')
				return HTTP_ERR_SYNTAX;
			*eol = i;
			return LINE_FOUND;
		}
		/* §2.2: a recipient MAY accept a bare LF as terminator; we do not. */
		if (c == '\n')
			return HTTP_ERR_BARE_LF;
		if (is_bad_ctl(c))
			return HTTP_ERR_BAD_CHAR;
		/* i - pos + 1 bytes of content, plus CRLF still to come. */
		if (i - pos + 3 > max_line)
			return too_long;
	}
	return HTTP_NEED_MORE;
}

/* ---- request line (RFC 9112 §3) ----------------------------------------- */

/* HTTP-version = HTTP-name "/" DIGIT "." DIGIT; HTTP-name = %s"HTTP" (§2.3,
 * case-sensitive).  Only 1.0 and 1.1 are served (RFC 9110 §15.6.6: 505). */
static int parse_version(const char *p, size_t n, int *minor)
{
	if (n != 8 || memcmp(p, "HTTP/", 5) != 0 || !is_digit((unsigned char)p[5]) || p[6] != '.' ||
	    !is_digit((unsigned char)p[7]))
		return HTTP_ERR_SYNTAX;
	if (p[5] != '1' || (p[7] != '0' && p[7] != '1'))
		return HTTP_ERR_VERSION;
	*minor = p[7] - '0';
	return 0;
}

/*
 * request-line = method SP request-target SP HTTP-version (§3), exactly one
 * SP each: the lenient whitespace parsing §3 permits is not taken.
 * p[0..n) is the line without its CRLF.
 */
static int parse_request_line(const char *p, size_t n, struct http_req *out)
{
	size_t i = 0;

	/* method = token (§3.1, RFC 9110 §9.1) */
	while (i < n && http_is_tchar((unsigned char)p[i]))
		i++;
	if (i == 0 || i == n || p[i] != ' ')
		return HTTP_ERR_SYNTAX;
	out->method = view(p, i);
	/* RFC 9110 §9.1: the method token is case-sensitive. */
	out->method_kind = (i == 7 && memcmp(p, "CONNECT", 7) == 0) ? HTTP_M_CONNECT : HTTP_M_OTHER;

	/* request-target (§3.2): every form it may take is made of visible
	 * ASCII; a SP, a CTL or a byte >= 0x80 ends or breaks it. */
	size_t t = ++i;
	while (i < n && is_vchar((unsigned char)p[i]))
		i++;
	if (i == t || i == n || p[i] != ' ')
		return HTTP_ERR_SYNTAX;
	out->target = view(p + t, i - t);
	i++;

	return parse_version(p + i, n - i, &out->version_minor);
}

/* ---- field lines (RFC 9112 §5, RFC 9110 §5) ----------------------------- */

bool http_token_ieq(struct http_view v, const char *lower)
{
	return view_equals_lower(v, lower);
}

bool http_list_next(struct http_view list, size_t *pos, struct http_view *elem)
{
	size_t i = *pos;

	if (i > list.len)
		return false;
	size_t s = i;
	while (i < list.len && list.p[i] != ',')
		i++;
	size_t e = i;
	while (s < e && is_ows((unsigned char)list.p[s]))
		s++;
	while (e > s && is_ows((unsigned char)list.p[e - 1]))
		e--;
	*elem = view(list.p != NULL ? list.p + s : NULL, e - s);
	*pos = i + 1; /* past the comma; len + 1 after the last element */
	return true;
}

/* Does the #list value (RFC 9110 §5.6.1) hold the element lower (case-insensitive)? */
static bool list_has(struct http_view v, const char *lower)
{
	struct http_view e;
	size_t pos = 0;

	while (http_list_next(v, &pos, &e)) {
		if (view_equals_lower(e, lower))
			return true;
	}
	return false;
}

/*
 * The head scanner is shared by requests and responses: a head_sink says how
 * the start line is parsed, which array the field lines go to and what is
 * noted about each.  msg is the struct http_req or http_resp being filled.
 */
struct head_sink {
	int start_too_long; /* the error for a start line over max_line_bytes */
	int (*start_line)(const char *p, size_t n, void *msg);
	int (*note)(const struct http_header *h, void *msg);
	struct http_header *headers; /* HTTP_MAX_HEADERS_HARD entries */
	size_t *n_headers;
	void *msg;
	size_t msg_size;
};

/* Record what the glue needs to know about a request field line. */
static int note_req_field(const struct http_header *h, void *msg)
{
	struct http_req *out = msg;

	if (view_equals_lower(h->name, "host")) {
		/* RFC 9112 §3.2: more than one Host field line MUST get a 400. */
		if (out->has_host)
			return HTTP_ERR_DUP_HOST;
		out->has_host = 1;
		out->host = h->value;
	} else if (view_equals_lower(h->name, "proxy-authorization")) {
		out->has_proxy_authorization = 1;
	} else if (view_equals_lower(h->name, "content-length")) {
		if (out->n_content_length++ == 0)
			out->content_length = h->value;
	} else if (view_equals_lower(h->name, "transfer-encoding")) {
		if (out->n_transfer_encoding++ == 0)
			out->transfer_encoding = h->value;
	} else if (view_equals_lower(h->name, "connection")) {
		/* RFC 9110 §7.6.1: connection options are case-insensitive. */
		if (list_has(h->value, "close"))
			out->connection_close = 1;
	}
	return 0;
}

/* The same for a response field line. */
static int note_resp_field(const struct http_header *h, void *msg)
{
	struct http_resp *out = msg;

	if (view_equals_lower(h->name, "content-length")) {
		if (out->n_content_length++ == 0)
			out->content_length = h->value;
	} else if (view_equals_lower(h->name, "transfer-encoding")) {
		if (out->n_transfer_encoding++ == 0)
			out->transfer_encoding = h->value;
	} else if (view_equals_lower(h->name, "connection")) {
		/* RFC 9110 §7.6.1 options; RFC 9112 §9.3 close and keep-alive;
		 * RFC 9110 §7.8 upgrade. */
		if (list_has(h->value, "close"))
			out->connection_close = 1;
		if (list_has(h->value, "keep-alive"))
			out->connection_keep_alive = 1;
		if (list_has(h->value, "upgrade"))
			out->connection_upgrade = 1;
	} else if (view_equals_lower(h->name, "upgrade")) {
		out->has_upgrade = 1;
	}
	return 0;
}

/*
 * field-line = field-name ":" OWS field-value OWS (§5).  p[0..n) is the line
 * without its CRLF; scan_line already refused every CTL but HTAB, so what
 * follows the colon is SP / HTAB / VCHAR / obs-text, all allowed in a value
 * (RFC 9110 §5.5).
 */
static int parse_field_line(const char *p, size_t n, const struct head_sink *sink)
{
	size_t i = 0;

	/* field-name = token (RFC 9110 §5.1); empty → 400 */
	while (i < n && http_is_tchar((unsigned char)p[i]))
		i++;
	if (i == 0)
		return HTTP_ERR_SYNTAX;
	/* §5.1: no whitespace is allowed between the field name and colon; a
	 * server MUST reject such a message with 400 (and a proxy MUST remove
	 * it from a response: we refuse that too). */
	if (i == n || p[i] != ':')
		return HTTP_ERR_SYNTAX;

	size_t vs = i + 1, ve = n;
	while (vs < ve && is_ows((unsigned char)p[vs]))
		vs++;
	while (ve > vs && is_ows((unsigned char)p[ve - 1]))
		ve--;

	/* Unreachable while max_headers is clamped; kept so the array bound
	 * never depends on the caller's arithmetic. */
	if (*sink->n_headers >= HTTP_MAX_HEADERS_HARD)
		return HTTP_ERR_TOO_MANY;
	struct http_header *h = &sink->headers[(*sink->n_headers)++];
	h->name = view(p, i);
	h->value = view(p + vs, ve - vs);
	return sink->note(h, sink->msg);
}

/* ---- the head ------------------------------------------------------------ */

/* Parse buf[0..end); end is already capped at max_head_bytes. */
static int parse_head(const char *buf, size_t end, const struct http_limits *l,
                      const struct head_sink *sink)
{
	size_t eol = 0;
	int rc;

	if (end == 0)
		return HTTP_NEED_MORE;
	/* §2.2 lets a server ignore empty lines before the request line; we
	 * refuse them (a CR first is either that or a bare CR: both 400).
	 * Nothing lets a client skip them before a status line. */
	if (buf[0] == '\r')
		return HTTP_ERR_SYNTAX;
	rc = scan_line(buf, 0, end, l->max_line_bytes, sink->start_too_long, &eol);
	if (rc != LINE_FOUND)
		return rc;
	rc = sink->start_line(buf, eol, sink->msg);
	if (rc < 0)
		return rc;

	size_t pos = eol + 2;
	for (;;) {
		if (pos >= end)
			return HTTP_NEED_MORE;
		unsigned char c = (unsigned char)buf[pos];
		/* §5.2 obs-fold, and §2.2 whitespace between the start line and
		 * the first field: both rejected as soon as the SP/HTAB arrives.
		 * (§5.2 lets a proxy replace a response with obs-fold by 502.) */
		if (is_ows(c))
			return HTTP_ERR_OBS_FOLD;
		/* Anything but CR/LF starts another field line: count it now so
		 * a flood of fields is cut at the first one too many. */
		if (c != '\r' && c != '\n' && *sink->n_headers >= l->max_headers)
			return HTTP_ERR_TOO_MANY;
		rc = scan_line(buf, pos, end, l->max_line_bytes, HTTP_ERR_LINE_TOO_LONG, &eol);
		if (rc != LINE_FOUND)
			return rc;
		/* §2.1: the empty line ends the head. */
		if (eol == pos)
			return (int)(eol + 2);
		rc = parse_field_line(buf + pos, eol - pos, sink);
		if (rc < 0)
			return rc;
		pos = eol + 2;
	}
}

void http_limits_default(struct http_limits *l)
{
	l->max_head_bytes = 8192;
	l->max_line_bytes = 4096;
	l->max_headers = 100;
}

/* The contract of http_parse_request / http_parse_response, for either. */
static int parse_message(const char *buf, size_t len, const struct http_limits *lim,
                         const struct head_sink *sink)
{
	struct http_limits l;

	memset(sink->msg, 0, sink->msg_size);
	if (buf == NULL)
		return len == 0 ? HTTP_NEED_MORE : HTTP_ERR_SYNTAX;

	if (lim != NULL)
		l = *lim;
	else
		http_limits_default(&l);
	if (l.max_headers > HTTP_MAX_HEADERS_HARD)
		l.max_headers = HTTP_MAX_HEADERS_HARD;
	if (l.max_head_bytes > INT_MAX)
		l.max_head_bytes = INT_MAX; /* the head length is returned as int */

	size_t end = len < l.max_head_bytes ? len : l.max_head_bytes;
	int rc = parse_head(buf, end, &l, sink);
	/* No complete head (and no error) within max_head_bytes, and more
	 * than that has arrived: it cannot fit any more. */
	if (rc == HTTP_NEED_MORE && len > l.max_head_bytes)
		rc = HTTP_ERR_TOO_LARGE;
	if (rc <= 0)
		memset(sink->msg, 0, sink->msg_size);
	return rc;
}

static int req_start_line(const char *p, size_t n, void *msg)
{
	return parse_request_line(p, n, msg);
}

int http_parse_request(const char *buf, size_t len, const struct http_limits *lim,
                       struct http_req *out)
{
	if (out == NULL)
		return HTTP_ERR_SYNTAX;
	const struct head_sink sink = {
	    .start_too_long = HTTP_ERR_URI_TOO_LONG,
	    .start_line = req_start_line,
	    .note = note_req_field,
	    .headers = out->headers,
	    .n_headers = &out->n_headers,
	    .msg = out,
	    .msg_size = sizeof(*out),
	};
	return parse_message(buf, len, lim, &sink);
}

/*
 * status-line = HTTP-version SP status-code SP [ reason-phrase ] (§4).
 * status-code = 3DIGIT, 100..599 (RFC 9110 §15).  The reason-phrase may be
 * empty; so may, unlike the grammar, the SP before it ("HTTP/1.1 200"): it
 * is unambiguous and sent by real servers.  scan_line already refused every
 * CTL but HTAB, so the rest of the line is a valid reason-phrase.
 */
static int resp_start_line(const char *p, size_t n, void *msg)
{
	struct http_resp *out = msg;
	int rc;

	if (n < 12 || p[8] != ' ' || (n > 12 && p[12] != ' '))
		return HTTP_ERR_SYNTAX;
	rc = parse_version(p, 8, &out->version_minor);
	if (rc < 0)
		return rc;
	for (size_t i = 9; i < 12; i++) {
		if (!is_digit((unsigned char)p[i]))
			return HTTP_ERR_SYNTAX;
	}
	if (p[9] < '1' || p[9] > '5')
		return HTTP_ERR_SYNTAX;
	out->status = (p[9] - '0') * 100 + (p[10] - '0') * 10 + (p[11] - '0');
	out->reason = n > 12 ? view(p + 13, n - 13) : view(p + 12, 0);
	return 0;
}

int http_parse_response(const char *buf, size_t len, const struct http_limits *lim,
                        struct http_resp *out)
{
	if (out == NULL)
		return HTTP_ERR_SYNTAX;
	const struct head_sink sink = {
	    .start_too_long = HTTP_ERR_LINE_TOO_LONG,
	    .start_line = resp_start_line,
	    .note = note_resp_field,
	    .headers = out->headers,
	    .n_headers = &out->n_headers,
	    .msg = out,
	    .msg_size = sizeof(*out),
	};
	return parse_message(buf, len, lim, &sink);
}

bool http_head_worth_parsing(struct http_head_watch *w, const char *buf, size_t len, size_t max)
{
	bool now = w->parsed == 0 || len > max || len >= 2 * w->parsed;
	for (size_t i = w->scanned; !now && i + 4 <= len; i++) {
		w->work++;
		now = buf[i] == '\r' && memcmp(buf + i, "\r\n\r\n", 4) == 0;
		w->scanned = i + 1;
	}
	if (now)
		w->parsed = len ? len : 1;
	return now;
}

const char *http_status_str(int status)
{
	if (status > 0)
		return "complete";
	switch (status) {
	case HTTP_NEED_MORE:
		return "need_more";
	case HTTP_ERR_SYNTAX:
		return "syntax";
	case HTTP_ERR_TOO_LARGE:
		return "head_too_large";
	case HTTP_ERR_LINE_TOO_LONG:
		return "line_too_long";
	case HTTP_ERR_TOO_MANY:
		return "too_many_headers";
	case HTTP_ERR_BAD_CHAR:
		return "bad_char";
	case HTTP_ERR_BARE_LF:
		return "bare_lf";
	case HTTP_ERR_DUP_HOST:
		return "duplicate_host";
	case HTTP_ERR_VERSION:
		return "version_not_supported";
	case HTTP_ERR_OBS_FOLD:
		return "obs_fold";
	case HTTP_ERR_URI_TOO_LONG:
		return "uri_too_long";
	default:
		return "unknown";
	}
}

int http_status_code(int status)
{
	switch (status) {
	case HTTP_ERR_SYNTAX:
	case HTTP_ERR_BAD_CHAR:
	case HTTP_ERR_BARE_LF:
	case HTTP_ERR_DUP_HOST:
	case HTTP_ERR_OBS_FOLD:
		return 400; /* RFC 9110 §15.5.1 */
	case HTTP_ERR_URI_TOO_LONG:
		return 414; /* RFC 9110 §15.5.15; RFC 9112 §3 */
	case HTTP_ERR_TOO_LARGE:
	case HTTP_ERR_LINE_TOO_LONG:
	case HTTP_ERR_TOO_MANY:
		return 431; /* RFC 6585 §5 */
	case HTTP_ERR_VERSION:
		return 505; /* RFC 9110 §15.6.6 */
	default:
		return 0;
	}
}
