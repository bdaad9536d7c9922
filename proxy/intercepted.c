/* Phase "intercept" (CS_ICPT_UPSTREAM, CS_ICPT_CLIENT) and the decision of each request inside. */
#include "intercepted.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "ascii.h"
#include "clock.h"
#include "http_msg.h"
#include "http_parse.h"
#include "intercept.h"
#include "oplog.h"
#include "request.h"
#include "transport.h"

struct icpt {
	bool active;         /* the client's handshake completed: requests come inside TLS */
	struct pc_host host; /* the CONNECT's target, for every request of the session */
	uint16_t port;
	struct pc_addr dst; /* the vetted address the upstream session is connected to */
	/* The CONNECT's Proxy-Authorization (an OIDC token): each request is identified by it. */
	char *cred;
	size_t cred_len;
	bool cred_present, cred_repeated;
	const char *rule; /* the request rule that decided this request (in c->policy), or NULL */
};

static void icpt_release(struct conn *c)
{
	struct icpt *ic = c->icpt;
	if (ic == NULL)
		return;
	if (ic->cred != NULL) {
		OPENSSL_cleanse(ic->cred, ic->cred_len);
		free(ic->cred);
	}
	free(ic);
	c->icpt = NULL;
}

enum reason intercept_prepare(struct conn *c, const struct conn_credentials *cred)
{
	/* A TLS listener's client would need TLS inside TLS: not offered (docs/interception.md). */
	if (c->env->icpt_ca == NULL || transport_tls_session(c->client) != NULL)
		return R_INTERCEPT_UNAVAILABLE;
	struct icpt *ic = calloc(1, sizeof(*ic));
	if (ic == NULL)
		return R_INTERNAL_ERROR;
	if (cred->present) {
		ic->cred = malloc(cred->len + 1);
		if (ic->cred == NULL) {
			free(ic);
			return R_INTERNAL_ERROR;
		}
		memcpy(ic->cred, cred->value, cred->len);
		ic->cred[cred->len] = '\0';
		ic->cred_len = cred->len;
	}
	ic->cred_present = cred->present;
	ic->cred_repeated = cred->repeated;
	ic->host = c->host;
	ic->port = c->port;
	c->icpt = ic;
	return R_ALLOWED;
}

const char *intercept_rule(const struct conn *c)
{
	return c->icpt != NULL ? c->icpt->rule : NULL;
}

bool intercept_active(const struct conn *c)
{
	return c->icpt != NULL && c->icpt->active;
}

void intercept_credentials(const struct conn *c, struct conn_credentials *cred)
{
	const struct icpt *ic = c->icpt;
	memset(cred, 0, sizeof(*cred));
	cred->present = ic->cred_present;
	cred->repeated = ic->cred_repeated;
	cred->value = ic->cred;
	cred->len = ic->cred_len;
}

/* The address to name in the certificates when the CONNECT host is an IP literal, else NULL. */
static const struct pc_addr *host_ip(const struct icpt *ic)
{
	return ic->host.kind == HOST_NAME ? NULL : &ic->host.addr;
}

/* Drain OpenSSL's per-thread error queue and the bufferevent's copy of it. */
static void clear_errors(struct bufferevent *bev)
{
	while (bev != NULL && bufferevent_get_openssl_error(bev) != 0)
		;
	ERR_clear_error();
}

/*
 * Put TLS (ssl, taken) over a peer's socket, which has no bufferevent now,
 * and make the peers' bufferevents: the handshake runs in the new one.  An
 * end without close_notify is an end (many origins and clients just close; a
 * body cut short is still seen by its framing, forward.c).  False: out of
 * memory (the socket is closed, *peer NULL).
 */
static bool over_tls(struct conn *c, struct transport **peer, SSL *ssl)
{
	evutil_socket_t fd = transport_release(*peer);
	*peer = transport_tls_over(fd, ssl);
	if (*peer == NULL) {
		close(fd);
		return false;
	}
	if (conn_buffered(c) != 0)
		return false;
	bufferevent_openssl_set_allow_dirty_shutdown(*peer == c->client ? c->cbev : c->ubev, 1);
	return true;
}

/* ---- CS_ICPT_UPSTREAM: TLS to the upstream, verified as a browser would ---- */

static void client_out_cb(struct bufferevent *bev, void *arg)
{
	struct conn *c = arg;
	if (evbuffer_get_length(bufferevent_get_output(bev)) == 0)
		conn_enter(c, CS_ICPT_CLIENT);
}

static void client_wait_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct conn *c = arg;
	if (what & (BEV_EVENT_ERROR | BEV_EVENT_EOF))
		conn_close(c, (what & BEV_EVENT_ERROR) ? R_CLIENT_ERROR : R_CLIENT_CLOSED);
}

static void idle_read_cb(struct bufferevent *bev, void *arg);
static void idle_event_cb(struct bufferevent *bev, short what, void *arg);

static void upstream_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct conn *c = arg;
	SSL *ssl = transport_tls_ssl(c->upstream);
	if (what == BEV_EVENT_CONNECTED) {
		/* Only http/1.1 was offered; an upstream that picked anything else is not one. */
		const unsigned char *alpn = NULL;
		unsigned alen = 0;
		SSL_get0_alpn_selected(ssl, &alpn, &alen);
		if (alen != 0 && (alen != 8 || memcmp(alpn, "http/1.1", 8) != 0)) {
			conn_refuse(c, R_UPSTREAM_TLS_FAILED);
			return;
		}
		conn_disarm(c);
		/* Idle until the first request: an upstream that speaks first or leaves ends it. */
		bufferevent_setcb(c->ubev, idle_read_cb, NULL, idle_event_cb, c);
		static const char ok[] = "HTTP/1.1 200 Connection established\r\n\r\n";
		if (bufferevent_write(c->cbev, ok, sizeof(ok) - 1) != 0) {
			conn_close(c, R_INTERNAL_ERROR);
			return;
		}
		c->status = 200;
		metrics_observe(&c->env->metrics->setup, mono_ns() - c->t_head);
		bufferevent_setwatermark(c->cbev, EV_WRITE, 0, 0);
		bufferevent_setcb(c->cbev, NULL, client_out_cb, client_wait_event_cb, c);
		bufferevent_enable(c->cbev, EV_WRITE);
		/* A client that does not take its 200 holds an upstream session: not for long. */
		const struct policy_tier *t = conn_tier(c);
		conn_arm_ms(c, t != NULL ? t->hello_timeout_ms
		                         : policy_settings(c->policy)->header_timeout_ms);
		return;
	}
	char why[256] = "";
	bool verify = ssl != NULL && icpt_client_verify_failed(ssl, why, sizeof(why));
	clear_errors(bev);
	if (verify)
		oplog("info", "intercept: %s:%u: upstream certificate refused: %s", c->host.name,
		      (unsigned)c->port, why);
	conn_refuse(c, verify ? R_UPSTREAM_CERT_INVALID : R_UPSTREAM_TLS_FAILED);
}

static void upstream_enter(struct conn *c)
{
	struct icpt *ic = c->icpt;
	ic->dst = c->dst;
	char why[256] = "";
	SSL *ssl = icpt_client_ssl(c->env->icpt_ca, ic->host.name, host_ip(ic), why, sizeof(why));
	if (ssl == NULL) {
		oplog("error", "intercept: no TLS client for %s: %s", ic->host.name, why);
		conn_refuse(c, R_INTERCEPT_UNAVAILABLE);
		return;
	}
	SSL_set_options(ssl, SSL_OP_IGNORE_UNEXPECTED_EOF); /* see over_tls */
	if (!over_tls(c, &c->upstream, ssl)) {
		conn_refuse(c, R_INTERNAL_ERROR); /* before the 200: the client can be told */
		return;
	}
	bufferevent_setcb(c->ubev, NULL, NULL, upstream_event_cb, c);
	bufferevent_enable(c->ubev, EV_READ | EV_WRITE);
	const struct policy_tier *t = conn_tier(c);
	conn_arm_ms(c, conn_pick(t != NULL ? t->connect_timeout_ms : 0,
	                         policy_settings(c->policy)->connect_timeout_ms));
}

static void upstream_timeout(struct conn *c)
{
	/* The upstream's handshake did not complete; or (200 queued) the client took no 200. */
	if (c->status == 200)
		conn_cut(c, R_INTERCEPT_HANDSHAKE_FAILED);
	else
		conn_refuse(c, R_UPSTREAM_TIMEOUT);
}

/* ---- between requests: the upstream session waits for the next one ---- */

static void idle_read_cb(struct bufferevent *bev, void *arg)
{
	/* A response nobody asked for: the upstream is not speaking HTTP/1.1 any more. */
	conn_close(arg, R_BAD_RESPONSE);
}

static void idle_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct conn *c = arg;
	if (what & (BEV_EVENT_ERROR | BEV_EVENT_EOF)) {
		clear_errors(bev);
		/* The client sees its idle connection close, as with any origin that closes one. */
		conn_close(c, (what & BEV_EVENT_ERROR) ? R_UPSTREAM_ERROR : R_UPSTREAM_CLOSED);
	}
}

bool intercept_keep(struct conn *c)
{
	c->icpt->rule = NULL; /* it points into a snapshot the next request may let go */
	/* Bytes past the response's framing would be taken for the next request's answer. */
	if (evbuffer_get_length(bufferevent_get_input(c->ubev)) != 0)
		return false;
	bufferevent_setcb(c->ubev, idle_read_cb, NULL, idle_event_cb, c);
	bufferevent_setwatermark(c->ubev, EV_WRITE, 0, 0);
	bufferevent_setwatermark(c->ubev, EV_READ, 0, 0);
	bufferevent_enable(c->ubev, EV_READ);
	return true;
}

/* ---- CS_ICPT_CLIENT: the client's handshake, with a minted certificate ---- */

/* What the session says of itself, for the CONNECT's record. */
static void note_tls(struct conn *c, SSL *ssl)
{
	if (c->tls == NULL && (c->tls = calloc(1, sizeof(*c->tls))) == NULL)
		return;
	const char *sni = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
	if (sni != NULL)
		snprintf(c->tls->sni, sizeof(c->tls->sni), "%s", c->icpt->host.name);
	int v = SSL_version(ssl);
	snprintf(c->tls->version, sizeof(c->tls->version), "%s",
	         v == TLS1_3_VERSION   ? "1.3"
	         : v == TLS1_2_VERSION ? "1.2"
	                               : "");
	const unsigned char *alpn = NULL;
	unsigned alen = 0;
	SSL_get0_alpn_selected(ssl, &alpn, &alen);
	if (alen > 0 && alen < sizeof(c->tls->alpn)) {
		memcpy(c->tls->alpn, alpn, alen);
		c->tls->alpn[alen] = '\0';
	}
}

static void client_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct conn *c = arg;
	SSL *ssl = transport_tls_ssl(c->client);
	if (what == BEV_EVENT_CONNECTED) {
		c->icpt->active = true;
		conn_disarm(c);
		note_tls(c, ssl);
		/* The CONNECT's own record says the session opened; each request gets its own. */
		conn_audit_session(c);
		conn_next_exchange(c);
		return;
	}
	enum reason why = R_INTERCEPT_HANDSHAKE_FAILED;
	char alert[64] = "";
	int sni = ssl != NULL ? icpt_server_sni_result(ssl) : ICPT_SNI_OK;
	if (sni == ICPT_SNI_MISMATCH)
		why = R_TLS_SNI_MISMATCH;
	else if (sni == ICPT_SNI_MISSING)
		why = R_TLS_NO_SNI;
	else if (ssl != NULL && icpt_server_client_rejected(ssl, alert, sizeof(alert)))
		why = R_INTERCEPT_CLIENT_REJECTED;
	clear_errors(bev);
	if (why == R_INTERCEPT_CLIENT_REJECTED)
		oplog("info", "intercept: %s:%u: the client refused the minted certificate (%s)",
		      c->icpt->host.name, (unsigned)c->port, alert);
	conn_cut(c, why);
}

static void client_enter(struct conn *c)
{
	struct icpt *ic = c->icpt;
	/* The client spoke before the 200 reached it: nothing may be taken on trust. */
	if (evbuffer_get_length(bufferevent_get_input(c->cbev)) != 0 || c->client_eof) {
		conn_cut(c, R_INTERCEPT_HANDSHAKE_FAILED);
		return;
	}
	const struct policy_tier *t = conn_tier(c);
	char why[256] = "";
	SSL *ssl = icpt_server_ssl(c->env->icpt_ca, ic->host.name, host_ip(ic),
	                           t == NULL || t->require_sni, why, sizeof(why));
	if (ssl == NULL) {
		oplog("error", "intercept: no certificate for %s: %s", ic->host.name, why);
		conn_cut(c, R_INTERCEPT_UNAVAILABLE);
		return;
	}
	transport_unbuffer(c->client, c->cbev);
	c->cbev = NULL;
	if (!over_tls(c, &c->client, ssl)) {
		conn_close(c, R_INTERNAL_ERROR);
		return;
	}
	bufferevent_setcb(c->cbev, NULL, NULL, client_event_cb, c);
	bufferevent_enable(c->cbev, EV_READ | EV_WRITE);
	conn_arm_ms(c, t != NULL ? t->hello_timeout_ms
	                         : policy_settings(c->policy)->header_timeout_ms);
}

static void client_timeout(struct conn *c)
{
	conn_cut(c, R_INTERCEPT_HANDSHAKE_FAILED);
}

/* ---- each request inside the session ---- */

int intercept_target(const struct conn *c, const struct http_req *req, struct http_target *t)
{
	return http_origin_target_parse(req->target.p, req->target.len, &c->icpt->host,
	                                c->icpt->port, t);
}

/*
 * Is field name n the (lowercase) name w, ASCII case aside and with '_' for
 * '-' (CGI, WSGI and some servers map both to the same HTTP_X_... variable)?
 */
static bool name_is(struct http_view n, const char *w)
{
	size_t i = 0;
	for (; i < n.len && w[i] != '\0'; i++) {
		unsigned char a = (unsigned char)n.p[i];
		if ((a == '_' ? '-' : ascii_lower(a)) != (unsigned char)w[i])
			return false;
	}
	return i == n.len && w[i] == '\0';
}

/* Does the header name a method a server may act on instead of the request's own? */
static bool method_override(struct http_view n)
{
	return name_is(n, "x-http-method-override") || name_is(n, "x-http-method") ||
	       name_is(n, "x-method-override");
}

/* ... or a path it may act on instead of the target's? */
static bool url_override(struct http_view n)
{
	return name_is(n, "x-original-url") || name_is(n, "x-rewrite-url");
}

/* A method override's value: one method of letters (anything else is refused). */
static bool one_method(struct http_view v)
{
	if (v.len == 0 || v.len > 16)
		return false;
	for (size_t i = 0; i < v.len; i++)
		if (!ascii_is_alpha((unsigned char)v.p[i]))
			return false;
	return true;
}

/* One query parameter's name or value, percent-decoded: its decoded length (of which the first
 * cap bytes go to out), or SIZE_MAX for a bad escape (the target's check refused those). */
static size_t query_part(const char *p, size_t len, char *out, size_t cap)
{
	size_t o = 0;
	for (size_t i = 0; i < len; i++) {
		int ch = (unsigned char)p[i];
		if (ch == '+')
			ch = ' ';
		else if (ch == '%') {
			int hi = i + 2 < len ? ascii_hex_value((unsigned char)p[i + 1]) : -1;
			int lo = i + 2 < len ? ascii_hex_value((unsigned char)p[i + 2]) : -1;
			if (hi < 0 || lo < 0)
				return SIZE_MAX;
			ch = hi << 4 | lo;
			i += 2;
		}
		if (o < cap)
			out[o] = (char)ch;
		o++;
	}
	return o;
}

/*
 * The rules on the methods the query's "_method" parameters name (Symfony and
 * Laravel read it from the query as well as a form body): R_ALLOWED when there
 * is none or each is an allowed method on the path.  A "_method" whose name
 * or value cannot be read plainly is refused.
 */
static enum reason query_methods(const struct policy_intercept *rules, const char *target,
                                 size_t tlen, const char *path, size_t len, const char **rule)
{
	const char *q = memchr(target, '?', tlen);
	if (q == NULL)
		return R_ALLOWED;
	const char *end = target + tlen;
	for (const char *p = q + 1; p < end;) {
		const char *amp = memchr(p, '&', (size_t)(end - p));
		const char *pe = amp != NULL ? amp : end;
		const char *eq = memchr(p, '=', (size_t)(pe - p));
		const char *ne = eq != NULL ? eq : pe;
		char name[8], val[16];
		size_t nl = query_part(p, (size_t)(ne - p), name, sizeof(name));
		/* A name that cannot be read, or that reads as _method: its value must be one
		 * method, allowed on the path. */
		if (nl == SIZE_MAX || (nl == 7 && strncasecmp(name, "_method", 7) == 0)) {
			size_t vl =
			    eq != NULL ? query_part(eq + 1, (size_t)(pe - eq - 1), val, sizeof(val))
			               : 0;
			struct http_view v = {val, vl};
			if (nl == SIZE_MAX || vl > sizeof(val) || !one_method(v))
				return R_INTERCEPT_DENIED;
			enum reason why = policy_intercept_decide(rules, val, vl, path, len, rule);
			if (why != R_ALLOWED)
				return why;
		}
		p = pe + 1;
	}
	return R_ALLOWED;
}

/*
 * The rules on one request: its method and path, and every other method or
 * path a server may act on instead (the override headers that Rails, Express,
 * Symfony and IIS honour), each of which must be allowed as well.
 */
static enum reason rules_decide(const struct policy_intercept *rules, const struct http_req *req,
                                const char *path, size_t len, const char **rule)
{
	enum reason why =
	    policy_intercept_decide(rules, req->method.p, req->method.len, path, len, rule);
	const char *r1 = NULL;
	if (why == R_ALLOWED &&
	    (why = query_methods(rules, req->target.p, req->target.len, path, len, &r1)) !=
	        R_ALLOWED &&
	    r1 != NULL)
		*rule = r1;
	for (size_t i = 0; why == R_ALLOWED && i < req->n_headers; i++) {
		struct http_view n = req->headers[i].name, v = req->headers[i].value;
		const char *r2 = NULL;
		if (method_override(n))
			why = one_method(v)
			          ? policy_intercept_decide(rules, v.p, v.len, path, len, &r2)
			          : R_INTERCEPT_DENIED;
		else if (url_override(n))
			why = policy_intercept_decide(rules, req->method.p, req->method.len, v.p,
			                              v.len, &r2);
		if (why != R_ALLOWED && r2 != NULL)
			*rule = r2;
	}
	return why;
}

enum reason intercept_rules(struct conn *c, const struct http_req *req, const char *path,
                            size_t len, const struct http_framing *f)
{
	const struct policy_intercept *rules = c->verdict.intercept;
	if (rules == NULL)
		return R_ALLOWED;
	const char *rule = NULL;
	enum reason why = rules_decide(rules, req, path, len, &rule);
	if (c->icpt != NULL)
		c->icpt->rule = rule != NULL && rule[0] != '\0' ? rule : NULL;
	uint64_t max = policy_intercept_max_body(rules);
	if (why == R_ALLOWED && max != 0 && f->kind == HTTP_FRAMING_LENGTH && f->length > max)
		why = R_INTERCEPT_BODY_TOO_LARGE;
	/* After a 101 the bytes would be relayed unread (h2c: a whole HTTP/2 connection). */
	if (why == R_ALLOWED && http_req_has_upgrade(req))
		why = R_UPGRADE_NOT_ALLOWED;
	if (why != R_ALLOWED && conn_audit_mode(c)) {
		conn_would_deny(c, why);
		return R_ALLOWED;
	}
	return why;
}

void intercept_request(struct conn *c, const struct http_req *req)
{
	struct icpt *ic = c->icpt;
	/* The session's target and upstream, whatever the request says. */
	c->host = ic->host;
	c->port = ic->port;
	c->have_dst = true;
	c->dst = ic->dst;
	ic->rule = NULL;
	enum reason why = R_ALLOWED;
	struct http_target t;
	struct http_framing f;
	int st;
	if (req->method_kind == HTTP_M_CONNECT || (req->version_minor == 1 && !req->has_host))
		why = R_BAD_REQUEST;
	else if ((st = intercept_target(c, req, &t)) != 0)
		why = st == HTTP_TARGET_BAD_PATH ? R_INTERCEPT_BAD_PATH : R_BAD_REQUEST;
	else if (request_keep_path(c, t.path.p, t.path.len) != 0)
		why = R_INTERNAL_ERROR;
	/* Host must name the CONNECT host (and so the SNI the client sent it under). */
	else if (!http_host_header_matches(req, &t))
		why = R_INTERCEPT_HOST_MISMATCH;
	else if (http_req_framing(req, &f) < 0 ||
	         http_connection_options(req->headers, req->n_headers) >
	             HTTP_MAX_CONNECTION_OPTIONS)
		why = R_BAD_REQUEST;
	else if (http_req_has_upgrade(req))
		why = R_UPGRADE_NOT_ALLOWED; /* the session is HTTP/1.1 exchanges only */
	if (why != R_ALLOWED) {
		conn_refuse(c, why);
		return;
	}
	/* The host, under the policy current now (a reload may have taken it away), then the
	 * rule's request rules, as for a plain request. */
	why = conn_admit(c, false);
	if (why == R_ALLOWED)
		why = intercept_rules(c, req, t.path.p, t.path.len, &f);
	if (why != R_ALLOWED) {
		conn_refuse(c, why);
		return;
	}
	conn_disarm(c);
	bufferevent_disable(c->cbev, EV_READ);
	bufferevent_setwatermark(c->cbev, EV_READ, 0, 0);
	conn_enter(c, CS_FORWARD);
}

const struct conn_phase intercept_upstream_phase = {
    .name = "intercept_upstream",
    .enter = upstream_enter,
    .timeout = upstream_timeout,
    .release = icpt_release,
};

const struct conn_phase intercept_client_phase = {
    .name = "intercept_client",
    .enter = client_enter,
    .timeout = client_timeout,
    .release = icpt_release,
};
