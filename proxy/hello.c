/* Phase "first flight" (CS_HELLO): hold the client's bytes until one ClientHello passed the tier's
 * TLS rules. */
#include "hello.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "clock.h"
#include "tls_hello.h"

/* ---- what the hello says (RFC 8446 §4.1.2, RFC 6066 §3) ---- */

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

static void remember_hello(struct conn *c, const struct tls_hello *h, const struct pc_host *sni)
{
	if (c->tls == NULL)
		c->tls = calloc(1, sizeof(*c->tls));
	if (c->tls == NULL)
		return; /* the audit record loses its TLS fields, nothing else */
	if (sni != NULL)
		memcpy(c->tls->sni, sni->name, sni->len + 1);
	tls_version_text(h, c->tls->version, sizeof(c->tls->version));
	if (h->n_alpn_total == 1 && h->alpn[0].len < sizeof(c->tls->alpn)) {
		memcpy(c->tls->alpn, h->alpn[0].p, h->alpn[0].len);
		c->tls->alpn[h->alpn[0].len] = '\0';
	}
}

/* The tier's rules for a parsed hello: R_ALLOWED or why not. */
static enum reason verdict(struct conn *c, const struct tls_hello *h)
{
	const struct policy_tier *t = conn_tier(c);
	struct pc_host sni;
	/* RFC 6066 §3: HostName is a DNS name; literal addresses are not permitted. */
	bool sni_ok = h->has_sni &&
	              host_canon((const char *)h->sni.p, h->sni.len, &sni) == HOST_OK &&
	              sni.kind == HOST_NAME;
	remember_hello(c, h, sni_ok ? &sni : NULL);
	if ((h->has_ech || h->has_esni) && !t->allow_ech)
		return R_TLS_ECH;
	if (!h->has_sni)
		return t->require_sni ? R_TLS_NO_SNI : R_ALLOWED;
	if (!sni_ok)
		return R_TLS_MALFORMED;
	if (c->host.kind == HOST_NAME && t->sni_must_match && strcmp(sni.name, c->host.name) != 0)
		return R_TLS_SNI_MISMATCH;
	/* The SNI must itself be allowed (for an IP-literal CONNECT this is the only name check).
	 */
	struct verdict v;
	policy_decide_host(c->policy, c->tier, &sni, c->port, &v);
	if (!v.allow || v.would_deny)
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

/* A verdict exists: cut (enforce) or record and go on (audit), then relay. */
static void decided(struct conn *c, enum reason why)
{
	if (why != R_ALLOWED) {
		if (!conn_audit_mode(c)) {
			conn_cut(c, why);
			return;
		}
		conn_would_deny(c, why);
	}
	conn_disarm(c);
	conn_enter(c, CS_TUNNEL);
}

/* Examine the client's buffered bytes. */
static void check(struct conn *c)
{
	const struct policy_tier *t = conn_tier(c);
	struct tls_limits lim;
	tls_limits_default(&lim);
	lim.max_hello_bytes = t->max_hello_bytes;
	if (lim.max_hello_bytes > CONN_HELLO_SCRATCH)
		lim.max_hello_bytes = CONN_HELLO_SCRATCH;
	struct evbuffer *in = bufferevent_get_input(c->cbev);
	size_t len = evbuffer_get_length(in);
	size_t look = len < lim.max_hello_bytes + 1 ? len : lim.max_hello_bytes + 1;
	const uint8_t *p = evbuffer_pullup(in, (ev_ssize_t)look);
	if (p == NULL && look > 0) {
		conn_close(c, R_INTERNAL_ERROR);
		return;
	}
	struct tls_hello h;
	int r = tls_hello_parse(p, look, &lim, c->env->hello_scratch, CONN_HELLO_SCRATCH, &h);
	if (r == TLS_NEED_MORE)
		return;
	decided(c, r < 0 ? parse_error_reason(r) : verdict(c, &h));
}

static void read_cb(struct bufferevent *bev, void *arg)
{
	struct conn *c = arg;
	if (bev == c->cbev)
		check(c);
}

static void event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct conn *c = arg;
	bool client = bev == c->cbev;
	if (what & BEV_EVENT_ERROR) {
		conn_close(c, client ? R_CLIENT_ERROR : R_UPSTREAM_ERROR);
		return;
	}
	if (!(what & BEV_EVENT_EOF))
		return;
	if (!client) {
		c->upstream_eof = true;
		return;
	}
	c->client_eof = true;
	/* The client closed before a complete ClientHello: truncated, or nothing at all. */
	if (evbuffer_get_length(bufferevent_get_input(c->cbev)) > 0)
		conn_cut(c, R_TLS_MALFORMED);
	else
		conn_close(c, R_CLIENT_CLOSED);
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
	bufferevent_setcb(c->cbev, read_cb, NULL, event_cb, c);
	bufferevent_setcb(c->ubev, read_cb, NULL, event_cb, c);
	bufferevent_setwatermark(c->cbev, EV_WRITE, 0, 0);
	if (!tls_port && evbuffer_copyout(early, &first, 1) == 1 && first != 0x16) {
		conn_enter(c, CS_TUNNEL);
		return;
	}
	if (!tls_port && evbuffer_get_length(early) == 0) {
		c->peek_first = true;
		conn_enter(c, CS_TUNNEL);
		return;
	}
	bufferevent_setwatermark(c->cbev, EV_READ, 0, t->max_hello_bytes + 1u);
	/* EV_WRITE is enabled from creation; enabling it again would poll an empty output. */
	bufferevent_enable(c->cbev, EV_READ);
	c->last_active = coarse_ns();
	conn_arm_ms(c, t->hello_timeout_ms);
	if (evbuffer_get_length(early) > 0)
		check(c);
}

static void hello_timeout(struct conn *c)
{
	decided(c, R_TLS_HELLO_TIMEOUT);
}

const struct conn_phase hello_phase = {
    .name = "hello",
    .enter = hello_enter,
    .timeout = hello_timeout,
};
