/* HTTP/1.1 request- and response-head parsers: resumable, I/O-free, with limits (RFC 9112). */
#ifndef PORTCULLIS_HTTP_PARSE_H
#define PORTCULLIS_HTTP_PARSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A non-owning view into the caller's buffer. */
struct http_view {
	const char *p;
	size_t len;
};

#define HTTP_MAX_HEADERS_HARD 128

struct http_limits {
	size_t max_head_bytes;   /* request line + headers + final CRLF; default 8192 */
	size_t max_line_bytes;   /* one line incl. CRLF; default 4096 */
	size_t max_headers;      /* default 100, at most HTTP_MAX_HEADERS_HARD */
};

enum http_method_kind { HTTP_M_CONNECT = 1, HTTP_M_OTHER = 2 };

struct http_header {
	struct http_view name;
	struct http_view value; /* leading/trailing OWS trimmed */
};

struct http_req {
	enum http_method_kind method_kind;
	struct http_view method;
	struct http_view target;      /* request-target as sent */
	int version_minor;            /* HTTP/1.x: x (0 or 1) */
	size_t n_headers;
	struct http_header headers[HTTP_MAX_HEADERS_HARD];
	struct http_view host;        /* value of the single Host header, or {NULL,0} */
	int has_proxy_authorization;  /* the header is present (its value is never copied anywhere) */
	/* Added with the parser; the fields above are unchanged. */
	int has_host;                 /* a Host field line was seen (host may still be empty) */
	size_t n_content_length;      /* number of Content-Length field lines */
	struct http_view content_length;    /* first Content-Length value or {NULL,0}; not validated */
	size_t n_transfer_encoding;   /* number of Transfer-Encoding field lines */
	struct http_view transfer_encoding; /* first Transfer-Encoding value or {NULL,0}; not validated */
	int connection_close;         /* a Connection field lists the "close" option (RFC 9112 §9.6) */
};

/* A response head (RFC 9112 §4, §5), parsed by http_parse_response. */
struct http_resp {
	int version_minor;            /* HTTP/1.x: x (0 or 1) */
	int status;                   /* 100..599 */
	struct http_view reason;      /* reason-phrase, may be empty */
	size_t n_headers;
	struct http_header headers[HTTP_MAX_HEADERS_HARD];
	size_t n_content_length;      /* number of Content-Length field lines */
	struct http_view content_length;    /* first Content-Length value; not validated */
	size_t n_transfer_encoding;   /* number of Transfer-Encoding field lines */
	struct http_view transfer_encoding; /* first Transfer-Encoding value; not validated */
	int connection_close;         /* a Connection field lists "close" (RFC 9112 §9.6) */
	int connection_keep_alive;    /* ... lists "keep-alive" (RFC 9112 §9.3, HTTP/1.0) */
	int connection_upgrade;       /* ... lists "upgrade" (RFC 9110 §7.8) */
	int has_upgrade;              /* an Upgrade field line is present */
};

enum http_status {
	HTTP_NEED_MORE = 0,
	HTTP_ERR_SYNTAX = -1,       /* malformed request line or header → 400 */
	HTTP_ERR_TOO_LARGE = -2,    /* head bytes over max_head_bytes → 431 */
	HTTP_ERR_LINE_TOO_LONG = -3,/* a line over max_line_bytes → 431 (request line: 414) */
	HTTP_ERR_TOO_MANY = -4,     /* more than max_headers → 431 */
	HTTP_ERR_BAD_CHAR = -5,     /* NUL or another control byte → 400 */
	HTTP_ERR_BARE_LF = -6,      /* LF without CR → 400 */
	HTTP_ERR_DUP_HOST = -7,     /* more than one Host header → 400 */
	HTTP_ERR_VERSION = -8,      /* not HTTP/1.0 or HTTP/1.1 → 505 */
	HTTP_ERR_OBS_FOLD = -9,     /* obsolete line folding → 400 */
	HTTP_ERR_URI_TOO_LONG = -10,/* request line over max_line_bytes → 414 */
};

void http_limits_default(struct http_limits *l);

/*
 * Parse the request head in buf[0..len).  Returns the number of bytes the
 * head occupies (> 0) when complete, HTTP_NEED_MORE when more bytes are
 * needed (and no limit is exceeded yet), or a negative http_status.  Safe
 * to call again on the same buffer as it grows.  out's views point into buf.
 *
 * Consistency: once some prefix of a byte stream gives a result other than
 * HTTP_NEED_MORE, every longer prefix gives the same result.  Bytes after the
 * head are never read.  out is zeroed at the start of each call and is left
 * zeroed unless the result is > 0.  lim == NULL means http_limits_default;
 * max_headers is clamped to HTTP_MAX_HEADERS_HARD and max_head_bytes to
 * INT_MAX.  A NULL out, or a NULL buf with len > 0, gives HTTP_ERR_SYNTAX.
 * The parser does not require Host (HTTP/1.0 clients omit it) and does not
 * check Content-Length / Transfer-Encoding values: that is the caller's.
 */
int http_parse_request(const char *buf, size_t len, const struct http_limits *lim,
		       struct http_req *out) __attribute__((warn_unused_result));

/*
 * Parse a response head: the same contract, limits and strictness as
 * http_parse_request (CRLF only, no CTLs, no obs-fold, no whitespace before
 * a colon).  Status line: "HTTP/1.0" or "HTTP/1.1" SP 3DIGIT (100..599)
 * [SP reason]; a missing SP before an empty reason is accepted.  An
 * over-long status line is HTTP_ERR_LINE_TOO_LONG; HTTP_ERR_DUP_HOST and
 * HTTP_ERR_URI_TOO_LONG never occur.  Every error means 502 to the client.
 */
int http_parse_response(const char *buf, size_t len, const struct http_limits *lim,
			struct http_resp *out) __attribute__((warn_unused_result));

/*
 * When is a growing head worth (re)parsing?  The parsers rescan from the
 * start, so a head dripped one byte per read would cost a parse per byte:
 * quadratic work for a client (or an upstream) that wants to burn the
 * proxy's CPU.  A head is complete only with its empty line (RFC 9112
 * §2.1): parse when that has arrived, at the limit (len > max), on the first
 * call, or when the buffer has doubled since the last parse (so a malformed
 * head is refused early).  The search for the empty line resumes where it
 * stopped.  Over a head's whole arrival this examines each byte a bounded
 * number of times (work counts the search steps) and says "parse"
 * O(log len) times.
 * Zero the watch for each new head.
 */
struct http_head_watch {
	size_t scanned; /* bytes searched for CRLFCRLF, less 3 */
	size_t parsed;  /* len at the last "parse" answer */
	size_t work;    /* bytes examined so far (for tests) */
};

bool http_head_worth_parsing(struct http_head_watch *w, const char *buf, size_t len, size_t max);

/* Shared with proxy/http_msg.c, so the rules live in one place. */

/* tchar (RFC 9110 §5.6.2). */
bool http_is_tchar(unsigned char c);

/* Is v equal to lower, ASCII case-insensitively? (field names, tokens; RFC 9110 §5.1) */
bool http_token_ieq(struct http_view v, const char *lower);

/*
 * Iterate a #list field value (RFC 9110 §5.6.1): splits on ',' and trims
 * OWS; empty elements are returned too (a value with k commas gives k + 1
 * elements).  Start with *pos = 0; returns false when no element is left.
 * Quoted strings are not recognised: a ',' inside one splits too.
 */
bool http_list_next(struct http_view list, size_t *pos, struct http_view *elem);

/*
 * Stable snake_case name of a return value of http_parse_request, e.g.
 * "bare_lf"; "complete" for any value > 0, "unknown" for anything else.
 */
const char *http_status_str(int status);

/* HTTP status to answer a negative http_status with (400, 414, 431, 505); 0 otherwise. */
int http_status_code(int status);

#endif
