/* The server: worker threads with their own loops and SO_REUSEPORT listeners, signals, drain. */
#include "server.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <libgen.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/listener.h>
#include <openssl/evp.h>

#include "admin.h"
#include "audit.h"
#include "conn.h"
#include "dns.h"
#include "kube.h"
#include "podmap.h"
#include "srclimit.h"

/* Policy files larger than this are refused (the loader's own limit). */
#define POLICY_FILE_MAX (1u << 20)
/* File-change reloads wait for the writes to settle. */
#define RELOAD_DEBOUNCE_MS 200
#define HEARTBEAT_MS 1000

/* How long accepting pauses after EMFILE/ENFILE instead of spinning on the error. */
#define ACCEPT_BACKOFF_MS 100

uint64_t mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

uint64_t wall_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

void oplog(const char *level, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	/* JSON-escape the message; the line goes out in one write so lines never interleave. */
	char line[2400];
	size_t n = 0;
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	struct tm tm;
	gmtime_r(&ts.tv_sec, &tm);
	n += strftime(line, sizeof(line), "{\"@timestamp\":\"%Y-%m-%dT%H:%M:%S", &tm);
	n += (size_t)snprintf(line + n, sizeof(line) - n,
			      ".%03ldZ\",\"log.level\":\"%s\",\"message\":\"", ts.tv_nsec / 1000000,
			      level);
	for (const unsigned char *p = (const unsigned char *)msg; *p && n < sizeof(line) - 16; p++) {
		if (*p == '"' || *p == '\\') {
			line[n++] = '\\';
			line[n++] = (char)*p;
		} else if (*p < 0x20 || *p >= 0x7f) {
			n += (size_t)snprintf(line + n, sizeof(line) - n, "\\u%04x", *p);
		} else {
			line[n++] = (char)*p;
		}
	}
	line[n++] = '"';
	line[n++] = '}';
	line[n++] = '\n';
	ssize_t w = write(STDERR_FILENO, line, n);
	(void)w;
}

struct policy *policy_file_load(const char *path, bool as_log, char sha256[65])
{
	char *buf = NULL;
	struct policy *p = NULL;
	struct policy_diags d;
	policy_diags_init(&d);
	sha256[0] = '\0';
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		if (as_log)
			oplog("error", "%s: %s", path, strerror(errno));
		else
			fprintf(stderr, "%s: %s\n", path, strerror(errno));
		goto out;
	}
	buf = malloc(POLICY_FILE_MAX + 1);
	size_t len = 0;
	while (buf != NULL && len <= POLICY_FILE_MAX) {
		ssize_t r = read(fd, buf + len, POLICY_FILE_MAX + 1 - len);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		len += (size_t)r;
	}
	close(fd);
	if (buf == NULL)
		goto out;
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned mdlen = 0;
	if (EVP_Digest(buf, len, md, &mdlen, EVP_sha256(), NULL) == 1)
		for (unsigned i = 0; i < mdlen && i < 32; i++)
			snprintf(sha256 + 2 * i, 3, "%02x", md[i]);
	if (policy_load_buffer(buf, len, &p, &d) != POLICY_OK) {
		p = NULL;
		for (size_t i = 0; i < d.n; i++) {
			if (as_log && d.v[i].line > 0)
				oplog("error", "%s:%u:%u: %s", path, d.v[i].line, d.v[i].col, d.v[i].msg);
			else if (as_log)
				oplog("error", "%s: %s", path, d.v[i].msg);
			else if (d.v[i].line > 0)
				fprintf(stderr, "%s:%u:%u: %s\n", path, d.v[i].line, d.v[i].col,
					d.v[i].msg);
			else
				fprintf(stderr, "%s: %s\n", path, d.v[i].msg);
		}
		if (d.n == 0 && as_log)
			oplog("error", "%s: cannot load policy", path);
		else if (d.n == 0)
			fprintf(stderr, "%s: cannot load policy\n", path);
	}
out:
	free(buf);
	policy_diags_fini(&d);
	return p;
}

socklen_t sockaddr_make(const struct pc_addr *a, uint16_t port, struct sockaddr_storage *ss)
{
	memset(ss, 0, sizeof(*ss));
	if (a->family == ADDR_V4) {
		struct sockaddr_in *sin = (struct sockaddr_in *)ss;
		sin->sin_family = AF_INET;
		sin->sin_port = htons(port);
		memcpy(&sin->sin_addr, a->b, 4);
		return sizeof(*sin);
	}
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
	sin6->sin6_family = AF_INET6;
	sin6->sin6_port = htons(port);
	memcpy(&sin6->sin6_addr, a->b, 16);
	return sizeof(*sin6);
}

/* ---- per-worker events ---- */

static void accept_cb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int salen,
		      void *arg)
{
	conn_accept(arg, fd, sa, salen);
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

static void worker_maybe_finish(struct worker *w)
{
	if (w->draining && w->n_conns == 0)
		event_base_loopexit(w->base, NULL);
}

void worker_conn_gone(struct worker *w)
{
	worker_maybe_finish(w);
}

static void drain_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
	struct worker *w = arg;
	if (w->n_conns > 0)
		oplog("info", "worker %u: drain timeout, closing %zu connections", w->id, w->n_conns);
	conn_close_all(w);
	worker_maybe_finish(w);
}

static void worker_start_drain(struct worker *w)
{
	if (w->draining)
		return;
	w->draining = true;
	for (size_t i = 0; i < w->n_listeners; i++) {
		evconnlistener_free(w->listeners[i]);
		w->listeners[i] = NULL;
	}
	w->n_listeners = 0;
	const struct policy_settings *s = policy_settings(w->policy);
	struct timeval tv = {.tv_sec = s->drain_timeout_ms / 1000,
			     .tv_usec = (suseconds_t)(s->drain_timeout_ms % 1000) * 1000};
	evtimer_add(w->drain_ev, &tv);
	worker_maybe_finish(w);
}

/* Take a snapshot as this worker's current one (new connections use it; open ones keep theirs). */
static void worker_adopt(struct worker *w, struct policy *p)
{
	for (size_t i = 0; i < policy_tier_count(p) && i < METRICS_MAX_TIERS; i++)
		w->tier_slots[i] =
			(uint16_t)metrics_tier_slot(&w->srv->tiers, policy_tier(p, i)->name);
	policy_unref(w->policy);
	w->policy = p;
}

static void notify_cb(evutil_socket_t fd, short what, void *arg)
{
	struct worker *w = arg;
	uint64_t v;
	if (read(fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
		oplog("warn", "worker %u: notify read: %s", w->id, strerror(errno));
	struct policy *next = atomic_exchange(&w->next_policy, NULL);
	if (next != NULL)
		worker_adopt(w, next);
	if (atomic_load(&w->srv->draining))
		worker_start_drain(w);
}

static void heartbeat_cb(evutil_socket_t fd, short what, void *arg)
{
	struct worker *w = arg;
	atomic_store(&w->heartbeat_ms, mono_ns() / 1000000ull);
}

static void notify_worker(struct worker *w)
{
	uint64_t one = 1;
	if (write(w->notify_fd, &one, sizeof(one)) < 0)
		oplog("warn", "worker %u: notify: %s", w->id, strerror(errno));
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	event_base_dispatch(w->base);
	atomic_fetch_add(&w->srv->workers_done, 1);
	return NULL;
}

/* ---- set-up ---- */

static int worker_init(struct server *s, struct worker *w, unsigned id, char *errmsg, size_t errlen)
{
	const struct policy_settings *ps = policy_settings(s->policy);
	w->srv = s;
	w->id = id;
	w->notify_fd = -1;
	worker_adopt(w, policy_ref(s->policy));
	w->metrics = calloc(1, sizeof(*w->metrics));
	w->relay_buf = malloc(WORKER_RELAY_BUF);
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
	if (w->base == NULL || w->metrics == NULL || w->relay_buf == NULL) {
		snprintf(errmsg, errlen, "worker %u: out of memory", id);
		return -1;
	}
	atomic_store(&w->heartbeat_ms, mono_ns() / 1000000ull);
	w->heartbeat_ev = event_new(w->base, -1, EV_PERSIST, heartbeat_cb, w);
	struct timeval hb = {HEARTBEAT_MS / 1000, (HEARTBEAT_MS % 1000) * 1000};
	if (w->heartbeat_ev == NULL || event_add(w->heartbeat_ev, &hb) != 0) {
		snprintf(errmsg, errlen, "worker %u: event set-up failed", id);
		return -1;
	}
	w->dns = dns_resolver_create(w->base, ps, errmsg, errlen);
	if (w->dns == NULL)
		return -1;
	w->notify_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	w->notify_ev = event_new(w->base, w->notify_fd, EV_READ | EV_PERSIST, notify_cb, w);
	w->backoff_ev = evtimer_new(w->base, backoff_cb, w);
	w->drain_ev = evtimer_new(w->base, drain_timeout_cb, w);
	if (w->notify_fd < 0 || w->notify_ev == NULL || w->backoff_ev == NULL ||
	    w->drain_ev == NULL || event_add(w->notify_ev, NULL) != 0) {
		snprintf(errmsg, errlen, "worker %u: event set-up failed", id);
		return -1;
	}
	for (size_t i = 0; i < ps->n_listen_proxy; i++) {
		struct sockaddr_storage ss;
		socklen_t len = sockaddr_make(&ps->listen_proxy[i].addr, ps->listen_proxy[i].port, &ss);
		unsigned flags = LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE | LEV_OPT_REUSEABLE_PORT |
				 LEV_OPT_CLOSE_ON_EXEC;
		struct evconnlistener *l = evconnlistener_new_bind(
			w->base, accept_cb, w, flags, 1024, (struct sockaddr *)&ss, (int)len);
		if (l == NULL) {
			char a[ADDR_STRLEN];
			addr_format(&ps->listen_proxy[i].addr, a, sizeof(a));
			snprintf(errmsg, errlen, "cannot listen on %s%s%s:%u: %s",
				 ps->listen_proxy[i].addr.family == ADDR_V6 ? "[" : "", a,
				 ps->listen_proxy[i].addr.family == ADDR_V6 ? "]" : "",
				 ps->listen_proxy[i].port, strerror(errno));
			return -1;
		}
		evconnlistener_set_error_cb(l, accept_error_cb);
		w->listeners[w->n_listeners++] = l;
		/* Accepted sockets inherit TCP_NODELAY from the listener (Linux): one setsockopt, not
		 * one per connection. */
		int one = 1;
		setsockopt(evconnlistener_get_fd(l), IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	}
	return 0;
}

static void worker_fini(struct worker *w)
{
	if (w->srv == NULL)
		return; /* never initialised */
	conn_close_all(w);
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
	policy_unref(atomic_exchange(&w->next_policy, NULL));
	if (w->notify_fd >= 0)
		close(w->notify_fd);
	dns_resolver_destroy(w->dns);
	if (w->base != NULL)
		event_base_free(w->base);
	policy_unref(w->policy);
	free(w->metrics);
	free(w->relay_buf);
}

static void set_policy_info(struct server *s, const char *sha256)
{
	pthread_mutex_lock(&s->info_lock);
	snprintf(s->policy_sha256, sizeof(s->policy_sha256), "%s", sha256);
	s->policy_loaded_at = (double)wall_ns() / 1e9;
	pthread_mutex_unlock(&s->info_lock);
}

int server_init(struct server *s, struct policy *p, const char *path, const char *sha256,
		struct audit_log *audit, char *errmsg, size_t errlen)
{
	memset(s, 0, sizeof(*s));
	s->inotify_fd = -1;
	s->policy_path = path;
	s->start_time = (double)wall_ns() / 1e9;
	pthread_mutex_init(&s->info_lock, NULL);
	metrics_tiers_init(&s->tiers);
	set_policy_info(s, sha256);
	s->policy = policy_ref(p);
	s->audit = audit;
	s->srclimit = srclimit_create();
	if (s->srclimit == NULL) {
		snprintf(errmsg, errlen, "out of memory");
		return -1;
	}
	if (gethostname(s->hostname, sizeof(s->hostname) - 1) != 0)
		strcpy(s->hostname, "unknown");
	const struct policy_settings *ps = policy_settings(p);
	unsigned n = ps->workers;
	if (n == 0) {
		long cpus = sysconf(_SC_NPROCESSORS_ONLN);
		n = cpus > 0 ? (unsigned)cpus : 1;
	}
	if (n > 64)
		n = 64;
	s->workers = calloc(n, sizeof(*s->workers));
	if (s->workers == NULL) {
		snprintf(errmsg, errlen, "out of memory");
		return -1;
	}
	s->n_workers = n;
	for (unsigned i = 0; i < n; i++) {
		if (worker_init(s, &s->workers[i], i, errmsg, errlen) != 0)
			return -1;
	}
	if (ps->kube.enabled) {
		s->podmap = podmap_new(ps->kube.max_pods);
		if (s->podmap == NULL) {
			snprintf(errmsg, errlen, "out of memory");
			return -1;
		}
		s->kube = kube_client_start(&ps->kube, s->podmap, errmsg, errlen);
		if (s->kube == NULL)
			return -1;
	}
	s->admin = admin_create(s, errmsg, errlen);
	if (s->admin == NULL)
		return -1;
	return 0;
}

/* ---- reload (main thread) ---- */

static bool same_sockaddrs(const struct policy_sockaddr *a, size_t na,
			   const struct policy_sockaddr *b, size_t nb)
{
	if (na != nb)
		return false;
	for (size_t i = 0; i < na; i++)
		if (!addr_equal(&a[i].addr, &b[i].addr) || a[i].port != b[i].port)
			return false;
	return true;
}

static bool same_str(const char *a, const char *b)
{
	return a == b || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

/* The watch runs with the start-up settings; namespace tiers and audit_labels do reload. */
static bool same_kube_watch(const struct policy_kube *a, const struct policy_kube *b)
{
	if (a->enabled != b->enabled || a->api_server_set != b->api_server_set ||
	    (a->api_server_set && !same_sockaddrs(&a->api_server, 1, &b->api_server, 1)) ||
	    !same_str(a->token_file, b->token_file) || !same_str(a->ca_file, b->ca_file) ||
	    !same_str(a->tier_label, b->tier_label) ||
	    !same_str(a->label_selector, b->label_selector) ||
	    a->watch_timeout_ms != b->watch_timeout_ms || a->backoff_max_ms != b->backoff_max_ms ||
	    a->max_pods != b->max_pods || a->n_namespaces != b->n_namespaces)
		return false;
	for (size_t i = 0; i < a->n_namespaces; i++)
		if (strcmp(a->namespaces[i].ns, b->namespaces[i].ns) != 0)
			return false;
	return true;
}

/* Settings fixed at start-up: say which ones a reload asked to change. */
static void report_static_changes(const struct policy_settings *o, const struct policy_settings *n)
{
	char list[256] = "";
	size_t len = 0;
#define CHANGED(cond, name)                                                                        \
	do {                                                                                       \
		if (cond)                                                                          \
			len += (size_t)snprintf(list + len, sizeof(list) - len, "%s%s",            \
						len ? ", " : "", name);                            \
	} while (0)
	CHANGED(!same_sockaddrs(o->listen_proxy, o->n_listen_proxy, n->listen_proxy,
				n->n_listen_proxy), "listen.proxy");
	CHANGED(!same_sockaddrs(&o->listen_admin, 1, &n->listen_admin, 1), "listen.admin");
	CHANGED(o->workers != n->workers, "listen.workers");
	CHANGED(!same_sockaddrs(o->resolvers, o->n_resolvers, n->resolvers, n->n_resolvers) ||
			o->resolver_timeout_ms != n->resolver_timeout_ms ||
			o->resolver_attempts != n->resolver_attempts ||
			o->resolver_max_answers != n->resolver_max_answers,
		"resolver");
	CHANGED(strcmp(o->audit_output, n->audit_output) != 0, "audit.output");
	CHANGED(!same_kube_watch(&o->kube, &n->kube), "identity.kubernetes (what is watched, and how)");
#undef CHANGED
	if (len > 0)
		oplog("warn", "policy reload: %s cannot change at runtime; the running values stay "
			      "until restart", list);
}

static void server_reload(struct server *s, const char *why, bool only_if_changed)
{
	char sha[65];
	struct policy *p = policy_file_load(s->policy_path, true, sha);
	if (p == NULL) {
		atomic_fetch_add(&s->reloads_failed, 1);
		oplog("error", "policy reload (%s) failed: %s is invalid; the previous policy stays",
		      why, s->policy_path);
		return;
	}
	pthread_mutex_lock(&s->info_lock);
	bool same = strcmp(sha, s->policy_sha256) == 0;
	pthread_mutex_unlock(&s->info_lock);
	if (same && only_if_changed) {
		policy_unref(p);
		return;
	}
	const struct policy_kube *ko = &policy_settings(s->policy)->kube,
				 *kn = &policy_settings(p)->kube;
	if (ko->enabled != kn->enabled || !same_str(ko->tier_label, kn->tier_label)) {
		/* The running watch decides which pods are in the map: a policy that reads
		 * them another way would give them the wrong tiers.  Refuse it whole. */
		policy_unref(p);
		atomic_fetch_add(&s->reloads_failed, 1);
		oplog("error", "policy reload (%s) refused: identity.kubernetes on/off or its "
			       "tier_label changed, which needs a restart; the previous policy stays",
		      why);
		return;
	}
	report_static_changes(policy_settings(s->policy), policy_settings(p));
	for (unsigned i = 0; i < s->n_workers; i++) {
		struct policy *old = atomic_exchange(&s->workers[i].next_policy, policy_ref(p));
		policy_unref(old);
		notify_worker(&s->workers[i]);
	}
	policy_unref(s->policy);
	s->policy = p;
	set_policy_info(s, sha);
	atomic_fetch_add(&s->reloads_ok, 1);
	oplog("info", "policy reloaded (%s): %s sha256 %s, %zu tiers, %zu rules", why,
	      s->policy_path, sha, policy_tier_count(p), policy_rule_count(p));
}

static void reload_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	server_reload(arg, "file change", true);
}

/*
 * The policy's directory changed: editors replace the file, Kubernetes swaps
 * the ConfigMap's ..data symlink. Reload once the changes settle.
 */
static void inotify_cb(evutil_socket_t fd, short what, void *arg)
{
	struct server *s = arg;
	char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
	while (read(fd, buf, sizeof(buf)) > 0)
		;
	struct timeval tv = {0, RELOAD_DEBOUNCE_MS * 1000};
	evtimer_add(s->reload_ev, &tv);
}

static void watch_policy(struct server *s)
{
	char *copy = strdup(s->policy_path);
	if (copy == NULL)
		return;
	const char *dir = dirname(copy);
	s->inotify_fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
	if (s->inotify_fd < 0 ||
	    inotify_add_watch(s->inotify_fd, dir,
			      IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE | IN_DELETE | IN_ATTRIB) < 0) {
		oplog("warn", "cannot watch %s for policy changes (%s); reload with SIGHUP", dir,
		      strerror(errno));
		free(copy);
		return;
	}
	s->inotify_ev = event_new(s->sigbase, s->inotify_fd, EV_READ | EV_PERSIST, inotify_cb, s);
	s->reload_ev = evtimer_new(s->sigbase, reload_timer_cb, s);
	if (s->inotify_ev == NULL || s->reload_ev == NULL || event_add(s->inotify_ev, NULL) != 0)
		oplog("warn", "cannot watch %s for policy changes; reload with SIGHUP", dir);
	free(copy);
}

/* ---- signals (main thread loop) ---- */

static void sig_term_cb(evutil_socket_t sig, short what, void *arg)
{
	struct server *s = arg;
	if (atomic_exchange(&s->draining, true))
		return;
	const struct policy_settings *ps = policy_settings(s->policy);
	oplog("info", "signal %d: draining (timeout %u ms)", (int)sig, ps->drain_timeout_ms);
	for (unsigned i = 0; i < s->n_workers; i++)
		notify_worker(&s->workers[i]);
}

static void sig_hup_cb(evutil_socket_t sig, short what, void *arg)
{
	server_reload(arg, "SIGHUP", false);
}

static void sig_usr1_cb(evutil_socket_t sig, short what, void *arg)
{
	struct server *s = arg;
	audit_log_reopen(s->audit);
	oplog("info", "SIGUSR1: audit output will be reopened");
}

static void done_poll_cb(evutil_socket_t fd, short what, void *arg)
{
	struct server *s = arg;
	if (atomic_load(&s->workers_done) == s->n_workers)
		event_base_loopbreak(s->sigbase);
}

int server_run(struct server *s)
{
	/* Workers never see signals: block them before the threads start, handle them here. */
	sigset_t set, old;
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	sigaddset(&set, SIGUSR1);
	sigaddset(&set, SIGPIPE);
	pthread_sigmask(SIG_BLOCK, &set, &old);
	unsigned started = 0;
	for (; started < s->n_workers; started++) {
		if (pthread_create(&s->workers[started].thread, NULL, worker_main,
				   &s->workers[started]) != 0) {
			oplog("error", "cannot start worker thread %u", started);
			break;
		}
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	signal(SIGPIPE, SIG_IGN);

	int rc = 0;
	s->sigbase = event_base_new();
	struct event *ev_term = evsignal_new(s->sigbase, SIGTERM, sig_term_cb, s);
	struct event *ev_int = evsignal_new(s->sigbase, SIGINT, sig_term_cb, s);
	struct event *ev_usr1 = evsignal_new(s->sigbase, SIGUSR1, sig_usr1_cb, s);
	struct event *ev_hup = evsignal_new(s->sigbase, SIGHUP, sig_hup_cb, s);
	struct event *ev_poll = event_new(s->sigbase, -1, EV_PERSIST, done_poll_cb, s);
	struct timeval poll_tv = {0, 100 * 1000};
	if (started < s->n_workers || s->sigbase == NULL || ev_term == NULL || ev_int == NULL ||
	    ev_usr1 == NULL || ev_hup == NULL || ev_poll == NULL || event_add(ev_term, NULL) != 0 ||
	    event_add(ev_int, NULL) != 0 || event_add(ev_usr1, NULL) != 0 ||
	    event_add(ev_hup, NULL) != 0 || event_add(ev_poll, &poll_tv) != 0 ||
	    admin_start(s->admin) != 0) {
		oplog("error", "signal handling set-up failed; stopping");
		rc = 3;
		atomic_store(&s->draining, true);
		for (unsigned i = 0; i < started; i++)
			notify_worker(&s->workers[i]);
	} else {
		watch_policy(s);
		oplog("info", "portcullis serving with %u workers", s->n_workers);
		event_base_dispatch(s->sigbase);
	}
	for (unsigned i = 0; i < started; i++)
		pthread_join(s->workers[i].thread, NULL);
	if (ev_term != NULL)
		event_free(ev_term);
	if (ev_int != NULL)
		event_free(ev_int);
	if (ev_usr1 != NULL)
		event_free(ev_usr1);
	if (ev_hup != NULL)
		event_free(ev_hup);
	if (ev_poll != NULL)
		event_free(ev_poll);
	oplog("info", "all workers stopped");
	return rc;
}

void server_fini(struct server *s)
{
	admin_destroy(s->admin);
	kube_client_stop(s->kube);
	if (s->inotify_ev != NULL)
		event_free(s->inotify_ev);
	if (s->reload_ev != NULL)
		event_free(s->reload_ev);
	if (s->inotify_fd >= 0)
		close(s->inotify_fd);
	for (unsigned i = 0; i < s->n_workers; i++)
		worker_fini(&s->workers[i]);
	free(s->workers);
	srclimit_destroy(s->srclimit);
	if (s->podmap != NULL)
		podmap_free(s->podmap);
	if (s->sigbase != NULL)
		event_base_free(s->sigbase);
	policy_unref(s->policy);
	metrics_tiers_fini(&s->tiers);
	pthread_mutex_destroy(&s->info_lock);
	memset(s, 0, sizeof(*s));
}
