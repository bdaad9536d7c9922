/* Tunnels: first-flight ClientHello inspection, relay with backpressure and caps, half-close. */
#include "conn_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "server.h"
#include "srclimit.h"
#include "tls_hello.h"

/* Relay buffering bound per direction: stop reading a side above HIGH, resume at or below LOW. */
#define RELAY_HIGH (256u * 1024u)
#define RELAY_LOW (64u * 1024u)
#define RELAY_MAX_READ (128 * 1024)
/* After a cap: how long the allowed bytes may take to flush before the tunnel is closed anyway. */
#define FINISH_MS 5000

static bool hello_check(struct conn *c);

static bool port_listed(const uint16_t *ports, size_t n, uint16_t port)
{
	for (size_t i = 0; i < n; i++)
		if (ports[i] == port)
			return true;
	return false;
}

static bool audit_mode(const struct conn *c)
{
	const struct policy_tier *t = conn_tier(c);
	return t != NULL && t->mode == TIER_AUDIT;
}

/* ---- ending a tunnel ---- */

static void tunnel_check_done(struct conn *c)
{
	if (c->client_shut && c->upstream_shut)
		conn_close(c, c->first_eof);
}

/* Our side towards `to` has nothing more to send once its peer hit EOF and to's output drained. */
static void maybe_shut(struct conn *c, struct bufferevent *to)
{
	bool to_client = to == c->cbev;
	bool from_eof = to_client ? c->upstream_eof : c->client_eof;
	bool *shut = to_client ? &c->client_shut : &c->upstream_shut;
	if (!from_eof || *shut || evbuffer_get_length(bufferevent_get_output(to)) != 0)
		return;
	shutdown(bufferevent_getfd(to), SHUT_WR);
	*shut = true;
}

/*
 * Refuse after 200: no status can be sent any more.  The upstream is reset
 * (SO_LINGER 0) so it receives nothing, the client is closed, and the
 * refusal is recorded.
 */
static void tunnel_cut(struct conn *c, enum reason why)
{
	struct linger lg = {.l_onoff = 1, .l_linger = 0};
	setsockopt(bufferevent_getfd(c->ubev), SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	evbuffer_drain(bufferevent_get_output(c->ubev),
		       evbuffer_get_length(bufferevent_get_output(c->ubev)));
	c->verdict.allow = false;
	c->verdict.reason = why;
	conn_audit(c, why, false);
	conn_close(c, why);
}

static bool outputs_empty(const struct conn *c)
{
	return evbuffer_get_length(bufferevent_get_output(c->cbev)) == 0 &&
	       evbuffer_get_length(bufferevent_get_output(c->ubev)) == 0;
}

/*
 * A cap was reached: stop reading both sides, let the bytes already allowed
 * reach their destination (bounded), then close.  Returns false if c is gone.
 */
static bool tunnel_finish(struct conn *c, enum reason why)
{
	c->finishing = true;
	c->finish_reason = why;
	bufferevent_disable(c->cbev, EV_READ);
	bufferevent_disable(c->ubev, EV_READ);
	bufferevent_setwatermark(c->cbev, EV_WRITE, 0, 0);
	bufferevent_setwatermark(c->ubev, EV_WRITE, 0, 0);
	if (outputs_empty(c)) {
		conn_close(c, why);
		return false;
	}
	conn_arm_ms(c, FINISH_MS);
	return true;
}

/* ---- relay ---- */

/*
 * Move what `from` has read to `to`, within the caps.  Returns false when
 * the connection was closed (c is gone).
 */
static bool relay(struct conn *c, struct bufferevent *from, struct bufferevent *to)
{
	struct evbuffer *in = bufferevent_get_input(from);
	struct evbuffer *out = bufferevent_get_output(to);
	size_t n = evbuffer_get_length(in);
	if (n == 0 || c->finishing)
		return true;
	bool upload = from == c->cbev;
	const struct policy_tier *t = conn_tier(c);
	uint64_t pass = n;
	enum reason cut = R_ALLOWED;
	uint64_t cap = t == NULL ? 0 : upload ? t->upload_bytes : t->download_bytes;
	uint64_t done = upload ? c->up : c->down;
	if (cap != 0 && done + pass > cap) {
		pass = cap - done;
		cut = upload ? R_UPLOAD_CAP : R_DOWNLOAD_CAP;
	}
	if (upload && c->slot != NULL && t != NULL && t->upload_budget_bytes != 0) {
		uint64_t ok = srclimit_charge(c->slot, pass, t->upload_budget_bytes,
					      (uint64_t)t->upload_budget_window_ms * 1000000ull,
					      mono_ns());
		if (ok < pass) {
			pass = ok;
			cut = R_SOURCE_UPLOAD_BUDGET;
		}
	}
	if (cut != R_ALLOWED && audit_mode(c)) {
		/* Audit mode: caps are recorded as would-deny, never enforced. */
		conn_would_deny(c, cut);
		pass = n;
		cut = R_ALLOWED;
	}
	if (upload)
		c->up += pass;
	else
		c->down += pass;
	metrics_add(&c->w->metrics->bytes[c->tier_slot][upload ? 0 : 1], pass);
	c->last_active = conn_coarse_ns();
	if (pass == n) {
		evbuffer_add_buffer(out, in);
	} else {
		evbuffer_remove_buffer(in, out, (size_t)pass);
		evbuffer_drain(in, evbuffer_get_length(in));
	}
	if (cut != R_ALLOWED)
		return tunnel_finish(c, cut);
	if (evbuffer_get_length(out) >= RELAY_HIGH) {
		/* Backpressure: stop reading `from` until `to` drains to RELAY_LOW. */
		bufferevent_disable(from, EV_READ);
		bufferevent_setwatermark(to, EV_WRITE, RELAY_LOW, 0);
	}
	return true;
}

static void tunnel_read_cb(struct bufferevent *bev, void *arg)
{
	struct conn *c = arg;
	if (c->state == CS_HELLO) {
		if (bev == c->cbev)
			hello_check(c);
		return;
	}
	if (bev == c->cbev && c->peek_first) {
		/* Not a TLS port: inspect anyway when the client opens with a TLS handshake. */
		unsigned char first;
		c->peek_first = false;
		if (evbuffer_copyout(bufferevent_get_input(bev), &first, 1) == 1 && first == 0x16) {
			const struct policy_tier *t = conn_tier(c);
			conn_set_state(c, CS_HELLO);
			bufferevent_disable(c->ubev, EV_READ);
			bufferevent_setwatermark(c->cbev, EV_READ, 0, t->max_hello_bytes + 1u);
			conn_arm_ms(c, t->hello_timeout_ms);
			hello_check(c);
			return;
		}
	}
	relay(c, bev, bev == c->cbev ? c->ubev : c->cbev);
}

static void tunnel_write_cb(struct bufferevent *to, void *arg)
{
	struct conn *c = arg;
	if (c->finishing) {
		if (outputs_empty(c))
			conn_close(c, c->finish_reason);
		return;
	}
	if (c->state == CS_HELLO)
		return;
	struct bufferevent *from = to == c->cbev ? c->ubev : c->cbev;
	bool from_eof = to == c->cbev ? c->upstream_eof : c->client_eof;
	if (!from_eof && !(bufferevent_get_enabled(from) & EV_READ)) {
		bufferevent_setwatermark(to, EV_WRITE, 0, 0);
		bufferevent_enable(from, EV_READ);
	}
	maybe_shut(c, to);
	tunnel_check_done(c);
}

static void tunnel_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct conn *c = arg;
	bool is_client = bev == c->cbev;
	struct bufferevent *to = is_client ? c->ubev : c->cbev;
	if (what & BEV_EVENT_ERROR) {
		conn_close(c, is_client ? R_CLIENT_ERROR : R_UPSTREAM_ERROR);
		return;
	}
	if (!(what & BEV_EVENT_EOF))
		return;
	if (c->finishing) {
		conn_close(c, c->finish_reason);
		return;
	}
	if (is_client)
		c->client_eof = true;
	else
		c->upstream_eof = true;
	if (c->state == CS_HELLO) {
		/* The client closed before a complete ClientHello: truncated, or nothing at all. */
		if (evbuffer_get_length(bufferevent_get_input(c->cbev)) > 0)
			tunnel_cut(c, R_TLS_MALFORMED);
		else
			conn_close(c, R_CLIENT_CLOSED);
		return;
	}
	/* Half-close (RFC 9110 §9.3.6): pass the EOF on once everything before it is written. */
	if (!relay(c, bev, to))
		return;
	if (!(c->client_eof && c->upstream_eof))
		c->first_eof = is_client ? R_CLIENT_CLOSED : R_UPSTREAM_CLOSED;
	bufferevent_disable(bev, EV_READ);
	bufferevent_setwatermark(to, EV_WRITE, 0, 0);
	maybe_shut(c, to);
	tunnel_check_done(c);
}

/* Arm the idle / max-lifetime deadline, or close if one has passed. */
void tunnel_arm(struct conn *c)
{
	const struct policy_tier *t = conn_tier(c);
	const struct policy_settings *s = policy_settings(c->policy);
	uint64_t idle = (uint64_t)conn_pick(t ? t->idle_timeout_ms : 0, s->idle_timeout_ms) *
			1000000ull;
	uint64_t life = (uint64_t)conn_pick(t ? t->max_lifetime_ms : 0, s->max_lifetime_ms) *
			1000000ull;
	uint64_t now = conn_coarse_ns();
	uint64_t idle_left = c->last_active + idle > now ? c->last_active + idle - now : 0;
	uint64_t now_fine = mono_ns();
	uint64_t life_end = c->t0_mono + life;
	uint64_t life_left = life_end > now_fine ? life_end - now_fine : 0;
	if (life_left == 0) {
		conn_close(c, R_MAX_LIFETIME);
		return;
	}
	if (idle_left == 0) {
		conn_close(c, R_IDLE_TIMEOUT);
		return;
	}
	uint64_t left = idle_left < life_left ? idle_left : life_left;
	/* Coarse clock granularity: never re-arm for less than 10 ms. */
	conn_arm_ms(c, left / 1000000ull + 10);
}

/* Inspection passed (or is not needed): relay both ways. Returns false if c is gone. */
static bool tunnel_open(struct conn *c)
{
	conn_set_state(c, CS_TUNNEL);
	bufferevent_setwatermark(c->cbev, EV_READ, 0, 0);
	bufferevent_enable(c->ubev, EV_READ | EV_WRITE);
	bufferevent_enable(c->cbev, EV_READ | EV_WRITE);
	c->last_active = conn_coarse_ns();
	if (!relay(c, c->cbev, c->ubev))
		return false;
	tunnel_arm(c);
	return true;
}

/* ---- ClientHello inspection (RFC 8446 §4.1.2, RFC 6066 §3) ---- */

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
static enum reason hello_verdict(struct conn *c, const struct tls_hello *h)
{
	const struct policy_tier *t = conn_tier(c);
	struct pc_host sni;
	/* RFC 6066 §3: HostName is a DNS name; literal addresses are not permitted. */
	bool sni_ok = h->has_sni && host_canon((const char *)h->sni.p, h->sni.len, &sni) == HOST_OK &&
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
	/* The SNI must itself be allowed (for an IP-literal CONNECT this is the only name check). */
	struct verdict v;
	policy_decide_host(c->policy, c->tier, &sni, c->port, &v);
	if (!v.allow || v.would_deny)
		return R_TLS_SNI_NOT_ALLOWED;
	return R_ALLOWED;
}

static enum reason hello_error_reason(int st)
{
	switch (st) {
	case TLS_ERR_NOT_TLS: return R_NOT_TLS;
	case TLS_ERR_TOO_LARGE: return R_TLS_HELLO_TOO_LARGE;
	default: return R_TLS_MALFORMED;
	}
}

/* Decide once a verdict exists: cut (enforce) or record and go on (audit). */
static bool hello_decided(struct conn *c, enum reason why)
{
	if (why != R_ALLOWED) {
		if (!audit_mode(c)) {
			tunnel_cut(c, why);
			return false;
		}
		conn_would_deny(c, why);
	}
	evtimer_del(c->timer);
	return tunnel_open(c);
}

/* Examine the client's buffered bytes. Returns false if c is gone. */
static bool hello_check(struct conn *c)
{
	const struct policy_tier *t = conn_tier(c);
	struct worker *w = c->w;
	struct tls_limits lim;
	tls_limits_default(&lim);
	lim.max_hello_bytes = t->max_hello_bytes;
	if (lim.max_hello_bytes > sizeof(w->hello_scratch))
		lim.max_hello_bytes = sizeof(w->hello_scratch);
	struct evbuffer *in = bufferevent_get_input(c->cbev);
	size_t len = evbuffer_get_length(in);
	size_t look = len < lim.max_hello_bytes + 1 ? len : lim.max_hello_bytes + 1;
	const uint8_t *p = evbuffer_pullup(in, (ev_ssize_t)look);
	if (p == NULL && look > 0) {
		conn_close(c, R_INTERNAL_ERROR);
		return false;
	}
	struct tls_hello h;
	int r = tls_hello_parse(p, look, &lim, w->hello_scratch, sizeof(w->hello_scratch), &h);
	if (r == TLS_NEED_MORE)
		return true;
	if (r < 0)
		return hello_decided(c, hello_error_reason(r));
	return hello_decided(c, hello_verdict(c, &h));
}

/* ---- entry points ---- */

void tunnel_timer(struct conn *c)
{
	if (c->finishing) {
		conn_close(c, c->finish_reason);
		return;
	}
	if (c->state == CS_HELLO) {
		hello_decided(c, R_TLS_HELLO_TIMEOUT);
		return;
	}
	tunnel_arm(c);
}

void tunnel_from_upgrade(struct conn *c)
{
	bufferevent_setcb(c->cbev, tunnel_read_cb, tunnel_write_cb, tunnel_event_cb, c);
	bufferevent_setcb(c->ubev, tunnel_read_cb, tunnel_write_cb, tunnel_event_cb, c);
	bufferevent_setwatermark(c->cbev, EV_WRITE, 0, 0);
	bufferevent_setwatermark(c->ubev, EV_WRITE, 0, 0);
	tunnel_open(c);
}

void tunnel_start(struct conn *c, evutil_socket_t fd)
{
	struct event_base *base = c->w->base;
	c->ubev = bufferevent_socket_new(base, fd, BEV_OPT_CLOSE_ON_FREE);
	if (c->ubev == NULL) {
		close(fd);
		conn_close(c, R_INTERNAL_ERROR);
		return;
	}
	c->ufd = -1;
	c->have_dst = true;
	c->dst = c->addrs[c->addr_idx];
	free(c->addrs);
	c->addrs = NULL;
	static const char ok[] = "HTTP/1.1 200 Connection established\r\n\r\n";
	if (bufferevent_write(c->cbev, ok, sizeof(ok) - 1) != 0) {
		conn_close(c, R_INTERNAL_ERROR);
		return;
	}
	c->status = 200;
	metrics_observe(&c->w->metrics->setup, mono_ns() - c->t_head);
	atomic_fetch_add_explicit(&c->w->metrics->tunnels_active[c->tier_slot], 1,
				  memory_order_relaxed);
	c->counted_active = true;
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	bufferevent_set_max_single_read(c->cbev, RELAY_MAX_READ);
	bufferevent_set_max_single_read(c->ubev, RELAY_MAX_READ);
	bufferevent_setcb(c->cbev, tunnel_read_cb, tunnel_write_cb, tunnel_event_cb, c);
	bufferevent_setcb(c->ubev, tunnel_read_cb, tunnel_write_cb, tunnel_event_cb, c);
	bufferevent_setwatermark(c->cbev, EV_WRITE, 0, 0);

	const struct policy_tier *t = conn_tier(c);
	if (port_listed(t->tls_ports, t->n_tls_ports, c->port)) {
		/* A TLS port: nothing moves either way until a ClientHello passed (RFC 8446 §4.1.2). */
		conn_set_state(c, CS_HELLO);
		bufferevent_setwatermark(c->cbev, EV_READ, 0, t->max_hello_bytes + 1u);
		bufferevent_enable(c->cbev, EV_READ | EV_WRITE);
		bufferevent_enable(c->ubev, EV_WRITE);
		c->last_active = conn_coarse_ns();
		conn_arm_ms(c, t->hello_timeout_ms);
		if (evbuffer_get_length(bufferevent_get_input(c->cbev)) > 0)
			hello_check(c);
		return;
	}
	c->peek_first = true;
	if (evbuffer_get_length(bufferevent_get_input(c->cbev)) > 0) {
		/* Bytes sent right behind the request head: the same first-byte rule applies. */
		conn_set_state(c, CS_TUNNEL);
		bufferevent_enable(c->ubev, EV_READ | EV_WRITE);
		bufferevent_enable(c->cbev, EV_READ | EV_WRITE);
		c->last_active = conn_coarse_ns();
		tunnel_arm(c);
		tunnel_read_cb(c->cbev, c);
		return;
	}
	tunnel_open(c);
}
