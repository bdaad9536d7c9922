/* Tunnels: first-flight ClientHello inspection, relay with backpressure and caps, half-close. */
#include "conn_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <linux/sockios.h>
#include <netinet/tcp.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "server.h"
#include "srclimit.h"
#include "tls_hello.h"

/* After a cap: how long the allowed bytes may take to flush before the tunnel is closed anyway. */
#define FINISH_MS 5000
/*
 * Reads of one direction per readiness event, while each fills the whole read
 * window, and at most WORKER_RELAY_BUF bytes in all, so one bulk tunnel does
 * not hold up the worker's other connections for long.
 */
#define RELAY_READS_PER_EVENT 4
/*
 * A direction's read window: it starts here, grows to twice any read its
 * receiver took whole (up to WORKER_RELAY_BUF), and shrinks to what the
 * receiver took when it took less; so a slow receiver holds back about
 * RELAY_WIN_MIN at most, and a fast one gets reads of a MiB.
 */
#define RELAY_WIN_MIN (64u * 1024u)

/*
 * The relay (CS_TUNNEL).  The bufferevents that carried the request, the 200
 * and the ClientHello are gone: each socket has one persistent event, and a
 * direction read(2)s into the worker's relay_buf and send(2)s straight on,
 * so a bulk transfer costs one read and one send per WORKER_RELAY_BUF bytes.
 * Direction d: 0 is client -> upstream (reads fd[0], writes fd[1]), 1 is
 * upstream -> client.  A direction reads only while none of its bytes wait
 * unwritten in pend, so it holds at most one read's worth, and a receiver
 * that does not read stops its sender (backpressure).  An idle tunnel holds
 * no buffer at all.
 */
struct relay_pend {
	char *buf; /* malloc'd, NULL when empty */
	size_t off, len;
};

struct relay {
	evutil_socket_t fd[2]; /* 0 client, 1 upstream; owned */
	struct event *ev[2];   /* the one persistent event of each socket */
	short mask[2];         /* what ev[i] is added for (0: not added) */
	uint32_t win[2];       /* direction d reads at most win[d] bytes at a time */
	bool wait_room[2];     /* direction d waits for its receiver's send buffer to drain */
	struct relay_pend pend[2];
};

static bool hello_check(struct conn *c);
static void tunnel_read_cb(struct bufferevent *bev, void *arg);
static void tunnel_event_cb(struct bufferevent *bev, short what, void *arg);

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

/*
 * Refuse after 200 (CS_HELLO): no status can be sent any more.  The upstream
 * is reset (SO_LINGER 0) so it receives nothing, the client is closed, and
 * the refusal is recorded.
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

/* ---- the relay ---- */

static bool dir_eof(const struct conn *c, int d)
{
	return d == 0 ? c->client_eof : c->upstream_eof;
}

/* Our write side towards direction d's receiver is shut. */
static bool *dir_shut(struct conn *c, int d)
{
	return d == 0 ? &c->upstream_shut : &c->client_shut;
}

static enum reason side_error(int side)
{
	return side == 0 ? R_CLIENT_ERROR : R_UPSTREAM_ERROR;
}

static bool would_block(void)
{
	return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR;
}

static bool relay_pending(const struct relay *r, int d)
{
	return r->pend[d].off < r->pend[d].len;
}

static void relay_cb(evutil_socket_t fd, short what, void *arg);

/* Add each socket's event for exactly what it waits for now. Returns false if c is gone. */
static bool relay_rearm(struct conn *c)
{
	struct relay *r = c->relay;
	for (int side = 0; side < 2; side++) {
		short want = 0;
		if (!c->finishing && !dir_eof(c, side) && !relay_pending(r, side) &&
		    !r->wait_room[side])
			want |= EV_READ;
		if (relay_pending(r, !side) || r->wait_room[!side])
			want |= EV_WRITE;
		if (want == r->mask[side])
			continue;
		/* The worker's changelist turns this delete + add into at most one epoll_ctl. */
		event_del(r->ev[side]);
		r->mask[side] = want;
		if (want == 0)
			continue;
		if (event_assign(r->ev[side], c->w->base, r->fd[side], want | EV_PERSIST, relay_cb,
				 c) != 0 ||
		    event_add(r->ev[side], NULL) != 0) {
			conn_close(c, R_INTERNAL_ERROR);
			return false;
		}
	}
	return true;
}

/*
 * A cap was reached: stop reading both sides, let the bytes already allowed
 * reach their destination (bounded), then close.  Returns false if c is gone.
 */
static bool tunnel_finish(struct conn *c, enum reason why)
{
	c->finishing = true;
	c->finish_reason = why;
	c->relay->wait_room[0] = c->relay->wait_room[1] = false;
	if (!relay_pending(c->relay, 0) && !relay_pending(c->relay, 1)) {
		conn_close(c, why);
		return false;
	}
	if (!relay_rearm(c))
		return false;
	conn_arm_ms(c, FINISH_MS);
	return true;
}

/*
 * Direction d has nothing left to write: pass its EOF on (half-close, RFC
 * 9110 §9.3.6), end the tunnel when both ways are done, or end it once the
 * bytes allowed before a cap are out.  Returns false if c is gone.
 */
static bool relay_settle(struct conn *c, int d)
{
	struct relay *r = c->relay;
	if (c->finishing) {
		if (!relay_pending(r, 0) && !relay_pending(r, 1)) {
			conn_close(c, c->finish_reason);
			return false;
		}
		return relay_rearm(c);
	}
	bool *shut = dir_shut(c, d);
	if (dir_eof(c, d) && !relay_pending(r, d) && !*shut) {
		/* With the other way already done, the close() right below sends this FIN. */
		if (!*dir_shut(c, !d))
			shutdown(r->fd[!d], SHUT_WR);
		*shut = true;
	}
	if (c->client_shut && c->upstream_shut) {
		conn_close(c, c->first_eof);
		return false;
	}
	return relay_rearm(c);
}

/* Write what direction d holds back. Returns false if c is gone. */
static bool relay_flush(struct conn *c, int d)
{
	struct relay *r = c->relay;
	struct relay_pend *p = &r->pend[d];
	while (p->off < p->len) {
		ssize_t w = send(r->fd[!d], p->buf + p->off, p->len - p->off, MSG_NOSIGNAL);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0 && would_block())
			return relay_rearm(c);
		if (w < 0) {
			conn_close(c, side_error(!d));
			return false;
		}
		p->off += (size_t)w;
		c->last_active = conn_coarse_ns(); /* draining to a slow reader is activity */
	}
	free(p->buf);
	*p = (struct relay_pend){0};
	return relay_settle(c, d);
}

/* Send n bytes of direction d now; keep what the socket does not take. False if c is gone. */
static bool relay_send(struct conn *c, int d, const char *buf, size_t n)
{
	struct relay *r = c->relay;
	if (n > WORKER_RELAY_BUF) { /* a backstop: never more than one read */
		conn_close(c, R_INTERNAL_ERROR);
		return false;
	}
	ssize_t w = send(r->fd[!d], buf, n, MSG_NOSIGNAL);
	if (w < 0 && !would_block()) {
		conn_close(c, side_error(!d));
		return false;
	}
	size_t done = w < 0 ? 0 : (size_t)w;
	if (done == n) {
		if (2 * n > r->win[d])
			r->win[d] = 2 * n < WORKER_RELAY_BUF ? (uint32_t)(2 * n) : WORKER_RELAY_BUF;
		return true;
	}
	r->win[d] = done > RELAY_WIN_MIN ? (uint32_t)done : RELAY_WIN_MIN;
	struct relay_pend *p = &r->pend[d];
	p->buf = malloc(n - done);
	if (p->buf == NULL) {
		conn_close(c, R_INTERNAL_ERROR);
		return false;
	}
	memcpy(p->buf, buf + done, n - done);
	p->off = 0;
	p->len = n - done;
	return true;
}

static void relay_free(struct relay *r, bool close_fds)
{
	for (int i = 0; i < 2; i++) {
		if (r->ev[i] != NULL)
			event_free(r->ev[i]);
		if (close_fds)
			close(r->fd[i]);
		free(r->pend[i].buf);
	}
	free(r);
}

/*
 * A port that is not inspected, and the client opens with a TLS handshake
 * (`early`, n bytes, just read): inspect it anyway.  Back to bufferevents for
 * CS_HELLO, with what the upstream already sent still queued for the client.
 * Returns false if c is gone.
 */
static bool relay_to_hello(struct conn *c, const char *early, size_t n)
{
	struct relay *r = c->relay;
	const struct policy_tier *t = conn_tier(c);
	struct bufferevent *cb = bufferevent_socket_new(c->w->base, r->fd[0], BEV_OPT_CLOSE_ON_FREE);
	struct bufferevent *ub = bufferevent_socket_new(c->w->base, r->fd[1], BEV_OPT_CLOSE_ON_FREE);
	struct relay_pend *p = &r->pend[1];
	struct evbuffer *in = cb != NULL ? bufferevent_get_input(cb) : NULL;
	/* A socket bufferevent's input is frozen at its end outside its own reads. */
	int added = -1;
	if (in != NULL) {
		evbuffer_unfreeze(in, 0);
		added = evbuffer_add(in, early, n);
		evbuffer_freeze(in, 0);
	}
	if (ub == NULL || added != 0 ||
	    (p->off < p->len && bufferevent_write(cb, p->buf + p->off, p->len - p->off) != 0)) {
		/* The relay still owns the sockets: conn_close closes them once. */
		for (int i = 0; i < 2; i++) {
			struct bufferevent *b = i == 0 ? cb : ub;
			if (b != NULL) {
				bufferevent_setfd(b, -1);
				bufferevent_free(b);
			}
		}
		conn_close(c, R_INTERNAL_ERROR);
		return false;
	}
	relay_free(r, false);
	c->relay = NULL;
	c->cbev = cb;
	c->ubev = ub;
	conn_set_state(c, CS_HELLO);
	bufferevent_setcb(cb, tunnel_read_cb, NULL, tunnel_event_cb, c);
	bufferevent_setcb(ub, tunnel_read_cb, NULL, tunnel_event_cb, c);
	bufferevent_setwatermark(cb, EV_READ, 0, t->max_hello_bytes + 1u);
	bufferevent_enable(cb, EV_READ);
	conn_arm_ms(c, t->hello_timeout_ms);
	return hello_check(c);
}

/*
 * How much direction d may read now: its window, but past RELAY_WIN_MIN no
 * more than the receiving socket's free send buffer (SO_SNDBUF less what is
 * queued, SIOCOUTQ; 2 syscalls per read of more than 64 KiB).  With less room
 * than RELAY_WIN_MIN it returns 0 (wait until the receiver is writable)
 * unless `woken`, when the kernel has just said the receiver is writable: then
 * RELAY_WIN_MIN, so a direction always makes progress.  The kernel charges its
 * bookkeeping to SO_SNDBUF as well, so a send may take a little less than the
 * room; what it does not take (at most one read, usually a sliver) waits in
 * pend, and that direction reads nothing more until it is written.
 */
static size_t relay_window(const struct relay *r, int d, bool woken)
{
	size_t win = r->win[d];
	int queued = 0, sndbuf = 0;
	socklen_t len = sizeof(sndbuf);
	if (win <= RELAY_WIN_MIN)
		return win;
	if (ioctl(r->fd[!d], SIOCOUTQ, &queued) != 0 ||
	    getsockopt(r->fd[!d], SOL_SOCKET, SO_SNDBUF, &sndbuf, &len) != 0)
		return RELAY_WIN_MIN;
	size_t room = sndbuf > queued ? (size_t)(sndbuf - queued) : 0;
	if (room < RELAY_WIN_MIN)
		return woken ? RELAY_WIN_MIN : 0;
	return room < win ? room : win;
}

/*
 * fd[d] is readable: read, charge, send on.  woken: fd[!d] has just been
 * reported writable.  Returns false if c is gone.
 */
static bool relay_pump(struct conn *c, int d, bool woken)
{
	struct relay *r = c->relay;
	char *buf = c->w->relay_buf;
	size_t total = 0;
	r->wait_room[d] = false;
	for (int i = 0; i < RELAY_READS_PER_EVENT && total < WORKER_RELAY_BUF; i++) {
		size_t win = relay_window(r, d, woken && i == 0);
		if (win == 0) {
			/* The receiver is full: no read until it drains (EV_WRITE on fd[!d]). */
			r->wait_room[d] = true;
			break;
		}
		ssize_t n = recv(r->fd[d], buf, win, 0);
		if (n < 0 && would_block())
			break;
		if (d == 0 && c->peek_first && n > 0) {
			/* Not a TLS port: inspect anyway when the client opens with a TLS handshake. */
			c->peek_first = false;
			if (buf[0] == 0x16)
				return relay_to_hello(c, buf, (size_t)n);
		}
		if (n < 0) {
			conn_close(c, side_error(d));
			return false;
		}
		if (n == 0) {
			if (d == 0)
				c->client_eof = true;
			else
				c->upstream_eof = true;
			if (!(c->client_eof && c->upstream_eof))
				c->first_eof = d == 0 ? R_CLIENT_CLOSED : R_UPSTREAM_CLOSED;
			return relay_settle(c, d);
		}
		enum reason cut;
		uint64_t pass = conn_charge(c, d == 0, (uint64_t)n, true, &cut);
		if (pass > 0 && !relay_send(c, d, buf, (size_t)pass))
			return false;
		if (cut != R_ALLOWED)
			return tunnel_finish(c, cut);
		total += (size_t)n;
		/* A short read emptied the socket: the next bytes come with the next event. */
		if (relay_pending(r, d) || (size_t)n < win)
			break;
	}
	return relay_rearm(c);
}

static void relay_cb(evutil_socket_t fd, short what, void *arg)
{
	struct conn *c = arg;
	int side = fd == c->relay->fd[0] ? 0 : 1;
	if ((what & EV_WRITE) && relay_pending(c->relay, !side) && !relay_flush(c, !side))
		return;
	/* This socket has room again: the direction that waited for it reads on. */
	if ((what & EV_WRITE) && c->relay->wait_room[!side] && !c->finishing &&
	    !relay_pump(c, !side, true))
		return;
	if ((what & EV_READ) && (c->relay->mask[side] & EV_READ))
		relay_pump(c, side, false);
}

/*
 * What the bufferevents still hold for direction d, in order: the
 * receiver's output (the 200, a 101 head: already counted) ahead of the
 * sender's input (the held ClientHello, bytes that came with the request
 * head), which is charged like every relayed byte when `charge`.  Returns -1
 * when out of memory.
 */
static int take_buffered(struct conn *c, int d, bool charge, struct relay_pend *p,
			 enum reason *cut)
{
	struct evbuffer *out = bufferevent_get_output(d == 0 ? c->ubev : c->cbev);
	struct evbuffer *in = bufferevent_get_input(d == 0 ? c->cbev : c->ubev);
	size_t nout = evbuffer_get_length(out), nin = evbuffer_get_length(in);
	size_t pass = 0;
	*cut = R_ALLOWED;
	if (nin > 0 && charge)
		pass = (size_t)conn_charge(c, d == 0, nin, true, cut);
	if (pass > nin)
		return -1; /* a backstop: conn_charge never passes more than it was given */
	if (nout + pass == 0)
		return 0;
	p->buf = malloc(nout + pass);
	if (p->buf == NULL)
		return -1;
	/* A socket bufferevent's output is frozen at its start; this one is about to go. */
	evbuffer_unfreeze(out, 1);
	if (evbuffer_copyout(out, p->buf, nout) != (ev_ssize_t)nout ||
	    evbuffer_copyout(in, p->buf + nout, pass) != (ev_ssize_t)pass)
		return -1;
	p->off = 0;
	p->len = nout + pass;
	return 0;
}

/* Free a bufferevent but keep its socket. */
static evutil_socket_t bev_release(struct bufferevent *bev)
{
	evutil_socket_t fd = bufferevent_getfd(bev);
	bufferevent_setfd(bev, -1); /* BEV_OPT_CLOSE_ON_FREE now closes nothing */
	bufferevent_free(bev);
	return fd;
}

/*
 * Hand both sockets from the bufferevents to the relay, what they hold first
 * and in order.  write_now: send it at once (else from the loop, for callers
 * that look at c afterwards).  Returns false if c is gone.
 */
static bool relay_start(struct conn *c, bool write_now)
{
	struct relay *r = calloc(1, sizeof(*r));
	enum reason cut[2] = {R_ALLOWED, R_ALLOWED};
	if (r == NULL) {
		conn_close(c, R_INTERNAL_ERROR);
		return false;
	}
	r->ev[0] = event_new(c->w->base, -1, 0, relay_cb, c);
	r->ev[1] = event_new(c->w->base, -1, 0, relay_cb, c);
	r->win[0] = r->win[1] = RELAY_WIN_MIN;
	if (r->ev[0] == NULL || r->ev[1] == NULL ||
	    take_buffered(c, 0, !c->finishing, &r->pend[0], &cut[0]) != 0 ||
	    take_buffered(c, 1, !c->finishing && cut[0] == R_ALLOWED, &r->pend[1], &cut[1]) != 0) {
		relay_free(r, false);
		conn_close(c, R_INTERNAL_ERROR);
		return false;
	}
	r->fd[0] = bev_release(c->cbev);
	r->fd[1] = bev_release(c->ubev);
	c->cbev = c->ubev = NULL;
	c->relay = r;
	if (cut[0] != R_ALLOWED || cut[1] != R_ALLOWED)
		return tunnel_finish(c, cut[0] != R_ALLOWED ? cut[0] : cut[1]);
	if (!write_now)
		return relay_rearm(c);
	for (int d = 0; d < 2; d++)
		if (!(relay_pending(r, d) ? relay_flush(c, d) : relay_settle(c, d)))
			return false;
	return true;
}

void tunnel_free(struct conn *c)
{
	if (c->relay == NULL)
		return;
	relay_free(c->relay, true);
	c->relay = NULL;
}

/* ---- CS_HELLO: bufferevents hold the client's first flight ---- */

static void tunnel_read_cb(struct bufferevent *bev, void *arg)
{
	struct conn *c = arg;
	if (bev == c->cbev)
		hello_check(c);
}

static void tunnel_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct conn *c = arg;
	bool is_client = bev == c->cbev;
	if (what & BEV_EVENT_ERROR) {
		conn_close(c, is_client ? R_CLIENT_ERROR : R_UPSTREAM_ERROR);
		return;
	}
	if (!(what & BEV_EVENT_EOF))
		return;
	if (!is_client) {
		c->upstream_eof = true;
		return;
	}
	c->client_eof = true;
	/* The client closed before a complete ClientHello: truncated, or nothing at all. */
	if (evbuffer_get_length(bufferevent_get_input(c->cbev)) > 0)
		tunnel_cut(c, R_TLS_MALFORMED);
	else
		conn_close(c, R_CLIENT_CLOSED);
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
static bool tunnel_open(struct conn *c, bool write_now)
{
	conn_set_state(c, CS_TUNNEL);
	c->last_active = conn_coarse_ns();
	if (!relay_start(c, write_now))
		return false;
	if (!c->finishing)
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
	return tunnel_open(c, true);
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

/* Send at once when nothing is queued ahead (a fresh socket takes a short reply whole). */
static int write_through(struct bufferevent *bev, const char *p, size_t n)
{
	if (evbuffer_get_length(bufferevent_get_output(bev)) == 0) {
		ssize_t w = send(bufferevent_getfd(bev), p, n, MSG_NOSIGNAL);
		if (w > 0) {
			p += w;
			n -= (size_t)w;
		}
		/* An error shows on the bufferevent's next write, as any other would. */
	}
	return n == 0 ? 0 : bufferevent_write(bev, p, n);
}

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
	if (c->state == CS_FORWARD && c->http == NULL && c->relay == NULL) {
		tunnel_open(c, true); /* an upgrade parked by tunnel_from_upgrade */
		return;
	}
	tunnel_arm(c);
}

void tunnel_from_upgrade(struct conn *c)
{
	/*
	 * Called from forward.c's callbacks, which look at c afterwards, so
	 * nothing here may free it: park both bufferevents and open the relay
	 * from the loop, through the connection timer (tunnel_timer).  Opening
	 * it there with write_now also passes on an EOF the client sent while
	 * the exchange was still being forwarded.
	 */
	bufferevent_setcb(c->cbev, NULL, NULL, NULL, NULL);
	bufferevent_setcb(c->ubev, NULL, NULL, NULL, NULL);
	bufferevent_disable(c->cbev, EV_READ);
	bufferevent_disable(c->ubev, EV_READ);
	conn_arm_ms(c, 0);
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
	if (write_through(c->cbev, ok, sizeof(ok) - 1) != 0) {
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
	bufferevent_setcb(c->cbev, tunnel_read_cb, NULL, tunnel_event_cb, c);
	bufferevent_setcb(c->ubev, tunnel_read_cb, NULL, tunnel_event_cb, c);
	bufferevent_setwatermark(c->cbev, EV_WRITE, 0, 0);

	const struct policy_tier *t = conn_tier(c);
	bool tls_port = port_listed(t->tls_ports, t->n_tls_ports, c->port);
	struct evbuffer *early = bufferevent_get_input(c->cbev);
	unsigned char first;
	/* Bytes sent right behind the request head: the same first-byte rule applies. */
	if (!tls_port && evbuffer_copyout(early, &first, 1) == 1 && first != 0x16) {
		tunnel_open(c, true);
		return;
	}
	if (!tls_port && evbuffer_get_length(early) == 0) {
		c->peek_first = true; /* the relay looks at the client's first byte */
		tunnel_open(c, true);
		return;
	}
	/* A TLS port, or a TLS handshake on another: nothing moves until a ClientHello passed. */
	conn_set_state(c, CS_HELLO);
	bufferevent_setwatermark(c->cbev, EV_READ, 0, t->max_hello_bytes + 1u);
	/* EV_WRITE is enabled from creation; enabling it again would poll an empty output. */
	bufferevent_enable(c->cbev, EV_READ);
	c->last_active = conn_coarse_ns();
	conn_arm_ms(c, t->hello_timeout_ms);
	if (evbuffer_get_length(early) > 0)
		hello_check(c);
}
