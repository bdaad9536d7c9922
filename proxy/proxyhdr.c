/* Phase "PROXY header" (CS_PROXY_HEADER): a balancer's header, read exactly, then the source. */
#include "proxyhdr.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <event2/event.h>

#include "proxy_proto.h"
#include "transport.h"

/*
 * The header is read off the socket itself, before any transport reads it:
 * peeked, parsed, and only its own bytes taken, so whatever follows (the
 * request, or a TLS listener's handshake) stays in the kernel's buffer for
 * the next reader, however it arrived.  Usually the whole header is there at
 * once and the worker's scratch buffer is enough.  The bytes of a header
 * still incomplete are taken into buf, allocated then (they can only be
 * header), so the socket is readable again only when something new came: no
 * spinning on old bytes.
 */
struct pphdr {
	struct event *ev;
	size_t have;  /* bytes of the header taken into buf */
	uint8_t *buf; /* PP_MAX_HEADER bytes, once a header came in pieces */
};

static void proxyhdr_release(struct conn *c)
{
	if (c->pphdr == NULL)
		return;
	if (c->pphdr->ev != NULL)
		event_free(c->pphdr->ev);
	free(c->pphdr->buf);
	free(c->pphdr);
	c->pphdr = NULL;
}

/* An IPv4 client written as ::ffff:a.b.c.d is that IPv4 address, as on a dual-stack socket. */
static void canonical(const struct pc_addr *in, struct pc_addr *out)
{
	static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
	*out = *in;
	if (in->family == ADDR_V6 && memcmp(in->b, mapped, sizeof(mapped)) == 0) {
		memset(out, 0, sizeof(*out));
		out->family = ADDR_V4;
		memcpy(out->b, in->b + 12, 4);
	}
}

/* The header is in: its client is the source (LOCAL, UNKNOWN: the balancer itself is). */
static void accepted(struct conn *c, const struct pp_header *h)
{
	proxyhdr_release(c);
	conn_disarm(c);
	if (!h->local) {
		c->via->proxied = true;
		canonical(&h->src, &c->src);
		c->src_port = h->src_port;
		memcpy(c->via->vpce, h->vpce, sizeof(c->via->vpce));
	}
	conn_start(c);
}

static void read_cb(evutil_socket_t fd, short what, void *arg)
{
	struct conn *c = arg;
	struct pphdr *p = c->pphdr;
	uint8_t *at = p->buf != NULL ? p->buf : (uint8_t *)c->env->relay_buf;
	ssize_t n = recv(fd, at + p->have, PP_MAX_HEADER - p->have, MSG_PEEK);
	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
		return;
	if (n <= 0) {
		/* Gone before a whole header (a balancer's TCP health check): nothing to record. */
		conn_close(c, n == 0 ? R_CLIENT_CLOSED : R_CLIENT_ERROR);
		return;
	}
	struct pp_header h;
	int r = proxy_proto_parse(at, p->have + (size_t)n, c->via->accept, &h);
	if (r < 0) {
		/* Refused; what it sent stays unread and the close lingers over it. */
		conn_refuse(c,
		            r == PP_ERR_MISSING ? R_PROXY_HEADER_MISSING : R_PROXY_HEADER_INVALID);
		return;
	}
	/* Need more: every byte so far is header, kept.  Done: take the header's bytes, no more. */
	size_t take = r == PP_NEED_MORE ? (size_t)n : (size_t)r - p->have;
	if (r == PP_NEED_MORE && p->buf == NULL) {
		p->buf = malloc(PP_MAX_HEADER);
		if (p->buf == NULL) {
			conn_refuse(c, R_INTERNAL_ERROR);
			return;
		}
		at = p->buf; /* the bytes just peeked are taken into it below */
	}
	if (recv(fd, at + p->have, take, 0) != (ssize_t)take) {
		conn_close(c, R_CLIENT_ERROR); /* the peeked bytes went: a reset in between */
		return;
	}
	p->have += take;
	if (r > 0)
		accepted(c, &h);
	else if (p->have == PP_MAX_HEADER)
		conn_refuse(c, R_PROXY_HEADER_INVALID); /* never: the parser decides within it */
}

static void proxyhdr_enter(struct conn *c)
{
	c->pphdr = calloc(1, sizeof(*c->pphdr));
	if (c->pphdr != NULL)
		c->pphdr->ev =
		    event_new(c->env->base, c->client->fd, EV_READ | EV_PERSIST, read_cb, c);
	if (c->pphdr == NULL || c->pphdr->ev == NULL || event_add(c->pphdr->ev, NULL) != 0) {
		conn_close(c, R_INTERNAL_ERROR);
		return;
	}
	conn_arm_ms(c, c->via->timeout_ms);
	/* The header usually came with the handshake: read it now, not one loop pass later. */
	read_cb(c->client->fd, EV_READ, c);
}

static void proxyhdr_timeout(struct conn *c)
{
	conn_refuse(c, R_PROXY_HEADER_TIMEOUT);
}

const struct conn_phase proxyhdr_phase = {
    .name = "proxy_header",
    .enter = proxyhdr_enter,
    .timeout = proxyhdr_timeout,
    .finish = proxyhdr_release, /* read nothing more off the socket */
    .release = proxyhdr_release,
};
