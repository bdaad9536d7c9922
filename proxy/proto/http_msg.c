/* Plain-HTTP forwarding, pure half: request-targets, body framing, head rewrite. */
#include "http_msg.h"

#include <string.h>

#include "ascii.h"

/* ---- small helpers -------------------------------------------------------- */

static bool is_alpha(unsigned char c)
{
	return ascii_is_alpha(c);
}

static bool is_digit(unsigned char c)
{
	return ascii_is_digit(c);
}

static int hex_value(unsigned char c)
{
	return ascii_hex_value(c);
}

static struct http_view mkview(const char *p, size_t len)
{
	struct http_view v = {p, len};
	return v;
}

/* Two field names / tokens equal, ASCII case-insensitively (RFC 9110 §5.1). */
static bool view_ieq(struct http_view a, struct http_view b)
{
	if (a.len != b.len)
		return false;
	for (size_t i = 0; i < a.len; i++) {
		unsigned char x = (unsigned char)a.p[i], y = (unsigned char)b.p[i];
		if (x >= 'A' && x <= 'Z')
			x = (unsigned char)(x + 32);
		if (y >= 'A' && y <= 'Z')
			y = (unsigned char)(y + 32);
		if (x != y)
			return false;
	}
	return true;
}

static bool all_tchar(struct http_view v)
{
	for (size_t i = 0; i < v.len; i++) {
		if (!http_is_tchar((unsigned char)v.p[i]))
			return false;
	}
	return v.len > 0;
}

/* ---- request-target (RFC 9112 §3.2.2, RFC 9110 §4.2.1, RFC 3986 §3) ----- */

/* Bytes no request-target may hold: CTLs, SP, DEL, non-ASCII (RFC 9112 §3.2, RFC 3986 §2). */
static bool target_byte_bad(unsigned char c)
{
	return c <= 0x20 || c >= 0x7f;
}

/*
 * authority = host [":" port] (RFC 3986 §3.2); userinfo is deprecated for
 * http and refused (RFC 9110 §4.2.4), percent-escapes are never decoded in a
 * host we decide on, '\' is a path separator to some URL parsers, '#' would
 * end the authority for some and not for others.
 */
static int target_authority(const char *a, size_t len, struct http_target *out)
{
	if (len == 0)
		return HTTP_TARGET_BAD_AUTHORITY; /* RFC 9110 §4.2.1: empty host MUST be rejected */
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)a[i];
		if (target_byte_bad(c) || c == '@' || c == '\\' || c == '%' || c == '#')
			return HTTP_TARGET_BAD_AUTHORITY;
	}
	/* RFC 9110 §4.2.1: the default port of "http" is 80. */
	if (host_parse_authority(a, len, 80, &out->host, &out->port) != HOST_OK)
		return HTTP_TARGET_BAD_AUTHORITY;
	out->authority = mkview(a, len);
	return 0;
}

/*
 * path-abempty [ "?" query ] (RFC 3986 §3.3, §3.4).  Visible ASCII but '#'
 * (a fragment is never sent, RFC 9110 §4.2.5) and '\'; a '%' must start a
 * pct-encoded triplet (RFC 3986 §2.1).  Other characters outside pchar
 * ("|", "{", ...) are relayed as sent: they are not ambiguous.
 */
static int target_path(const char *p, size_t len, struct http_target *out)
{
	size_t q = len;

	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)p[i];
		if (target_byte_bad(c) || c == '#' || c == '\\')
			return HTTP_TARGET_BAD_PATH;
		if (c == '%' && (len - i < 3 || hex_value((unsigned char)p[i + 1]) < 0 ||
		                 hex_value((unsigned char)p[i + 2]) < 0))
			return HTTP_TARGET_BAD_PATH;
		if (c == '?' && q == len)
			q = i;
	}
	/* RFC 9112 §3.2.1: an empty path is sent as "/". */
	out->path = q > 0 ? mkview(p, q) : mkview("/", 1);
	if (q < len)
		out->query = mkview(p + q, len - q);
	return 0;
}

static int target_parse(const char *t, size_t len, struct http_target *out)
{
	size_t i = 0;

	if (t == NULL || len == 0)
		return HTTP_TARGET_BAD;
	/* RFC 9112 §3.2.1 origin-form: for an origin server, not a proxy. */
	if (t[0] == '/')
		return HTTP_TARGET_ORIGIN_FORM;
	/* scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ) (RFC 3986 §3.1).
	 * "*" (§3.2.4) and authority-form "host:port" (§3.2.3) fail here or
	 * at the "//" below. */
	if (!is_alpha((unsigned char)t[0]))
		return HTTP_TARGET_BAD;
	while (i < len && (is_alpha((unsigned char)t[i]) || is_digit((unsigned char)t[i]) ||
	                   t[i] == '+' || t[i] == '-' || t[i] == '.'))
		i++;
	if (i == len || t[i] != ':')
		return HTTP_TARGET_BAD;
	/* Schemes are case-insensitive (RFC 3986 §3.1). */
	if (http_token_ieq(mkview(t, i), "https"))
		return HTTP_TARGET_HTTPS;
	if (!http_token_ieq(mkview(t, i), "http"))
		return HTTP_TARGET_BAD;
	/* http-URI = "http" "://" authority path-abempty [ "?" query ] (RFC 9110 §4.2.1) */
	if (len - i < 3 || t[i + 1] != '/' || t[i + 2] != '/')
		return HTTP_TARGET_BAD;
	size_t a = i + 3, e = a;
	/* The authority ends at the first '/' or '?' (RFC 3986 §3.2); a '#'
	 * or '\' before that stays in it and is refused there. */
	while (e < len && t[e] != '/' && t[e] != '?')
		e++;
	int rc = target_authority(t + a, e - a, out);
	if (rc < 0)
		return rc;
	return target_path(t + e, len - e, out);
}

int http_origin_target_parse(const char *t, size_t len, const struct pc_host *host, uint16_t port,
                             struct http_target *out)
{
	if (out == NULL)
		return HTTP_TARGET_BAD;
	memset(out, 0, sizeof(*out));
	if (t == NULL || len == 0 || t[0] != '/' || host == NULL)
		return HTTP_TARGET_BAD;
	int rc = target_path(t, len, out);
	if (rc < 0) {
		memset(out, 0, sizeof(*out));
		return rc;
	}
	out->host = *host;
	out->port = port;
	out->https = true;
	return 0;
}

int http_target_parse(const char *t, size_t len, struct http_target *out)
{
	if (out == NULL)
		return HTTP_TARGET_BAD;
	memset(out, 0, sizeof(*out));
	int rc = target_parse(t, len, out);
	if (rc < 0)
		memset(out, 0, sizeof(*out));
	return rc;
}

bool http_host_header_matches(const struct http_req *req, const struct http_target *t)
{
	struct pc_host h;
	uint16_t port;

	if (!req->has_host)
		return true;
	if (host_parse_authority(req->host.p, req->host.len, t->https ? 443 : 80, &h, &port) !=
	    HOST_OK)
		return false;
	/* An exact (non-wildcard) match compares canonical names / addresses. */
	return port == t->port && host_pattern_match(&t->host, false, &h);
}

/* ---- framing (RFC 9112 §6) ---------------------------------------------- */

/*
 * Content-Length = 1*DIGIT (RFC 9110 §8.6), over every field line and every
 * list element: all must be valid and equal.  Returns 1 with *len when
 * present, 0 when absent, or an error.
 */
static int content_length(const struct http_header *hs, size_t n, uint64_t *len)
{
	bool seen = false;
	uint64_t first = 0;

	for (size_t i = 0; i < n; i++) {
		if (!http_token_ieq(hs[i].name, "content-length"))
			continue;
		struct http_view e;
		size_t pos = 0;
		while (http_list_next(hs[i].value, &pos, &e)) {
			uint64_t v = 0;
			if (e.len == 0)
				return HTTP_FRAMING_ERR_CL_INVALID;
			for (size_t k = 0; k < e.len; k++) {
				unsigned char c = (unsigned char)e.p[k];
				if (!is_digit(c) || v > (HTTP_MSG_LENGTH_MAX - (c - '0')) / 10)
					return HTTP_FRAMING_ERR_CL_INVALID;
				v = v * 10 + (uint64_t)(c - '0');
			}
			if (seen && v != first)
				return HTTP_FRAMING_ERR_CL_MISMATCH;
			seen = true;
			first = v;
		}
	}
	*len = first;
	return seen ? 1 : 0;
}

/* The Transfer-Encoding list, all field lines taken together (RFC 9110 §5.3). */
struct te_list {
	size_t n;          /* elements */
	size_t n_chunked;  /* elements equal to "chunked" */
	bool last_chunked; /* the final element is "chunked" */
	bool bad;          /* an empty element, or one that is not a plain token */
};

static void te_scan(const struct http_header *hs, size_t n, struct te_list *te)
{
	memset(te, 0, sizeof(*te));
	for (size_t i = 0; i < n; i++) {
		if (!http_token_ieq(hs[i].name, "transfer-encoding"))
			continue;
		struct http_view e;
		size_t pos = 0;
		while (http_list_next(hs[i].value, &pos, &e)) {
			/* transfer-coding = token *( OWS ";" OWS transfer-parameter )
			 * (RFC 9112 §7): no parameter is relayed; codings are
			 * case-insensitive. */
			bool chunked = http_token_ieq(e, "chunked");
			te->n++;
			te->n_chunked += chunked;
			te->last_chunked = chunked;
			if (!all_tchar(e))
				te->bad = true;
		}
	}
}

int http_req_framing(const struct http_req *req, struct http_framing *f)
{
	struct te_list te;
	uint64_t len = 0;

	memset(f, 0, sizeof(*f));
	if (req->n_transfer_encoding > 0) {
		/* RFC 9112 §6.1: Transfer-Encoding in HTTP/1.0 means faulty framing. */
		if (req->version_minor == 0)
			return HTTP_FRAMING_ERR_TE_HTTP10;
		/* §6.3 rule 3: both is a smuggling attempt; handled as an error. */
		if (req->n_content_length > 0)
			return HTTP_FRAMING_ERR_TE_AND_CL;
		/* §6.3 rule 4: chunked must be final (else 400); §6.1: chunked
		 * at most once; any other coding we would have to decode. */
		te_scan(req->headers, req->n_headers, &te);
		if (te.bad || te.n != 1 || !te.last_chunked)
			return HTTP_FRAMING_ERR_TE;
		f->kind = HTTP_FRAMING_CHUNKED;
		return 0;
	}
	/* §6.3 rule 5: an invalid Content-Length → 400 and close. */
	int rc = content_length(req->headers, req->n_headers, &len);
	if (rc < 0)
		return rc;
	if (rc > 0) {
		f->kind = HTTP_FRAMING_LENGTH;
		f->length = len;
	}
	/* §6.3 rule 6: neither → no body. */
	return 0;
}

/* §6.3 rule 1 (and RFC 9110 §9.3.2, §15.2, §15.3.5, §15.4.5): never a body. */
static bool resp_has_no_body(const struct http_resp *r, bool request_was_head)
{
	return request_was_head || (r->status >= 100 && r->status < 200) || r->status == 204 ||
	       r->status == 304;
}

int http_resp_framing(const struct http_resp *r, bool request_was_head, struct http_framing *f)
{
	struct te_list te;
	uint64_t len = 0;

	memset(f, 0, sizeof(*f));
	if (resp_has_no_body(r, request_was_head))
		return 0;
	if (r->n_transfer_encoding > 0) {
		if (r->version_minor == 0)
			return HTTP_FRAMING_ERR_TE_HTTP10; /* §6.1 */
		if (r->n_content_length > 0)
			return HTTP_FRAMING_ERR_TE_AND_CL; /* §6.3 rule 3 */
		te_scan(r->headers, r->n_headers, &te);
		/* §6.1: chunked at most once, and last when present. */
		if (te.bad || te.n_chunked > 1 || (te.n_chunked == 1 && !te.last_chunked))
			return HTTP_FRAMING_ERR_TE;
		/* §6.3 rule 4: not chunked last → read until close. */
		f->kind = te.last_chunked ? HTTP_FRAMING_CHUNKED : HTTP_FRAMING_CLOSE;
		return 0;
	}
	/* §6.3 rule 5: a proxy MUST answer an invalid Content-Length with 502. */
	int rc = content_length(r->headers, r->n_headers, &len);
	if (rc < 0)
		return rc;
	if (rc > 0) {
		f->kind = HTTP_FRAMING_LENGTH;
		f->length = len;
		return 0;
	}
	f->kind = HTTP_FRAMING_CLOSE; /* §6.3 rule 8 */
	return 0;
}

bool http_req_keep_alive(const struct http_req *req)
{
	/* RFC 9112 §9.3: HTTP/1.1 persists unless "close"; a proxy MUST NOT
	 * keep a persistent connection with an HTTP/1.0 client. */
	return req->version_minor == 1 && !req->connection_close;
}

bool http_resp_keep_alive(const struct http_resp *r, const struct http_framing *f)
{
	if (f->kind == HTTP_FRAMING_CLOSE || r->connection_close)
		return false;
	/* RFC 9112 §9.3: an HTTP/1.0 response persists only with keep-alive. */
	return r->version_minor == 1 || r->connection_keep_alive;
}

static bool has_field(const struct http_header *hs, size_t n, const char *lower)
{
	for (size_t i = 0; i < n; i++) {
		if (http_token_ieq(hs[i].name, lower))
			return true;
	}
	return false;
}

bool http_req_has_upgrade(const struct http_req *req)
{
	return has_field(req->headers, req->n_headers, "upgrade");
}

/* ---- head rewriting (RFC 9110 §7.6) ------------------------------------- */

/* An output buffer that remembers whether anything did not fit. */
struct wbuf {
	char *p;
	size_t n, len;
	bool over;
};

static void put(struct wbuf *w, const char *s, size_t k)
{
	if (w->over || k > w->n - w->len) {
		w->over = true;
		return;
	}
	if (k > 0)
		memcpy(w->p + w->len, s, k);
	w->len += k;
}

static void put_str(struct wbuf *w, const char *s)
{
	put(w, s, strlen(s));
}

static void put_view(struct wbuf *w, struct http_view v)
{
	put(w, v.p, v.len);
}

static void put_u64(struct wbuf *w, uint64_t v)
{
	char tmp[20];
	size_t i = sizeof(tmp);
	do {
		tmp[--i] = (char)('0' + v % 10);
		v /= 10;
	} while (v > 0);
	put(w, tmp + i, sizeof(tmp) - i);
}

/* RFC 9110 §7.6.1 and the list: never forwarded, whatever Connection says. */
static const char *const hop_by_hop[] = {
    "connection", "proxy-connection", "keep-alive",          "te",
    "trailer",    "upgrade",          "proxy-authorization", "proxy-authenticate",
};

/*
 * The connection options of a head's Connection fields (RFC 9110 §7.6.1),
 * collected once so that rewriting a head is linear in its size: each field
 * is compared with at most HTTP_MAX_CONNECTION_OPTIONS options, never with
 * every element of every Connection field.  Empty elements are skipped.
 */
struct conn_opts {
	struct http_view v[HTTP_MAX_CONNECTION_OPTIONS];
	size_t n;
};

/* False when there are more options than fit (the head is refused). */
static bool collect_options(const struct http_header *hs, size_t n, struct conn_opts *o)
{
	o->n = 0;
	for (size_t i = 0; i < n; i++) {
		if (!http_token_ieq(hs[i].name, "connection"))
			continue;
		struct http_view e;
		size_t pos = 0;
		while (http_list_next(hs[i].value, &pos, &e)) {
			if (e.len == 0)
				continue;
			if (o->n == HTTP_MAX_CONNECTION_OPTIONS)
				return false;
			o->v[o->n++] = e;
		}
	}
	return true;
}

size_t http_connection_options(const struct http_header *hs, size_t n)
{
	struct conn_opts o;
	return collect_options(hs, n, &o) ? o.n : HTTP_MAX_CONNECTION_OPTIONS + 1;
}

/* Is name one of the connection options? */
static bool named_by_connection(const struct conn_opts *o, struct http_view name)
{
	for (size_t i = 0; i < o->n; i++)
		if (view_ieq(o->v[i], name))
			return true;
	return false;
}

/*
 * Is a received field not copied as it is?  Hop-by-hop fields, the framing
 * fields (re-emitted from the validated framing), Via (merged) and, for a
 * request, Host (replaced).  Upgrade survives in HTTP_CONN_UPGRADE mode.
 */
static bool field_dropped(const struct conn_opts *o, struct http_view name,
                          enum http_conn_mode mode, bool request)
{
	if (mode == HTTP_CONN_UPGRADE && http_token_ieq(name, "upgrade"))
		return false;
	for (size_t i = 0; i < sizeof(hop_by_hop) / sizeof(hop_by_hop[0]); i++) {
		if (http_token_ieq(name, hop_by_hop[i]))
			return true;
	}
	if (http_token_ieq(name, "content-length") || http_token_ieq(name, "transfer-encoding") ||
	    http_token_ieq(name, "via") || (request && http_token_ieq(name, "host")))
		return true;
	return named_by_connection(o, name);
}

/* The received fields that are copied as they are. */
static void put_fields(struct wbuf *w, const struct http_header *hs, size_t n,
                       const struct conn_opts *o, enum http_conn_mode mode, bool request)
{
	for (size_t i = 0; i < n; i++) {
		if (field_dropped(o, hs[i].name, mode, request))
			continue;
		put_view(w, hs[i].name);
		put_str(w, ": ");
		put_view(w, hs[i].value);
		put_str(w, "\r\n");
	}
}

/* Via: the received values, then our own entry (RFC 9110 §7.6.3). */
static void put_via(struct wbuf *w, const struct http_header *hs, size_t n,
                    const struct conn_opts *o, int version_minor)
{
	put_str(w, "Via: ");
	/* A Via named by Connection was meant for us alone: dropped. */
	bool via_hop = named_by_connection(o, (struct http_view){"via", 3});
	for (size_t i = 0; i < n; i++) {
		if (!http_token_ieq(hs[i].name, "via") || hs[i].value.len == 0 || via_hop)
			continue;
		put_view(w, hs[i].value);
		put_str(w, ", ");
	}
	/* received-protocol is the version we received (§7.6.3). */
	put_str(w, version_minor == 0 ? "1.0 portcullis\r\n" : "1.1 portcullis\r\n");
}

static const char *conn_option(enum http_conn_mode mode)
{
	switch (mode) {
	case HTTP_CONN_CLOSE:
		return "close";
	case HTTP_CONN_UPGRADE:
		return "upgrade";
	default:
		return "keep-alive";
	}
}

static size_t wbuf_done(struct wbuf *w)
{
	return w->over ? 0 : w->len;
}

size_t http_forward_request_head(const struct http_req *req, const struct http_target *t,
                                 const struct http_framing *f, enum http_conn_mode mode, char *out,
                                 size_t n)
{
	struct wbuf w = {out, out != NULL ? n : 0, 0, false};
	struct conn_opts o;

	if (f->kind == HTTP_FRAMING_CLOSE || (unsigned)f->kind > HTTP_FRAMING_CLOSE)
		return 0; /* a request body is never close-delimited (RFC 9112 §6.3 rule 6) */
	if (!collect_options(req->headers, req->n_headers, &o))
		return 0;
	if (mode == HTTP_CONN_UPGRADE && !http_req_has_upgrade(req))
		return 0; /* "upgrade" without Upgrade: nothing to upgrade to */
	/* origin-form to the origin (RFC 9112 §3.2.1); we speak 1.1 (RFC 9110 §2.5) */
	put_view(&w, req->method);
	put_str(&w, " ");
	put_view(&w, t->path);
	put_view(&w, t->query);
	put_str(&w, " HTTP/1.1\r\nHost: ");
	/* Host = uri-host [ ":" port ] from the target (RFC 9110 §7.2). */
	if (t->host.kind == HOST_IPV6)
		put_str(&w, "[");
	put(&w, t->host.name, t->host.len);
	if (t->host.kind == HOST_IPV6)
		put_str(&w, "]");
	if (t->port != (t->https ? 443 : 80)) {
		put_str(&w, ":");
		put_u64(&w, t->port);
	}
	put_str(&w, "\r\n");
	put_fields(&w, req->headers, req->n_headers, &o, mode, true);
	if (f->kind == HTTP_FRAMING_LENGTH) {
		put_str(&w, "Content-Length: ");
		put_u64(&w, f->length);
		put_str(&w, "\r\n");
	} else if (f->kind == HTTP_FRAMING_CHUNKED) {
		put_str(&w, "Transfer-Encoding: chunked\r\n");
	}
	put_via(&w, req->headers, req->n_headers, &o, req->version_minor);
	put_str(&w, "Connection: ");
	put_str(&w, conn_option(mode));
	put_str(&w, "\r\n\r\n");
	return wbuf_done(&w);
}

/* Framing fields of a forwarded response (see the header). */
static void put_resp_framing(struct wbuf *w, const struct http_resp *r,
                             const struct http_framing *f)
{
	uint64_t len = 0;

	if (f->kind == HTTP_FRAMING_LENGTH) {
		put_str(w, "Content-Length: ");
		put_u64(w, f->length);
		put_str(w, "\r\n");
	} else if (f->kind == HTTP_FRAMING_NONE) {
		/* HEAD and 304 may announce the length (RFC 9110 §8.6); 1xx and
		 * 204 MUST NOT; an invalid one is dropped. */
		if (r->status >= 200 && r->status != 204 &&
		    content_length(r->headers, r->n_headers, &len) == 1) {
			put_str(w, "Content-Length: ");
			put_u64(w, len);
			put_str(w, "\r\n");
		}
	} else if (r->n_transfer_encoding > 0) {
		/* CHUNKED or CLOSE: the codings as received, in one line. */
		put_str(w, "Transfer-Encoding: ");
		bool first = true;
		for (size_t i = 0; i < r->n_headers; i++) {
			if (!http_token_ieq(r->headers[i].name, "transfer-encoding"))
				continue;
			if (!first)
				put_str(w, ", ");
			put_view(w, r->headers[i].value);
			first = false;
		}
		put_str(w, "\r\n");
	}
}

size_t http_forward_response_head(const struct http_resp *r, const struct http_framing *f,
                                  enum http_conn_mode mode, char *out, size_t n)
{
	struct wbuf w = {out, out != NULL ? n : 0, 0, false};
	struct conn_opts o;
	char status[3];

	if ((unsigned)f->kind > HTTP_FRAMING_CLOSE || r->status < 100 || r->status > 599)
		return 0;
	if (!collect_options(r->headers, r->n_headers, &o))
		return 0;
	if (mode == HTTP_CONN_UPGRADE && !r->has_upgrade)
		return 0;
	/* status-line (RFC 9112 §4); we speak 1.1 (RFC 9110 §2.5) */
	status[0] = (char)('0' + r->status / 100);
	status[1] = (char)('0' + r->status / 10 % 10);
	status[2] = (char)('0' + r->status % 10);
	put_str(&w, "HTTP/1.1 ");
	put(&w, status, 3);
	put_str(&w, " ");
	put_view(&w, r->reason);
	put_str(&w, "\r\n");
	put_fields(&w, r->headers, r->n_headers, &o, mode, false);
	put_resp_framing(&w, r, f);
	put_via(&w, r->headers, r->n_headers, &o, r->version_minor);
	/* A 1xx but 101 is interim: the final response carries Connection. */
	if (r->status >= 200 || r->status == 101) {
		put_str(&w, "Connection: ");
		put_str(&w, f->kind == HTTP_FRAMING_CLOSE ? "close" : conn_option(mode));
		put_str(&w, "\r\n");
	}
	put_str(&w, "\r\n");
	return wbuf_done(&w);
}

static const struct {
	int status;
	const char *name;
} status_names[] = {
    {HTTP_TARGET_ORIGIN_FORM, "origin_form"},
    {HTTP_TARGET_HTTPS, "https_target"},
    {HTTP_TARGET_BAD, "bad_target"},
    {HTTP_TARGET_BAD_AUTHORITY, "bad_authority"},
    {HTTP_TARGET_BAD_PATH, "bad_path"},
    {HTTP_FRAMING_ERR_TE_AND_CL, "te_and_cl"},
    {HTTP_FRAMING_ERR_TE_HTTP10, "te_in_http10"},
    {HTTP_FRAMING_ERR_TE, "bad_transfer_encoding"},
    {HTTP_FRAMING_ERR_CL_INVALID, "bad_content_length"},
    {HTTP_FRAMING_ERR_CL_MISMATCH, "content_length_mismatch"},
};

const char *http_msg_status_str(int status)
{
	for (size_t i = 0; i < sizeof(status_names) / sizeof(status_names[0]); i++) {
		if (status_names[i].status == status)
			return status_names[i].name;
	}
	return chunked_status_str(status);
}
