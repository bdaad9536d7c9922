/* Phase "relay" (CS_TUNNEL): both ways through the transports, every byte charged, backpressure,
 * half-close. */
#include "relay.h"

#include <errno.h>
#include <linux/sockios.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "clock.h"
#include "transport.h"

/*
 * Reads of one direction per readiness event, while each fills the whole read
 * window, and at most CONN_RELAY_BUF bytes in all, so one bulk tunnel does
 * not hold up the worker's other connections for long.
 */
#define RELAY_READS_PER_EVENT 4
/*
 * A direction's read window: it starts here, grows to twice any read its
 * receiver took whole (up to CONN_RELAY_BUF), and shrinks to what the
 * receiver took when it took less; so a slow receiver holds back about
 * RELAY_WIN_MIN at most, and a fast one gets reads of a MiB.
 */
#define RELAY_WIN_MIN (64u * 1024u)

/*
 * The bufferevents that carried the request, the 200 and the ClientHello
 * are gone: each peer's socket has one persistent event, and a direction
 * reads through its transport into the worker's relay_buf and sends straight
 * on, so a bulk transfer costs one read and one send per CONN_RELAY_BUF
 * bytes.  Direction d: 0 is client -> upstream (reads side 0, writes side 1),
 * 1 is upstream -> client.  A direction reads only while none of its bytes
 * wait unwritten in pend, so it holds at most one read's worth, and a
 * receiver that does not read stops its sender (backpressure).  An idle
 * tunnel holds no buffer at all.
 */
struct relay_pend {
	char *buf; /* malloc'd, NULL when empty */
	size_t off, len;
};

struct relay {
	struct event *ev[2]; /* the one persistent event of each side's socket */
	short mask[2];       /* what ev[i] is added for (0: not added) */
	uint32_t win[2];     /* direction d reads at most win[d] bytes at a time */
	bool wait_room[2];   /* direction d waits for its receiver's send buffer to drain */
	struct relay_pend pend[2];
};

static struct transport *side(const struct conn *c, int s)
{
	return s == 0 ? c->client : c->upstream;
}

static bool dir_eof(const struct conn *c, int d)
{
	return d == 0 ? c->client_eof : c->upstream_eof;
}

/* Our write side towards direction d's receiver is shut. */
static bool *dir_shut(struct conn *c, int d)
{
	return d == 0 ? &c->upstream_shut : &c->client_shut;
}

static enum reason side_error(int s)
{
	return s == 0 ? R_CLIENT_ERROR : R_UPSTREAM_ERROR;
}

static bool would_block(void)
{
	return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR;
}

static bool pending(const struct relay *r, int d)
{
	return r->pend[d].off < r->pend[d].len;
}

static void relay_cb(evutil_socket_t fd, short what, void *arg);

/* Add each socket's event for exactly what it waits for now. */
static void rearm(struct conn *c)
{
	struct relay *r = c->relay;
	for (int s = 0; s < 2; s++) {
		short want = 0;
		if (!dir_eof(c, s) && !pending(r, s) && !r->wait_room[s])
			want |= EV_READ;
		if (pending(r, !s) || r->wait_room[!s])
			want |= EV_WRITE;
		if (want == r->mask[s])
			continue;
		/* The worker's changelist turns this delete + add into at most one epoll_ctl. */
		event_del(r->ev[s]);
		r->mask[s] = want;
		if (want == 0)
			continue;
		if (event_assign(r->ev[s], c->env->base, side(c, s)->fd, want | EV_PERSIST,
		                 relay_cb, c) != 0 ||
		    event_add(r->ev[s], NULL) != 0) {
			conn_close(c, R_INTERNAL_ERROR);
			return;
		}
	}
	/* Bytes a TLS session holds already: the socket will not say so; read them next pass. */
	for (int s = 0; s < 2; s++)
		if ((r->mask[s] & EV_READ) && transport_pending(side(c, s)) > 0)
			event_active(r->ev[s], EV_READ, 0);
}

/*
 * Direction d has nothing left to write: pass its EOF on (half-close, RFC
 * 9110 §9.3.6), and end the tunnel when both ways are done.
 */
static void settle(struct conn *c, int d)
{
	struct relay *r = c->relay;
	bool *shut = dir_shut(c, d);
	if (dir_eof(c, d) && !pending(r, d) && !*shut) {
		/* With the other way already done, the close right below sends this FIN. */
		if (!*dir_shut(c, !d))
			transport_shutdown_write(side(c, !d));
		*shut = true;
	}
	if (c->client_shut && c->upstream_shut) {
		conn_close(c, c->first_eof);
		return;
	}
	rearm(c);
}

/* Write what direction d holds back. */
static void flush(struct conn *c, int d)
{
	struct relay *r = c->relay;
	struct relay_pend *p = &r->pend[d];
	while (p->off < p->len) {
		ssize_t w = transport_send(side(c, !d), p->buf + p->off, p->len - p->off);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0 && would_block()) {
			rearm(c);
			return;
		}
		if (w < 0) {
			conn_close(c, side_error(!d));
			return;
		}
		p->off += (size_t)w;
		c->last_active = coarse_ns(); /* draining to a slow reader is activity */
	}
	free(p->buf);
	*p = (struct relay_pend){0};
	settle(c, d);
}

/* Send n bytes of direction d now; keep what the socket does not take. */
static void send_now(struct conn *c, int d, const char *buf, size_t n)
{
	struct relay *r = c->relay;
	if (n > CONN_RELAY_BUF) { /* a backstop: never more than one read */
		conn_close(c, R_INTERNAL_ERROR);
		return;
	}
	ssize_t w = transport_send(side(c, !d), buf, n);
	if (w < 0 && !would_block()) {
		conn_close(c, side_error(!d));
		return;
	}
	size_t done = w < 0 ? 0 : (size_t)w;
	if (done == n) {
		if (2 * n > r->win[d])
			r->win[d] = 2 * n < CONN_RELAY_BUF ? (uint32_t)(2 * n) : CONN_RELAY_BUF;
		return;
	}
	r->win[d] = done > RELAY_WIN_MIN ? (uint32_t)done : RELAY_WIN_MIN;
	struct relay_pend *p = &r->pend[d];
	p->buf = malloc(n - done);
	if (p->buf == NULL) {
		conn_close(c, R_INTERNAL_ERROR);
		return;
	}
	memcpy(p->buf, buf + done, n - done);
	p->off = 0;
	p->len = n - done;
}

static void relay_free(struct relay *r)
{
	for (int i = 0; i < 2; i++) {
		if (r->ev[i] != NULL)
			event_free(r->ev[i]);
		free(r->pend[i].buf);
	}
	free(r);
}

static void relay_release(struct conn *c)
{
	if (c->relay != NULL)
		relay_free(c->relay);
	c->relay = NULL;
}

/*
 * Back to the bufferevents, with what the relay still holds for each peer
 * queued in order in their outputs (a cap reached: conn_finish flushes them;
 * a TLS handshake on a port that is not inspected: the first flight).
 */
static int to_buffered(struct conn *c)
{
	struct relay *r = c->relay;
	if (conn_buffered(c) != 0)
		return -1;
	for (int d = 0; d < 2; d++) {
		struct relay_pend *p = &r->pend[d];
		struct bufferevent *to = d == 0 ? c->ubev : c->cbev;
		if (pending(r, d) && bufferevent_write(to, p->buf + p->off, p->len - p->off) != 0)
			return -1;
	}
	relay_release(c);
	return 0;
}

/* A cap or budget stopped the relay (conn_finish): hand what passed to the bufferevents. */
static void relay_finish(struct conn *c)
{
	if (c->relay != NULL && to_buffered(c) != 0)
		conn_close(c, R_INTERNAL_ERROR);
}

/*
 * A port that is not inspected, and the client opens with a TLS handshake
 * (`early`, n bytes, just read): inspect it anyway, with what the upstream
 * already sent still queued for the client.
 */
static void back_to_hello(struct conn *c, const char *early, size_t n)
{
	c->peek_first = false;
	/* In front: a TLS session's bufferevent starts with the records it held after `early`
	 * (only the input's end is frozen). */
	if (to_buffered(c) != 0 || evbuffer_prepend(bufferevent_get_input(c->cbev), early, n) != 0) {
		conn_close(c, R_INTERNAL_ERROR);
		return;
	}
	conn_enter(c, CS_HELLO);
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
static size_t window(const struct conn *c, int d, bool woken)
{
	size_t win = c->relay->win[d];
	int queued = 0, sndbuf = 0;
	socklen_t len = sizeof(sndbuf);
	evutil_socket_t to = side(c, !d)->fd;
	if (win <= RELAY_WIN_MIN)
		return win;
	if (ioctl(to, SIOCOUTQ, &queued) != 0 ||
	    getsockopt(to, SOL_SOCKET, SO_SNDBUF, &sndbuf, &len) != 0)
		return RELAY_WIN_MIN;
	size_t room = sndbuf > queued ? (size_t)(sndbuf - queued) : 0;
	if (room < RELAY_WIN_MIN)
		return woken ? RELAY_WIN_MIN : 0;
	return room < win ? room : win;
}

/* Side d is readable: read, charge, send on.  woken: side !d has just been reported writable. */
static void pump(struct conn *c, int d, bool woken)
{
	struct relay *r = c->relay;
	char *buf = c->env->relay_buf;
	size_t total = 0;
	r->wait_room[d] = false;
	for (int i = 0; i < RELAY_READS_PER_EVENT && total < CONN_RELAY_BUF; i++) {
		size_t win = window(c, d, woken && i == 0);
		if (win == 0) {
			/* The receiver is full: no read until it drains (EV_WRITE on side !d). */
			r->wait_room[d] = true;
			break;
		}
		ssize_t n = transport_recv(side(c, d), buf, win);
		if (n < 0 && would_block())
			break;
		if (d == 0 && c->peek_first && n > 0) {
			/* Not a TLS port: inspect anyway when the client opens with a TLS
			 * handshake. */
			c->peek_first = false;
			if (buf[0] == 0x16) {
				back_to_hello(c, buf, (size_t)n);
				return;
			}
		}
		if (n < 0) {
			conn_close(c, side_error(d));
			return;
		}
		if (n == 0) {
			if (d == 0)
				c->client_eof = true;
			else
				c->upstream_eof = true;
			if (!(c->client_eof && c->upstream_eof))
				c->first_eof = d == 0 ? R_CLIENT_CLOSED : R_UPSTREAM_CLOSED;
			settle(c, d);
			return;
		}
		enum reason cut;
		uint64_t pass = conn_charge(c, d == 0, (uint64_t)n, true, &cut);
		if (pass > 0)
			send_now(c, d, buf, (size_t)pass);
		if (conn_closed(c))
			return;
		if (cut != R_ALLOWED) {
			conn_finish(c, cut);
			return;
		}
		total += (size_t)n;
		/* A short read emptied the socket: the next bytes come with the next event
		 * (a TLS session reads a record at a time: it says when it holds more). */
		if (pending(r, d) || ((size_t)n < win && transport_pending(side(c, d)) == 0))
			break;
	}
	rearm(c);
}

static void relay_cb(evutil_socket_t fd, short what, void *arg)
{
	struct conn *c = arg;
	int s = fd == c->client->fd ? 0 : 1;
	if ((what & EV_WRITE) && pending(c->relay, !s)) {
		flush(c, !s);
		if (c->state != CS_TUNNEL)
			return;
	}
	/* This socket has room again: the direction that waited for it reads on. */
	if ((what & EV_WRITE) && c->relay->wait_room[!s]) {
		pump(c, !s, true);
		if (c->state != CS_TUNNEL)
			return;
	}
	if ((what & EV_READ) && (c->relay->mask[s] & EV_READ))
		pump(c, s, false);
}

/*
 * What the bufferevents still hold for direction d, in order: the
 * receiver's output (the 200, a 101 head: already counted) ahead of the
 * sender's input (the held ClientHello, bytes that came with the request
 * head or the response head), which is charged like every relayed byte.
 * Returns -1 when out of memory.
 */
static int take_buffered(struct conn *c, int d, bool charge, struct relay_pend *p, enum reason *cut)
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

/* Both sockets from the bufferevents to the relay, what they hold first and in order. */
static void tunnel_enter(struct conn *c)
{
	struct relay *r = calloc(1, sizeof(*r));
	enum reason cut[2] = {R_ALLOWED, R_ALLOWED};
	c->last_active = coarse_ns();
	if (r == NULL) {
		conn_close(c, R_INTERNAL_ERROR);
		return;
	}
	c->relay = r;
	r->ev[0] = event_new(c->env->base, -1, 0, relay_cb, c);
	r->ev[1] = event_new(c->env->base, -1, 0, relay_cb, c);
	r->win[0] = r->win[1] = RELAY_WIN_MIN;
	if (r->ev[0] == NULL || r->ev[1] == NULL || conn_buffered(c) != 0 ||
	    take_buffered(c, 0, true, &r->pend[0], &cut[0]) != 0 ||
	    take_buffered(c, 1, cut[0] == R_ALLOWED, &r->pend[1], &cut[1]) != 0) {
		conn_close(c, R_INTERNAL_ERROR);
		return;
	}
	conn_unbuffered(c);
	if (cut[0] != R_ALLOWED || cut[1] != R_ALLOWED) {
		conn_finish(c, cut[0] != R_ALLOWED ? cut[0] : cut[1]);
		return;
	}
	for (int d = 0; d < 2 && c->state == CS_TUNNEL; d++) {
		if (pending(r, d))
			flush(c, d);
		else
			settle(c, d);
	}
	if (c->state == CS_TUNNEL) {
		conn_audit_tunnel_start(c);
		conn_arm_activity(c);
	}
}

static void tunnel_timeout(struct conn *c)
{
	conn_arm_activity(c);
}

const struct conn_phase relay_phase = {
    .name = "tunnel",
    .enter = tunnel_enter,
    .timeout = tunnel_timeout,
    .finish = relay_finish,
    .release = relay_release,
};
