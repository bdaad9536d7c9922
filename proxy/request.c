/* Phase "request" (CS_REQUEST): read a request head, identify, decide; then dial or refuse. */
#include "request.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>

#include "http_msg.h"
#include "http_parse.h"
#include "intercepted.h"
#include "jsonw.h"
#include "proxy_proto.h"
#include "transport.h"

/* Limits of a request head under the current snapshot (one long header, a JWT, may use it all). */
static void head_limits(const struct conn *c, struct http_limits *lim)
{
	const struct policy_settings *s = policy_settings(c->env->policy);
	http_limits_default(lim);
	lim->max_head_bytes = s->max_header_bytes;
	lim->max_line_bytes = s->max_header_bytes;
	lim->max_headers = s->max_headers;
}

static enum reason parse_error_reason(int err)
{
	switch (err) {
	case HTTP_ERR_TOO_LARGE:
	case HTTP_ERR_LINE_TOO_LONG:
	case HTTP_ERR_TOO_MANY:
	case HTTP_ERR_URI_TOO_LONG:
		return R_HEADERS_TOO_LARGE;
	case HTTP_ERR_VERSION:
		return R_VERSION_NOT_SUPPORTED;
	default:
		return R_BAD_REQUEST;
	}
}

static enum reason target_reason(int st)
{
	switch (st) {
	case HTTP_TARGET_ORIGIN_FORM:
		return R_NOT_ABSOLUTE_FORM;
	case HTTP_TARGET_HTTPS:
		return R_HTTPS_TARGET;
	case HTTP_TARGET_BAD_AUTHORITY:
		return R_INVALID_HOST;
	default:
		return R_BAD_REQUEST;
	}
}

int request_keep_path(struct conn *c, const char *path, size_t len)
{
	/* url.path of the record, never the query; long paths are cut. */
	size_t plen = len < REQUEST_PATH_MAX ? len : REQUEST_PATH_MAX;
	free(c->url_path);
	c->url_path = malloc(plen + 1);
	if (c->url_path == NULL)
		return -1;
	memcpy(c->url_path, path, plen);
	c->url_path[plen] = '\0';
	return 0;
}

/*
 * A plain-HTTP request (absolute-form, any method but CONNECT): the target
 * is the only thing decided and dialled.  R_ALLOWED so far, or why not.
 * The head stays in the client's input: forward.c rewrites it for the
 * upstream once connected (the same bytes parse the same way).
 */
static enum reason plain_target(struct conn *c, const struct http_req *req)
{
	struct http_target t;
	int st = http_target_parse(req->target.p, req->target.len, &t);
	if (st < 0)
		return target_reason(st);
	c->host = t.host;
	c->port = t.port;
	if (request_keep_path(c, t.path.p, t.path.len) != 0)
		return R_INTERNAL_ERROR;
	/* RFC 9112 §3.2.2: the target decides; a Host naming anything else is refused. */
	if (!http_host_header_matches(req, &t))
		return R_HOST_MISMATCH;
	struct http_framing f;
	if (http_req_framing(req, &f) < 0)
		return R_BAD_REQUEST;
	/* Its rewrite for the upstream compares each field with each connection option. */
	if (http_connection_options(req->headers, req->n_headers) > HTTP_MAX_CONNECTION_OPTIONS)
		return R_BAD_REQUEST;
	const struct policy_tier *tier = conn_tier(c);
	if (tier != NULL && !policy_tier_method_allowed(tier, req->method.p, req->method.len))
		return R_METHOD_NOT_ALLOWED;
	if (http_req_has_upgrade(req) && (tier == NULL || !tier->http_allow_upgrade))
		return R_UPGRADE_NOT_ALLOWED;
	return R_ALLOWED;
}

/* A plain request to a host whose rule intercepts: its method and path decided by the rule. */
static enum reason plain_rules(struct conn *c, const struct http_req *req)
{
	struct http_target t;
	struct http_framing f;
	if (http_target_parse(req->target.p, req->target.len, &t) != 0 ||
	    http_req_framing(req, &f) != 0)
		return R_BAD_REQUEST; /* plain_target accepted both a moment ago */
	return intercept_rules(c, req, t.path.p, t.path.len, &f);
}

/* The request's User-Agent for the record (the first one; long values are cut). */
static void keep_user_agent(struct conn *c, const struct http_req *req)
{
	for (size_t i = 0; i < req->n_headers; i++) {
		const struct http_view *n = &req->headers[i].name, *v = &req->headers[i].value;
		if (n->len != 10 || strncasecmp(n->p, "user-agent", 10) != 0)
			continue;
		size_t len = jsonw_utf8_cut(v->p, v->len, REQUEST_UA_MAX);
		free(c->user_agent);
		c->user_agent = malloc(len + 1);
		if (c->user_agent != NULL) {
			memcpy(c->user_agent, v->p, len);
			c->user_agent[len] = '\0';
		}
		return;
	}
}

/* The request's Proxy-Authorization, for identify(); its value is never copied or logged. */
static void credentials(const struct http_req *req, struct conn_credentials *cred)
{
	memset(cred, 0, sizeof(*cred));
	for (size_t i = 0; i < req->n_headers; i++) {
		if (!http_token_ieq(req->headers[i].name, "proxy-authorization"))
			continue;
		cred->repeated = cred->present;
		cred->present = true;
		cred->value = req->headers[i].value.p;
		cred->len = req->headers[i].value.len;
	}
}

/* Decide on a complete request head (head_len bytes at the front of the client's input). */
static void decide(struct conn *c, const struct http_req *req, size_t head_len)
{
	struct conn_credentials cred;
	/* Inside an intercepted tunnel the CONNECT's credentials identify every request. */
	if (intercept_active(c))
		intercept_credentials(c, &cred);
	else
		credentials(req, &cred);
	enum reason why = conn_decide_begin(c, req->method.p, req->method.len, &cred);
	keep_user_agent(c, req);
	bool plain = req->method_kind != HTTP_M_CONNECT;
	c->plain = plain;
	if (why != R_ALLOWED) {
		conn_refuse(c, why); /* identity: a certificate or a token that may not pass */
		return;
	}
	if (intercept_active(c)) {
		intercept_request(c, req);
		return;
	}
	/* RFC 9112 §3.2: an HTTP/1.1 request without Host is refused (1.0 clients may omit it). */
	if (req->version_minor == 1 && !req->has_host)
		why = R_BAD_REQUEST;
	else if (plain)
		why = plain_target(c, req);
	else if (req->n_content_length > 0 || req->n_transfer_encoding > 0)
		why = R_BAD_REQUEST; /* RFC 9110 §9.3.6: a CONNECT request has no content */
	else if (host_parse_authority(req->target.p, req->target.len, 0, &c->host, &c->port) !=
	         HOST_OK)
		why = R_INVALID_HOST;
	if (why != R_ALLOWED) {
		conn_refuse(c, why);
		return;
	}
	why = conn_admit(c, plain);
	/* A host its rule intercepts: a CONNECT gets the session's state before the dial; a
	 * plain request, whose head is here to read, gets the rule's request rules now. */
	if (why == R_ALLOWED && c->verdict.intercept != NULL)
		why = plain ? plain_rules(c, req) : intercept_prepare(c, &cred);
	if (why != R_ALLOWED) {
		conn_refuse(c, why);
		return;
	}
	/* A CONNECT's head is done with; what follows it is the tunnel's.  A plain head stays. */
	if (!plain)
		evbuffer_drain(bufferevent_get_input(c->cbev), head_len);
	conn_disarm(c);
	bufferevent_disable(c->cbev, EV_READ);
	bufferevent_setwatermark(c->cbev, EV_READ, 0, 0);
	conn_enter(c, c->host.kind == HOST_NAME ? CS_RESOLVING : CS_CONNECTING);
}

static void read_cb(struct bufferevent *bev, void *arg)
{
	struct conn *c = arg;
	conn_env_refresh(c->env);
	struct http_limits lim;
	head_limits(c, &lim);
	struct evbuffer *in = bufferevent_get_input(bev);
	size_t len = evbuffer_get_length(in);
	size_t look = len < lim.max_head_bytes + 1 ? len : lim.max_head_bytes + 1;
	const char *p = (const char *)evbuffer_pullup(in, (ev_ssize_t)look);
	if (p == NULL) {
		conn_refuse(c, R_INTERNAL_ERROR);
		return;
	}
	/* A head dripped in pieces is parsed O(log n) times, not once per piece. */
	if (!http_head_worth_parsing(&c->head_watch, p, look, lim.max_head_bytes))
		return;
	struct http_req req;
	int r = http_parse_request(p, look, &lim, &req);
	if (r == HTTP_NEED_MORE)
		return;
	if (r < 0) {
		/* A PROXY header where a request is due: a client choosing its own source address
		 * on a listener that takes none, or a header sent twice. */
		struct pp_header h;
		bool pp = proxy_proto_parse((const uint8_t *)p, look, PP_ACCEPT_V1 | PP_ACCEPT_V2,
		                            &h) != PP_ERR_MISSING;
		conn_refuse(c, pp ? R_PROXY_HEADER_UNEXPECTED : parse_error_reason(r));
		return;
	}
	decide(c, &req, (size_t)r);
}

/*
 * A TLS listener's handshake did not complete: no HTTP status can reach the
 * client, so the refusal is its record (and the close).
 */
static void refuse_handshake(struct conn *c, enum reason why)
{
	c->have_request = true;
	c->verdict.allow = false;
	c->verdict.reason = why;
	c->status = 0;
	conn_audit(c, why, false);
	conn_close(c, why);
}

static void event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct conn *c = arg;
	if (what == BEV_EVENT_CONNECTED)
		return; /* a TLS listener's handshake completed: the request head comes next */
	/* A TLS handshake that failed (not a client that merely went away) is a refusal. */
	if ((what & BEV_EVENT_ERROR) && transport_handshaking(c->client) &&
	    bufferevent_get_openssl_error(bev) != 0) {
		while (bufferevent_get_openssl_error(bev) != 0)
			;
		refuse_handshake(c, R_TLS_HANDSHAKE_FAILED);
		return;
	}
	/* The client went away before a complete request: nothing was decided, nothing to audit. */
	conn_close(c, (what & BEV_EVENT_ERROR) ? R_CLIENT_ERROR : R_CLIENT_CLOSED);
}

/*
 * The first head usually arrives right behind the handshake: read what is
 * there now.  A complete head is decided in this loop pass, and the read
 * event just enabled never reaches the kernel (the changelist folds it and
 * the disable that follows into no epoll_ctl).  Nothing there or an EOF: the
 * read event reports it as for any later read.  An error is handled here,
 * as the read event would (recv has consumed it).
 */
static void read_early(struct conn *c, size_t want)
{
	ssize_t n = transport_recv(c->client, c->env->relay_buf,
	                           want < CONN_RELAY_BUF ? want : CONN_RELAY_BUF);
	if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
		conn_close(c, R_CLIENT_ERROR); /* before a request: nothing to audit */
		return;
	}
	if (n <= 0)
		return;
	if (conn_push_input(c->cbev, c->env->relay_buf, (size_t)n) != 0) {
		conn_close(c, R_INTERNAL_ERROR);
		return;
	}
	read_cb(c->cbev, c);
}

static void request_enter(struct conn *c)
{
	conn_env_refresh(c->env);
	const struct policy_settings *s = policy_settings(c->env->policy);
	bufferevent_setcb(c->cbev, read_cb, NULL, event_cb, c);
	memset(&c->head_watch, 0, sizeof(c->head_watch));
	/* Never buffer more of a request head than the limit allows (+1 to detect overflow). */
	bufferevent_setwatermark(c->cbev, EV_READ, 0, s->max_header_bytes + 1);
	bufferevent_setwatermark(c->cbev, EV_WRITE, 0, 0);
	bufferevent_enable(c->cbev, EV_READ);
	conn_arm_ms(c, s->header_timeout_ms);
	if (evbuffer_get_length(bufferevent_get_input(c->cbev)) > 0)
		read_cb(c->cbev, c); /* a pipelined request is already here */
	else if (c->t_head == 0)
		read_early(c, (size_t)s->max_header_bytes + 1);
}

static void request_timeout(struct conn *c)
{
	/* limits.header_timeout covers a TLS listener's handshake too. */
	if (transport_handshaking(c->client)) {
		refuse_handshake(c, R_TLS_HANDSHAKE_TIMEOUT);
		return;
	}
	conn_refuse(c, R_REQUEST_TIMEOUT);
}

const struct conn_phase request_phase = {
    .name = "request",
    .enter = request_enter,
    .timeout = request_timeout,
};
