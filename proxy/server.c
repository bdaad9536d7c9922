/* The server: worker threads, the admin listener, the Kubernetes client, reload, signals. */
#include "server.h"

#include <errno.h>
#include <libgen.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <unistd.h>

#include <event2/event.h>

#include "admin.h"
#include "audit.h"
#include "clock.h"
#include "kube.h"
#include "metrics.h"
#include "oplog.h"
#include "podmap.h"
#include "policyfile.h"
#include "srclimit.h"
#include "jwksfetch.h"
#include "oidc.h"
#include "oidcbind.h"
#include "stats.h"
#include "intercept.h"
#include "tls_listener.h"
#include "worker.h"
#include "thread.h"

/* File-change reloads wait for the writes to settle. */
#define RELOAD_DEBOUNCE_MS 200
/* A worker loop that has not ticked for this long is not healthy (/healthz). */
#define HEARTBEAT_STALE_MS 5000
/* How often the main loop looks whether every worker has stopped. */
#define DONE_POLL_MS 100
#define MAX_WORKERS  STATS_MAX_WORKERS

struct server {
	struct policy *policy; /* the main thread's reference to the current snapshot */
	struct audit_log *audit;
	struct srclimit *srclimit; /* per-source limits shared by every worker */
	struct oidc_state oidc;    /* OIDC job bindings (identity.oidc.max_bindings at start-up) */
	bool oidc_ready;
	atomic_bool oidc_on;       /* the serving policy has OIDC providers (read by scrapes) */
	char hostname[256];
	struct worker *workers[MAX_WORKERS];
	unsigned n_workers;
	atomic_uint n_open;   /* open connections over all workers (process ceiling) */
	atomic_bool draining; /* SIGTERM/SIGINT received */
	atomic_uint workers_done;
	struct event_base *sigbase; /* main thread: signals, reloads */
	const char *policy_path;
	struct admin *admin;
	struct podmap *podmap;    /* pod IP -> pod (identity.kubernetes), or NULL */
	struct kube_client *kube; /* feeds podmap */
	struct tls_listener *tls; /* listen.https's context, or NULL */
	struct icpt_ca *icpt;     /* interception's CA and contexts, or NULL (fixed at start-up) */
	struct metrics_tiers tiers;
	atomic_ullong reloads_ok, reloads_failed;
	pthread_mutex_t
	    info_lock; /* guards the two fields below (written on reload, read by scrapes) */
	char policy_sha256[65];
	double policy_loaded_at;
	double start_time;
	int inotify_fd;
	struct event *inotify_ev, *reload_ev;
	/* A reload in progress on its own thread (reload_main), and one asked for meanwhile. */
	struct reload_job *reload_job;
	pthread_t reload_thread;
	int reload_done_fd; /* eventfd: the loading thread is done */
	struct event *reload_done_ev;
	bool reload_again, reload_again_forced;
	char refused_sha[65]; /* SHA-256 of the last file a reload refused ("" for none) */
	const char *reload_again_why;
};

/* ---- the admin listener's view ---- */

static int start_jwks_fetcher(struct server *s, const struct policy *p, char *errmsg,
                              size_t errlen);

static void stats_snapshot(void *arg, struct proxy_stats *out)
{
	struct server *s = arg;
	memset(out, 0, sizeof(*out));
	uint64_t now = mono_ms();
	uint64_t lost = audit_log_dropped(s->audit);
	out->workers_alive = true;
	for (unsigned i = 0; i < s->n_workers; i++) {
		out->workers[i] = worker_metrics(s->workers[i]);
		lost += worker_audit_lost(s->workers[i]);
		if (worker_heartbeat_ms(s->workers[i]) + HEARTBEAT_STALE_MS < now)
			out->workers_alive = false;
	}
	out->n_workers = s->n_workers;
	out->tiers = &s->tiers;
	out->draining = atomic_load(&s->draining);
	out->audit_available = audit_log_available(s->audit);
	struct metrics_process *p = &out->proc;
	p->reloads_ok = atomic_load(&s->reloads_ok);
	p->reloads_failed = atomic_load(&s->reloads_failed);
	p->audit_lost = lost;
	p->conns_active = atomic_load(&s->n_open);
	p->source_entries = srclimit_entries(s->srclimit);
	p->source_evictions = srclimit_evictions(s->srclimit);
	/* s->policy is the main thread's: the scrape reads only what is published for it. */
	if (atomic_load(&s->oidc_on) ||
	    atomic_load(&s->oidc.verified) + atomic_load(&s->oidc.refused) > 0) {
		struct oidcbind_stats bs;
		oidcbind_stats(s->oidc.binds, (int64_t)(wall_ns() / 1000000000u), &bs);
		p->oidc_enabled = true;
		p->oidc_verified = atomic_load(&s->oidc.verified);
		p->oidc_leased = atomic_load(&s->oidc.leased);
		p->oidc_refused = atomic_load(&s->oidc.refused);
		p->oidc_bindings = bs.entries;
		p->oidc_evictions = bs.evictions;
		p->oidc_replays = bs.replays;
	}
	struct jwksfetch *jf = atomic_load(&s->oidc.fetch);
	if (jf != NULL) {
		p->jwks = out->jwks;
		p->n_jwks = jwksfetch_stats(jf, out->jwks, sizeof(out->jwks) / sizeof(out->jwks[0]));
		out->jwks_unready = jwksfetch_unready(jf, out->jwks_why, sizeof(out->jwks_why));
	}
	p->start_time = s->start_time;
	if (s->kube != NULL) {
		struct kube_stats ks;
		kube_client_stats(s->kube, &ks);
		p->kube_enabled = true;
		p->kube_synced = ks.synced;
		p->kube_pods = ks.pods;
		p->kube_relists = ks.relists;
		p->kube_watch_errors = ks.watch_errors;
		p->kube_skipped = ks.skipped;
		out->kube_overflowed = kube_client_overflowed(s->kube);
	}
	if (s->tls != NULL) {
		struct tls_listener_stats ts;
		tls_listener_get_stats(s->tls, &ts);
		p->tls_enabled = true;
		p->tls_reloads_ok = ts.reloads_ok;
		p->tls_reloads_failed = ts.reloads_failed;
		p->tls_not_after = ts.not_after;
	}
	if (s->icpt != NULL) {
		struct icpt_stats is;
		icpt_ca_get_stats(s->icpt, &is);
		p->icpt_enabled = true;
		p->icpt_minted = is.minted;
		p->icpt_cache_hits = is.cache_hits;
		p->icpt_cached = is.cached;
		p->icpt_reloads_ok = is.reloads_ok;
		p->icpt_reloads_failed = is.reloads_failed;
		p->icpt_ca_not_after = is.ca_not_after;
	}
	pthread_mutex_lock(&s->info_lock);
	memcpy(p->policy_sha256, s->policy_sha256, sizeof(p->policy_sha256));
	p->policy_loaded_at = s->policy_loaded_at;
	pthread_mutex_unlock(&s->info_lock);
}

/* ---- set-up ---- */

static void set_policy_info(struct server *s, const char *sha256)
{
	pthread_mutex_lock(&s->info_lock);
	snprintf(s->policy_sha256, sizeof(s->policy_sha256), "%s", sha256);
	s->policy_loaded_at = (double)wall_ns() / 1e9;
	pthread_mutex_unlock(&s->info_lock);
}

struct server *server_create(struct policy *p, const char *path, const char *sha256,
                             struct audit_log *audit, char *errmsg, size_t errlen)
{
	struct server *s = calloc(1, sizeof(*s));
	if (s == NULL) {
		snprintf(errmsg, errlen, "out of memory");
		return NULL;
	}
	s->inotify_fd = -1;
	s->reload_done_fd = -1;
	s->policy_path = path;
	s->start_time = (double)wall_ns() / 1e9;
	pthread_mutex_init(&s->info_lock, NULL);
	metrics_tiers_init(&s->tiers);
	set_policy_info(s, sha256);
	s->policy = policy_ref(p);
	s->audit = audit;
	s->srclimit = srclimit_create(policy_settings(s->policy)->max_sources);
	if (s->srclimit == NULL) {
		snprintf(errmsg, errlen, "out of memory");
		goto fail;
	}
	if (oidc_state_init(&s->oidc, policy_settings(p)->oidc_max_bindings) != 0) {
		snprintf(errmsg, errlen, "out of memory");
		goto fail;
	}
	s->oidc_ready = true;
	atomic_store(&s->oidc_on, policy_settings(p)->n_oidc > 0);
	if (start_jwks_fetcher(s, p, errmsg, errlen) != 0)
		goto fail;
	jwksfetch_configure(atomic_load(&s->oidc.fetch), p, true);
	if (gethostname(s->hostname, sizeof(s->hostname) - 1) != 0)
		strcpy(s->hostname, "unknown");
	const struct policy_settings *ps = policy_settings(p);
	if (ps->kube.enabled) {
		s->podmap = podmap_new(ps->kube.max_pods);
		if (s->podmap == NULL) {
			snprintf(errmsg, errlen, "out of memory");
			goto fail;
		}
	}
	unsigned n = ps->workers;
	if (n == 0) {
		long cpus = sysconf(_SC_NPROCESSORS_ONLN);
		n = cpus > 0 ? (unsigned)cpus : 1;
	}
	if (n > MAX_WORKERS)
		n = MAX_WORKERS;
	struct worker_shared sh = {
	    .audit = audit,
	    .srclimit = s->srclimit,
	    .oidc = &s->oidc,
	    .podmap = s->podmap,
	    .tiers = &s->tiers,
	    .hostname = s->hostname,
	    .n_open = &s->n_open,
	    .draining = &s->draining,
	    .workers_done = &s->workers_done,
	};
	if (ps->n_listen_https > 0) {
		const struct policy_listen_tls *lt = &ps->listen_tls;
		struct tls_listener_conf tc = {
		    .cert_file = lt->cert,
		    .key_file = lt->key,
		    .client_certs =
		        lt->client_certs == POLICY_CLIENT_CERTS_REQUIRE   ? TLS_CLIENT_CERTS_REQUIRE
		        : lt->client_certs == POLICY_CLIENT_CERTS_REQUEST ? TLS_CLIENT_CERTS_REQUEST
		                                                          : TLS_CLIENT_CERTS_OFF,
		    .client_ca_file = lt->client_ca,
		    .crl_file = lt->crl,
		};
		s->tls = tls_listener_create(&tc, errmsg, errlen);
		if (s->tls == NULL)
			goto fail;
		sh.tls = s->tls;
	}
	if (ps->interception.enabled) {
		const struct policy_interception *pi = &ps->interception;
		struct icpt_ca_conf ic = {
		    .ca_cert_file = pi->ca_cert,
		    .ca_key_file = pi->ca_key,
		    .upstream_ca_file = pi->upstream_ca,
		    .leaf_lifetime_s = pi->leaf_lifetime_ms / 1000u,
		    .cache_size = pi->cache_size,
		};
		char why[200];
		s->icpt = icpt_ca_create(&ic, why, sizeof(why));
		if (s->icpt == NULL) {
			snprintf(errmsg, errlen, "interception: %s", why);
			goto fail;
		}
		sh.icpt_ca = s->icpt;
	}
	if (ps->kube.enabled) {
		s->kube = kube_client_start(&ps->kube, s->podmap, errmsg, errlen);
		if (s->kube == NULL)
			goto fail;
		sh.kube = s->kube;
	}
	for (; s->n_workers < n; s->n_workers++) {
		s->workers[s->n_workers] = worker_create(s->n_workers, &sh, p, errmsg, errlen);
		if (s->workers[s->n_workers] == NULL)
			goto fail;
	}
	s->admin = admin_create(ps, stats_snapshot, s, errmsg, errlen);
	if (s->admin == NULL)
		goto fail;
	return s;
fail:
	server_destroy(s);
	return NULL;
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
	CHANGED(
	    !same_sockaddrs(o->listen_proxy, o->n_listen_proxy, n->listen_proxy, n->n_listen_proxy),
	    "listen.proxy");
	CHANGED(!same_sockaddrs(&o->listen_admin, 1, &n->listen_admin, 1), "listen.admin");
	CHANGED(o->workers != n->workers, "listen.workers");
	CHANGED(
	    !same_sockaddrs(o->listen_https, o->n_listen_https, n->listen_https, n->n_listen_https),
	    "listen.https");
	CHANGED(!same_str(o->listen_tls.cert, n->listen_tls.cert) ||
	            !same_str(o->listen_tls.key, n->listen_tls.key) ||
	            o->listen_tls.client_certs != n->listen_tls.client_certs ||
	            !same_str(o->listen_tls.client_ca, n->listen_tls.client_ca) ||
	            !same_str(o->listen_tls.crl, n->listen_tls.crl),
	        "listen.tls (the files' contents do reload)");
	CHANGED(n->interception.enabled &&
	            (!same_str(o->interception.ca_cert, n->interception.ca_cert) ||
	             !same_str(o->interception.ca_key, n->interception.ca_key) ||
	             !same_str(o->interception.upstream_ca, n->interception.upstream_ca) ||
	             o->interception.leaf_lifetime_ms != n->interception.leaf_lifetime_ms ||
	             o->interception.cache_size != n->interception.cache_size),
	        "interception (the files' contents do reload)");
	CHANGED(o->max_sources != n->max_sources, "limits.max_sources");
	CHANGED(o->ipv6_source_prefix != n->ipv6_source_prefix, "identity.ipv6_source_prefix");
	CHANGED(!same_sockaddrs(o->resolvers, o->n_resolvers, n->resolvers, n->n_resolvers) ||
	            o->resolver_timeout_ms != n->resolver_timeout_ms ||
	            o->resolver_attempts != n->resolver_attempts ||
	            o->resolver_max_answers != n->resolver_max_answers,
	        "resolver");
	CHANGED(strcmp(o->audit_output, n->audit_output) != 0, "audit.output");
	CHANGED(o->audit_queue_bytes != n->audit_queue_bytes, "audit.queue_size");
	CHANGED(o->audit_format != n->audit_format, "audit.format");
	CHANGED(!same_kube_watch(&o->kube, &n->kube),
	        "identity.kubernetes (what is watched, and how)");
#undef CHANGED
	if (len > 0)
		oplog("warn",
		      "policy reload: %s cannot change at runtime; the running values stay "
		      "until restart",
		      list);
}

/*
 * A reload reads and validates the file on a thread of its own: whatever the
 * file holds, the main thread keeps handling signals (SIGTERM, SIGUSR1, the
 * next SIGHUP) meanwhile.  One load at a time; a request that comes in while
 * one runs is remembered and served when it ends.
 */
struct reload_job {
	struct server *s;
	const char *why;
	bool only_if_changed;
	char refused_sha[65]; /* the last refused file's, copied when the job starts */
	char sha[65];
	bool repeated;    /* refused again, unchanged: already counted and logged */
	struct policy *p; /* the result: NULL when invalid or unreadable */
};

static void *reload_main(void *arg)
{
	struct reload_job *j = arg;
	thread_role("pc-reload", 1);
	j->p = policyfile_reload(j->s->policy_path, j->refused_sha, j->sha, &j->repeated);
	uint64_t one = 1;
	if (write(j->s->reload_done_fd, &one, sizeof(one)) != sizeof(one))
		oplog("error", "policy reload: cannot wake the main loop");
	return NULL;
}

static void watch_jwks(struct server *s);

/* The loaded file (j->p) is valid: hand it to the workers, or refuse it. */
static void reload_apply(struct server *s, struct reload_job *j)
{
	struct policy *p = j->p;
	pthread_mutex_lock(&s->info_lock);
	/* The same file with the same JWKS bytes (a JWKS rotation is a change of the snapshot). */
	bool same = strcmp(j->sha, s->policy_sha256) == 0 && oidc_keys_same(s->policy, j->p);
	pthread_mutex_unlock(&s->info_lock);
	bool refused_before = strcmp(j->sha, s->refused_sha) == 0;
	/* The file moved on from the refused bytes: the next refusal is news again. */
	s->refused_sha[0] = '\0';
	if (same && j->only_if_changed) {
		policy_unref(p);
		return;
	}
	const struct policy_kube *ko = &policy_settings(s->policy)->kube,
	                         *kn = &policy_settings(p)->kube;
	const struct policy_listen_tls *to = &policy_settings(s->policy)->listen_tls,
	                               *tn = &policy_settings(p)->listen_tls;
	bool certs_changed = to->client_certs != tn->client_certs ||
	                     !same_str(to->client_ca, tn->client_ca) || !same_str(to->crl, tn->crl);
	/* Interception's CA is loaded at start-up: a policy that intercepts needs one running. */
	bool icpt_missing = policy_settings(p)->interception.enabled && s->icpt == NULL;
	if (ko->enabled != kn->enabled || !same_str(ko->tier_label, kn->tier_label) ||
	    certs_changed || icpt_missing) {
		/* The running watch decides which pods are in the map: a policy that reads
		 * them another way would give them the wrong tiers.  Refuse it whole. */
		policy_unref(p);
		memcpy(s->refused_sha, j->sha, sizeof(s->refused_sha));
		if (refused_before) {
			oplog("info",
			      "policy reload (%s): %s is unchanged since it was refused; the "
			      "previous policy stays",
			      j->why, s->policy_path);
			return;
		}
		atomic_fetch_add(&s->reloads_failed, 1);
		/* Client certificates likewise: the running listeners ask for them (or not) as
		 * they were started, and a policy that expects otherwise would identify clients
		 * by their source address where it means their certificate. */
		oplog("error",
		      "policy reload (%s) refused: %s changed, which needs a restart; the "
		      "previous policy stays",
		      j->why,
		      icpt_missing    ? "interception (its CA is loaded at start-up)"
		      : certs_changed ? "listen.tls.client_certs (or its client_ca or crl)"
		                      : "identity.kubernetes on/off or its tier_label");
		return;
	}
	char ferr[160];
	if (start_jwks_fetcher(s, p, ferr, sizeof(ferr)) != 0) {
		/* Its jwks_url providers could never verify a token: keep what works. */
		policy_unref(p);
		atomic_fetch_add(&s->reloads_failed, 1);
		oplog("error", "policy reload (%s) refused: oidc: %s; the previous policy stays",
		      j->why, ferr);
		return;
	}
	report_static_changes(policy_settings(s->policy), policy_settings(p));
	for (unsigned i = 0; i < s->n_workers; i++)
		worker_offer_policy(s->workers[i], policy_ref(p));
	policy_unref(s->policy);
	s->policy = p;
	set_policy_info(s, j->sha);
	atomic_fetch_add(&s->reloads_ok, 1);
	atomic_store(&s->oidc_on, policy_settings(p)->n_oidc > 0);
	jwksfetch_configure(atomic_load(&s->oidc.fetch), p, false);
	watch_jwks(s);
	oplog("info", "policy reloaded (%s): %s sha256 %s, %zu tiers, %zu rules", j->why,
	      s->policy_path, j->sha, policy_tier_count(p), policy_rule_count(p));
}

static void server_reload(struct server *s, const char *why, bool only_if_changed)
{
	if (s->reload_job != NULL) {
		/* One load at a time: this one runs when the current one ends (a forced
		 * reload wins over a file-change one). */
		s->reload_again = true;
		s->reload_again_why =
		    s->reload_again_forced && only_if_changed ? s->reload_again_why : why;
		s->reload_again_forced = s->reload_again_forced || !only_if_changed;
		return;
	}
	struct reload_job *j = calloc(1, sizeof(*j));
	if (j == NULL) {
		atomic_fetch_add(&s->reloads_failed, 1);
		oplog("error",
		      "policy reload (%s) failed: out of memory; the previous policy stays", why);
		return;
	}
	j->s = s;
	j->why = why;
	j->only_if_changed = only_if_changed;
	memcpy(j->refused_sha, s->refused_sha, sizeof(j->refused_sha));
	s->reload_job = j;
	/* The loading thread takes no signal: they are the main loop's. */
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	int rc = pthread_create(&s->reload_thread, NULL, reload_main, j);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc != 0) {
		s->reload_job = NULL;
		free(j);
		atomic_fetch_add(&s->reloads_failed, 1);
		oplog("error",
		      "policy reload (%s) failed: cannot start a thread; the previous policy stays",
		      why);
	}
}

/* The loading thread is done: apply its result, then serve a reload asked for meanwhile. */
static void reload_done_cb(evutil_socket_t fd, short what, void *arg)
{
	struct server *s = arg;
	uint64_t v;
	if (read(fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
		return;
	struct reload_job *j = s->reload_job;
	if (j == NULL)
		return;
	pthread_join(s->reload_thread, NULL);
	s->reload_job = NULL;
	if (j->p == NULL && j->repeated) {
		oplog("info",
		      "policy reload (%s): %s is unchanged since it was refused; the previous "
		      "policy stays",
		      j->why, s->policy_path);
	} else if (j->p == NULL) {
		atomic_fetch_add(&s->reloads_failed, 1);
		memcpy(s->refused_sha, j->sha, sizeof(s->refused_sha));
		oplog("error",
		      "policy reload (%s) failed: %s is invalid; the previous policy stays", j->why,
		      s->policy_path);
	} else {
		reload_apply(s, j);
	}
	free(j);
	if (s->reload_again && !atomic_load(&s->draining)) {
		s->reload_again = false;
		bool forced = s->reload_again_forced;
		s->reload_again_forced = false;
		server_reload(s, s->reload_again_why, !forced);
	}
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

/*
 * The JWKS URL fetcher is started the first time a policy names a jwks_url
 * (before that policy serves), then told of every policy that serves.  Main
 * thread.
 */
static int start_jwks_fetcher(struct server *s, const struct policy *p, char *errmsg, size_t errlen)
{
	const struct policy_settings *ps = policy_settings(p);
	bool any = false;
	for (size_t i = 0; i < ps->n_oidc; i++)
		any = any || ps->oidc[i].jwks_url != NULL;
	if (!any || atomic_load(&s->oidc.fetch) != NULL)
		return 0;
	struct jwksfetch *f = jwksfetch_start(errmsg, errlen);
	if (f == NULL)
		return -1;
	atomic_store(&s->oidc.fetch, f);
	return 0;
}

/* Each OIDC provider's JWKS directory too: a rotated key set reloads the snapshot. */
static void watch_jwks(struct server *s)
{
	for (size_t i = 0; s->inotify_fd >= 0 && oidc_jwks_path(s->policy, i) != NULL; i++) {
		char *copy = strdup(oidc_jwks_path(s->policy, i));
		if (copy == NULL)
			return;
		const char *dir = dirname(copy);
		if (inotify_add_watch(s->inotify_fd, dir,
		                      IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE | IN_DELETE |
		                          IN_ATTRIB) < 0)
			oplog("warn", "cannot watch %s for JWKS changes (%s); reload with SIGHUP", dir,
			      strerror(errno));
		free(copy);
	}
}

static void watch_policy(struct server *s)
{
	char *copy = strdup(s->policy_path);
	if (copy == NULL)
		return;
	const char *dir = dirname(copy);
	s->inotify_fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
	if (s->inotify_fd < 0 || inotify_add_watch(s->inotify_fd, dir,
	                                           IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE |
	                                               IN_DELETE | IN_ATTRIB) < 0) {
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
	watch_jwks(s);
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
		worker_notify(s->workers[i]);
}

static void sig_hup_cb(evutil_socket_t sig, short what, void *arg)
{
	struct server *s = arg;
	server_reload(s, "SIGHUP", false);
	if (s->tls != NULL)
		(void)tls_listener_reload(s->tls, "SIGHUP");
	/* A failure is logged and counted there: the running CA stays. */
	if (s->icpt != NULL && icpt_ca_reload(s->icpt, "SIGHUP") != 0)
		return;
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
		if (worker_start(s->workers[started]) != 0) {
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
	struct timeval poll_tv = {0, DONE_POLL_MS * 1000};
	s->reload_done_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (s->sigbase != NULL && s->reload_done_fd >= 0)
		s->reload_done_ev = event_new(s->sigbase, s->reload_done_fd, EV_READ | EV_PERSIST,
		                              reload_done_cb, s);
	if (s->reload_done_ev == NULL || event_add(s->reload_done_ev, NULL) != 0 ||
	    started < s->n_workers || s->sigbase == NULL || ev_term == NULL || ev_int == NULL ||
	    ev_usr1 == NULL || ev_hup == NULL || ev_poll == NULL || event_add(ev_term, NULL) != 0 ||
	    event_add(ev_int, NULL) != 0 || event_add(ev_usr1, NULL) != 0 ||
	    event_add(ev_hup, NULL) != 0 || event_add(ev_poll, &poll_tv) != 0 ||
	    admin_start(s->admin) != 0) {
		oplog("error", "signal handling set-up failed; stopping");
		rc = 3;
		atomic_store(&s->draining, true);
		for (unsigned i = 0; i < started; i++)
			worker_notify(s->workers[i]);
	} else {
		watch_policy(s);
		if (s->tls != NULL)
			tls_listener_watch(s->tls, s->sigbase);
		if (s->icpt != NULL)
			icpt_ca_watch(s->icpt, s->sigbase);
		oplog("info", "portcullis serving with %u workers", s->n_workers);
		event_base_dispatch(s->sigbase);
	}
	for (unsigned i = 0; i < started; i++)
		worker_join(s->workers[i]);
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

void server_destroy(struct server *s)
{
	if (s == NULL)
		return;
	admin_destroy(s->admin);
	kube_client_stop(s->kube);
	if (s->reload_job != NULL) {
		/* A load still running (it is bounded by the file's size): let it end. */
		pthread_join(s->reload_thread, NULL);
		policy_unref(s->reload_job->p);
		free(s->reload_job);
	}
	if (s->reload_done_ev != NULL)
		event_free(s->reload_done_ev);
	if (s->reload_done_fd >= 0)
		close(s->reload_done_fd);
	if (s->inotify_ev != NULL)
		event_free(s->inotify_ev);
	if (s->reload_ev != NULL)
		event_free(s->reload_ev);
	if (s->inotify_fd >= 0)
		close(s->inotify_fd);
	for (unsigned i = 0; i < s->n_workers; i++)
		worker_destroy(s->workers[i]);
	tls_listener_destroy(s->tls); /* its watch is on sigbase, freed below */
	icpt_ca_destroy(s->icpt);
	srclimit_destroy(s->srclimit);
	if (s->oidc_ready)
		oidc_state_fini(&s->oidc);
	if (s->podmap != NULL)
		podmap_free(s->podmap);
	if (s->sigbase != NULL)
		event_base_free(s->sigbase);
	policy_unref(s->policy);
	metrics_tiers_fini(&s->tiers);
	pthread_mutex_destroy(&s->info_lock);
	free(s);
}
