/* A worker: its loop and thread, SO_REUSEPORT listeners, accept backoff, policy adoption, drain. */
#include "worker.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/listener.h>

#include "clock.h"
#include "conn.h"
#include "dns.h"
#include "metrics.h"
#include "oplog.h"
#include "policy.h"
#include "sockaddr.h"
#include "thread.h"

/* How long accepting pauses after EMFILE/ENFILE instead of spinning on the error. */
#define ACCEPT_BACKOFF_MS 100
/* The loop's liveness tick, read by /healthz. */
#define HEARTBEAT_MS   1000
#define LISTEN_BACKLOG 1024

struct worker {
	unsigned id;
	struct worker_shared sh;
	pthread_t thread;
	struct event_base *base;
	struct conn_env env;
	struct evconnlistener *listeners[2 * POLICY_MAX_LISTEN]; /* listen.proxy, listen.https */
	/* Each listener's own address, when it is bound to one (not a wildcard). */
	struct conn_local local[2 * POLICY_MAX_LISTEN];
	bool local_known[2 * POLICY_MAX_LISTEN];
	size_t n_listeners;
	struct event *notify_ev; /* the server pokes the worker through an eventfd */
	int notify_fd;
	struct event *backoff_ev; /* re-enables accepting after EMFILE/ENFILE */
	struct event *drain_ev; /* cuts the remaining connections when the drain timeout expires */
	struct event *heartbeat_ev;
	bool draining;
	atomic_ullong heartbeat_ms;
	struct worker_metrics *metrics;
};

/* ---- accepting ---- */

static void accept_cb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int salen,
                      void *arg)
{
	struct worker *w = arg;
	/* listeners[i] listens on listen.proxy[i] (they come first): its settings (PROXY
	 * protocol) are i's. */
	size_t i = 0;
	while (i + 1 < w->n_listeners && w->listeners[i] != l)
		i++;
	conn_accept(&w->env, fd, sa, i, NULL, w->local_known[i] ? &w->local[i] : NULL);
}

/* A listen.https listener: the connection speaks TLS to the proxy. */
static void accept_tls_cb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa,
                          int salen, void *arg)
{
	struct worker *w = arg;
	size_t i = 0;
	while (i + 1 < w->n_listeners && w->listeners[i] != l)
		i++;
	conn_accept(&w->env, fd, sa, CONN_LISTENER_TLS, w->sh.tls,
	            w->local_known[i] ? &w->local[i] : NULL);
}

static void backoff_cb(evutil_socket_t fd, short what, void *arg)
{
	struct worker *w = arg;
	if (w->draining)
		return;
	for (size_t i = 0; i < w->n_listeners; i++)
		evconnlistener_enable(w->listeners[i]);
}

static void accept_error_cb(struct evconnlistener *l, void *arg)
{
	struct worker *w = arg;
	int err = EVUTIL_SOCKET_ERROR();
	if (err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM) {
		/* Out of descriptors or memory: pause accepting rather than spin on the error. */
		for (size_t i = 0; i < w->n_listeners; i++)
			evconnlistener_disable(w->listeners[i]);
		struct timeval tv = {0, ACCEPT_BACKOFF_MS * 1000};
		evtimer_add(w->backoff_ev, &tv);
		oplog("warn", "worker %u: accept: %s; pausing accepts for %d ms", w->id,
		      strerror(err), ACCEPT_BACKOFF_MS);
		return;
	}
	oplog("warn", "worker %u: accept: %s", w->id, strerror(err));
}

/* ---- drain ---- */

static void maybe_finish(struct worker *w)
{
	if (w->draining && w->env.n_conns == 0)
		event_base_loopexit(w->base, NULL);
}

static void last_close_cb(void *arg)
{
	maybe_finish(arg);
}

static void drain_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
	struct worker *w = arg;
	if (w->env.n_conns > 0)
		oplog("info", "worker %u: drain timeout, closing %zu connections", w->id,
		      w->env.n_conns);
	conn_close_all(&w->env);
	maybe_finish(w);
}

static void start_drain(struct worker *w)
{
	if (w->draining)
		return;
	w->draining = true;
	for (size_t i = 0; i < w->n_listeners; i++)
		evconnlistener_free(w->listeners[i]);
	w->n_listeners = 0;
	const struct policy_settings *s = policy_settings(w->env.policy);
	struct timeval tv = {.tv_sec = s->drain_timeout_ms / 1000,
	                     .tv_usec = (suseconds_t)(s->drain_timeout_ms % 1000) * 1000};
	evtimer_add(w->drain_ev, &tv);
	maybe_finish(w);
}

/* ---- the server's pokes ---- */

static void notify_cb(evutil_socket_t fd, short what, void *arg)
{
	struct worker *w = arg;
	uint64_t v;
	if (read(fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
		oplog("warn", "worker %u: notify read: %s", w->id, strerror(errno));
	conn_env_refresh(&w->env);
	if (atomic_load(w->sh.draining))
		start_drain(w);
}

void worker_notify(struct worker *w)
{
	uint64_t one = 1;
	if (write(w->notify_fd, &one, sizeof(one)) < 0)
		oplog("warn", "worker %u: notify: %s", w->id, strerror(errno));
}

void worker_offer_policy(struct worker *w, struct policy *p)
{
	policy_unref(atomic_exchange(&w->env.next, p));
	worker_notify(w);
}

static void heartbeat_cb(evutil_socket_t fd, short what, void *arg)
{
	struct worker *w = arg;
	atomic_store(&w->heartbeat_ms, mono_ms());
}

uint64_t worker_heartbeat_ms(const struct worker *w)
{
	return atomic_load(&w->heartbeat_ms);
}

struct worker_metrics *worker_metrics(struct worker *w)
{
	return w->metrics;
}

uint64_t worker_audit_lost(const struct worker *w)
{
	return atomic_load(&w->env.audit_lost);
}

/* ---- life ---- */

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	char name[16];
	snprintf(name, sizeof(name), "pc-worker%u", w->id % 100000u);
	thread_role(name, 0);
	event_base_dispatch(w->base);
	atomic_fetch_add(w->sh.workers_done, 1);
	return NULL;
}

int worker_start(struct worker *w)
{
	return pthread_create(&w->thread, NULL, worker_main, w) == 0 ? 0 : -1;
}

void worker_join(struct worker *w)
{
	pthread_join(w->thread, NULL);
}

static int listen_all(struct worker *w, const struct policy_settings *ps, char *errmsg,
                      size_t errlen)
{
	size_t n_tls = w->sh.tls != NULL ? ps->n_listen_https : 0;
	for (size_t i = 0; i < ps->n_listen_proxy + n_tls; i++) {
		bool tls = i >= ps->n_listen_proxy;
		const struct policy_sockaddr *at =
		    tls ? &ps->listen_https[i - ps->n_listen_proxy] : &ps->listen_proxy[i];
		struct sockaddr_storage ss;
		socklen_t len = sockaddr_make(&at->addr, at->port, &ss);
		unsigned flags = LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE |
		                 LEV_OPT_REUSEABLE_PORT | LEV_OPT_CLOSE_ON_EXEC;
		struct evconnlistener *l =
		    evconnlistener_new_bind(w->base, tls ? accept_tls_cb : accept_cb, w, flags,
		                            LISTEN_BACKLOG, (struct sockaddr *)&ss, (int)len);
		if (l == NULL) {
			char a[ADDR_STRLEN + 8];
			sockaddr_format(&at->addr, at->port, a, sizeof(a));
			snprintf(errmsg, errlen, "cannot listen on %s: %s", a, strerror(errno));
			return -1;
		}
		evconnlistener_set_error_cb(l, accept_error_cb);
		/* A listener bound to one address gives every socket that address: no
		 * getsockname per connection. */
		static const uint8_t zero[16];
		w->local[w->n_listeners] = (struct conn_local){.addr = at->addr, .port = at->port};
		w->local_known[w->n_listeners] =
		    at->port != 0 &&
		    memcmp(at->addr.b, zero, at->addr.family == ADDR_V4 ? 4 : 16) != 0;
		w->listeners[w->n_listeners++] = l;
		/* Accepted sockets inherit TCP_NODELAY from the listener (Linux): one setsockopt,
		 * not one per connection. */
		int one = 1;
		setsockopt(evconnlistener_get_fd(l), IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	}
	return 0;
}

struct worker *worker_create(unsigned id, const struct worker_shared *sh, struct policy *p,
                             char *errmsg, size_t errlen)
{
	const struct policy_settings *ps = policy_settings(p);
	struct worker *w = calloc(1, sizeof(*w));
	if (w == NULL) {
		snprintf(errmsg, errlen, "worker %u: out of memory", id);
		return NULL;
	}
	w->id = id;
	w->sh = *sh;
	w->notify_fd = -1;
	w->metrics = calloc(1, sizeof(*w->metrics));
	/*
	 * The changelist folds every enable/disable of one fd within a loop pass
	 * into at most one epoll_ctl.  Its caveat (fds that share one open file
	 * through dup()) does not apply: every socket here is its own.
	 */
	struct event_config *cfg = event_config_new();
	if (cfg != NULL) {
		event_config_set_flag(cfg, EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST);
		w->base = event_base_new_with_config(cfg);
		event_config_free(cfg);
	}
	struct conn_env *env = &w->env;
	env->relay_buf = malloc(CONN_RELAY_BUF);
	env->hello_scratch = malloc(CONN_HELLO_SCRATCH);
	if (w->base == NULL || w->metrics == NULL || env->relay_buf == NULL ||
	    env->hello_scratch == NULL || conn_env_init(env, w->base) != 0) {
		snprintf(errmsg, errlen, "worker %u: out of memory", id);
		goto fail;
	}
	env->audit = sh->audit;
	env->srclimit = sh->srclimit;
	env->oidc = sh->oidc;
	env->podmap = sh->podmap;
	env->kube = sh->kube;
	env->metrics = w->metrics;
	env->tiers = sh->tiers;
	env->hostname = sh->hostname;
	env->icpt_ca = sh->icpt_ca;
	env->v6_prefix = ps->ipv6_source_prefix;
	env->n_open = sh->n_open;
	env->draining = sh->draining;
	env->on_last_close = last_close_cb;
	env->on_last_close_arg = w;
	conn_env_adopt(env, policy_ref(p));
	env->bound = policy_ref(p);
	atomic_store(&w->heartbeat_ms, mono_ms());
	w->heartbeat_ev = event_new(w->base, -1, EV_PERSIST, heartbeat_cb, w);
	struct timeval hb = {HEARTBEAT_MS / 1000, (HEARTBEAT_MS % 1000) * 1000};
	if (w->heartbeat_ev == NULL || event_add(w->heartbeat_ev, &hb) != 0) {
		snprintf(errmsg, errlen, "worker %u: event set-up failed", id);
		goto fail;
	}
	env->dns = dns_resolver_create(w->base, ps, errmsg, errlen);
	if (env->dns == NULL)
		goto fail;
	w->notify_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	w->notify_ev = event_new(w->base, w->notify_fd, EV_READ | EV_PERSIST, notify_cb, w);
	w->backoff_ev = evtimer_new(w->base, backoff_cb, w);
	w->drain_ev = evtimer_new(w->base, drain_timeout_cb, w);
	if (w->notify_fd < 0 || w->notify_ev == NULL || w->backoff_ev == NULL ||
	    w->drain_ev == NULL || event_add(w->notify_ev, NULL) != 0) {
		snprintf(errmsg, errlen, "worker %u: event set-up failed", id);
		goto fail;
	}
	if (listen_all(w, ps, errmsg, errlen) != 0)
		goto fail;
	return w;
fail:
	worker_destroy(w);
	return NULL;
}

void worker_destroy(struct worker *w)
{
	if (w == NULL)
		return;
	if (w->base != NULL && w->env.reap_ev != NULL)
		conn_env_fini(&w->env);
	else
		policy_unref(w->env.policy);
	policy_unref(w->env.bound);
	for (size_t i = 0; i < w->n_listeners; i++)
		evconnlistener_free(w->listeners[i]);
	if (w->notify_ev != NULL)
		event_free(w->notify_ev);
	if (w->backoff_ev != NULL)
		event_free(w->backoff_ev);
	if (w->drain_ev != NULL)
		event_free(w->drain_ev);
	if (w->heartbeat_ev != NULL)
		event_free(w->heartbeat_ev);
	if (w->notify_fd >= 0)
		close(w->notify_fd);
	dns_resolver_destroy(w->env.dns);
	if (w->base != NULL)
		event_base_free(w->base);
	free(w->env.relay_buf);
	free(w->env.hello_scratch);
	free(w->metrics);
	free(w);
}
