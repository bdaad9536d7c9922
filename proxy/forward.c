/* Plain-HTTP forwarding: one upstream connection per request, bodies streamed and validated. */
#include "conn_int.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "http_msg.h"
#include "http_parse.h"
#include "server.h"
#include "srclimit.h"

/* Same buffering bound as tunnels: stop reading a side above HIGH, resume at LOW. */
#define FWD_HIGH (256u * 1024u)
#define FWD_LOW (64u * 1024u)
/* Response heads may be larger than request heads (cookies, CSP). */
#define RESP_HEAD_MAX (32u * 1024u)
/* Room for what the rewrite adds to a head (Host, Via, Connection). */
#define HEAD_SLACK 1024u

/* Per-request state of a plain-HTTP exchange. */
struct conn_http {
	char *head;                 /* rewritten request head, written once connected */
	size_t head_len;
	struct http_framing req_f, resp_f;
	/*
	 * Each direction has its own framing state: a response may start (and
	 * end) while the request body still streams, and neither may ever move
	 * the other's boundaries.
	 */
	struct chunked_state req_chunk, resp_chunk; /* CHUNKED framing validators */
	uint64_t req_left, resp_left; /* LENGTH framing: body bytes still to move */
	bool req_done;              /* the request body is complete */
	bool resp_started;          /* a final response head went to the client */
	bool is_head;               /* HEAD: the response has no body */
	bool keep_alive;            /* the client connection is kept after this exchange */
	bool upgrade;               /* an allowed Upgrade was forwarded */
	int resp_status;
	char path[512];             /* url.path (no query), truncated */
};

static void fwd_pump_request(struct conn *c);
static void fwd_pump_response(struct conn *c);

/* ---- preparing a request (called from handle_request, before the head is drained) ---- */

static enum reason target_reason(int st)
{
	switch (st) {
	case HTTP_TARGET_ORIGIN_FORM: return R_NOT_ABSOLUTE_FORM;
	case HTTP_TARGET_HTTPS: return R_HTTPS_TARGET;
	case HTTP_TARGET_BAD_AUTHORITY: return R_INVALID_HOST;
	default: return R_BAD_REQUEST;
	}
}

enum reason forward_prepare(struct conn *c, const struct http_req *req)
{
	struct http_target t;
	int st = http_target_parse(req->target.p, req->target.len, &t);
	if (st < 0)
		return target_reason(st);
	c->host = t.host;
	c->port = t.port;
	c->http = calloc(1, sizeof(*c->http));
	if (c->http == NULL)
		return R_INTERNAL_ERROR;
	struct conn_http *h = c->http;
	size_t plen = t.path.len < sizeof(h->path) - 1 ? t.path.len : sizeof(h->path) - 1;
	memcpy(h->path, t.path.p, plen);
	h->path[plen] = '\0';
	/* RFC 9112 §3.2.2: the target decides; a Host naming anything else is refused. */
	if (!http_host_header_matches(req, &t))
		return R_HOST_MISMATCH;
	if (http_req_framing(req, &h->req_f) < 0)
		return R_BAD_REQUEST;
	const struct policy_tier *tier = conn_tier(c);
	if (tier != NULL && !policy_tier_method_allowed(tier, req->method.p, req->method.len))
		return R_METHOD_NOT_ALLOWED;
	h->upgrade = http_req_has_upgrade(req);
	if (h->upgrade && (tier == NULL || !tier->http_allow_upgrade))
		return R_UPGRADE_NOT_ALLOWED;
	h->is_head = req->method.len == 4 && memcmp(req->method.p, "HEAD", 4) == 0;
	h->keep_alive = http_req_keep_alive(req);
	size_t cap = policy_settings(c->policy)->max_header_bytes + HEAD_SLACK;
	h->head = malloc(cap);
	if (h->head == NULL)
		return R_INTERNAL_ERROR;
	/* One upstream connection per request: never reused for another target. */
	h->head_len = http_forward_request_head(req, &t, &h->req_f,
						h->upgrade ? HTTP_CONN_UPGRADE : HTTP_CONN_CLOSE,
						h->head, cap);
	if (h->head_len == 0)
		return R_HEADERS_TOO_LARGE;
	h->req_left = h->req_f.kind == HTTP_FRAMING_LENGTH ? h->req_f.length : 0;
	chunked_init(&h->req_chunk);
	return R_ALLOWED;
}

void forward_free(struct conn *c)
{
	if (c->http == NULL)
		return;
	free(c->http->head);
	free(c->http);
	c->http = NULL;
}

const char *forward_path(const struct conn *c)
{
	return c->http != NULL ? c->http->path : NULL;
}

/* ---- ending an exchange ---- */

/*
 * Everything for the client is flushed: shut our write side and discard what
 * the client still sends for a moment (bounded), so unread request bytes do
 * not turn into a RST that destroys the response before the client reads it.
 */
static void fwd_linger(struct conn *c)
{
	shutdown(bufferevent_getfd(c->cbev), SHUT_WR);
	bufferevent_enable(c->cbev, EV_READ);
	conn_arm_ms(c, 2000);
}

/* Close once the client has what was written to it (the exchange's record is written first). */
static void fwd_close_after_flush(struct conn *c, enum reason why)
{
	conn_audit(c, why, true);
	if (c->ubev != NULL) {
		bufferevent_free(c->ubev);
		c->ubev = NULL;
	}
	bufferevent_disable(c->cbev, EV_READ);
	bufferevent_setwatermark(c->cbev, EV_WRITE, 0, 0);
	c->finishing = true;
	c->finish_reason = why;
	if (evbuffer_get_length(bufferevent_get_output(c->cbev)) == 0) {
		fwd_linger(c);
		return;
	}
	conn_arm_ms(c, 5000);
}

/* A failure: a status if the client has seen nothing of the response yet, else a close. */
static void fwd_fail(struct conn *c, enum reason why)
{
	if (!c->http->resp_started && reason_http_status(why) >= 400) {
		if (c->ubev != NULL) {
			bufferevent_free(c->ubev);
			c->ubev = NULL;
		}
		conn_refuse(c, why);
		return;
	}
	fwd_close_after_flush(c, why);
}

static void fwd_done(struct conn *c)
{
	struct conn_http *h = c->http;
	if (!h->keep_alive || c->client_eof || atomic_load(&c->w->srv->draining)) {
		fwd_close_after_flush(c, R_ALLOWED);
		return;
	}
	conn_audit(c, R_ALLOWED, true);
	bufferevent_free(c->ubev);
	c->ubev = NULL;
	/* Keep-alive: the next request on this connection is decided on its own. */
	conn_next_request(c);
}

/* ---- moving bytes ---- */

/*
 * Move up to n bytes of a body from `in` to `out`, charged to every cap and
 * budget.  Returns R_ALLOWED, or why only a part moved.
 */
static enum reason fwd_move(struct conn *c, struct evbuffer *in, struct evbuffer *out, size_t n,
			    bool upload)
{
	enum reason cut;
	uint64_t pass = conn_charge(c, upload, n, true, &cut);
	evbuffer_remove_buffer(in, out, (size_t)pass);
	return cut;
}

/*
 * Move one body's bytes per its framing.  Returns 1 when the body is
 * complete, 0 when more is expected, or a negative reason when it failed.
 */
static int fwd_body(struct conn *c, struct evbuffer *in, struct evbuffer *out,
		    const struct http_framing *f, bool upload)
{
	struct conn_http *h = c->http;
	uint64_t *left = upload ? &h->req_left : &h->resp_left;
	struct chunked_state *chunk = upload ? &h->req_chunk : &h->resp_chunk;
	size_t n = evbuffer_get_length(in);
	switch (f->kind) {
	case HTTP_FRAMING_NONE: return 1;
	case HTTP_FRAMING_LENGTH: {
		size_t take = n < *left ? n : (size_t)*left;
		enum reason cut = fwd_move(c, in, out, take, upload);
		if (cut != R_ALLOWED)
			return -(int)cut;
		*left -= take;
		return *left == 0;
	}
	case HTTP_FRAMING_CHUNKED: {
		/* Validate in place; forward exactly the bytes the validator consumed. */
		struct evbuffer_iovec v[16];
		int nv = evbuffer_peek(in, -1, NULL, v, 16);
		size_t total = 0;
		int st = CHUNKED_MORE;
		for (int i = 0; i < nv && i < 16 && st == CHUNKED_MORE; i++) {
			size_t used = 0;
			st = chunked_feed(chunk, v[i].iov_base, v[i].iov_len, &used);
			total += used;
		}
		if (st < 0)
			return -(int)(upload ? R_BAD_REQUEST : R_BAD_RESPONSE);
		enum reason cut = fwd_move(c, in, out, total, upload);
		if (cut != R_ALLOWED)
			return -(int)cut;
		return st == CHUNKED_DONE;
	}
	case HTTP_FRAMING_CLOSE:
		enum reason cut = fwd_move(c, in, out, n, upload);
		if (cut != R_ALLOWED)
			return -(int)cut;
		return 0; /* ends at the upstream's EOF */
	}
	return -(int)R_INTERNAL_ERROR;
}

static void fwd_pump_request(struct conn *c)
{
	struct conn_http *h = c->http;
	if (h->req_done)
		return;
	struct evbuffer *out = bufferevent_get_output(c->ubev);
	int r = fwd_body(c, bufferevent_get_input(c->cbev), out, &h->req_f, true);
	if (r < 0) {
		fwd_fail(c, (enum reason)-r);
		return;
	}
	if (r == 1) {
		/* Pipelined requests stay in the input until this exchange is done. */
		h->req_done = true;
		bufferevent_disable(c->cbev, EV_READ);
	} else if (evbuffer_get_length(out) >= FWD_HIGH) {
		bufferevent_disable(c->cbev, EV_READ);
		bufferevent_setwatermark(c->ubev, EV_WRITE, FWD_LOW, 0);
	}
}

/* Parse response heads until a final one went to the client. False: c is gone or failed. */
static bool fwd_response_head(struct conn *c)
{
	struct conn_http *h = c->http;
	struct evbuffer *in = bufferevent_get_input(c->ubev);
	while (!h->resp_started) {
		size_t len = evbuffer_get_length(in);
		size_t look = len < RESP_HEAD_MAX + 1 ? len : RESP_HEAD_MAX + 1;
		const char *p = (const char *)evbuffer_pullup(in, (ev_ssize_t)look);
		struct http_limits lim;
		http_limits_default(&lim);
		lim.max_head_bytes = RESP_HEAD_MAX;
		lim.max_line_bytes = RESP_HEAD_MAX;
		lim.max_headers = HTTP_MAX_HEADERS_HARD;
		struct http_resp resp;
		int r = http_parse_response(p, look, &lim, &resp);
		if (r == HTTP_NEED_MORE)
			return false;
		if (r < 0 || http_resp_framing(&resp, h->is_head, &h->resp_f) < 0 ||
		    (resp.status == 101 && !h->upgrade)) {
			fwd_fail(c, R_BAD_RESPONSE);
			return false;
		}
		bool interim = resp.status >= 100 && resp.status < 200 && resp.status != 101;
		bool keep = h->keep_alive && h->resp_f.kind != HTTP_FRAMING_CLOSE;
		enum http_conn_mode mode = resp.status == 101 ? HTTP_CONN_UPGRADE
					   : keep             ? HTTP_CONN_KEEP_ALIVE
							      : HTTP_CONN_CLOSE;
		char head[RESP_HEAD_MAX + HEAD_SLACK];
		size_t n = http_forward_response_head(&resp, &h->resp_f, mode, head, sizeof(head));
		if (n == 0) {
			fwd_fail(c, R_BAD_RESPONSE);
			return false;
		}
		/* Heads, interim ones included, are download like the body: charged whole or cut. */
		enum reason cut;
		uint64_t pass = conn_charge(c, false, n, true, &cut);
		if (cut != R_ALLOWED) {
			c->down -= pass; /* none of it went */
			fwd_fail(c, cut);
			return false;
		}
		evbuffer_drain(in, (size_t)r);
		bufferevent_write(c->cbev, head, n);
		if (interim)
			continue; /* RFC 9110 §15.2: 1xx precede the final response */
		h->resp_started = true;
		h->resp_status = resp.status;
		c->status = resp.status;
		h->keep_alive = keep;
		h->resp_left = h->resp_f.kind == HTTP_FRAMING_LENGTH ? h->resp_f.length : 0;
		chunked_init(&h->resp_chunk);
		if (resp.status == 101) {
			/* An allowed upgrade: from here on the connection is a tunnel. */
			forward_free(c);
			tunnel_from_upgrade(c);
			return false;
		}
	}
	return true;
}

static void fwd_pump_response(struct conn *c)
{
	struct conn_http *h = c->http;
	if (!h->resp_started && !fwd_response_head(c))
		return;
	struct evbuffer *out = bufferevent_get_output(c->cbev);
	int r = fwd_body(c, bufferevent_get_input(c->ubev), out, &h->resp_f, false);
	if (r < 0) {
		fwd_fail(c, (enum reason)-r);
		return;
	}
	if (r == 1) {
		if (!h->req_done) {
			/* The upstream answered before the request body ended: nothing to keep alive. */
			h->keep_alive = false;
		}
		fwd_done(c);
		return;
	}
	if (evbuffer_get_length(out) >= FWD_HIGH) {
		bufferevent_disable(c->ubev, EV_READ);
		bufferevent_setwatermark(c->cbev, EV_WRITE, FWD_LOW, 0);
	}
}

/* ---- callbacks ---- */

static void fwd_read_cb(struct bufferevent *bev, void *arg)
{
	struct conn *c = arg;
	if (c->finishing) {
		struct evbuffer *in = bufferevent_get_input(bev);
		evbuffer_drain(in, evbuffer_get_length(in));
		return;
	}
	if (bev == c->cbev)
		fwd_pump_request(c);
	else
		fwd_pump_response(c);
}

static void fwd_write_cb(struct bufferevent *bev, void *arg)
{
	struct conn *c = arg;
	if (c->finishing) {
		if (bev == c->cbev && evbuffer_get_length(bufferevent_get_output(bev)) == 0)
			fwd_linger(c);
		return;
	}
	/* Backpressure released: resume the side that feeds this one. */
	bufferevent_setwatermark(bev, EV_WRITE, 0, 0);
	if (bev == c->ubev && !c->http->req_done)
		bufferevent_enable(c->cbev, EV_READ);
	else if (bev == c->cbev && c->ubev != NULL)
		bufferevent_enable(c->ubev, EV_READ);
}

static void fwd_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct conn *c = arg;
	bool client = bev == c->cbev;
	if (c->finishing) {
		conn_close(c, c->finish_reason);
		return;
	}
	if (what & BEV_EVENT_ERROR) {
		if (client) {
			conn_close(c, R_CLIENT_ERROR);
			return;
		}
		/*
		 * An upstream that answers early and resets (e.g. an error status
		 * without reading the body): deliver what did arrive first.
		 */
		struct conn_http *h = c->http;
		c->http->keep_alive = false;
		fwd_pump_response(c);
		if (c->http == h && !c->finishing)
			fwd_fail(c, R_UPSTREAM_ERROR);
		return;
	}
	if (!(what & BEV_EVENT_EOF))
		return;
	if (client) {
		c->client_eof = true;
		if (!c->http->req_done)
			conn_close(c, R_CLIENT_CLOSED);
		return; /* a half-closed client still gets its response */
	}
	/* Upstream EOF: the end of a close-delimited body, or a truncated response. */
	struct conn_http *h = c->http;
	fwd_pump_response(c);
	if (c->http != h || c->finishing)
		return;
	if (h->resp_started && h->resp_f.kind == HTTP_FRAMING_CLOSE) {
		h->keep_alive = false;
		fwd_done(c);
		return;
	}
	fwd_fail(c, h->resp_started ? R_UPSTREAM_CLOSED : R_BAD_RESPONSE);
}

void forward_start(struct conn *c, evutil_socket_t fd)
{
	struct conn_http *h = c->http;
	/* The request head is upload like its body: charged before it goes, whole or not at all. */
	enum reason cut;
	uint64_t pass = conn_charge(c, true, h->head_len, false, &cut);
	if (cut != R_ALLOWED) {
		c->up -= pass; /* none of it went */
		close(fd);
		conn_refuse(c, cut);
		return;
	}
	c->ubev = bufferevent_socket_new(c->w->base, fd, BEV_OPT_CLOSE_ON_FREE);
	if (c->ubev == NULL) {
		close(fd);
		conn_close(c, R_INTERNAL_ERROR);
		return;
	}
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	conn_set_state(c, CS_FORWARD);
	bufferevent_setcb(c->cbev, fwd_read_cb, fwd_write_cb, fwd_event_cb, c);
	bufferevent_setcb(c->ubev, fwd_read_cb, fwd_write_cb, fwd_event_cb, c);
	bufferevent_setwatermark(c->cbev, EV_WRITE, 0, 0);
	bufferevent_setwatermark(c->cbev, EV_READ, 0, 0);
	if (bufferevent_write(c->ubev, h->head, h->head_len) != 0) {
		conn_close(c, R_INTERNAL_ERROR);
		return;
	}
	free(h->head);
	h->head = NULL;
	bufferevent_enable(c->ubev, EV_READ | EV_WRITE);
	bufferevent_enable(c->cbev, EV_WRITE);
	if (h->req_f.kind == HTTP_FRAMING_NONE)
		h->req_done = true;
	else
		bufferevent_enable(c->cbev, EV_READ);
	c->last_active = conn_coarse_ns();
	tunnel_arm(c);
	fwd_pump_request(c);
}
