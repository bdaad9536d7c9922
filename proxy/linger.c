/* Lingering closes: a bounded pool of client sockets being drained before close. */
#include "linger.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/event.h>

#include "clock.h"

struct lingering {
	struct lingering *prev, *next; /* oldest first */
	struct linger_pool *pool;
	struct event *ev;
	evutil_socket_t fd;
	uint64_t deadline_ns;
};

struct linger_pool {
	struct event_base *base;
	struct lingering *head, *tail;
	size_t n, max;
};

struct linger_pool *linger_pool_create(struct event_base *base, size_t max)
{
	struct linger_pool *p = calloc(1, sizeof(*p));
	if (p == NULL)
		return NULL;
	p->base = base;
	p->max = max;
	return p;
}

static void drop(struct lingering *l)
{
	struct linger_pool *p = l->pool;
	if (l->prev != NULL)
		l->prev->next = l->next;
	else
		p->head = l->next;
	if (l->next != NULL)
		l->next->prev = l->prev;
	else
		p->tail = l->prev;
	p->n--;
	event_free(l->ev);
	close(l->fd);
	free(l);
}

static void linger_cb(evutil_socket_t fd, short what, void *arg)
{
	struct lingering *l = arg;
	char buf[4096];
	if (what & EV_READ) {
		/* A few reads per wake-up: a client that floods is cut at the deadline anyway. */
		for (int i = 0; i < 4; i++) {
			ssize_t n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
			if (n == 0 ||
			    (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR))
				goto done;
			if (n < (ssize_t)sizeof(buf))
				break;
		}
		if (mono_ns() < l->deadline_ns)
			return;
	}
done:
	drop(l);
}

void linger_add(struct linger_pool *p, evutil_socket_t fd, uint32_t ms)
{
	shutdown(fd, SHUT_WR);
	if (p->max == 0) {
		close(fd);
		return;
	}
	if (p->n >= p->max)
		drop(p->head); /* the oldest has had the longest chance */
	struct lingering *l = calloc(1, sizeof(*l));
	struct timeval tv = {.tv_sec = (time_t)(ms / 1000),
	                     .tv_usec = (suseconds_t)(ms % 1000) * 1000};
	if (l != NULL)
		l->ev = event_new(p->base, fd, EV_READ | EV_PERSIST, linger_cb, l);
	if (l == NULL || l->ev == NULL || event_add(l->ev, &tv) != 0) {
		if (l != NULL && l->ev != NULL)
			event_free(l->ev);
		free(l);
		close(fd);
		return;
	}
	l->pool = p;
	l->fd = fd;
	l->deadline_ns = mono_ns() + (uint64_t)ms * 1000000u;
	l->prev = p->tail;
	if (p->tail != NULL)
		p->tail->next = l;
	else
		p->head = l;
	p->tail = l;
	p->n++;
}

size_t linger_count(const struct linger_pool *p)
{
	return p->n;
}

void linger_pool_destroy(struct linger_pool *p)
{
	if (p == NULL)
		return;
	while (p->head != NULL)
		drop(p->head);
	free(p);
}
