/*
 * Kubernetes pod list/watch client (see kube.h).  Its own thread and event
 * loop; TLS through libevent's OpenSSL bufferevent, verified against the
 * service-account CA and the API server's IP address; HTTP/1.1 with one
 * request per connection (lists are rare and watches are long).
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "config.h"
#include "http_msg.h"
#include "http_parse.h"
#include "kube.h"
#include "kube_api.h"
#include "kube_json.h"
#include "kube_stream.h"
#include "podmap.h"
#include "tls_client.h"
#include "clock.h"
#include "oplog.h"
#include "sockaddr.h"
#include "thread.h"

/*
 * Pages and watch streams are read as a stream of objects (kube_stream), so a
 * page may be any size. One pod object, or one watch event, over MAX_OBJECT
 * is skipped: counted, logged, and its pod taken out of the map (fail closed
 * for that pod alone). The API server keeps objects under 1.5 MiB, so only a
 * hostile or broken one reaches the bound.
 */
#define MAX_OBJECT (4u << 20)
/* Items asked for per page: as many as fit in about PAGE_TARGET_BYTES, given the last page. */
#define PAGE_MAX_ITEMS    500u
#define PAGE_MIN_ITEMS    10u
#define PAGE_TARGET_BYTES (8u << 20)
#define MAX_ERROR_BODY (16u << 10) /* a Status body we only log */
#define MAX_HEAD 16384
#define BACKOFF_MIN_MS 250
#define CONNECT_TIMEOUT_S 10
#define LIST_READ_TIMEOUT_S 30
#define WATCH_SLACK_S 60 /* past timeoutSeconds before a silent watch counts as dead */

enum kw_state { KW_IDLE, KW_LIST, KW_WATCH, KW_BACKOFF };

/* One list+watch scope: a namespace, or the whole cluster (ns NULL). */
struct kwatch {
	struct kube_client *k;
	char *ns;
	enum kw_state state;
	char rv[KUBE_RV_MAX]; /* where the watch resumes; "" = list first */
	char cont[KUBE_CONTINUE_MAX];
	uint64_t gen;    /* generation of the current list (podmap_sweep) */
	bool synced;     /* completed a list once */
	bool listed;     /* has ever started a list (for the relist counter) */
	uint32_t backoff_ms;
	struct bufferevent *bev;
	struct event *timer; /* backoff wait */
	uint64_t started_ms; /* of the current request */
	/* the response being read */
	bool have_head;
	int status;
	struct http_framing fr;    /* the response body's framing (http_msg) */
	struct chunked_state ck;   /* CHUNKED: the decoder */
	uint64_t remaining;        /* LENGTH: body bytes left */
	bool body_done;
	struct evbuffer *body;         /* a non-200 response's body (logged) */
	struct kube_stream *list_st;   /* a 200 list page, object by object */
	struct kube_stream *watch_st;  /* a 200 watch stream, event by event */
	unsigned page_limit;           /* items asked for per list page */
	size_t page_bytes;             /* of the items of the page being read */
	bool stop_relist;              /* the stream must end (stop_msg says why): relist? */
	char stop_msg[224];
	size_t n_events; /* applied on this watch stream */
	bool full;       /* the map refused a pod of this scope (max_pods) since its last list */
	bool list_full;  /* ... during the list being read */
	bool stale;      /* no list or watch progress for too long: not synced */
	uint64_t last_ok_ms; /* last list completed, watch opened or event applied */
	struct kube_event *ev;
};

struct kube_client {
	struct podmap *map;
	struct kube_api api; /* where and how to reach the API server */
	uint32_t backoff_max_ms;
	struct kwatch *w;
	size_t n_w;
	uint64_t next_gen;
	pthread_t thread;
	bool thread_started;
	struct event_base *base;
	int stop_fd;
	struct event *stop_ev;
	atomic_bool synced;
	atomic_bool overflow; /* some scope's pods did not fit in the map */
	atomic_ullong relists, watch_errors, skipped;
	unsigned seed;            /* jitter: from getrandom, so replicas differ */
	uint32_t stale_after_ms;  /* max(2 x backoff_max, 60 s) */
	struct event *stale_ev;   /* checks staleness every few seconds */
};

static void kw_start(struct kwatch *w);

/* ---- helpers ---- */

static void kw_update_synced(struct kube_client *k)
{
	bool full = false;
	for (size_t i = 0; i < k->n_w; i++)
		full |= k->w[i].full;
	if (atomic_exchange(&k->overflow, full) != full)
		oplog(full ? "error" : "info",
		      full ? "kubernetes: pod map full (identity.kubernetes.max_pods): sources the "
			     "map does not hold get unknown_source until a relist fits"
			   : "kubernetes: pod map fits again");
	for (size_t i = 0; i < k->n_w; i++)
		if (!k->w[i].synced || k->w[i].stale) {
			if (atomic_exchange(&k->synced, false))
				oplog("error", "kubernetes: pod map out of date (%s: no list or watch "
					       "progress for %u s): not ready",
				      k->w[i].ns ? k->w[i].ns : "(all namespaces)",
				      k->stale_after_ms / 1000);
			return;
		}
	if (!atomic_exchange(&k->synced, true))
		oplog("info", "kubernetes: pod map synced, %zu pods", podmap_count(k->map));
}

/* Progress on a scope: it is fresh again. */
static void kw_progress(struct kwatch *w)
{
	w->last_ok_ms = mono_ms();
	if (w->stale) {
		w->stale = false;
		kw_update_synced(w->k);
	}
}

/* A watch that stayed open a while, or delivered events for at least a second, is
 * healthy: only then does the backoff start over (alternating success and failure
 * must still escalate). */
static void kw_note_health(struct kwatch *w)
{
	uint64_t up = mono_ms() - w->started_ms;
	if (w->state == KW_WATCH && w->have_head && w->status == 200 &&
	    (up >= 10000 || (up >= 1000 && w->n_events > 0)))
		w->backoff_ms = BACKOFF_MIN_MS;
}

/* ---- request lifecycle ---- */

static void kw_reset_conn(struct kwatch *w)
{
	if (w->bev != NULL) {
		bufferevent_free(w->bev);
		w->bev = NULL;
	}
	evbuffer_drain(w->body, evbuffer_get_length(w->body));
	kube_stream_reset(w->list_st);
	kube_stream_reset(w->watch_st);
	w->page_bytes = 0;
	w->stop_relist = false;
	w->stop_msg[0] = '\0';
	w->have_head = false;
	w->body_done = false;
	w->n_events = 0;
}

static void kw_backoff(struct kwatch *w)
{
	struct kube_client *k = w->k;
	kw_note_health(w);
	kw_reset_conn(w);
	/* Full jitter in [d/2, d]: replicas that lost the API together do not return together. */
	uint32_t d = w->backoff_ms / 2 + (uint32_t)((unsigned)rand_r(&k->seed) % (w->backoff_ms / 2 + 1));
	struct timeval tv = {d / 1000, (d % 1000) * 1000};
	w->backoff_ms = w->backoff_ms * 2 > k->backoff_max_ms ? k->backoff_max_ms : w->backoff_ms * 2;
	w->state = KW_BACKOFF;
	evtimer_add(w->timer, &tv);
}

static void kw_fail(struct kwatch *w, bool relist, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void kw_fail(struct kwatch *w, bool relist, const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	atomic_fetch_add(&w->k->watch_errors, 1);
	oplog("warn", "kubernetes: %s %s: %s%s", w->state == KW_WATCH ? "watch" : "list",
	      w->ns ? w->ns : "(all namespaces)", msg, relist ? "; relisting" : "");
	if (relist) {
		w->rv[0] = '\0';
		w->cont[0] = '\0';
	}
	kw_backoff(w);
}

static void kw_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	kw_start(arg);
}

/* ---- response body ---- */

static int on_list_unit(void *arg, const struct kube_unit *u);
static int on_watch_unit(void *arg, const struct kube_unit *u);

/* Decoded body bytes: a 200's to the list or watch stream, any other's kept for the log. */
static int body_take(struct kwatch *w, const char *p, size_t n)
{
	if (w->status != 200) {
		if (evbuffer_get_length(w->body) + n > MAX_ERROR_BODY)
			return -1;
		return evbuffer_add(w->body, p, n);
	}
	char err[160] = "";
	bool list = w->state == KW_LIST;
	int rc = list ? kube_stream_feed(w->list_st, p, n, on_list_unit, w, err, sizeof(err))
	              : kube_stream_feed(w->watch_st, p, n, on_watch_unit, w, err, sizeof(err));
	if (rc != KUBE_STREAM_OK && w->stop_msg[0] == '\0') {
		w->stop_relist = true;
		snprintf(w->stop_msg, sizeof(w->stop_msg), "malformed %s: %s",
		         list ? "PodList" : "watch stream", err);
	}
	return rc == KUBE_STREAM_OK ? 0 : -1;
}

/* Decode the body's framing and hand the bytes over.  -1: framing error, or the stream must end. */
static int body_pump(struct kwatch *w, struct evbuffer *in)
{
	while (!w->body_done && evbuffer_get_length(in) > 0) {
		struct evbuffer_iovec v;
		if (evbuffer_peek(in, -1, NULL, &v, 1) < 1)
			return -1;
		size_t used = v.iov_len;
		struct http_view data = {.p = v.iov_base, .len = v.iov_len};
		if (w->fr.kind == HTTP_FRAMING_CHUNKED) {
			/* RFC 9112 §7.1: the one validating decoder (http_msg), payload handed back. */
			used = 0;
			int st = chunked_decode(&w->ck, v.iov_base, v.iov_len, &used, &data);
			if (st < 0)
				return -1;
			w->body_done = st == CHUNKED_DONE;
		} else if (w->fr.kind == HTTP_FRAMING_LENGTH) {
			if (used > w->remaining)
				used = data.len = (size_t)w->remaining;
			w->remaining -= used;
			w->body_done = w->remaining == 0;
		}
		int rc = data.len > 0 ? body_take(w, data.p, data.len) : 0;
		evbuffer_drain(in, used);
		if (rc < 0)
			return -1;
	}
	return 0;
}

/* An object over MAX_OBJECT: counted, logged, and its pod out of the map. */
static void skipped(struct kwatch *w, const struct kube_unit *u, const char *where)
{
	atomic_fetch_add(&w->k->skipped, 1);
	if (u->uid[0] != '\0')
		podmap_remove(w->k->map, u->uid);
	oplog("warn",
	      "kubernetes: skipped pod %s/%s (uid %s) in a %s: %zu bytes, over the %u MiB bound; "
	      "its addresses map to no pod",
	      u->ns[0] ? u->ns : "?", u->name[0] ? u->name : "?", u->uid[0] ? u->uid : "?", where,
	      u->bytes, MAX_OBJECT >> 20);
}

/* ---- lists ---- */

/*
 * One item of a list page, applied as it arrives: a page that fails later is
 * listed again under a new generation, whose sweep drops whatever that list
 * does not hold.
 */
static int on_list_unit(void *arg, const struct kube_unit *u)
{
	struct kwatch *w = arg;
	char err[160];
	w->page_bytes += u->bytes;
	if (u->p == NULL) {
		skipped(w, u, "list page");
		return 0;
	}
	struct kube_pod *pod = &w->ev->pod;
	if (kube_parse_pod(u->p, u->len, pod, err, sizeof(err)) != KUBE_JSON_OK) {
		w->stop_relist = true;
		snprintf(w->stop_msg, sizeof(w->stop_msg), "malformed PodList item: %s", err);
		return 1;
	}
	if (w->ns != NULL && strcmp(pod->ns, w->ns) != 0)
		return 0; /* not this scope's: never trust a pod from elsewhere */
	if (podmap_apply(w->k->map, pod, w->gen) == PODMAP_FULL)
		w->list_full = true;
	return 0;
}

/* Ask for as many items as fit in about PAGE_TARGET_BYTES, judging by this page's. */
static void adapt_page(struct kwatch *w, size_t items)
{
	if (items == 0)
		return;
	size_t per = w->page_bytes / items + 1;
	size_t want = PAGE_TARGET_BYTES / per;
	w->page_limit = want > PAGE_MAX_ITEMS   ? PAGE_MAX_ITEMS
	                : want < PAGE_MIN_ITEMS ? PAGE_MIN_ITEMS
	                                        : (unsigned)want;
}

static void list_done(struct kwatch *w)
{
	struct kube_list_meta meta;
	char err[160] = "";
	const char *skel;
	size_t skel_len, items;
	int rc = kube_stream_end(w->list_st, &skel, &skel_len, &items, err, sizeof(err));
	if (rc == KUBE_STREAM_OK)
		rc = kube_parse_list(skel, skel_len, NULL, NULL, &meta, err, sizeof(err));
	if (rc != KUBE_JSON_OK) {
		kw_fail(w, true, "malformed PodList: %s", err);
		return;
	}
	adapt_page(w, items);
	kw_reset_conn(w);
	if (meta.cont[0] != '\0') {
		memcpy(w->cont, meta.cont, sizeof(w->cont));
		kw_start(w);
		return;
	}
	size_t gone = podmap_sweep(w->k->map, w->ns, w->gen);
	memcpy(w->rv, meta.resource_version, sizeof(w->rv));
	w->full = w->list_full;
	w->last_ok_ms = mono_ms();
	w->stale = false;
	if (!w->synced || gone > 0)
		oplog("info", "kubernetes: listed %s at resourceVersion %s, %zu pods gone",
		      w->ns ? w->ns : "(all namespaces)", w->rv, gone);
	w->synced = true;
	kw_update_synced(w->k);
	kw_start(w);
}

/* ---- watch events ---- */

/* One event of the stream.  Non-zero: the watch must end (stop_msg says why). */
static int on_watch_unit(void *arg, const struct kube_unit *u)
{
	struct kwatch *w = arg;
	struct kube_event *ev = w->ev;
	char err[160];
	if (u->p == NULL) {
		skipped(w, u, "watch event");
		if (u->uid[0] == '\0') {
			/* Which pod it was is unknown: list again, which skips it too. */
			w->stop_relist = true;
			snprintf(w->stop_msg, sizeof(w->stop_msg),
			         "watch event over %u MiB naming no pod", MAX_OBJECT >> 20);
			return 1;
		}
		if (u->resource_version[0] != '\0')
			memcpy(w->rv, u->resource_version, sizeof(w->rv));
		w->n_events++;
		kw_progress(w);
		return 0;
	}
	if (kube_parse_event(u->p, u->len, ev, err, sizeof(err)) != KUBE_JSON_OK) {
		w->stop_relist = true;
		snprintf(w->stop_msg, sizeof(w->stop_msg), "malformed watch event: %s", err);
		return 1;
	}
	switch (ev->type) {
	case KUBE_EV_ADDED:
	case KUBE_EV_MODIFIED:
		if (w->ns != NULL && strcmp(ev->pod.ns, w->ns) != 0)
			break;
		if (podmap_apply(w->k->map, &ev->pod, w->gen) == PODMAP_FULL && !w->full) {
			w->full = true;
			kw_update_synced(w->k);
		}
		break;
	case KUBE_EV_DELETED:
		if (w->ns == NULL || strcmp(ev->pod.ns, w->ns) == 0)
			podmap_remove(w->k->map, ev->pod.uid);
		break;
	case KUBE_EV_BOOKMARK:
		break;
	case KUBE_EV_ERROR:
		/* 410: our resourceVersion is older than the API keeps: list again. */
		w->stop_relist = ev->code == 410;
		snprintf(w->stop_msg, sizeof(w->stop_msg), "ERROR event, code %d %s", ev->code,
		         ev->reason);
		return 1;
	}
	if (ev->resource_version[0] != '\0')
		memcpy(w->rv, ev->resource_version, sizeof(w->rv));
	w->n_events++;
	kw_progress(w);
	return 0;
}

/* The stream ended cleanly (timeoutSeconds or the server closed it): watch again from rv. */
static void watch_ended(struct kwatch *w)
{
	bool quick = mono_ms() - w->started_ms < 1000;
	if (w->full) {
		/* Pods were left out: list again, in case deletions made room. */
		w->rv[0] = '\0';
		w->cont[0] = '\0';
	}
	if (quick) { /* a server that ends every watch at once must not make us spin */
		kw_backoff(w);
		return;
	}
	kw_note_health(w);
	kw_reset_conn(w);
	kw_start(w);
}

/* ---- the connection ---- */

static bool parse_head(struct kwatch *w, struct evbuffer *in)
{
	struct evbuffer_ptr p = evbuffer_search(in, "\r\n\r\n", 4, NULL);
	if (p.pos < 0) {
		if (evbuffer_get_length(in) > MAX_HEAD)
			kw_fail(w, false, "response head over %u bytes", MAX_HEAD);
		return false;
	}
	size_t hl = (size_t)p.pos + 4;
	if (hl > MAX_HEAD) {
		kw_fail(w, false, "response head over %u bytes", MAX_HEAD);
		return false;
	}
	struct http_resp *r = malloc(sizeof(*r));
	struct http_limits lim;
	http_limits_default(&lim);
	lim.max_head_bytes = MAX_HEAD;
	lim.max_line_bytes = MAX_HEAD;
	const char *h = (const char *)evbuffer_pullup(in, (ev_ssize_t)hl);
	int rc = r ? http_parse_response(h, hl, &lim, r) : HTTP_ERR_SYNTAX;
	if (rc <= 0) {
		free(r);
		kw_fail(w, false, "malformed response head (%s)", http_status_str(rc));
		return false;
	}
	w->status = r->status;
	chunked_init(&w->ck);
	/* RFC 9112 §6.3 through http_msg; only chunked among the transfer codings. */
	if (http_resp_framing(r, false, &w->fr) < 0 ||
	    (r->n_transfer_encoding > 0 && w->fr.kind != HTTP_FRAMING_CHUNKED)) {
		free(r);
		kw_fail(w, false, "unsupported or invalid body framing");
		return false;
	}
	w->remaining = w->fr.length;
	w->body_done = w->fr.kind == HTTP_FRAMING_NONE ||
		       (w->fr.kind == HTTP_FRAMING_LENGTH && w->fr.length == 0);
	free(r);
	evbuffer_drain(in, hl);
	w->have_head = true;
	if (w->state == KW_WATCH && w->status == 200) {
		kw_progress(w);
		struct timeval rt = {(time_t)w->k->api.watch_timeout_s + WATCH_SLACK_S, 0};
		bufferevent_set_timeouts(w->bev, &rt, NULL);
	}
	return true;
}

static void handle_status(struct kwatch *w)
{
	size_t n = evbuffer_get_length(w->body);
	char msg[200];
	size_t m = n < sizeof(msg) - 1 ? n : sizeof(msg) - 1;
	evbuffer_copyout(w->body, msg, m);
	msg[m] = '\0';
	for (size_t i = 0; i < m; i++)
		if ((unsigned char)msg[i] < 0x20)
			msg[i] = ' ';
	if (w->status == 410) {
		/* A continue token or resourceVersion too old: start the list over. */
		bool watching = w->state == KW_WATCH;
		atomic_fetch_add(&w->k->watch_errors, 1);
		oplog("info", "kubernetes: %s %s: 410 Gone; relisting", watching ? "watch" : "list",
		      w->ns ? w->ns : "(all namespaces)");
		w->rv[0] = '\0';
		w->cont[0] = '\0';
		kw_backoff(w); /* a server that answers 410 to every watch must not make us spin */
		return;
	}
	kw_fail(w, false, "HTTP %d: %s", w->status, msg);
}

/* The response body is complete: act on its status, or on the list or watch it ended. */
static void body_finished(struct kwatch *w)
{
	if (w->status != 200)
		handle_status(w);
	else if (w->state == KW_LIST)
		list_done(w);
	else
		watch_ended(w);
}

static void kw_read_cb(struct bufferevent *bev, void *arg)
{
	struct kwatch *w = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	if (!w->have_head && !parse_head(w, in))
		return;
	if (body_pump(w, in) < 0) {
		if (w->stop_msg[0] != '\0')
			kw_fail(w, w->stop_relist, "%s", w->stop_msg);
		else
			kw_fail(w, w->state == KW_WATCH && w->status == 200,
			        "HTTP %d with a malformed or oversized body", w->status);
		return;
	}
	if (w->body_done)
		body_finished(w);
}

static int so_error(struct bufferevent *bev)
{
	int e = 0;
	socklen_t len = sizeof(e);
	evutil_socket_t fd = bufferevent_getfd(bev);
	if (fd < 0 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &len) != 0)
		return 0;
	return e;
}

static void kw_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct kwatch *w = arg;
	if (what & BEV_EVENT_CONNECTED)
		return;
	if ((what & BEV_EVENT_EOF) && w->have_head && w->fr.kind == HTTP_FRAMING_CLOSE) {
		w->body_done = true;
		body_finished(w);
		return;
	}
	char why[240];
	int err = EVUTIL_SOCKET_ERROR();
	unsigned long e = bufferevent_get_openssl_error(bev);
	SSL *ssl = bufferevent_openssl_get_ssl(bev);
	long vr = ssl != NULL ? SSL_get_verify_result(ssl) : X509_V_OK;
	/* Library 0 is libevent's record of SSL_ERROR_SYSCALL: a socket error, not TLS. */
	if (e != 0 && ERR_GET_LIB(e) != 0) {
		char es[160];
		ERR_error_string_n(e, es, sizeof(es));
		if (vr != X509_V_OK)
			snprintf(why, sizeof(why), "TLS: certificate of %s refused: %s",
				 w->k->api.host_hdr, X509_verify_cert_error_string(vr));
		else
			snprintf(why, sizeof(why), "TLS: %s", es);
	} else if (what & BEV_EVENT_TIMEOUT) {
		snprintf(why, sizeof(why), "timed out");
	} else if (so_error(bev) != 0) {
		snprintf(why, sizeof(why), "%s", strerror(so_error(bev)));
	} else if ((what & BEV_EVENT_EOF) && !w->have_head) {
		snprintf(why, sizeof(why), "no response: connection refused, reset or closed before one");
	} else if (what & BEV_EVENT_EOF) {
		snprintf(why, sizeof(why), "connection closed mid-response");
	} else {
		snprintf(why, sizeof(why), "%s", err ? strerror(err) : "connection failed");
	}
	/* A dropped watch resumes from the last event applied: nothing is lost or replayed twice. */
	kw_fail(w, false, "%s", why);
}

static void kw_start(struct kwatch *w)
{
	struct kube_client *k = w->k;
	char why[256];

	kw_reset_conn(w);
	if (w->rv[0] == '\0') {
		if (w->cont[0] == '\0') {
			w->gen = ++k->next_gen;
			w->list_full = false;
			if (w->listed)
				atomic_fetch_add(&k->relists, 1);
			w->listed = true;
		}
		w->state = KW_LIST;
	} else {
		w->state = KW_WATCH;
	}
	char *req = kube_api_request(&k->api, w->ns, w->state == KW_WATCH,
				     w->state == KW_WATCH ? w->rv : w->cont, w->page_limit, why,
				     sizeof(why));
	if (req == NULL) {
		kw_fail(w, false, "%s", why);
		return;
	}
	/* certs/: TLS 1.2+, the CA file read anew, the address dialled in an IP SAN. */
	SSL *ssl = tls_client_for_ip(k->api.ca_file, &k->api.addr, why, sizeof(why));
	if (ssl == NULL) {
		kube_api_request_free(req);
		kw_fail(w, false, "%s", why);
		return;
	}
	w->bev = bufferevent_openssl_socket_new(k->base, -1, ssl, BUFFEREVENT_SSL_CONNECTING,
						BEV_OPT_CLOSE_ON_FREE);
	if (w->bev == NULL) {
		SSL_free(ssl);
		kube_api_request_free(req);
		kw_fail(w, false, "cannot create a TLS connection");
		return;
	}
	bufferevent_openssl_set_allow_dirty_shutdown(w->bev, 1);
	bufferevent_setcb(w->bev, kw_read_cb, NULL, kw_event_cb, w);
	struct timeval rt = {LIST_READ_TIMEOUT_S, 0}, wt = {CONNECT_TIMEOUT_S, 0};
	bufferevent_set_timeouts(w->bev, &rt, &wt);
	evbuffer_add(bufferevent_get_output(w->bev), req, strlen(req));
	kube_api_request_free(req);
	bufferevent_enable(w->bev, EV_READ | EV_WRITE);
	w->started_ms = mono_ms();
	struct sockaddr_storage ss;
	socklen_t sl = sockaddr_make(&k->api.addr, k->api.port, &ss);
	if (bufferevent_socket_connect(w->bev, (struct sockaddr *)&ss, (int)sl) != 0)
		kw_fail(w, false, "connect: %s", strerror(errno));
}

/* ---- thread ---- */

static void stop_cb(evutil_socket_t fd, short what, void *arg)
{
	struct kube_client *k = arg;
	uint64_t v;
	if (read(fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
		oplog("warn", "kubernetes: stop eventfd: %s", strerror(errno));
	event_base_loopexit(k->base, NULL);
}

/* Every few seconds: a synced scope with no progress for stale_after is out of date. */
static void stale_cb(evutil_socket_t fd, short what, void *arg)
{
	struct kube_client *k = arg;
	uint64_t now = mono_ms();
	for (size_t i = 0; i < k->n_w; i++) {
		struct kwatch *w = &k->w[i];
		if (w->state == KW_WATCH && w->have_head && w->status == 200)
			w->last_ok_ms = now; /* an open watch stream is current, quiet or not */
		else if (w->synced && !w->stale && now - w->last_ok_ms > k->stale_after_ms)
			w->stale = true;
	}
	kw_update_synced(k);
}

static void *kube_main(void *arg)
{
	struct kube_client *k = arg;
	thread_role("pc-kube", 1);
	for (size_t i = 0; i < k->n_w; i++)
		kw_start(&k->w[i]);
	event_base_dispatch(k->base);
	return NULL;
}

struct kube_client *kube_client_start(const struct policy_kube *cfg, struct podmap *map,
				      char *errmsg, size_t errlen)
{
	struct kube_client *k = calloc(1, sizeof(*k));
	if (k == NULL) {
		snprintf(errmsg, errlen, "out of memory");
		return NULL;
	}
	k->map = map;
	k->stop_fd = -1;
	if (kube_api_init(&k->api, cfg, errmsg, errlen) != 0)
		goto fail;
	k->backoff_max_ms = cfg->backoff_max_ms < BACKOFF_MIN_MS ? BACKOFF_MIN_MS : cfg->backoff_max_ms;
	k->n_w = cfg->tier_label != NULL ? 1 : cfg->n_namespaces;
	k->w = calloc(k->n_w ? k->n_w : 1, sizeof(*k->w));
	k->base = event_base_new();
	k->stop_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (k->w == NULL || k->base == NULL || k->stop_fd < 0)
		goto nomem;
	if (getrandom(&k->seed, sizeof(k->seed), GRND_NONBLOCK) != sizeof(k->seed))
		k->seed = (unsigned)mono_ns() ^ (unsigned)getpid();
	k->stale_after_ms = 2 * k->backoff_max_ms > 60000 ? 2 * k->backoff_max_ms : 60000;
	k->stop_ev = event_new(k->base, k->stop_fd, EV_READ | EV_PERSIST, stop_cb, k);
	k->stale_ev = event_new(k->base, -1, EV_PERSIST, stale_cb, k);
	struct timeval five = {5, 0};
	if (k->stop_ev == NULL || event_add(k->stop_ev, NULL) != 0 || k->stale_ev == NULL ||
	    event_add(k->stale_ev, &five) != 0)
		goto nomem;
	for (size_t i = 0; i < k->n_w; i++) {
		struct kwatch *w = &k->w[i];
		w->k = k;
		w->backoff_ms = BACKOFF_MIN_MS;
		w->ns = cfg->tier_label != NULL ? NULL : strdup(cfg->namespaces[i].ns);
		w->body = evbuffer_new();
		w->timer = evtimer_new(k->base, kw_timer_cb, w);
		w->ev = malloc(sizeof(*w->ev));
		w->list_st = kube_stream_new(KUBE_STREAM_LIST, MAX_OBJECT);
		w->watch_st = kube_stream_new(KUBE_STREAM_WATCH, MAX_OBJECT);
		w->page_limit = PAGE_MAX_ITEMS;
		if ((cfg->tier_label == NULL && w->ns == NULL) || w->body == NULL || w->timer == NULL ||
		    w->ev == NULL || w->list_st == NULL || w->watch_st == NULL)
			goto nomem;
	}
	if (pthread_create(&k->thread, NULL, kube_main, k) != 0) {
		snprintf(errmsg, errlen, "kubernetes: cannot start the watch thread");
		goto fail;
	}
	k->thread_started = true;
	oplog("info", "kubernetes: watching pods via https://%s (%zu %s)", k->api.host_hdr, k->n_w,
	      cfg->tier_label != NULL ? "cluster-wide watch" : "namespace watches");
	return k;
nomem:
	snprintf(errmsg, errlen, "kubernetes: out of memory");
fail:
	kube_client_stop(k);
	return NULL;
}

void kube_client_stop(struct kube_client *k)
{
	if (k == NULL)
		return;
	if (k->thread_started) {
		uint64_t one = 1;
		if (write(k->stop_fd, &one, sizeof(one)) != sizeof(one))
			oplog("warn", "kubernetes: cannot signal the watch thread");
		pthread_join(k->thread, NULL);
	}
	for (size_t i = 0; k->w != NULL && i < k->n_w; i++) {
		struct kwatch *w = &k->w[i];
		if (w->bev)
			bufferevent_free(w->bev);
		if (w->timer)
			event_free(w->timer);
		if (w->body)
			evbuffer_free(w->body);
		free(w->ev);
		free(w->ns);
		kube_stream_free(w->list_st);
		kube_stream_free(w->watch_st);
	}
	free(k->w);
	if (k->stop_ev)
		event_free(k->stop_ev);
	if (k->stale_ev)
		event_free(k->stale_ev);
	if (k->base)
		event_base_free(k->base);
	if (k->stop_fd >= 0)
		close(k->stop_fd);
	kube_api_fini(&k->api);
	free(k);
}

bool kube_client_synced(const struct kube_client *k)
{
	return k != NULL && atomic_load(&k->synced);
}

bool kube_client_overflowed(const struct kube_client *k)
{
	return k != NULL && atomic_load(&k->overflow);
}

void kube_client_stats(const struct kube_client *k, struct kube_stats *out)
{
	out->synced = atomic_load(&k->synced);
	out->pods = podmap_count(k->map);
	out->relists = atomic_load(&k->relists);
	out->watch_errors = atomic_load(&k->watch_errors);
	out->skipped = atomic_load(&k->skipped);
}
