/* Phase "first flight" (CS_HELLO, CS_SERVER_HELLO, CS_HELLO_RETRY): every ClientHello checked
 * before it moves. */
#include "hello.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "clock.h"
#include "tls_hello.h"
#include "tls_server.h"
#include "transport.h"

/*
 * The server's first flight is read only as far as its ServerHello's random
 * (RFC 8446 §4.1.3); a server that has not said that much in 16 KiB of
 * records is not speaking TLS to us.
 */
#define SERVER_FIRST_MAX (16u * 1024u + 5u)

/*
 * What the first ClientHello said, kept while the handshake may still ask
 * for a second one (§4.1.4: after a HelloRetryRequest).
 */
struct hello {
	bool has_sni;                    /* the first ClientHello named a server */
	char sni[HOST_NAME_MAX_LEN + 1]; /* its canonical SNI */
	bool early_data;                 /* it offered 0-RTT data (may precede the second hello) */
	bool retried;                    /* the server asked for a retry: only once (§4.1.4) */
	struct tls_hello_watch watch;    /* the hello being held (tls_hello_worth_parsing) */
	size_t watch_base;               /* where it starts in the client's input */
};

static void hello_release(struct conn *c)
{
	free(c->hello);
	c->hello = NULL;
}

/* Inspection is over: the relay takes both sockets; what the hellos said is no longer needed. */
static void to_tunnel(struct conn *c)
{
	hello_release(c);
	conn_disarm(c);
	conn_enter(c, CS_TUNNEL);
}

/* ---- what a hello says (RFC 8446 §4.1.2, RFC 6066 §3) ---- */

static void tls_version_text(const struct tls_hello *h, char *buf, size_t n)
{
	uint16_t best = h->legacy_version;
	for (size_t i = 0; i < h->n_versions; i++)
		if (!tls_is_grease(h->versions[i]) && h->versions[i] > best)
			best = h->versions[i];
	if (best >= 0x0301 && best <= 0x0304)
		snprintf(buf, n, "1.%u", (unsigned)(best - 0x0301));
	else
		snprintf(buf, n, "%u.%u", (unsigned)(best >> 8), (unsigned)(best & 0xff));
}

/* For the audit record: the last hello the server acts on. */
static void remember_hello(struct conn *c, const struct tls_hello *h, const struct pc_host *sni)
{
	if (c->tls == NULL)
		c->tls = calloc(1, sizeof(*c->tls));
	if (c->tls == NULL)
		return; /* the audit record loses its TLS fields, nothing else */
	memset(c->tls, 0, sizeof(*c->tls));
	if (sni != NULL)
		memcpy(c->tls->sni, sni->name, sni->len + 1);
	tls_version_text(h, c->tls->version, sizeof(c->tls->version));
	/* A protocol id holding a NUL is not recorded: its text would end at the NUL, naming
	 * a protocol the client did not offer ("h2\0x" as "h2"). */
	if (h->n_alpn_total == 1 && h->alpn[0].len < sizeof(c->tls->alpn) &&
	    memchr(h->alpn[0].p, 0, h->alpn[0].len) == NULL) {
		memcpy(c->tls->alpn, h->alpn[0].p, h->alpn[0].len);
		c->tls->alpn[h->alpn[0].len] = '\0';
	}
	if (ja4_fingerprint(h, c->tls->ja4) != 0)
		c->tls->ja4[0] = '\0';
}

/* tls.ja4_allow / ja4_deny; a JA4 that could not be computed passes only a tier without lists. */
static bool ja4_ok(const struct conn *c, const struct policy_tier *t)
{
	if (t->n_ja4_allow == 0 && t->n_ja4_deny == 0)
		return true;
	return c->tls != NULL && c->tls->ja4[0] != '\0' && policy_tier_ja4_allowed(t, c->tls->ja4);
}

/*
 * The tier's rules for a parsed hello: R_ALLOWED or why not.  A second
 * hello gets every rule the first one got, and must name the same server.
 */
static enum reason verdict(struct conn *c, const struct tls_hello *h, bool second)
{
	const struct policy_tier *t = conn_tier(c);
	struct hello *st = c->hello;
	struct pc_host sni;
	/* RFC 6066 §3: HostName is a DNS name; literal addresses are not permitted. */
	bool sni_ok = h->has_sni &&
	              host_canon((const char *)h->sni.p, h->sni.len, &sni) == HOST_OK &&
	              sni.kind == HOST_NAME;
	remember_hello(c, h, sni_ok ? &sni : NULL);
	if (!second) {
		st->has_sni = sni_ok;
		if (sni_ok)
			memcpy(st->sni, sni.name, sni.len + 1);
		st->early_data = h->has_early_data;
	}
	if ((h->has_ech || h->has_esni) && !t->allow_ech)
		return R_TLS_ECH;
	if (!ja4_ok(c, t))
		return R_TLS_JA4_NOT_ALLOWED;
	if (h->has_sni && !sni_ok)
		return R_TLS_MALFORMED;
	/* §4.1.2: the second hello is the first one with a new key share, not a new server. */
	if (second && (st->has_sni != sni_ok || (sni_ok && strcmp(st->sni, sni.name) != 0)))
		return R_TLS_SNI_MISMATCH;
	if (!h->has_sni)
		return t->require_sni ? R_TLS_NO_SNI : R_ALLOWED;
	if (c->host.kind == HOST_NAME && t->sni_must_match && strcmp(sni.name, c->host.name) != 0)
		return R_TLS_SNI_MISMATCH;
	/* The SNI must itself be allowed (for an IP-literal CONNECT this is the only name check).
	 */
	struct verdict v;
	policy_decide_host(c->policy, c->tier, &sni, c->port, &v);
	if (!v.allow || v.would_deny)
		return R_TLS_SNI_NOT_ALLOWED;
	/* A host whose rule intercepts is reached through interception only: never by naming it
	 * in the hello of a tunnel to another host (or to an address), relayed unread. */
	if (v.intercept != NULL)
		return R_TLS_SNI_NOT_ALLOWED;
	return R_ALLOWED;
}

static enum reason parse_error_reason(int st)
{
	switch (st) {
	case TLS_ERR_NOT_TLS:
		return R_NOT_TLS;
	case TLS_ERR_TOO_LARGE:
		return R_TLS_HELLO_TOO_LARGE;
	default:
		return R_TLS_MALFORMED;
	}
}

/* A refusal: cut (enforce), or record it and go on (audit).  True when the tunnel goes on. */
static bool allowed(struct conn *c, enum reason why)
{
	if (why == R_ALLOWED)
		return true;
	if (!conn_audit_mode(c)) {
		conn_cut(c, why);
		return false;
	}
	conn_would_deny(c, why);
	return true;
}

/*
 * Write up to n bytes from the front of in to the upstream at once, draining
 * what went; the bytes sent.  Only with nothing queued in front of them: the
 * upstream is plain TCP and was just connected, so a hello goes out now
 * instead of after a round through epoll for writability.  What does not go
 * (EAGAIN, an error) is left for the bufferevent, which reports any error.
 */
static size_t send_now(struct conn *c, struct evbuffer *in, size_t n)
{
	size_t sent = 0;
	while (sent < n) {
		struct evbuffer_iovec v;
		struct evbuffer_ptr at;
		if (evbuffer_ptr_set(in, &at, sent, EVBUFFER_PTR_SET) != 0 ||
		    evbuffer_peek(in, -1, &at, &v, 1) < 1)
			break;
		size_t want = v.iov_len < n - sent ? v.iov_len : n - sent;
		ssize_t w = transport_send(c->upstream, v.iov_base, want);
		if (w <= 0)
			break;
		sent += (size_t)w;
		if ((size_t)w < want)
			break;
	}
	evbuffer_drain(in, sent);
	return sent;
}

/* Pass n bytes of one side's held input to the other side, charged like every relayed byte. */
static bool pass_on(struct conn *c, bool upload, size_t n)
{
	struct evbuffer *in = bufferevent_get_input(upload ? c->cbev : c->ubev);
	struct evbuffer *out = bufferevent_get_output(upload ? c->ubev : c->cbev);
	enum reason cut;
	uint64_t pass = conn_charge(c, upload, n, true, &cut);
	if (upload && evbuffer_get_length(out) == 0)
		pass -= send_now(c, in, (size_t)pass);
	evbuffer_remove_buffer(in, out, (size_t)pass);
	if (cut != R_ALLOWED) {
		conn_finish(c, cut);
		return false;
	}
	return true;
}

/*
 * A complete hello (its records are the first `len` bytes of the client's
 * input) with its verdict: it goes to the server, whose answer is read next.
 */
static void hello_passed(struct conn *c, enum reason why, size_t len)
{
	if (!allowed(c, why) || !pass_on(c, true, len))
		return;
	conn_disarm(c);
	conn_enter(c, CS_SERVER_HELLO);
}

/* Parse a hello at `off` in the client's held input; `second`: after a retry request. */
static void check_hello(struct conn *c, size_t off, bool second)
{
	const struct policy_tier *t = conn_tier(c);
	struct tls_limits lim;
	tls_limits_default(&lim);
	lim.max_hello_bytes = t->max_hello_bytes;
	if (lim.max_hello_bytes > CONN_HELLO_SCRATCH)
		lim.max_hello_bytes = CONN_HELLO_SCRATCH;
	struct evbuffer *in = bufferevent_get_input(c->cbev);
	size_t len = evbuffer_get_length(in) - off;
	size_t look = off + (len < lim.max_hello_bytes + 1 ? len : lim.max_hello_bytes + 1);
	const uint8_t *p = evbuffer_pullup(in, (ev_ssize_t)look);
	if (p == NULL && look > 0) {
		conn_close(c, R_INTERNAL_ERROR);
		return;
	}
	struct hello *st = c->hello;
	if (st->watch_base != off) {
		memset(&st->watch, 0, sizeof(st->watch));
		st->watch_base = off;
	}
	if (!tls_hello_worth_parsing(&st->watch, p + off, look - off, lim.max_hello_bytes))
		return;
	struct tls_hello h;
	int r = tls_hello_parse(p + off, look - off, &lim, c->env->hello_scratch,
	                        CONN_HELLO_SCRATCH, &h);
	if (r == TLS_NEED_MORE)
		return;
	if (r > 0) {
		hello_passed(c, verdict(c, &h, second), off + (size_t)r);
		return;
	}
	/* No hello to pass on: cut, or in audit mode relay what there is from here on. */
	if (allowed(c, parse_error_reason(r)))
		to_tunnel(c);
}

/* ---- CS_HELLO: the client's first hello ---- */

static void hello_read_cb(struct bufferevent *bev, void *arg)
{
	struct conn *c = arg;
	if (bev == c->cbev)
		check_hello(c, 0, false);
}

/* A client that closes before a complete hello: truncated, or nothing at all. */
static void client_event(struct conn *c, short what)
{
	if (what & BEV_EVENT_ERROR) {
		conn_close(c, R_CLIENT_ERROR);
		return;
	}
	if (!(what & BEV_EVENT_EOF))
		return;
	c->client_eof = true;
	if (evbuffer_get_length(bufferevent_get_input(c->cbev)) > 0)
		conn_cut(c, R_TLS_MALFORMED);
	else
		conn_close(c, R_CLIENT_CLOSED);
}

static void hello_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct conn *c = arg;
	if (bev == c->cbev) {
		client_event(c, what);
		return;
	}
	if (what & BEV_EVENT_ERROR)
		conn_close(c, R_UPSTREAM_ERROR);
	else if (what & BEV_EVENT_EOF)
		c->upstream_eof = true;
}

/*
 * The 200 went out.  On a TLS port, or when the client opens with a TLS
 * handshake record (0x16) on any other, nothing moves until a complete
 * ClientHello passed.  Otherwise the relay starts at once; with nothing from
 * the client yet, it looks at the first byte (peek_first) and comes back
 * here if it is 0x16.
 */
static void hello_enter(struct conn *c)
{
	const struct policy_tier *t = conn_tier(c);
	bool tls_port = conn_tls_port(c, c->port);
	struct evbuffer *early = bufferevent_get_input(c->cbev);
	unsigned char first;
	bufferevent_setcb(c->cbev, hello_read_cb, NULL, hello_event_cb, c);
	bufferevent_setcb(c->ubev, NULL, NULL, hello_event_cb, c);
	bufferevent_setwatermark(c->cbev, EV_WRITE, 0, 0);
	if (!tls_port && evbuffer_copyout(early, &first, 1) == 1 && first != 0x16) {
		to_tunnel(c);
		return;
	}
	if (!tls_port && evbuffer_get_length(early) == 0) {
		c->peek_first = true;
		to_tunnel(c);
		return;
	}
	if (c->hello == NULL)
		c->hello = calloc(1, sizeof(*c->hello));
	if (c->hello == NULL) {
		conn_close(c, R_INTERNAL_ERROR);
		return;
	}
	bufferevent_setwatermark(c->cbev, EV_READ, 0, t->max_hello_bytes + 1u);
	/* EV_WRITE is enabled from creation; enabling it again would poll an empty output. */
	bufferevent_enable(c->cbev, EV_READ);
	c->last_active = coarse_ns();
	conn_arm_ms(c, t->hello_timeout_ms);
	if (evbuffer_get_length(early) > 0)
		check_hello(c, 0, false);
}

static void hello_timeout(struct conn *c)
{
	if (allowed(c, R_TLS_HELLO_TIMEOUT))
		to_tunnel(c);
}

/* ---- CS_SERVER_HELLO: the server's answer, as far as its ServerHello ---- */

static void check_server(struct conn *c)
{
	struct evbuffer *in = bufferevent_get_input(c->ubev);
	size_t len = evbuffer_get_length(in), off = 0;
	size_t look = len < SERVER_FIRST_MAX + 1 ? len : SERVER_FIRST_MAX + 1;
	const uint8_t *p = evbuffer_pullup(in, (ev_ssize_t)look);
	if (p == NULL && look > 0) {
		conn_close(c, R_INTERNAL_ERROR);
		return;
	}
	int st = TLS_SERVER_NEED_MORE;
	/* Appendix D.4: after a retry request the server may send a compatibility
	 * change_cipher_spec. */
	if (c->hello->retried) {
		int r = tls_skip_interlude(p, look, false, SERVER_FIRST_MAX, &off);
		st = r == TLS_NEED_MORE ? TLS_SERVER_NEED_MORE
		     : r < 0            ? TLS_SERVER_ERR_MALFORMED
		                        : 1;
	}
	if (!c->hello->retried || st == 1)
		st = tls_server_first(p + off, look - off, SERVER_FIRST_MAX);
	switch (st) {
	case TLS_SERVER_NEED_MORE:
		return;
	case TLS_SERVER_HELLO:
	case TLS_SERVER_ALERT:
		/* The handshake goes on with the hellos that were checked (or ends): relay. */
		to_tunnel(c);
		return;
	case TLS_SERVER_RETRY:
		if (c->hello->retried) {
			/* §4.1.4: a second HelloRetryRequest ends the handshake. */
			if (allowed(c, R_TLS_SERVER_MALFORMED))
				to_tunnel(c);
			return;
		}
		c->hello->retried = true;
		/* The retry request goes to the client; its answer is checked like its first hello.
		 */
		if (pass_on(c, false, len))
			conn_enter(c, CS_HELLO_RETRY);
		return;
	default:
		if (allowed(c, R_TLS_SERVER_MALFORMED))
			to_tunnel(c);
		return;
	}
}

static void server_read_cb(struct bufferevent *bev, void *arg)
{
	check_server(arg);
}

static void server_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct conn *c = arg;
	if (bev == c->cbev) {
		client_event(c, what);
		return;
	}
	if (what & BEV_EVENT_ERROR)
		conn_close(c, R_UPSTREAM_ERROR);
	else if (what & BEV_EVENT_EOF)
		conn_close(c, R_UPSTREAM_CLOSED);
}

static void server_hello_enter(struct conn *c)
{
	/* What the client sends meanwhile waits (early data, a compatibility record). */
	bufferevent_disable(c->cbev, EV_READ);
	bufferevent_setcb(c->cbev, NULL, NULL, server_event_cb, c);
	bufferevent_setcb(c->ubev, server_read_cb, NULL, server_event_cb, c);
	bufferevent_setwatermark(c->ubev, EV_READ, 0, SERVER_FIRST_MAX + 1);
	bufferevent_enable(c->ubev, EV_READ);
	conn_arm_activity(c);
	if (c->state == CS_SERVER_HELLO && evbuffer_get_length(bufferevent_get_input(c->ubev)) > 0)
		check_server(c);
}

static void activity_timeout(struct conn *c)
{
	conn_arm_activity(c);
}

/* ---- CS_HELLO_RETRY: the second ClientHello ---- */

static void check_retry(struct conn *c)
{
	const struct policy_tier *t = conn_tier(c);
	struct evbuffer *in = bufferevent_get_input(c->cbev);
	size_t len = evbuffer_get_length(in), off = 0;
	size_t look = len < t->max_hello_bytes + 1u ? len : t->max_hello_bytes + 1u;
	const uint8_t *p = evbuffer_pullup(in, (ev_ssize_t)look);
	if (p == NULL && look > 0) {
		conn_close(c, R_INTERNAL_ERROR);
		return;
	}
	/* Appendix D.4: a compatibility change_cipher_spec, and 0-RTT data, may come first. */
	int r = tls_skip_interlude(p, look, c->hello->early_data, t->max_hello_bytes, &off);
	if (r == TLS_NEED_MORE)
		return;
	if (r < 0) {
		if (allowed(c, parse_error_reason(r)))
			to_tunnel(c);
		return;
	}
	check_hello(c, off, true);
}

static void retry_read_cb(struct bufferevent *bev, void *arg)
{
	struct conn *c = arg;
	if (bev == c->cbev)
		check_retry(c);
}

static void hello_retry_enter(struct conn *c)
{
	const struct policy_tier *t = conn_tier(c);
	/* The server waits for the second hello; nothing of it is read meanwhile. */
	bufferevent_disable(c->ubev, EV_READ);
	bufferevent_setcb(c->ubev, NULL, NULL, hello_event_cb, c);
	bufferevent_setcb(c->cbev, retry_read_cb, NULL, hello_event_cb, c);
	/* Room for what may precede the hello (bounded the same) and the hello itself. */
	bufferevent_setwatermark(c->cbev, EV_READ, 0, 2u * t->max_hello_bytes + 1u);
	bufferevent_enable(c->cbev, EV_READ);
	conn_arm_ms(c, t->hello_timeout_ms);
	if (evbuffer_get_length(bufferevent_get_input(c->cbev)) > 0)
		check_retry(c);
}

const struct conn_phase hello_phase = {
    .name = "hello",
    .enter = hello_enter,
    .timeout = hello_timeout,
    .release = hello_release,
};

const struct conn_phase hello_server_phase = {
    .name = "server_hello",
    .enter = server_hello_enter,
    .timeout = activity_timeout,
    .release = hello_release,
};

const struct conn_phase hello_retry_phase = {
    .name = "hello_retry",
    .enter = hello_retry_enter,
    .timeout = hello_timeout,
    .release = hello_release,
};
