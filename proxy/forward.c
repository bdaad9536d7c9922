/* Phase "forward" (CS_FORWARD, CS_UPGRADING): one plain-HTTP exchange per upstream connection,
 * bodies streamed. */
#include "forward.h"

#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "http_msg.h"
#include "http_parse.h"
#include "intercepted.h"

/* Same buffering bound as tunnels: stop reading a side above HIGH, resume at LOW. */
#define FWD_HIGH (256u * 1024u)
#define FWD_LOW  (64u * 1024u)
/* Response heads may be larger than request heads (cookies, CSP). */
#define RESP_HEAD_MAX (32u * 1024u)
/* Room for what the rewrite adds to a head (Host, Via, Connection). */
#define HEAD_SLACK 1024u
/*
 * Interim (1xx) responses before the final one: 100 Continue and a few 103
 * Early Hints are what real servers send.  More is an upstream flooding the
 * client: bad_response.
 */
#define FWD_MAX_INTERIM 32

/*
 * One exchange.  Each direction has its own framing state: a response may
 * start (and end) while the request body still streams, and neither may
 * ever move the other's boundaries.  The exchange is over, and the next
 * request may be read, only when both ended by their own framing.
 */
struct fwd {
	struct http_framing req_f, resp_f;
	struct chunked_state req_chunk, resp_chunk; /* CHUNKED framing validators */
	uint64_t req_left, resp_left;               /* LENGTH framing: body bytes still to move */
	uint64_t req_body; /* request body bytes moved (max_request_body) */
	bool req_done;                              /* the request body ended by its framing */
	bool resp_started;                          /* a final response head went to the client */
	bool is_head;                               /* HEAD: the response has no body */
	bool client_10;     /* an HTTP/1.0 client: never sent a 1xx (RFC 9110 §15.2) */
	bool keep_alive;    /* the client connection is kept after this exchange */
	bool upgrade;       /* an allowed Upgrade was forwarded */
	unsigned n_interim; /* 1xx heads read */
	struct http_head_watch head_watch; /* when the response head is worth parsing */
};

static void pump_request(struct conn *c);
static void pump_response(struct conn *c);

static void fwd_release(struct conn *c)
{
	free(c->fwd);
	c->fwd = NULL;
}

/* A failure: a status if the client has seen nothing of the response yet, else an end. */
static void fail(struct conn *c, enum reason why)
{
	if (!c->fwd->resp_started && reason_http_status(why) >= 400)
		conn_refuse(c, why);
	else
		conn_finish(c, why);
}

/* Both directions ended by their own framing: record; keep the client or end. */
static void done(struct conn *c)
{
	struct fwd *h = c->fwd;
	/* The record says when the exchange completed, not when its last bytes left. */
	conn_audit(c, R_ALLOWED, true);
	if (!h->keep_alive || c->client_eof || atomic_load(c->env->draining)) {
		conn_finish(c, R_ALLOWED);
		return;
	}
	/* An intercepted tunnel keeps its upstream session (same host, and it said keep-alive). */
	if (c->icpt == NULL)
		conn_upstream_done(c);
	else if (!intercept_keep(c)) {
		conn_finish(c, R_ALLOWED);
		return;
	}
	fwd_release(c);
	/* Keep-alive: the next request on this connection is decided on its own. */
	conn_next_exchange(c);
}

/* ---- bodies ---- */

/*
 * n more request body bytes are about to go upstream: R_ALLOWED, or
 * R_INTERCEPT_BODY_TOO_LARGE past the host rule's intercept.max_request_body
 * (the upstream is then reset, never sent a short body it could take as
 * whole).  Audit mode notes it and lets it pass.
 */
static enum reason body_cap(struct conn *c, uint64_t n)
{
	uint64_t max = policy_intercept_max_body(c->verdict.intercept);
	struct fwd *h = c->fwd;
	h->req_body += n;
	if (max == 0 || h->req_body <= max)
		return R_ALLOWED;
	if (conn_audit_mode(c)) {
		conn_would_deny(c, R_INTERCEPT_BODY_TOO_LARGE);
		return R_ALLOWED;
	}
	c->reset_upstream = true;
	return R_INTERCEPT_BODY_TOO_LARGE;
}

/*
 * Move one body's bytes per its framing, each charged to every cap and
 * budget.  Returns 1 when the body is complete, 0 when more is expected, or
 * a negative reason when it failed or was cut.
 */
static int body(struct conn *c, struct evbuffer *in, struct evbuffer *out, bool upload)
{
	struct fwd *h = c->fwd;
	const struct http_framing *f = upload ? &h->req_f : &h->resp_f;
	uint64_t *left = upload ? &h->req_left : &h->resp_left;
	size_t n = evbuffer_get_length(in), take = n;
	int st = CHUNKED_MORE;
	switch (f->kind) {
	case HTTP_FRAMING_NONE:
		return 1;
	case HTTP_FRAMING_LENGTH:
		take = n < *left ? n : (size_t)*left;
		break;
	case HTTP_FRAMING_CLOSE:
		break; /* ends at the upstream's EOF */
	case HTTP_FRAMING_CHUNKED: {
		/* Validate in place; forward exactly the bytes the validator consumed. */
		struct chunked_state *chunk = upload ? &h->req_chunk : &h->resp_chunk;
		struct evbuffer_iovec v[16];
		int nv = evbuffer_peek(in, -1, NULL, v, 16);
		take = 0;
		for (int i = 0; i < nv && i < 16 && st == CHUNKED_MORE; i++) {
			size_t used = 0;
			st = chunked_feed(chunk, v[i].iov_base, v[i].iov_len, &used);
			take += used;
		}
		if (st < 0)
			return -(int)(upload ? R_BAD_REQUEST : R_BAD_RESPONSE);
		break;
	}
	}
	enum reason cut;
	if (upload && (cut = body_cap(c, take)) != R_ALLOWED)
		return -(int)cut;
	uint64_t pass = conn_charge(c, upload, take, true, &cut);
	evbuffer_remove_buffer(in, out, (size_t)pass);
	if (cut != R_ALLOWED)
		return -(int)cut;
	if (f->kind == HTTP_FRAMING_LENGTH) {
		*left -= take;
		return *left == 0;
	}
	return f->kind == HTTP_FRAMING_CHUNKED && st == CHUNKED_DONE;
}

static void pump_request(struct conn *c)
{
	struct fwd *h = c->fwd;
	if (h->req_done)
		return;
	struct evbuffer *out = bufferevent_get_output(c->ubev);
	int r = body(c, bufferevent_get_input(c->cbev), out, true);
	if (r < 0) {
		fail(c, (enum reason) - r);
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

/* The client is not reading: stop reading the upstream until it drains (heads and bodies alike). */
static bool client_full(struct conn *c)
{
	if (evbuffer_get_length(bufferevent_get_output(c->cbev)) < FWD_HIGH)
		return false;
	bufferevent_disable(c->ubev, EV_READ);
	bufferevent_setwatermark(c->cbev, EV_WRITE, FWD_LOW, 0);
	return true;
}

/* Parse response heads until a final one went to the client. False: not yet, or c moved on. */
static bool response_head(struct conn *c)
{
	struct fwd *h = c->fwd;
	struct evbuffer *in = bufferevent_get_input(c->ubev);
	struct http_limits lim;
	http_limits_default(&lim);
	lim.max_head_bytes = RESP_HEAD_MAX;
	lim.max_line_bytes = RESP_HEAD_MAX;
	lim.max_headers = HTTP_MAX_HEADERS_HARD;
	while (!h->resp_started) {
		if (client_full(c))
			return false;
		size_t len = evbuffer_get_length(in);
		size_t look = len < RESP_HEAD_MAX + 1 ? len : RESP_HEAD_MAX + 1;
		const char *p = (const char *)evbuffer_pullup(in, (ev_ssize_t)look);
		/* An upstream dripping its head is parsed O(log n) times, not once per piece. */
		if (p == NULL || !http_head_worth_parsing(&h->head_watch, p, look, RESP_HEAD_MAX))
			return false;
		struct http_resp resp;
		int r = http_parse_response(p, look, &lim, &resp);
		if (r == HTTP_NEED_MORE)
			return false;
		memset(&h->head_watch, 0,
		       sizeof(h->head_watch)); /* the next head follows this one */
		bool interim =
		    r > 0 && resp.status >= 100 && resp.status < 200 && resp.status != 101;
		if (r < 0 || http_resp_framing(&resp, h->is_head, &h->resp_f) < 0 ||
		    (resp.status == 101 && !h->upgrade) ||
		    (interim && ++h->n_interim > FWD_MAX_INTERIM)) {
			fail(c, R_BAD_RESPONSE);
			return false;
		}
		if (interim && h->client_10) {
			evbuffer_drain(in,
			               (size_t)r); /* RFC 9110 §15.2: never to an HTTP/1.0 client */
			continue;
		}
		/* An intercepted tunnel's upstream session is kept only if it says it will stay. */
		bool keep = h->keep_alive && h->resp_f.kind != HTTP_FRAMING_CLOSE &&
		            (c->icpt == NULL || http_resp_keep_alive(&resp, &h->resp_f));
		enum http_conn_mode mode = resp.status == 101 ? HTTP_CONN_UPGRADE
		                           : keep             ? HTTP_CONN_KEEP_ALIVE
		                                              : HTTP_CONN_CLOSE;
		char head[RESP_HEAD_MAX + HEAD_SLACK];
		size_t n = http_forward_response_head(&resp, &h->resp_f, mode, head, sizeof(head));
		if (n == 0) {
			fail(c, R_BAD_RESPONSE);
			return false;
		}
		/* Heads, interim ones included, are download like the body: charged whole or cut.
		 */
		enum reason cut;
		if (!conn_charge_whole(c, false, n, true, &cut)) {
			fail(c, cut);
			return false;
		}
		evbuffer_drain(in, (size_t)r);
		if (bufferevent_write(c->cbev, head, n) != 0) {
			conn_close(c, R_INTERNAL_ERROR);
			return false;
		}
		if (interim)
			continue; /* RFC 9110 §15.2: 1xx precede the final response */
		h->resp_started = true;
		c->status = resp.status;
		h->keep_alive = keep;
		h->resp_left = h->resp_f.kind == HTTP_FRAMING_LENGTH ? h->resp_f.length : 0;
		chunked_init(&h->resp_chunk);
		if (resp.status == 101) {
			/* An allowed upgrade: from here on the connection is a tunnel. */
			conn_enter(c, CS_UPGRADING);
			return false;
		}
	}
	return true;
}

static void pump_response(struct conn *c)
{
	struct fwd *h = c->fwd;
	if (!h->resp_started && !response_head(c))
		return;
	if (client_full(c))
		return;
	int r = body(c, bufferevent_get_input(c->ubev), bufferevent_get_output(c->cbev), false);
	if (r < 0) {
		fail(c, (enum reason) - r);
		return;
	}
	if (r == 1) {
		/* The upstream answered before the request body ended: nothing to keep alive. */
		if (!h->req_done)
			h->keep_alive = false;
		done(c);
		return;
	}
	client_full(c);
}

/* ---- callbacks ---- */

static void read_cb(struct bufferevent *bev, void *arg)
{
	struct conn *c = arg;
	if (bev == c->cbev)
		pump_request(c);
	else
		pump_response(c);
}

static void write_cb(struct bufferevent *bev, void *arg)
{
	struct conn *c = arg;
	/* Backpressure released: resume the side that feeds this one, and what it left buffered. */
	bufferevent_setwatermark(bev, EV_WRITE, 0, 0);
	if (bev == c->ubev && !c->fwd->req_done) {
		bufferevent_enable(c->cbev, EV_READ);
		pump_request(c);
	} else if (bev == c->cbev) {
		bufferevent_enable(c->ubev, EV_READ);
		pump_response(c);
	}
}

static void event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct conn *c = arg;
	bool client = bev == c->cbev;
	if (what & BEV_EVENT_ERROR) {
		if (client) {
			conn_close(c, R_CLIENT_ERROR);
			return;
		}
		/* An upstream that answers early and resets (an error status without reading
		 * the body): deliver what did arrive first. */
		c->fwd->keep_alive = false;
		pump_response(c);
		if (c->state == CS_FORWARD)
			fail(c, R_UPSTREAM_ERROR);
		return;
	}
	if (!(what & BEV_EVENT_EOF))
		return;
	if (client) {
		c->client_eof = true;
		if (!c->fwd->req_done)
			conn_close(c, R_CLIENT_CLOSED);
		return; /* a half-closed client still gets its response */
	}
	/* Upstream EOF: the end of a close-delimited body, or a truncated response. */
	pump_response(c);
	if (c->state != CS_FORWARD)
		return;
	struct fwd *h = c->fwd;
	if (h->resp_started && h->resp_f.kind == HTTP_FRAMING_CLOSE) {
		h->keep_alive = false;
		done(c);
		return;
	}
	fail(c, h->resp_started ? R_UPSTREAM_CLOSED : R_BAD_RESPONSE);
}

/*
 * The upstream is connected; the request head is still at the front of the
 * client's input, as request.c decided it.  Parse it again (the same bytes
 * under the same limits give the same result), rewrite it for the upstream,
 * charge it, send it, and stream the body.
 */
static void forward_enter(struct conn *c)
{
	struct fwd *h = calloc(1, sizeof(*h));
	c->fwd = h;
	if (h == NULL) {
		conn_refuse(c, R_INTERNAL_ERROR);
		return;
	}
	const struct policy_settings *s = policy_settings(c->policy);
	struct http_limits lim;
	http_limits_default(&lim);
	lim.max_head_bytes = s->max_header_bytes;
	lim.max_line_bytes = s->max_header_bytes;
	lim.max_headers = s->max_headers;
	struct evbuffer *in = bufferevent_get_input(c->cbev);
	size_t len = evbuffer_get_length(in);
	size_t look = len < lim.max_head_bytes + 1 ? len : lim.max_head_bytes + 1;
	const char *p = (const char *)evbuffer_pullup(in, (ev_ssize_t)look);
	struct http_req req;
	struct http_target t;
	int head_in = p != NULL ? http_parse_request(p, look, &lim, &req) : HTTP_NEED_MORE;
	if (head_in <= 0 ||
	    (c->icpt != NULL ? intercept_target(c, &req, &t)
	                     : http_target_parse(req.target.p, req.target.len, &t)) != 0 ||
	    http_req_framing(&req, &h->req_f) != 0) {
		conn_refuse(c, R_INTERNAL_ERROR); /* decided from these bytes a moment ago */
		return;
	}
	h->upgrade = http_req_has_upgrade(&req);
	/* Any case: an origin that upper-cases the method sends HEAD's bodiless answer. */
	h->is_head = http_token_ieq(req.method, "head");
	h->keep_alive = http_req_keep_alive(&req);
	h->client_10 = req.version_minor == 0;
	h->req_left = h->req_f.kind == HTTP_FRAMING_LENGTH ? h->req_f.length : 0;
	chunked_init(&h->req_chunk);
	size_t cap = s->max_header_bytes + HEAD_SLACK;
	char *head = malloc(cap);
	/* One upstream connection per request, never reused for another target; an intercepted
	 * tunnel's one upstream session serves only its own host. */
	enum http_conn_mode mode = h->upgrade        ? HTTP_CONN_UPGRADE
	                           : c->icpt != NULL ? HTTP_CONN_KEEP_ALIVE
	                                             : HTTP_CONN_CLOSE;
	size_t n =
	    head == NULL ? 0 : http_forward_request_head(&req, &t, &h->req_f, mode, head, cap);
	/* The request head is upload like its body (the budget), not body (the cap). */
	enum reason cut = n == 0 ? R_HEADERS_TOO_LARGE : R_ALLOWED;
	if (n == 0 || !conn_charge_whole(c, true, n, false, &cut)) {
		free(head);
		conn_refuse(c, cut);
		return;
	}
	evbuffer_drain(in, (size_t)head_in);
	bufferevent_setcb(c->cbev, read_cb, write_cb, event_cb, c);
	bufferevent_setcb(c->ubev, read_cb, write_cb, event_cb, c);
	bufferevent_setwatermark(c->cbev, EV_WRITE, 0, 0);
	bufferevent_setwatermark(c->cbev, EV_READ, 0, 0);
	int w = bufferevent_write(c->ubev, head, n);
	free(head);
	if (w != 0) {
		conn_close(c, R_INTERNAL_ERROR);
		return;
	}
	bufferevent_enable(c->ubev, EV_READ | EV_WRITE);
	bufferevent_enable(c->cbev, EV_WRITE);
	if (h->req_f.kind == HTTP_FRAMING_NONE)
		h->req_done = true;
	else
		bufferevent_enable(c->cbev, EV_READ);
	conn_arm_activity(c);
	if (c->state == CS_FORWARD)
		pump_request(c);
}

static void activity_timeout(struct conn *c)
{
	struct fwd *h = c->fwd;
	/* The request went out whole and the upstream said nothing for the idle timeout. */
	if (c->state == CS_FORWARD && h != NULL && h->req_done && !h->resp_started &&
	    conn_idle_left_ns(c) == 0) {
		fail(c, R_RESPONSE_TIMEOUT);
		return;
	}
	conn_arm_activity(c);
}

/* ---- CS_UPGRADING: the 101 goes out, then the relay takes both sockets ---- */

static void upgrading_write_cb(struct bufferevent *bev, void *arg)
{
	struct conn *c = arg;
	if (bev == c->cbev && evbuffer_get_length(bufferevent_get_output(bev)) == 0)
		conn_enter(c, CS_TUNNEL);
}

static void upgrading_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct conn *c = arg;
	bool client = bev == c->cbev;
	if (what & BEV_EVENT_ERROR)
		conn_close(c, client ? R_CLIENT_ERROR : R_UPSTREAM_ERROR);
}

static void upgrading_enter(struct conn *c)
{
	fwd_release(c);
	/* Nothing is read until the relay has both sockets; a client EOF seen so far is kept. */
	bufferevent_disable(c->cbev, EV_READ);
	bufferevent_disable(c->ubev, EV_READ);
	bufferevent_setwatermark(c->cbev, EV_WRITE, 0, 0);
	bufferevent_setcb(c->cbev, NULL, upgrading_write_cb, upgrading_event_cb, c);
	bufferevent_setcb(c->ubev, NULL, NULL, upgrading_event_cb, c);
	if (evbuffer_get_length(bufferevent_get_output(c->cbev)) == 0) {
		conn_enter(c, CS_TUNNEL);
		return;
	}
	conn_arm_activity(c);
}

const struct conn_phase forward_phase = {
    .name = "forward",
    .enter = forward_enter,
    .timeout = activity_timeout,
    .release = fwd_release,
};

const struct conn_phase upgrading_phase = {
    .name = "upgrading",
    .enter = upgrading_enter,
    .timeout = activity_timeout,
    .release = fwd_release,
};
