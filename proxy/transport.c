/* The transport seam and its plain TCP implementation. */
#include "transport.h"

#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/bufferevent.h>

static ssize_t tcp_recv(struct transport *t, void *buf, size_t n)
{
	return recv(t->fd, buf, n, 0);
}

static ssize_t tcp_send(struct transport *t, const void *buf, size_t n)
{
	return send(t->fd, buf, n, MSG_NOSIGNAL);
}

static void tcp_shutdown_write(struct transport *t)
{
	shutdown(t->fd, SHUT_WR);
}

static struct bufferevent *tcp_buffered(struct transport *t, struct event_base *base)
{
	/* No BEV_OPT_CLOSE_ON_FREE: the transport owns the socket. */
	return bufferevent_socket_new(base, t->fd, 0);
}

static void tcp_reset(struct transport *t)
{
	struct linger lg = {.l_onoff = 1, .l_linger = 0};
	setsockopt(t->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	close(t->fd);
	free(t);
}

static evutil_socket_t tcp_release(struct transport *t)
{
	evutil_socket_t fd = t->fd;
	free(t);
	return fd;
}

static void tcp_destroy(struct transport *t)
{
	close(t->fd);
	free(t);
}

static const struct transport_ops tcp_ops = {
    .recv = tcp_recv,
    .send = tcp_send,
    .shutdown_write = tcp_shutdown_write,
    .buffered = tcp_buffered,
    .reset = tcp_reset,
    .release = tcp_release,
    .destroy = tcp_destroy,
};

struct transport *transport_tcp(evutil_socket_t fd)
{
	struct transport *t = malloc(sizeof(*t));
	if (t == NULL)
		return NULL;
	t->ops = &tcp_ops;
	t->fd = fd;
	return t;
}

void transport_unbuffer(struct transport *t, struct bufferevent *bev)
{
	if (bev == NULL)
		return;
	if (t != NULL && t->ops->unbuffer != NULL) {
		t->ops->unbuffer(t, bev);
		return;
	}
	/* It never touches the socket again (the transport owns it). */
	bufferevent_setfd(bev, -1);
	bufferevent_free(bev);
}

void transport_destroy(struct transport *t)
{
	if (t != NULL)
		t->ops->destroy(t);
}

void transport_reset(struct transport *t)
{
	if (t != NULL)
		t->ops->reset(t);
}

evutil_socket_t transport_release(struct transport *t)
{
	return t != NULL ? t->ops->release(t) : -1;
}
