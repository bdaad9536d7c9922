/* Phase "dial" (CS_RESOLVING, CS_CONNECTING): resolve, vet every answer, connect to a vetted
 * address. */
#include "dial.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "clock.h"
#include "dns.h"
#include "sockaddr.h"
#include "transport.h"

/* Past the resolver's own deadline (timeout x attempts x servers): a backstop only. */
#define RESOLVE_BACKSTOP_MS 1000

struct dial {
	struct dns_query *dq;  /* lookup in flight (the cancel handle) */
	struct pc_addr *addrs; /* the vetted addresses, tried in order, never resolved again */
	size_t n, idx;
	evutil_socket_t fd; /* the attempt in progress, -1: none */
	struct event *ev;   /* EV_WRITE on fd while connecting */
	enum reason fail;   /* why the last attempt failed */
	uint64_t t_step;    /* start of the lookup or of the current attempt */
};

static struct dial *dial_of(struct conn *c)
{
	if (c->dial == NULL) {
		c->dial = calloc(1, sizeof(*c->dial));
		if (c->dial != NULL)
			c->dial->fd = -1;
	}
	return c->dial;
}

/* Drop the attempt in progress, if any. */
static void abandon(struct dial *d)
{
	if (d->ev != NULL)
		event_free(d->ev);
	d->ev = NULL;
	if (d->fd >= 0)
		close(d->fd);
	d->fd = -1;
}

static void dial_finish(struct conn *c)
{
	struct dial *d = c->dial;
	if (d == NULL)
		return;
	if (d->dq != NULL)
		dns_cancel(d->dq);
	d->dq = NULL;
	abandon(d);
}

static void dial_release(struct conn *c)
{
	dial_finish(c);
	if (c->dial != NULL)
		free(c->dial->addrs);
	free(c->dial);
	c->dial = NULL;
}

/* ---- connected: a tunnel for CONNECT, one forwarded exchange for plain HTTP ---- */

/* Send at once when nothing is queued ahead (a fresh socket takes a short reply whole). */
static int write_through(struct conn *c, const char *p, size_t n)
{
	if (evbuffer_get_length(bufferevent_get_output(c->cbev)) == 0) {
		ssize_t w = transport_send(c->client, p, n);
		if (w > 0) {
			p += w;
			n -= (size_t)w;
		}
		/* An error shows on the bufferevent's next write, as any other would. */
	}
	return n == 0 ? 0 : bufferevent_write(c->cbev, p, n);
}

static void connected(struct conn *c, evutil_socket_t fd)
{
	struct dial *d = c->dial;
	metrics_observe(&c->env->metrics->connect, mono_ns() - d->t_step);
	c->upstream = transport_tcp(fd);
	if (c->upstream == NULL) {
		close(fd);
		conn_refuse(c, R_INTERNAL_ERROR);
		return;
	}
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	c->have_dst = true;
	c->dst = d->addrs[d->idx];
	dial_release(c);
	conn_disarm(c);
	/* An intercepted tunnel: TLS to the upstream first, and the 200 only once it verified. */
	if (c->icpt != NULL) {
		conn_enter(c, CS_ICPT_UPSTREAM);
		return;
	}
	if (conn_buffered(c) != 0) {
		conn_close(c, R_INTERNAL_ERROR);
		return;
	}
	if (c->plain) {
		conn_enter(c, CS_FORWARD);
		return;
	}
	static const char ok[] = "HTTP/1.1 200 Connection established\r\n\r\n";
	if (write_through(c, ok, sizeof(ok) - 1) != 0) {
		conn_close(c, R_INTERNAL_ERROR);
		return;
	}
	c->status = 200;
	metrics_observe(&c->env->metrics->setup, mono_ns() - c->t_head);
	atomic_fetch_add_explicit(&c->env->metrics->tunnels_active[c->tier_slot], 1,
	                          memory_order_relaxed);
	c->counted_active = true;
	conn_enter(c, CS_HELLO);
}

/* ---- connecting: only vetted addresses, in order ---- */

static enum reason connect_errno_reason(int err)
{
	switch (err) {
	case ECONNREFUSED:
		return R_UPSTREAM_REFUSED;
	case ETIMEDOUT:
		return R_UPSTREAM_TIMEOUT;
	default:
		return R_UPSTREAM_UNREACHABLE;
	}
}

static void connect_next(struct conn *c);

static void connect_failed(struct conn *c, enum reason why)
{
	struct dial *d = c->dial;
	d->fail = why;
	abandon(d);
	d->idx++;
	connect_next(c);
}

static void connect_ready_cb(evutil_socket_t fd, short what, void *arg)
{
	struct conn *c = arg;
	struct dial *d = c->dial;
	int err = 0;
	socklen_t len = sizeof(err);
	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
		err = errno;
	if (err != 0) {
		connect_failed(c, connect_errno_reason(err));
		return;
	}
	event_free(d->ev);
	d->ev = NULL;
	d->fd = -1; /* the transport owns it from here */
	connected(c, fd);
}

static void connect_next(struct conn *c)
{
	struct dial *d = c->dial;
	const struct policy_tier *t = conn_tier(c);
	const struct policy_settings *s = policy_settings(c->policy);
	for (; d->idx < d->n; d->idx++) {
		struct sockaddr_storage ss;
		socklen_t sl = sockaddr_make(&d->addrs[d->idx], c->port, &ss);
		d->t_step = mono_ns();
		int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (fd < 0) {
			d->fail = R_INTERNAL_ERROR;
			continue;
		}
		if (connect(fd, (struct sockaddr *)&ss, sl) == 0) {
			connected(c, fd);
			return;
		}
		if (errno != EINPROGRESS) {
			d->fail = connect_errno_reason(errno);
			close(fd);
			continue;
		}
		d->fd = fd;
		d->ev = event_new(c->env->base, fd, EV_WRITE, connect_ready_cb, c);
		if (d->ev == NULL || event_add(d->ev, NULL) != 0) {
			conn_refuse(c, R_INTERNAL_ERROR);
			return;
		}
		conn_arm_ms(c, conn_pick(t ? t->connect_timeout_ms : 0, s->connect_timeout_ms));
		return;
	}
	conn_refuse(c, d->fail);
}

/* Every answer is vetted before any is used: one blocked answer refuses the name. */
static bool vet(struct conn *c, const struct pc_addr *addrs, size_t n)
{
	struct dial *d = dial_of(c);
	struct verdict v;
	policy_decide_addrs(c->policy, c->tier, addrs, n, &v);
	if (!v.allow) {
		conn_refuse(c, v.reason);
		return false;
	}
	if (d != NULL)
		d->addrs = malloc(n * sizeof(*addrs));
	if (d == NULL || d->addrs == NULL) {
		conn_refuse(c, R_INTERNAL_ERROR);
		return false;
	}
	memcpy(d->addrs, addrs, n * sizeof(*addrs));
	d->n = n;
	d->idx = 0;
	d->fail = R_UPSTREAM_UNREACHABLE;
	return true;
}

static void connecting_enter(struct conn *c)
{
	/* An IP-literal target comes straight here: it is its own one answer. */
	if ((c->dial == NULL || c->dial->addrs == NULL) && !vet(c, &c->host.addr, 1))
		return;
	connect_next(c);
}

static void connecting_timeout(struct conn *c)
{
	connect_failed(c, R_UPSTREAM_TIMEOUT);
}

/* ---- resolving ---- */

static void dns_done(void *arg, enum dns_result res, const struct pc_addr *addrs, size_t n)
{
	struct conn *c = arg;
	struct dial *d = c->dial;
	struct worker_metrics *m = c->env->metrics;
	d->dq = NULL;
	metrics_observe(&m->dns, mono_ns() - d->t_step);
	switch (res) {
	case DNS_OK:
		break;
	case DNS_NXDOMAIN:
		metrics_add(&m->dns_errors[MDNS_NXDOMAIN], 1);
		break;
	case DNS_NODATA:
		metrics_add(&m->dns_errors[MDNS_NODATA], 1);
		break;
	case DNS_TIMEOUT:
		metrics_add(&m->dns_errors[MDNS_TIMEOUT], 1);
		break;
	default:
		metrics_add(&m->dns_errors[MDNS_ERROR], 1);
		break;
	}
	switch (res) {
	case DNS_OK:
		if (vet(c, addrs, n))
			conn_enter(c, CS_CONNECTING);
		return;
	case DNS_NXDOMAIN:
		conn_refuse(c, R_DNS_NXDOMAIN);
		return;
	case DNS_TIMEOUT:
		conn_refuse(c, R_DNS_TIMEOUT);
		return;
	case DNS_NODATA:
	case DNS_ERROR:
	default:
		conn_refuse(c, R_DNS_ERROR);
		return;
	}
}

static void resolving_enter(struct conn *c)
{
	struct dial *d = dial_of(c);
	if (d == NULL) {
		conn_refuse(c, R_INTERNAL_ERROR);
		return;
	}
	d->t_step = mono_ns();
	/* A name in the cache is decided now, in this pass of the loop (dns_done runs inside). */
	if (dns_lookup_cached(c->env->dns, c->host.name, dns_done, c))
		return;
	const struct policy_settings *s = policy_settings(c->policy);
	uint64_t n = s->n_resolvers ? s->n_resolvers : 1;
	conn_arm_ms(c, (uint64_t)s->resolver_timeout_ms * (s->resolver_attempts + 1) * n +
	                   RESOLVE_BACKSTOP_MS);
	d->dq = dns_lookup(c->env->dns, c->host.name, dns_done, c);
	if (d->dq == NULL)
		conn_refuse(c, R_DNS_ERROR);
}

static void resolving_timeout(struct conn *c)
{
	conn_refuse(c, R_DNS_TIMEOUT);
}

const struct conn_phase dial_resolving_phase = {
    .name = "resolving",
    .enter = resolving_enter,
    .timeout = resolving_timeout,
    .finish = dial_finish,
    .release = dial_release,
};

const struct conn_phase dial_connecting_phase = {
    .name = "connecting",
    .enter = connecting_enter,
    .timeout = connecting_timeout,
    .finish = dial_finish,
    .release = dial_release,
};
