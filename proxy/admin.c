/* Admin listener on its own thread and loop: /metrics, /healthz, /readyz. */
#include "admin.h"

#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <errno.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>

#include "config.h"

#include "clock.h"
#include "dns.h"
#include "http_parse.h"
#include "metrics.h"
#include "oplog.h"
#include "sockaddr.h"
#include "thread.h"

/*
 * Kubernetes restarts a pod whose probes go unanswered, so a client that holds
 * admin connections must not starve the probes. At most ADMIN_MAX_CONNS
 * connections and ADMIN_PER_SOURCE per source (addr_source_group); a new
 * connection over either bound closes the oldest connection of the source
 * holding the most, so the newest connection (a probe) is always served.
 * A request head must arrive within ADMIN_HEAD_MS; the whole exchange gets
 * ADMIN_TIMEOUT_S from accept.
 */
#define ADMIN_MAX_CONNS  64
#define ADMIN_PER_SOURCE 8
#define ADMIN_REQ_MAX    4096
#define ADMIN_HEAD_MS    2000
#define ADMIN_TIMEOUT_S  5
/* Readiness: probe the pinned resolvers every PROBE_MS; ready if one answered within READY_MS. */
#define PROBE_MS   2000
#define READY_MS   6000
#define PROBE_NAME "readyz.portcullis.invalid"

struct admin {
	proxy_stats_fn stats;
	void *stats_arg;
	pthread_t thread;
	bool started;
	struct event_base *base;
	struct evconnlistener *listener;
	/* One resolver per pinned server, so /readyz can say which one fails and how. */
	struct admin_probe {
		struct admin *a;
		struct dns_resolver *dns;
		struct dns_query *q; /* in flight, or NULL */
		char name[ADDR_STRLEN + 8];
	} probes[POLICY_MAX_RESOLVERS];
	size_t n_probes;
	struct event *probe_ev;
	char last_ready[512]; /* the readiness last logged ("ready" or why not) */
	unsigned long long started_ms; /* admin_create, monotonic */
	int stop_fd;          /* the main thread asks the loop to stop through this eventfd */
	struct event *stop_ev;
	struct admin_conn {
		struct bufferevent *bev;
		uint64_t since_ms;    /* accepted */
		uint64_t seq;         /* accept order (since_ms ties in a burst) */
		bool answered;        /* the request head arrived: only the response is left */
		struct pc_addr group; /* source, grouped like every per-source limit */
	} conns[ADMIN_MAX_CONNS];     /* open connections, freed on stop */
	unsigned n_conns;
	unsigned v6_prefix;     /* identity.ipv6_source_prefix at start-up */
	uint64_t evictions;     /* connections closed to let a newer one in */
	uint64_t accepted;      /* connections accepted: the next seq */
	struct event *sweep_ev; /* cuts connections past their deadlines */
};

/* ---- probes ---- */

static void probe_done(void *arg, enum dns_result res, const struct pc_addr *addrs, size_t n)
{
	struct admin_probe *p = arg;
	p->q = NULL;
}

static bool not_ready(const struct admin *a, const struct proxy_stats *st, char *why, size_t n);

/* Readiness is logged when it changes, once, with its reason. */
static void log_readiness(struct admin *a)
{
	struct proxy_stats st;
	char why[sizeof(a->last_ready)];
	a->stats(a->stats_arg, &st);
	if (!not_ready(a, &st, why, sizeof(why)))
		snprintf(why, sizeof(why), "ready");
	if (strcmp(why, a->last_ready) == 0)
		return;
	/* At start-up the first probes may still be on their way: no "not ready" before
	 * they had READY_MS to answer. */
	if (a->last_ready[0] == '\0' && strcmp(why, "ready") != 0 &&
	    mono_ms() < a->started_ms + READY_MS)
		return;
	if (strcmp(why, "ready") == 0)
		oplog("info", "readiness: ready");
	else
		oplog("warn", "readiness: not ready: %s", why);
	snprintf(a->last_ready, sizeof(a->last_ready), "%s", why);
}

static void probe_cb(evutil_socket_t fd, short what, void *arg)
{
	struct admin *a = arg;
	for (size_t i = 0; i < a->n_probes; i++) {
		struct admin_probe *p = &a->probes[i];
		if (p->q != NULL)
			continue; /* the previous probe is still in flight */
		/* Answers are cached; a probe must reach the resolver every time. */
		dns_cache_flush(p->dns);
		p->q = dns_lookup(p->dns, PROBE_NAME, probe_done, p);
	}
	if (fd != -2)
		log_readiness(a);
}

/* Each pinned server's state: "10.0.0.53:53 answering" or "10.0.0.53:53 timeout". */
static size_t resolver_states(const struct admin *a, bool failing_only, char *buf, size_t n)
{
	size_t len = 0;
	unsigned long long now = mono_ms();
	for (size_t i = 0; i < a->n_probes && len < n; i++) {
		const struct admin_probe *p = &a->probes[i];
		unsigned long long last = dns_last_answer_ms(p->dns);
		bool fresh = last != 0 && last + READY_MS >= now;
		const char *fail = dns_last_failure(p->dns);
		const char *state = fresh && fail == NULL ? "answering"
		                    : fail != NULL        ? fail
		                    : last == 0           ? "no answer yet"
		                                          : "no answer lately";
		if (failing_only && fresh && fail == NULL)
			continue;
		int w = snprintf(buf + len, n - len, "%s%s %s", len ? ", " : "", p->name, state);
		len += w > 0 ? (size_t)w : 0;
	}
	return len < n ? len : n - 1;
}

/* False when ready, else true with why not in why. */
static bool not_ready(const struct admin *a, const struct proxy_stats *st, char *why, size_t n)
{
	if (st->draining) {
		snprintf(why, n, "draining");
		return true;
	}
	if (!st->workers_alive) {
		snprintf(why, n, "worker loop not responding");
		return true;
	}
	bool any = false;
	unsigned long long now = mono_ms();
	for (size_t i = 0; i < a->n_probes; i++) {
		unsigned long long last = dns_last_answer_ms(a->probes[i].dns);
		any = any || (last != 0 && last + READY_MS >= now);
	}
	if (!any) {
		int w = snprintf(why, n, "pinned resolvers not answering: ");
		if (w > 0 && (size_t)w < n)
			resolver_states(a, false, why + w, n - (size_t)w);
		return true;
	}
	const char *r = NULL;
	if (!st->audit_available)
		r = "audit log backlogged";
	else if (st->jwks_unready)
		r = st->jwks_why;
	else if (st->proc.kube_enabled && !st->proc.kube_synced)
		r = "kubernetes pod map not synced";
	else if (st->proc.kube_enabled && st->kube_overflowed)
		r = "kubernetes pod map full (identity.kubernetes.max_pods)";
	if (r != NULL)
		snprintf(why, n, "%s", r);
	return r != NULL;
}

/* ---- HTTP ---- */

static void respond(struct bufferevent *bev, int status, const char *reason, const char *ctype,
                    struct evbuffer *body)
{
	struct evbuffer *out = bufferevent_get_output(bev);
	evbuffer_add_printf(out,
	                    "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
	                    "%sCache-Control: no-store\r\nConnection: close\r\n\r\n",
	                    status, reason, ctype, evbuffer_get_length(body),
	                    status == 405 ? "Allow: GET\r\n" : ""); /* RFC 9110 §15.5.6 */
	evbuffer_add_buffer(out, body);
}

static void handle(struct admin *a, struct bufferevent *bev, const struct http_req *req)
{
	struct evbuffer *body = evbuffer_new();
	if (body == NULL)
		return;
	const struct http_view *t = &req->target;
	struct proxy_stats st;
	bool get = req->method.len == 3 && memcmp(req->method.p, "GET", 3) == 0;
#define PATH_IS(s) (t->len == sizeof(s) - 1 && memcmp(t->p, s, sizeof(s) - 1) == 0)
	bool known = PATH_IS("/metrics") || PATH_IS("/healthz") || PATH_IS("/readyz");
	if (!known) {
		evbuffer_add_printf(body, "not found\n");
		respond(bev, 404, "Not Found", "text/plain", body);
	} else if (!get) {
		evbuffer_add_printf(body, "method not allowed\n");
		respond(bev, 405, "Method Not Allowed", "text/plain", body);
	} else if (PATH_IS("/metrics")) {
		a->stats(a->stats_arg, &st);
		st.proc.version = PORTCULLIS_VERSION;
		st.proc.admin_evictions = a->evictions;
		char why[512];
		st.proc.ready = !not_ready(a, &st, why, sizeof(why));
		metrics_render(body, st.tiers, st.workers, st.n_workers, &st.proc);
		respond(bev, 200, "OK", "text/plain; version=0.0.4; charset=utf-8", body);
	} else if (PATH_IS("/healthz")) {
		a->stats(a->stats_arg, &st);
		bool ok = st.workers_alive;
		evbuffer_add_printf(body, ok ? "ok\n" : "worker loop not responding\n");
		respond(bev, ok ? 200 : 503, ok ? "OK" : "Service Unavailable", "text/plain", body);
	} else {
		a->stats(a->stats_arg, &st);
		char why[512];
		bool down = not_ready(a, &st, why, sizeof(why));
		if (down) {
			evbuffer_add_printf(body, "%s\n", why);
		} else {
			evbuffer_add_printf(body, "ready\n");
			/* Ready on the others: say which pinned resolver fails, and how. */
			if (resolver_states(a, true, why, sizeof(why)) > 0)
				evbuffer_add_printf(body, "resolvers failing: %s\n", why);
		}
		respond(bev, down ? 503 : 200, down ? "Service Unavailable" : "OK", "text/plain",
		        body);
	}
#undef PATH_IS
	evbuffer_free(body);
}

static void conn_done(struct admin *a, struct bufferevent *bev)
{
	for (unsigned i = 0; i < a->n_conns; i++) {
		if (a->conns[i].bev == bev) {
			a->conns[i] = a->conns[--a->n_conns];
			break;
		}
	}
	bufferevent_free(bev);
}

static struct admin_conn *conn_of(struct admin *a, const struct bufferevent *bev)
{
	for (unsigned i = 0; i < a->n_conns; i++)
		if (a->conns[i].bev == bev)
			return &a->conns[i];
	return NULL;
}

/* Connections of group g among the candidates (unanswered only, or all). */
static unsigned held_by(const struct admin *a, const struct pc_addr *g, bool unanswered)
{
	unsigned n = 0;
	for (unsigned i = 0; i < a->n_conns; i++)
		n += addr_equal(&a->conns[i].group, g) && (!unanswered || !a->conns[i].answered);
	return n;
}

/*
 * Make room for a connection from g.  Candidates are the connections still
 * waiting for their request head; an answered one is only being written to
 * and goes only when no other can.  Over the per-source bound: g's oldest
 * candidate.  With every slot taken: the oldest candidate of the source that
 * holds the most candidates (O(n^2) over at most 64 connections, on accept).
 * A probe is answered as it is accepted when its request has arrived with it
 * (accept_cb), so a burst of connections behind it cannot close it first.
 */
static void make_room(struct admin *a, const struct pc_addr *g)
{
	bool over_source = held_by(a, g, false) >= ADMIN_PER_SOURCE;
	if (!over_source && a->n_conns < ADMIN_MAX_CONNS)
		return;
	bool unanswered = false;
	for (unsigned i = 0; i < a->n_conns && !unanswered; i++)
		unanswered =
		    !a->conns[i].answered && (!over_source || addr_equal(&a->conns[i].group, g));
	struct admin_conn *victim = NULL;
	unsigned most = 0;
	for (unsigned i = 0; i < a->n_conns; i++) {
		struct admin_conn *c = &a->conns[i];
		if ((unanswered && c->answered) || (over_source && !addr_equal(&c->group, g)))
			continue;
		unsigned n = over_source ? 1 : held_by(a, &c->group, unanswered);
		if (victim == NULL || n > most || (n == most && c->seq < victim->seq)) {
			victim = c;
			most = n;
		}
	}
	if (victim != NULL) {
		a->evictions++;
		conn_done(a, victim->bev);
	}
}

static void write_cb(struct bufferevent *bev, void *arg)
{
	conn_done(arg, bev);
}

static void event_cb(struct bufferevent *bev, short what, void *arg)
{
	conn_done(arg, bev);
}

/* Answer the request in p[0..len) unless its head is not complete yet (false). */
static bool serve(struct admin *a, struct bufferevent *bev, const char *p, size_t len)
{
	struct http_limits lim;
	http_limits_default(&lim);
	lim.max_head_bytes = ADMIN_REQ_MAX;
	lim.max_line_bytes = ADMIN_REQ_MAX;
	struct http_req req;
	int r = http_parse_request(p, len, &lim, &req);
	if (r == HTTP_NEED_MORE)
		return false;
	bufferevent_disable(bev, EV_READ);
	bufferevent_setcb(bev, NULL, write_cb, event_cb, a);
	struct admin_conn *ac = conn_of(a, bev);
	if (ac != NULL)
		ac->answered = true;
	if (r < 0) {
		struct evbuffer *body = evbuffer_new();
		if (body == NULL) {
			conn_done(a, bev);
			return true;
		}
		evbuffer_add_printf(body, "bad request\n");
		respond(bev, 400, "Bad Request", "text/plain", body);
		evbuffer_free(body);
		return true;
	}
	handle(a, bev, &req);
	return true;
}

static void read_cb(struct bufferevent *bev, void *arg)
{
	struct evbuffer *in = bufferevent_get_input(bev);
	size_t len = evbuffer_get_length(in);
	size_t look = len < ADMIN_REQ_MAX + 1 ? len : ADMIN_REQ_MAX + 1;
	serve(arg, bev, (const char *)evbuffer_pullup(in, (ev_ssize_t)look), look);
}

static void accept_cb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int salen,
                      void *arg)
{
	struct admin *a = arg;
	struct pc_addr src, g;
	uint16_t port;
	sockaddr_to_addr(sa, &src, &port);
	addr_source_group(&src, a->v6_prefix, &g);
	struct bufferevent *bev = bufferevent_socket_new(a->base, fd, BEV_OPT_CLOSE_ON_FREE);
	if (bev == NULL) {
		evutil_closesocket(fd);
		return;
	}
	make_room(a, &g);
	a->conns[a->n_conns++] = (struct admin_conn){
	    .bev = bev, .since_ms = mono_ms(), .seq = a->accepted++, .group = g};
	/* A slow or silent scraper is cut; it only ever occupies this thread's loop. */
	struct timeval tv = {ADMIN_TIMEOUT_S, 0};
	bufferevent_set_timeouts(bev, &tv, &tv);
	bufferevent_setwatermark(bev, EV_READ, 0, ADMIN_REQ_MAX + 1);
	bufferevent_setcb(bev, read_cb, NULL, event_cb, a);
	bufferevent_enable(bev, EV_READ | EV_WRITE);
	/* A request that came with the connection (a kubelet probe's does) is answered now,
	 * before the rest of an accept burst can take its slot. */
	char buf[ADMIN_REQ_MAX + 1];
	ssize_t n = recv(fd, buf, sizeof(buf), MSG_PEEK | MSG_DONTWAIT);
	if (n > 0 && serve(a, bev, buf, (size_t)n) && recv(fd, buf, (size_t)n, MSG_DONTWAIT) < 0)
		(void)0; /* one request per connection: what it sent is read and dropped, or not */
}

/* ADMIN_HEAD_MS for the request head, ADMIN_TIMEOUT_S from accept to close, however slowly it
 * dribbles. */
static void sweep_cb(evutil_socket_t fd, short what, void *arg)
{
	struct admin *a = arg;
	uint64_t now = mono_ms();
	for (unsigned i = 0; i < a->n_conns;) {
		const struct admin_conn *c = &a->conns[i];
		if (c->since_ms + (c->answered ? ADMIN_TIMEOUT_S * 1000u : ADMIN_HEAD_MS) <= now)
			conn_done(a, c->bev); /* moves the last entry into slot i */
		else
			i++;
	}
}

static void stop_cb(evutil_socket_t fd, short what, void *arg)
{
	struct admin *a = arg;
	event_base_loopbreak(a->base);
}

static void *admin_main(void *arg)
{
	struct admin *a = arg;
	thread_role("pc-admin", 1);
	event_base_dispatch(a->base);
	return NULL;
}

struct admin *admin_create(const struct policy_settings *ps, proxy_stats_fn stats, void *arg,
                           char *errmsg, size_t errlen)
{
	struct admin *a = calloc(1, sizeof(*a));
	if (a == NULL) {
		snprintf(errmsg, errlen, "out of memory");
		return NULL;
	}
	a->stats = stats;
	a->stats_arg = arg;
	a->v6_prefix = ps->ipv6_source_prefix;
	a->started_ms = mono_ms();
	a->stop_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	a->base = event_base_new();
	if (a->base == NULL || a->stop_fd < 0)
		goto fail;
	a->stop_ev = event_new(a->base, a->stop_fd, EV_READ, stop_cb, a);
	if (a->stop_ev == NULL || event_add(a->stop_ev, NULL) != 0)
		goto fail;
	for (size_t i = 0; i < ps->n_resolvers; i++) {
		struct policy_settings one = *ps;
		one.resolvers[0] = ps->resolvers[i];
		one.n_resolvers = 1;
		struct admin_probe *p = &a->probes[a->n_probes];
		p->a = a;
		sockaddr_format(&ps->resolvers[i].addr, ps->resolvers[i].port, p->name,
		                sizeof(p->name));
		p->dns = dns_probe_create(a->base, &one, errmsg, errlen);
		if (p->dns == NULL)
			goto fail;
		a->n_probes++;
	}
	struct sockaddr_storage ss;
	socklen_t len = sockaddr_make(&ps->listen_admin.addr, ps->listen_admin.port, &ss);
	a->listener = evconnlistener_new_bind(a->base, accept_cb, a,
	                                      LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE |
	                                          LEV_OPT_CLOSE_ON_EXEC,
	                                      256, (struct sockaddr *)&ss, (int)len);
	if (a->listener == NULL) {
		char t[ADDR_STRLEN + 8];
		sockaddr_format(&ps->listen_admin.addr, ps->listen_admin.port, t, sizeof(t));
		snprintf(errmsg, errlen, "cannot listen on admin address %s: %s", t,
		         strerror(errno));
		goto fail;
	}
	a->sweep_ev = event_new(a->base, -1, EV_PERSIST, sweep_cb, a);
	struct timeval sweep = {0, 250 * 1000};
	if (a->sweep_ev == NULL || event_add(a->sweep_ev, &sweep) != 0)
		goto fail;
	a->probe_ev = event_new(a->base, -1, EV_PERSIST, probe_cb, a);
	struct timeval tv = {PROBE_MS / 1000, (PROBE_MS % 1000) * 1000};
	if (a->probe_ev == NULL || event_add(a->probe_ev, &tv) != 0)
		goto fail;
	probe_cb(-2, 0, a); /* the first probes; readiness is logged from the next round on */
	return a;
fail:
	if (errmsg[0] == '\0')
		snprintf(errmsg, errlen, "admin listener set-up failed");
	admin_destroy(a);
	return NULL;
}

int admin_start(struct admin *a)
{
	if (pthread_create(&a->thread, NULL, admin_main, a) != 0)
		return -1;
	a->started = true;
	return 0;
}

void admin_destroy(struct admin *a)
{
	if (a == NULL)
		return;
	if (a->started) {
		uint64_t one = 1;
		if (write(a->stop_fd, &one, sizeof(one)) < 0)
			oplog("warn", "admin: stop: %s", strerror(errno));
		pthread_join(a->thread, NULL);
	}
	while (a->n_conns > 0)
		conn_done(a, a->conns[0].bev);
	if (a->stop_ev != NULL)
		event_free(a->stop_ev);
	if (a->stop_fd >= 0)
		close(a->stop_fd);
	if (a->probe_ev != NULL)
		event_free(a->probe_ev);
	if (a->sweep_ev != NULL)
		event_free(a->sweep_ev);
	if (a->listener != NULL)
		evconnlistener_free(a->listener);
	for (size_t i = 0; i < a->n_probes; i++)
		dns_resolver_destroy(a->probes[i].dns);
	if (a->base != NULL)
		event_base_free(a->base);
	free(a);
}
