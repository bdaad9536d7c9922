/* Pinned DNS: one c-ares channel per event loop, driven by libevent, with a TTL answer cache. */
#include "dns.h"

#include <ares.h>
#include <arpa/inet.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>

#include "clock.h"
#include "hash.h"

#define DNS_NAME_MAX            253
#define DNS_LABEL_MAX           63
#define DNS_DEFAULT_MAX_ANSWERS 16
#define DNS_MAX_MAX_ANSWERS     1024
#define DNS_DEFAULT_TIMEOUT_MS  1500
#define DNS_DEFAULT_ATTEMPTS    2
#define DNS_CACHE_BUCKETS       4096 /* power of two */
#define DNS_MAX_FDS             (2 * POLICY_MAX_RESOLVERS + 2)
#define DNS_PENDING_BUCKETS     1024 /* power of two */

/* Circular doubly linked list with a sentinel head; the link is each node's first member. */
struct dns_link {
	struct dns_link *prev, *next;
};

/* One result, shared (refcounted) by the cache and every waiter it is delivered to. */
struct dns_answer {
	unsigned refs;
	size_t n;
	struct pc_addr a[];
};

/* One caller's lookup: waits on a pending query, then on the ready list, then is delivered. */
struct dns_query {
	struct dns_link link; /* first: in pending->waiters, r->ready or a batch being delivered */
	dns_cb cb;
	void *arg;
	enum dns_result res;
	struct dns_answer *ans; /* NULL unless DNS_OK */
	bool delivering;        /* its callback is running: dns_cancel must not free it */
};

/* One c-ares lookup (A + AAAA) for one name, shared by every waiter for that name. */
struct dns_pending {
	struct dns_pending *hnext; /* hash chain, while in_table */
	struct dns_resolver *r;
	struct dns_link waiters;
	struct event *deadline; /* ends the waiters with DNS_TIMEOUT */
	uint32_t hash;
	bool in_table;
	char name[];
};

/* One cached answer. */
struct dns_centry {
	struct dns_link lru; /* first: least recently used at the head of r->lru */
	struct dns_centry *hnext;
	uint32_t hash;
	unsigned long long expires_ms;
	struct dns_answer *ans;
	char name[];
};

/* One socket c-ares asked us to watch. */
struct dns_fdev {
	ares_socket_t fd;
	struct event *ev;
};

struct dns_resolver {
	struct event_base *base;
	ares_channel channel;
	struct event *timer;   /* c-ares retransmits and timeouts, from ares_timeout() */
	struct event *deliver; /* zero timeout: runs the callbacks of r->ready */
	struct dns_fdev fds[DNS_MAX_FDS];
	size_t n_fds;
	struct dns_link ready;       /* waiters with a result, in completion order */
	struct dns_link *delivering; /* batch deliver_cb is running (on its stack), or NULL */
	bool *destroyed;             /* deliver_cb's flag: destroy ran inside a callback */
	bool destroying;
	uint32_t seed;
	uint32_t max_answers;
	unsigned long long deadline_ms;
	unsigned long long last_answer_ms;
	const char *last_failure; /* how the last lookup that got no answer ended, or NULL */
	bool probe;               /* dns_probe_create: server failures are reported, not retried */
	struct dns_stats stats;
	struct dns_link lru;
	size_t cache_n;
	struct dns_centry *cache[DNS_CACHE_BUCKETS];
	struct dns_pending *pending[DNS_PENDING_BUCKETS];
};

/* ---- small helpers ---- */

static unsigned long long now_ms(void)
{
	return mono_ms();
}

static void list_init(struct dns_link *h)
{
	h->prev = h->next = h;
}

static bool list_empty(const struct dns_link *h)
{
	return h->next == h;
}

static void list_del(struct dns_link *l)
{
	l->prev->next = l->next;
	l->next->prev = l->prev;
	l->prev = l->next = l;
}

static void list_add_tail(struct dns_link *h, struct dns_link *l)
{
	l->prev = h->prev;
	l->next = h;
	h->prev->next = l;
	h->prev = l;
}

/* Move every node of src to the (empty) dst. */
static void list_take(struct dns_link *dst, struct dns_link *src)
{
	list_init(dst);
	if (list_empty(src))
		return;
	dst->next = src->next;
	dst->prev = src->prev;
	dst->next->prev = dst;
	dst->prev->next = dst;
	list_init(src);
}

static uint32_t name_hash(const struct dns_resolver *r, const char *name)
{
	return (uint32_t)hash_bytes(r->seed, name, strlen(name)); /* seeded per resolver */
}

static struct dns_answer *answer_ref(struct dns_answer *a)
{
	if (a != NULL)
		a->refs++;
	return a;
}

static void answer_unref(struct dns_answer *a)
{
	if (a != NULL && --a->refs == 0)
		free(a);
}

static void query_free(struct dns_query *q)
{
	answer_unref(q->ans);
	free(q);
}

/*
 * Copy name into key (DNS_NAME_MAX + 1 bytes): lowercase, one trailing dot
 * removed.  Only letters, digits, '-', '_' and dots between non-empty labels
 * of at most 63 bytes.  Returns 0 or -1.
 */
static int canon_name(const char *name, char *key)
{
	size_t len = strnlen(name, DNS_NAME_MAX + 2);
	if (len > 0 && name[len - 1] == '.')
		len--;
	if (len == 0 || len > DNS_NAME_MAX)
		return -1;
	size_t label = 0;
	for (size_t i = 0; i < len; i++) {
		char c = name[i];
		if (c == '.') {
			if (label == 0)
				return -1;
			label = 0;
		} else if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
		           c == '_') {
			label++;
		} else if (c >= 'A' && c <= 'Z') {
			c = (char)(c - 'A' + 'a');
			label++;
		} else {
			return -1;
		}
		if (label > DNS_LABEL_MAX)
			return -1;
		key[i] = c;
	}
	if (label == 0)
		return -1;
	key[len] = '\0';
	return 0;
}

static bool name_is_or_under(const char *key, const char *zone)
{
	size_t n = strlen(key), z = strlen(zone);
	if (n == z)
		return memcmp(key, zone, n) == 0;
	return n > z && key[n - z - 1] == '.' && memcmp(key + n - z, zone, z) == 0;
}

enum special { SPECIAL_NONE, SPECIAL_NXDOMAIN, SPECIAL_REFUSE };

/* Names c-ares would answer itself (or fake) instead of asking the pinned servers. */
static enum special special_name(const char *key)
{
	if (name_is_or_under(key, "localhost") || name_is_or_under(key, "onion"))
		return SPECIAL_NXDOMAIN;
	/* An IPv4 number is never a name (and c-ares would answer a dotted quad itself). */
	if (addr_looks_ipv4(key, strlen(key)))
		return SPECIAL_REFUSE;
	return SPECIAL_NONE;
}

/* ---- delivery: every callback runs from r->deliver, never from dns_lookup ---- */

static void schedule_delivery(struct dns_resolver *r)
{
	static const struct timeval zero = {0, 0};
	if (!evtimer_pending(r->deliver, NULL))
		evtimer_add(r->deliver, &zero);
}

static void make_ready(struct dns_resolver *r, struct dns_query *q, enum dns_result res,
                       struct dns_answer *ans)
{
	q->res = res;
	q->ans = answer_ref(ans);
	list_add_tail(&r->ready, &q->link);
	schedule_delivery(r);
}

static void deliver_cb(evutil_socket_t fd, short what, void *arg)
{
	struct dns_resolver *r = arg;
	struct dns_link batch;
	bool destroyed = false;

	/* Lookups started by these callbacks wait for the next round. */
	list_take(&batch, &r->ready);
	r->delivering = &batch;
	r->destroyed = &destroyed;
	while (!list_empty(&batch)) {
		struct dns_query *q = (struct dns_query *)(void *)batch.next;
		list_del(&q->link);
		q->delivering = true;
		q->cb(q->arg, q->res, q->ans ? q->ans->a : NULL, q->ans ? q->ans->n : 0);
		query_free(q);
		if (destroyed)
			return; /* r is gone; destroy freed the rest of the batch */
	}
	r->delivering = NULL;
	r->destroyed = NULL;
}

/* ---- the cache ---- */

static void cache_remove(struct dns_resolver *r, struct dns_centry *e)
{
	struct dns_centry **pp = &r->cache[e->hash & (DNS_CACHE_BUCKETS - 1)];
	while (*pp != e)
		pp = &(*pp)->hnext;
	*pp = e->hnext;
	list_del(&e->lru);
	answer_unref(e->ans);
	free(e);
	r->cache_n--;
}

static struct dns_centry *cache_find(struct dns_resolver *r, const char *key, uint32_t h)
{
	for (struct dns_centry *e = r->cache[h & (DNS_CACHE_BUCKETS - 1)]; e; e = e->hnext)
		if (e->hash == h && strcmp(e->name, key) == 0)
			return e;
	return NULL;
}

static struct dns_answer *cache_get(struct dns_resolver *r, const char *key, uint32_t h)
{
	struct dns_centry *e = cache_find(r, key, h);
	if (e == NULL)
		return NULL;
	if (now_ms() >= e->expires_ms) {
		cache_remove(r, e);
		return NULL;
	}
	list_del(&e->lru);
	list_add_tail(&r->lru, &e->lru);
	return e->ans;
}

static void cache_put(struct dns_resolver *r, const char *key, uint32_t h, struct dns_answer *ans,
                      unsigned ttl_s)
{
	if (ttl_s < DNS_CACHE_TTL_MIN_S)
		ttl_s = DNS_CACHE_TTL_MIN_S;
	if (ttl_s > DNS_CACHE_TTL_MAX_S)
		ttl_s = DNS_CACHE_TTL_MAX_S;
	struct dns_centry *e = cache_find(r, key, h);
	if (e != NULL) {
		answer_unref(e->ans);
		list_del(&e->lru);
	} else {
		if (r->cache_n >= DNS_CACHE_MAX_ENTRIES)
			cache_remove(r, (struct dns_centry *)(void *)r->lru.next);
		size_t len = strlen(key);
		e = malloc(sizeof(*e) + len + 1);
		if (e == NULL)
			return; /* not caching is always safe */
		memcpy(e->name, key, len + 1);
		e->hash = h;
		e->hnext = r->cache[h & (DNS_CACHE_BUCKETS - 1)];
		r->cache[h & (DNS_CACHE_BUCKETS - 1)] = e;
		r->cache_n++;
	}
	e->ans = answer_ref(ans);
	e->expires_ms = now_ms() + (unsigned long long)ttl_s * 1000ULL;
	list_add_tail(&r->lru, &e->lru);
}

void dns_cache_flush(struct dns_resolver *r)
{
	if (r == NULL)
		return;
	while (!list_empty(&r->lru))
		cache_remove(r, (struct dns_centry *)(void *)r->lru.next);
}

/* ---- pending c-ares lookups ---- */

static struct dns_pending *pending_find(struct dns_resolver *r, const char *key, uint32_t h)
{
	for (struct dns_pending *p = r->pending[h & (DNS_PENDING_BUCKETS - 1)]; p; p = p->hnext)
		if (p->hash == h && strcmp(p->name, key) == 0)
			return p;
	return NULL;
}

static void pending_unhash(struct dns_pending *p)
{
	if (!p->in_table)
		return;
	struct dns_pending **pp = &p->r->pending[p->hash & (DNS_PENDING_BUCKETS - 1)];
	while (*pp != p)
		pp = &(*pp)->hnext;
	*pp = p->hnext;
	p->in_table = false;
}

/* Hand the result to every waiter (they run later, from r->deliver). */
static void pending_complete(struct dns_pending *p, enum dns_result res, struct dns_answer *ans)
{
	while (!list_empty(&p->waiters)) {
		struct dns_query *q = (struct dns_query *)(void *)p->waiters.next;
		list_del(&q->link);
		make_ready(p->r, q, res, ans);
		if (res == DNS_TIMEOUT)
			p->r->stats.timeouts++;
	}
}

static void pending_free(struct dns_pending *p)
{
	pending_unhash(p);
	if (p->deadline != NULL)
		event_free(p->deadline);
	free(p);
}

/* The overall deadline: timeout x attempts x servers, whatever c-ares' backoff would allow. */
static void deadline_cb(evutil_socket_t fd, short what, void *arg)
{
	struct dns_pending *p = arg;
	/* c-ares keeps the query until it gives up; new lookups of the name start afresh. */
	pending_unhash(p);
	p->r->last_failure = "timeout";
	pending_complete(p, DNS_TIMEOUT, NULL);
}

static struct dns_pending *pending_new(struct dns_resolver *r, const char *key, uint32_t h)
{
	size_t len = strlen(key);
	struct dns_pending *p = calloc(1, sizeof(*p) + len + 1);
	if (p == NULL)
		return NULL;
	memcpy(p->name, key, len + 1);
	p->r = r;
	p->hash = h;
	list_init(&p->waiters);
	p->deadline = evtimer_new(r->base, deadline_cb, p);
	struct timeval tv = {(time_t)(r->deadline_ms / 1000),
	                     (suseconds_t)(r->deadline_ms % 1000) * 1000};
	if (p->deadline == NULL || evtimer_add(p->deadline, &tv) != 0) {
		if (p->deadline != NULL)
			event_free(p->deadline);
		free(p);
		return NULL;
	}
	p->hnext = r->pending[h & (DNS_PENDING_BUCKETS - 1)];
	r->pending[h & (DNS_PENDING_BUCKETS - 1)] = p;
	p->in_table = true;
	return p;
}

/* ---- c-ares results ---- */

static bool answer_has(const struct dns_answer *a, const struct pc_addr *x)
{
	for (size_t i = 0; i < a->n; i++)
		if (a->a[i].family == x->family && memcmp(a->a[i].b, x->b, sizeof(x->b)) == 0)
			return true;
	return false;
}

/* A and AAAA answers in c-ares order, de-duplicated, at most max_answers; *ttl = smallest TTL. */
static int collect(const struct dns_resolver *r, const struct ares_addrinfo *ai,
                   struct dns_answer **out, unsigned *ttl)
{
	struct dns_answer *a = malloc(sizeof(*a) + r->max_answers * sizeof(struct pc_addr));
	if (a == NULL)
		return -1;
	a->refs = 1;
	a->n = 0;
	long min_ttl = DNS_CACHE_TTL_MAX_S;
	for (const struct ares_addrinfo_node *n = ai->nodes; n && a->n < r->max_answers;
	     n = n->ai_next) {
		struct pc_addr x;
		memset(&x, 0, sizeof(x));
		if (n->ai_family == AF_INET && n->ai_addrlen >= sizeof(struct sockaddr_in)) {
			const struct sockaddr_in *sin =
			    (const struct sockaddr_in *)(void *)n->ai_addr;
			x.family = ADDR_V4;
			memcpy(x.b, &sin->sin_addr, 4);
		} else if (n->ai_family == AF_INET6 &&
		           n->ai_addrlen >= sizeof(struct sockaddr_in6)) {
			const struct sockaddr_in6 *s6 =
			    (const struct sockaddr_in6 *)(void *)n->ai_addr;
			x.family = ADDR_V6;
			memcpy(x.b, &s6->sin6_addr, 16);
		} else {
			continue;
		}
		if (answer_has(a, &x))
			continue;
		a->a[a->n++] = x;
		if (n->ai_ttl < min_ttl)
			min_ttl = n->ai_ttl;
	}
	for (const struct ares_addrinfo_cname *c = ai->cnames; c; c = c->next)
		if (c->ttl < min_ttl)
			min_ttl = c->ttl;
	*ttl = min_ttl < 0 ? 0 : (unsigned)min_ttl;
	*out = a;
	return 0;
}

static enum dns_result map_status(int status)
{
	switch (status) {
	case ARES_SUCCESS:
		return DNS_OK;
	case ARES_ENOTFOUND:
		return DNS_NXDOMAIN;
	case ARES_ENODATA:
		return DNS_NODATA;
	case ARES_ETIMEOUT:
		return DNS_TIMEOUT;
	default:
		return DNS_ERROR; /* ESERVFAIL, EREFUSED, EBADRESP, ECONNREFUSED, ENOMEM, ... */
	}
}

/* How a lookup that got no usable answer ended, in the words an operator searches for. */
static const char *failure_name(int status)
{
	switch (status) {
	case ARES_ETIMEOUT:
		return "timeout";
	case ARES_ESERVFAIL:
		return "SERVFAIL";
	case ARES_EREFUSED:
		return "REFUSED";
	case ARES_ECONNREFUSED:
		return "connection refused";
	case ARES_EBADRESP:
		return "bad reply";
	case ARES_EFORMERR:
		return "FORMERR";
	case ARES_ENOTIMP:
		return "NOTIMP";
	default:
		return "error";
	}
}

static void ares_cb(void *arg, int status, int timeouts, struct ares_addrinfo *ai)
{
	struct dns_pending *p = arg;
	struct dns_resolver *r = p->r;
	struct dns_answer *ans = NULL;
	unsigned ttl = 0;

	if (status == ARES_EDESTRUCTION || r->destroying) {
		/* dns_resolver_destroy already dropped the waiters: nothing reaches an owner. */
		pending_free(p);
		ares_freeaddrinfo(ai);
		return;
	}
	enum dns_result res = map_status(status);
	if (status == ARES_SUCCESS || status == ARES_ENOTFOUND || status == ARES_ENODATA) {
		r->last_answer_ms = now_ms();
		r->last_failure = NULL;
	} else {
		r->last_failure = failure_name(status);
	}
	if (res == DNS_OK) {
		if (ai == NULL || collect(r, ai, &ans, &ttl) != 0)
			res = DNS_ERROR;
		else if (ans->n == 0)
			res = DNS_NODATA;
		else
			cache_put(r, p->name, p->hash, ans, ttl);
	}
	pending_complete(p, res, res == DNS_OK ? ans : NULL);
	answer_unref(ans);
	pending_free(p);
	ares_freeaddrinfo(ai);
}

/* ---- libevent driving ---- */

static void rearm_timer(struct dns_resolver *r)
{
	struct timeval tv;
	if (ares_timeout(r->channel, NULL, &tv) != NULL)
		evtimer_add(r->timer, &tv);
	else
		evtimer_del(r->timer);
}

static void fd_cb(evutil_socket_t fd, short what, void *arg)
{
	struct dns_resolver *r = arg;
	ares_process_fd(r->channel, (what & EV_READ) ? fd : ARES_SOCKET_BAD,
	                (what & EV_WRITE) ? fd : ARES_SOCKET_BAD);
	rearm_timer(r);
}

static void timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct dns_resolver *r = arg;
	ares_process_fd(r->channel, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
	rearm_timer(r);
}

static struct dns_fdev *fd_find(struct dns_resolver *r, ares_socket_t fd)
{
	for (size_t i = 0; i < r->n_fds; i++)
		if (r->fds[i].fd == fd)
			return &r->fds[i];
	return NULL;
}

static struct dns_fdev *fd_add(struct dns_resolver *r, ares_socket_t fd)
{
	if (r->n_fds == DNS_MAX_FDS)
		return NULL;
	r->fds[r->n_fds] = (struct dns_fdev){fd, NULL};
	return &r->fds[r->n_fds++];
}

/*
 * c-ares tells us what to watch on each of its sockets; one persistent event
 * per socket.  Freeing an event from inside its own callback is fine in
 * libevent 2.1 (the callback's arguments were copied before the call).
 */
static void sock_state_cb(void *data, ares_socket_t fd, int readable, int writable)
{
	struct dns_resolver *r = data;
	struct dns_fdev *f = fd_find(r, fd);
	if (f != NULL && f->ev != NULL) {
		event_free(f->ev);
		f->ev = NULL;
	}
	if (!readable && !writable) {
		if (f != NULL)
			*f = r->fds[--r->n_fds];
		return;
	}
	if (f == NULL && (f = fd_add(r, fd)) == NULL)
		return; /* cannot happen (c-ares 1.18: a UDP and a TCP socket per server at most) */
	short what = (short)(EV_PERSIST | (readable ? EV_READ : 0) | (writable ? EV_WRITE : 0));
	f->ev = event_new(r->base, fd, what, fd_cb, r);
	if (f->ev != NULL && event_add(f->ev, NULL) != 0) {
		event_free(f->ev);
		f->ev = NULL;
	}
}

/* ---- public ---- */

static int init_channel(struct dns_resolver *r, const struct policy_settings *s, char *errmsg,
                        size_t errlen)
{
	struct ares_options o;
	char lookups[] = "b"; /* DNS only: /etc/hosts is never read */
	memset(&o, 0, sizeof(o));
	/*
	 * Every field c-ares would otherwise take from LOCALDOMAIN, RES_OPTIONS,
	 * HOSTALIASES, /etc/resolv.conf, nsswitch.conf, host.conf or
	 * gethostname() is given here: with all of them set ares_init_options
	 * reads no file (its ARES_CONFIG_CHECK) and ignores the environment.
	 */
	o.flags = ARES_FLAG_NOSEARCH | ARES_FLAG_NOALIASES;
	/* A probe asks one server and wants its answer as it is: SERVFAIL and REFUSED come
	 * back as such (c-ares would otherwise try the next server and report only
	 * "connection refused" once none is left). */
	if (r->probe)
		o.flags |= ARES_FLAG_NOCHECKRESP;
	o.timeout = (int)(s->resolver_timeout_ms ? s->resolver_timeout_ms : DNS_DEFAULT_TIMEOUT_MS);
	o.tries = (int)(s->resolver_attempts ? s->resolver_attempts : DNS_DEFAULT_ATTEMPTS);
	o.ndots = 1;
	o.udp_port = 53;
	o.tcp_port = 53;
	/* Left zero: no servers (no implicit 127.0.0.1: set below, with ports), no domains, no
	 * sortlist. */
	o.lookups = lookups;
	o.sock_state_cb = sock_state_cb;
	o.sock_state_cb_data = r;
	int mask = ARES_OPT_FLAGS | ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES | ARES_OPT_NDOTS |
	           ARES_OPT_NOROTATE | ARES_OPT_UDP_PORT | ARES_OPT_TCP_PORT | ARES_OPT_SERVERS |
	           ARES_OPT_DOMAINS | ARES_OPT_LOOKUPS | ARES_OPT_SORTLIST | ARES_OPT_SOCK_STATE_CB;
	int rc = ares_init_options(&r->channel, &o, mask);
	if (rc != ARES_SUCCESS) {
		r->channel = NULL;
		snprintf(errmsg, errlen, "c-ares init: %s", ares_strerror(rc));
		return -1;
	}
	struct ares_addr_port_node nodes[POLICY_MAX_RESOLVERS];
	memset(nodes, 0, sizeof(nodes));
	for (size_t i = 0; i < s->n_resolvers; i++) {
		const struct policy_sockaddr *sa = &s->resolvers[i];
		if (sa->addr.family != ADDR_V4 && sa->addr.family != ADDR_V6) {
			snprintf(errmsg, errlen, "resolver.servers[%zu]: no address", i);
			return -1;
		}
		nodes[i].next = i + 1 < s->n_resolvers ? &nodes[i + 1] : NULL;
		nodes[i].family = sa->addr.family == ADDR_V4 ? AF_INET : AF_INET6;
		if (sa->addr.family == ADDR_V4)
			memcpy(&nodes[i].addr.addr4, sa->addr.b, 4);
		else
			memcpy(&nodes[i].addr.addr6, sa->addr.b, 16);
		nodes[i].udp_port = sa->port ? sa->port : 53;
		nodes[i].tcp_port = nodes[i].udp_port;
	}
	rc = ares_set_servers_ports(r->channel, nodes);
	if (rc != ARES_SUCCESS) {
		snprintf(errmsg, errlen, "c-ares servers: %s", ares_strerror(rc));
		return -1;
	}
	return 0;
}

static struct dns_resolver *create(struct event_base *base, const struct policy_settings *s,
                                   bool probe, char *errmsg, size_t errlen)
{
	struct dns_resolver *r = NULL;
	if (s->n_resolvers == 0 || s->n_resolvers > POLICY_MAX_RESOLVERS) {
		snprintf(errmsg, errlen, "resolver.servers: need 1 to %d servers, have %zu",
		         POLICY_MAX_RESOLVERS, s->n_resolvers);
		return NULL;
	}
	r = calloc(1, sizeof(*r));
	if (r == NULL) {
		snprintf(errmsg, errlen, "out of memory");
		return NULL;
	}
	r->base = base;
	r->probe = probe;
	list_init(&r->ready);
	list_init(&r->lru);
	r->max_answers =
	    s->resolver_max_answers ? s->resolver_max_answers : DNS_DEFAULT_MAX_ANSWERS;
	if (r->max_answers > DNS_MAX_MAX_ANSWERS)
		r->max_answers = DNS_MAX_MAX_ANSWERS;
	unsigned long long t =
	    s->resolver_timeout_ms ? s->resolver_timeout_ms : DNS_DEFAULT_TIMEOUT_MS;
	unsigned long long a = s->resolver_attempts ? s->resolver_attempts : DNS_DEFAULT_ATTEMPTS;
	r->deadline_ms = t * a * s->n_resolvers;
	if (getrandom(&r->seed, sizeof(r->seed), GRND_NONBLOCK) != (ssize_t)sizeof(r->seed))
		r->seed = (uint32_t)(uintptr_t)r ^ (uint32_t)now_ms();
	r->timer = evtimer_new(base, timer_cb, r);
	r->deliver = evtimer_new(base, deliver_cb, r);
	if (r->timer == NULL || r->deliver == NULL) {
		snprintf(errmsg, errlen, "out of memory");
		goto fail;
	}
	if (init_channel(r, s, errmsg, errlen) != 0)
		goto fail;
	return r;
fail:
	dns_resolver_destroy(r);
	return NULL;
}

struct dns_resolver *dns_resolver_create(struct event_base *base, const struct policy_settings *s,
                                         char *errmsg, size_t errlen)
{
	return create(base, s, false, errmsg, errlen);
}

struct dns_resolver *dns_probe_create(struct event_base *base, const struct policy_settings *s,
                                      char *errmsg, size_t errlen)
{
	if (s->n_resolvers != 1) {
		snprintf(errmsg, errlen, "a probe asks exactly one server, not %zu",
		         s->n_resolvers);
		return NULL;
	}
	return create(base, s, true, errmsg, errlen);
}

static void free_waiters(struct dns_link *h)
{
	while (!list_empty(h)) {
		struct dns_query *q = (struct dns_query *)(void *)h->next;
		list_del(&q->link);
		query_free(q);
	}
}

void dns_resolver_destroy(struct dns_resolver *r)
{
	if (r == NULL)
		return;
	r->destroying = true;
	/* No callback may run from here on: drop every waiter first. */
	free_waiters(&r->ready);
	if (r->delivering != NULL) {
		free_waiters(r->delivering);
		*r->destroyed = true;
	}
	for (size_t b = 0; b < DNS_PENDING_BUCKETS; b++)
		for (struct dns_pending *p = r->pending[b]; p; p = p->hnext)
			free_waiters(&p->waiters);
	/* ares_destroy ends every query with ARES_EDESTRUCTION: ares_cb frees the pendings. */
	if (r->channel != NULL)
		ares_destroy(r->channel);
	for (size_t b = 0; b < DNS_PENDING_BUCKETS; b++)
		while (r->pending[b] != NULL)
			pending_free(r->pending[b]); /* c-ares kept none; defensive */
	for (size_t i = 0; i < r->n_fds; i++)
		if (r->fds[i].ev != NULL)
			event_free(r->fds[i].ev);
	dns_cache_flush(r);
	if (r->timer != NULL)
		event_free(r->timer);
	if (r->deliver != NULL)
		event_free(r->deliver);
	free(r);
}

/* The cache key of a lookup of name (key: DNS_NAME_MAX + 1 bytes); SPECIAL_REFUSE: no lookup. */
static enum special lookup_key(const struct dns_resolver *r, const char *name, dns_cb cb, char *key)
{
	if (r == NULL || name == NULL || cb == NULL || r->destroying || canon_name(name, key) != 0)
		return SPECIAL_REFUSE;
	return special_name(key);
}

bool dns_lookup_cached(struct dns_resolver *r, const char *name, dns_cb cb, void *arg)
{
	char key[DNS_NAME_MAX + 1];
	if (lookup_key(r, name, cb, key) != SPECIAL_NONE)
		return false;
	/* Held for the call: the callback may start lookups that evict this entry. */
	struct dns_answer *hit = answer_ref(cache_get(r, key, name_hash(r, key)));
	if (hit == NULL)
		return false;
	r->stats.lookups++;
	r->stats.cache_hits++;
	cb(arg, DNS_OK, hit->a, hit->n);
	answer_unref(hit);
	return true;
}

struct dns_query *dns_lookup(struct dns_resolver *r, const char *name, dns_cb cb, void *arg)
{
	char key[DNS_NAME_MAX + 1];
	enum special sp = lookup_key(r, name, cb, key);
	if (sp == SPECIAL_REFUSE)
		return NULL;
	struct dns_query *q = calloc(1, sizeof(*q));
	if (q == NULL)
		return NULL;
	list_init(&q->link);
	q->cb = cb;
	q->arg = arg;
	r->stats.lookups++;
	if (sp == SPECIAL_NXDOMAIN) {
		make_ready(r, q, DNS_NXDOMAIN, NULL);
		return q;
	}
	uint32_t h = name_hash(r, key);
	struct dns_answer *hit = cache_get(r, key, h);
	if (hit != NULL) {
		r->stats.cache_hits++;
		make_ready(r, q, DNS_OK, hit);
		return q;
	}
	struct dns_pending *p = pending_find(r, key, h);
	if (p != NULL) {
		r->stats.shared++;
		list_add_tail(&p->waiters, &q->link);
		return q;
	}
	p = pending_new(r, key, h);
	if (p == NULL) {
		r->stats.lookups--;
		free(q);
		return NULL;
	}
	list_add_tail(&p->waiters, &q->link);
	r->stats.queries++;
	/* NOSORT: c-ares' RFC 6724 sort connect()s a UDP socket per answer to probe routes. */
	struct ares_addrinfo_hints hints = {.ai_family = AF_UNSPEC, .ai_flags = ARES_AI_NOSORT};
	/* May complete at once (e.g. out of memory): ares_cb only queues, so q stays valid. */
	ares_getaddrinfo(r->channel, p->name, NULL, &hints, ares_cb, p);
	rearm_timer(r);
	return q;
}

void dns_cancel(struct dns_query *q)
{
	if (q == NULL || q->delivering)
		return; /* inside its own callback: freed when the callback returns */
	list_del(&q->link);
	query_free(q);
}

unsigned long long dns_last_answer_ms(const struct dns_resolver *r)
{
	return r ? r->last_answer_ms : 0;
}

const char *dns_last_failure(const struct dns_resolver *r)
{
	return r ? r->last_failure : NULL;
}

void dns_resolver_stats(const struct dns_resolver *r, struct dns_stats *out)
{
	memset(out, 0, sizeof(*out));
	if (r == NULL)
		return;
	*out = r->stats;
	out->cache_entries = r->cache_n;
}
