/* Plain-HTTP forwarding, pure half: request-targets, body framing, head rewrite (chunked bodies: chunked.h). */
#ifndef PORTCULLIS_HTTP_MSG_H
#define PORTCULLIS_HTTP_MSG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "host.h"
#include "chunked.h"
#include "http_parse.h"

/*
 * Every function here is I/O-free and allocation-free.  Every negative
 * return value of this module is distinct, so http_msg_status_str() names
 * any of them.  Views point into the caller's buffers (the head the
 * request or response was parsed from), or at static storage.
 */

/* ---- request-target (RFC 9112 §3.2, RFC 9110 §4.2.1, RFC 3986) ---------- */

enum http_target_status {
	HTTP_TARGET_ORIGIN_FORM = -1,    /* "/path": not a reverse proxy → 400 */
	HTTP_TARGET_HTTPS = -2,          /* "https://...": use CONNECT → 400 */
	HTTP_TARGET_BAD = -3,            /* other scheme, authority-form, asterisk-form, "http:/x" */
	HTTP_TARGET_BAD_AUTHORITY = -4,  /* userinfo, '\', '%', empty host, bad host or port */
	HTTP_TARGET_BAD_PATH = -5,       /* path/query: '#', '\', bad %-escape, CTL, SP, byte >= 0x80 */
};

struct http_target {
	struct pc_host host;         /* canonical host (host_parse_authority) */
	uint16_t port;               /* 80 when absent */
	struct http_view authority;  /* as sent, between "//" and the path */
	struct http_view path;       /* path component without the query; "/" (static) when empty */
	struct http_view query;      /* "?..." including the '?', or {NULL, 0} */
	bool https;                  /* an https origin (default port 443, not 80) */
};

/*
 * Parse an absolute-form request-target "http://authority[/path][?query]"
 * (RFC 9112 §3.2.2).  The scheme is case-insensitive (RFC 3986 §3.1).  The
 * origin-form to send upstream is path followed by query (RFC 9112 §3.2.1:
 * "/" for an empty path); the audit's url.path is path alone.
 * Returns 0 or a negative http_target_status; out is zeroed on error.
 */
int http_target_parse(const char *t, size_t len, struct http_target *out)
	__attribute__((warn_unused_result));

/*
 * Parse an origin-form request-target "/path[?query]" (RFC 9112 §3.2.1) sent
 * to the https origin host:port: a request inside an intercepted TLS
 * session, where the authority is the CONNECT's.  The path and query are
 * checked as in http_target_parse.  Returns 0, HTTP_TARGET_BAD (not
 * origin-form: absolute-, authority- or asterisk-form) or
 * HTTP_TARGET_BAD_PATH; out is zeroed on error.
 */
int http_origin_target_parse(const char *t, size_t len, const struct pc_host *host, uint16_t port,
                             struct http_target *out) __attribute__((warn_unused_result));

/*
 * Does the request's Host header agree with the target (RFC 9112 §3.2.2:
 * a proxy MUST ignore Host for an absolute-form target; portcullis refuses
 * a disagreement instead)?  No Host header → true.  Otherwise Host must
 * parse as an authority (default port 80, 443 for an https target) with the
 * same canonical host and port: "Example.COM.:80" matches example.com:80;
 * an empty Host does not.
 */
bool http_host_header_matches(const struct http_req *req, const struct http_target *t);

/* ---- message body framing (RFC 9112 §6) --------------------------------- */

/* Largest Content-Length or chunk size accepted: 2^62. */
#define HTTP_MSG_LENGTH_MAX (UINT64_C(1) << 62)

enum http_framing_kind {
	HTTP_FRAMING_NONE = 0,  /* no body */
	HTTP_FRAMING_LENGTH,    /* exactly f->length bytes */
	HTTP_FRAMING_CHUNKED,   /* chunked: run chunked_feed over the body */
	HTTP_FRAMING_CLOSE,     /* responses only: the body ends when the server closes */
};

struct http_framing {
	enum http_framing_kind kind;
	uint64_t length; /* HTTP_FRAMING_LENGTH only; 0 otherwise */
};

enum http_framing_status {
	HTTP_FRAMING_ERR_TE_AND_CL = -20,   /* Transfer-Encoding and Content-Length both */
	HTTP_FRAMING_ERR_TE_HTTP10 = -21,   /* Transfer-Encoding in an HTTP/1.0 message */
	HTTP_FRAMING_ERR_TE = -22,          /* a Transfer-Encoding we do not relay */
	HTTP_FRAMING_ERR_CL_INVALID = -23,  /* not 1*DIGIT, empty element, over 2^62 */
	HTTP_FRAMING_ERR_CL_MISMATCH = -24, /* several Content-Length values that differ */
};

/*
 * Request body framing (RFC 9112 §6.1, §6.3), refusing what could be read
 * two ways (request smuggling).  Transfer-Encoding: the field lines taken
 * together must be exactly one element, "chunked" (any case): "gzip,
 * chunked" is refused because the proxy does not decode, "chunked, chunked"
 * (§6.1 MUST NOT), "identity", unknown codings, parameters and empty
 * elements too.  Content-Length: every element of every field line must be
 * 1*DIGIT <= 2^62 and all must be equal ("5, 5" is 5; §6.3 rule 5, RFC 9110
 * §8.6).  Neither → NONE (§6.3 rule 6).  Any error means 400 and close.
 */
int http_req_framing(const struct http_req *req, struct http_framing *f)
	__attribute__((warn_unused_result));

/*
 * Response body framing (RFC 9112 §6.3), in rule order:
 *  1. a response to HEAD, any 1xx, 204 and 304 → NONE, whatever the fields
 *     say.  1xx other than 101 are interim: forward the head and parse the
 *     next one.  101 switches protocols: refuse it unless upgrades are
 *     allowed for the request.
 *  3. Transfer-Encoding with Content-Length → error (§6.3 rule 3 says the
 *     message "ought to be handled as an error"); in HTTP/1.0 → error (§6.1).
 *  4. Transfer-Encoding: a list of plain tokens (no parameters, no empty
 *     elements), "chunked" at most once and only last.  Last "chunked" →
 *     CHUNKED; otherwise → CLOSE.  Anything else → error.
 *  5. Content-Length as for requests → LENGTH; invalid or differing → error.
 *  8. neither → CLOSE.
 * Any error means 502 to the client and close the upstream connection.
 */
int http_resp_framing(const struct http_resp *r, bool request_was_head, struct http_framing *f)
	__attribute__((warn_unused_result));

/*
 * Connection persistence (RFC 9112 §9.3).  A request: HTTP/1.1 without a
 * "close" option (a proxy MUST NOT keep a connection with an HTTP/1.0
 * client persistent).  A response with framing f: not CLOSE, no "close"
 * option, and HTTP/1.1 or HTTP/1.0 with the "keep-alive" option.
 */
bool http_req_keep_alive(const struct http_req *req);
bool http_resp_keep_alive(const struct http_resp *r, const struct http_framing *f);

/* Does the request carry an Upgrade field (RFC 9110 §7.8)? Refuse unless allowed. */
bool http_req_has_upgrade(const struct http_req *req);

/* ---- rewriting heads for the next hop (RFC 9110 §7.6) ------------------- */

/*
 * Connection options (RFC 9110 §7.6.1: the elements of every Connection
 * field) a head may carry: real clients and servers send one to three
 * (close, keep-alive, upgrade, te).  A head with more is refused, so that
 * rewriting it stays linear in its size: 0 from the functions below, and
 * callers check with http_connection_options first.
 */
#define HTTP_MAX_CONNECTION_OPTIONS 32

/* The number of non-empty connection options in hs (HTTP_MAX_CONNECTION_OPTIONS + 1: more). */
size_t http_connection_options(const struct http_header *hs, size_t n);

enum http_conn_mode {
	HTTP_CONN_KEEP_ALIVE = 0, /* "Connection: keep-alive" */
	HTTP_CONN_CLOSE,          /* "Connection: close" */
	HTTP_CONN_UPGRADE,        /* keep the Upgrade field, "Connection: upgrade" (RFC 9110 §7.8) */
};

/*
 * Write the request head to send upstream into out[0..n):
 *   METHOD SP path query SP "HTTP/1.1" CRLF        (RFC 9112 §3.2.1, RFC 9110 §2.5)
 *   "Host: " canonical host [":" port unless 80 (https: 443)] CRLF   (first, RFC 9110 §7.2)
 *   every field line of req, in order, but: Host; Content-Length and
 *     Transfer-Encoding (re-emitted from f, so only the validated framing
 *     travels); Via (merged below); the hop-by-hop fields Connection,
 *     Proxy-Connection, Keep-Alive, TE, Trailer, Upgrade, Proxy-Authorization,
 *     Proxy-Authenticate and every field named by a Connection option
 *     (RFC 9110 §7.6.1; Upgrade is kept in HTTP_CONN_UPGRADE mode)
 *   "Content-Length: N" or "Transfer-Encoding: chunked" as f says
 *   "Via: " [received Via values ", "] "1.x portcullis" (RFC 9110 §7.6.3;
 *     1.x is the version the request was received in)
 *   "Connection: keep-alive" / "close" / "upgrade" as mode says, CRLF.
 * f must come from http_req_framing(req) (kind NONE, LENGTH or CHUNKED).
 * Returns the head's length, or 0 if it does not fit in n bytes, f is not
 * a request framing, or there are more than HTTP_MAX_CONNECTION_OPTIONS
 * connection options.  Nothing is written past out[n - 1].
 */
size_t http_forward_request_head(const struct http_req *req, const struct http_target *t,
				 const struct http_framing *f, enum http_conn_mode mode, char *out,
				 size_t n) __attribute__((warn_unused_result));

/*
 * Write the response head to send to the client: "HTTP/1.1" SP status SP
 * reason CRLF, then the fields as for requests (no Host handling; the same
 * hop-by-hop set), framing fields from f (f from http_resp_framing(r)):
 *   LENGTH → "Content-Length: N"; CHUNKED and CLOSE → the received
 *   Transfer-Encoding list in one line, if any (the proxy relays codings
 *   it does not decode); NONE → "Content-Length: N" only for a 2xx/3xx
 *   other than 204 whose Content-Length is valid (HEAD, 304: RFC 9110 §8.6).
 * then Via and Connection.  CLOSE framing forces "Connection: close"; a 1xx
 * other than 101 gets no Connection field (interim).  HTTP_CONN_UPGRADE
 * keeps the Upgrade field (for a 101).  An HTTP/1.0 client must not be sent
 * a 1xx (RFC 9110 §15.2): that is the caller's check.
 * Returns the length, or 0 if it does not fit or there are more than
 * HTTP_MAX_CONNECTION_OPTIONS connection options.
 */
size_t http_forward_response_head(const struct http_resp *r, const struct http_framing *f,
				  enum http_conn_mode mode, char *out, size_t n)
	__attribute__((warn_unused_result));

/* Stable snake_case name of any negative status of this module or chunked.h ("unknown" otherwise). */
const char *http_msg_status_str(int status);

#endif
