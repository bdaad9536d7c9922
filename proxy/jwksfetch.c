/*
 * JWKS URL fetcher (see jwksfetch.h).  Its own thread and event loop, like the
 * Kubernetes client: one HTTP/1.1 GET per connection through libevent's OpenSSL
 * bufferevent, the host resolved by a resolver pinned to the policy's servers.
 *
 * Locking: f->mu guards the slots' shared half (url, used, keys, counters,
 * error) and the configured policies; the thread alone touches the rest.
 */
#include "jwksfetch.h"

#include <errno.h>
#include <stdarg.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>

#include "cachectl.h"
#include "chunked.h"
#include "clock.h"
#include "config.h"
#include "dns.h"
#include "host.h"
#include "http_msg.h"
#include "http_parse.h"
#include "jwt.h"
#include "oplog.h"
#include "sockaddr.h"
#include "tls_client.h"
#include "thread.h"

#define SLOTS            (2 * POLICY_MAX_OIDC_PROVIDERS) /* the old policy's URLs and the new one's */
#define MAX_HEAD         16384
#define MAX_ADDRS        8
#define TICK_MS          250
#define FETCH_DEADLINE_S 30 /* DNS, connect, TLS and the whole response */
#define IO_TIMEOUT_S     10
#define KID_COOLDOWN_MS  30000u
#define BACKOFF_MIN_MS   1000u
#define BACKOFF_MAX_MS   300000u
#define ETAG_MAX         200

struct jwks_ref {
	atomic_uint refs;
	struct jwks *set;
};

struct fetch;

struct slot {
	/* shared (f->mu) */
	bool used;
	char url[1025];
	struct jwks_ref *keys;
	double last_success; /* unix seconds */
	uint64_t fetched, not_modified, failed, kid_refreshes;
	bool want; /* an unknown kid asked for a refresh */
	bool ever; /* has had keys since it was created */
	char error[256];
	/* the thread's */
	const struct policy_oidc_provider *pv; /* in f->cfg */
	uint64_t due_ms, last_start_ms;
	uint64_t ok_ms; /* monotonic time of the last 200 or 304 */
	uint32_t backoff_ms;
	char etag[ETAG_MAX + 1];
	unsigned char digest[32]; /* of the body that made keys */
	struct fetch *fx;
};

/* One attempt: everything it needs copied, so a reload cannot pull it from under it. */
struct fetch {
	struct jwksfetch *f;
	struct slot *s;
	bool kid; /* asked for by an unknown kid */
	char host[HOST_NAME_MAX_LEN + 1];
	char *path, *ca_file;
	uint16_t port;
	bool host_is_ip;
	struct pc_addr addrs[MAX_ADDRS];
	size_t n_addrs, next_addr;
	char etag_sent[ETAG_MAX + 1];
	struct dns_query *q;
	struct bufferevent *bev;
	struct event *deadline;
	bool connected, have_head, body_done;
	int status;
	struct http_framing fr;
	struct chunked_state ck;
	uint64_t remaining;
	struct evbuffer *body;
	int64_t fresh_s; /* cachectl_freshness of the response */
	char etag[ETAG_MAX + 1];
	char last_err[200];
};

struct jwksfetch {
	pthread_mutex_t mu;
	struct slot slot[SLOTS];
	struct policy *pending; /* configured, not yet applied by the thread (mu) */
	struct policy *latest;  /* the last configured (mu) */
	/* The start-up policy's URLs (mu): readiness waits for their first keys. */
	char *gate[POLICY_MAX_OIDC_PROVIDERS];
	size_t n_gate;
	struct policy *cfg; /* applied (thread) */
	struct dns_resolver *dns;
	struct event_base *base;
	int wake_fd;
	atomic_bool stopping;
	struct event *wake_ev, *tick_ev;
	pthread_t thread;
	bool thread_started;
};

/* ---- key sets ---- */

const struct jwks *jwks_ref_keys(const struct jwks_ref *r)
{
	return r->set;
}

void jwks_ref_put(struct jwks_ref *r)
{
	if (r != NULL && atomic_fetch_sub_explicit(&r->refs, 1, memory_order_acq_rel) == 1) {
		jwks_destroy(r->set);
		free(r);
	}
}

static struct slot *find(struct jwksfetch *f, const char *url)
{
	for (size_t i = 0; i < SLOTS; i++)
		if (f->slot[i].used && strcmp(f->slot[i].url, url) == 0)
			return &f->slot[i];
	return NULL;
}

struct jwks_ref *jwksfetch_keys(struct jwksfetch *f, const char *url)
{
	if (f == NULL)
		return NULL;
	pthread_mutex_lock(&f->mu);
	struct slot *s = find(f, url);
	struct jwks_ref *r = s != NULL ? s->keys : NULL;
	if (r != NULL)
		atomic_fetch_add_explicit(&r->refs, 1, memory_order_relaxed);
	pthread_mutex_unlock(&f->mu);
	return r;
}

static void wake(struct jwksfetch *f)
{
	uint64_t one = 1;
	if (write(f->wake_fd, &one, sizeof(one)) != sizeof(one) && errno != EAGAIN)
		oplog("warn", "oidc: cannot wake the JWKS fetcher: %s", strerror(errno));
}

void jwksfetch_kid_unknown(struct jwksfetch *f, const char *url)
{
	if (f == NULL)
		return;
	pthread_mutex_lock(&f->mu);
	struct slot *s = find(f, url);
	bool asked = s != NULL && !s->want;
	if (asked)
		s->want = true;
	pthread_mutex_unlock(&f->mu);
	if (asked)
		wake(f);
}

void jwksfetch_configure(struct jwksfetch *f, struct policy *p, bool startup)
{
	if (f == NULL)
		return;
	policy_ref(p);
	policy_ref(p);
	pthread_mutex_lock(&f->mu);
	const struct policy_settings *ps = policy_settings(p);
	for (size_t i = 0; startup && i < ps->n_oidc && f->n_gate < POLICY_MAX_OIDC_PROVIDERS; i++)
		if (ps->oidc[i].jwks_url != NULL) {
			char *u = strdup(ps->oidc[i].jwks_url);
			if (u != NULL)
				f->gate[f->n_gate++] = u;
		}
	struct policy *old_pending = f->pending, *old_latest = f->latest;
	f->pending = p;
	f->latest = p;
	pthread_mutex_unlock(&f->mu);
	policy_unref(old_pending);
	policy_unref(old_latest);
	wake(f);
}

bool jwksfetch_unready(struct jwksfetch *f, char *why, size_t whylen)
{
	if (f == NULL)
		return false;
	bool unready = false;
	pthread_mutex_lock(&f->mu);
	const struct policy_settings *ps = f->latest != NULL ? policy_settings(f->latest) : NULL;
	for (size_t i = 0; ps != NULL && i < ps->n_oidc && !unready; i++) {
		const struct policy_oidc_provider *pv = &ps->oidc[i];
		bool gated = false;
		for (size_t g = 0; pv->jwks_url != NULL && g < f->n_gate && !gated; g++)
			gated = strcmp(f->gate[g], pv->jwks_url) == 0;
		if (!gated)
			continue;
		struct slot *s = find(f, pv->jwks_url);
		if (s != NULL && s->ever)
			continue;
		unready = true;
		snprintf(why, whylen, "OIDC provider %s: JWKS %s not fetched yet%s%s", pv->name,
		         pv->jwks_url, s != NULL && s->error[0] != '\0' ? ": " : "",
		         s != NULL ? s->error : "");
	}
	pthread_mutex_unlock(&f->mu);
	return unready;
}

size_t jwksfetch_stats(struct jwksfetch *f, struct metrics_jwks *out, size_t max)
{
	size_t n = 0;
	if (f == NULL)
		return 0;
	pthread_mutex_lock(&f->mu);
	for (size_t i = 0; i < SLOTS && n < max; i++) {
		const struct slot *s = &f->slot[i];
		if (!s->used)
			continue;
		struct metrics_jwks *m = &out[n++];
		snprintf(m->url, sizeof(m->url), "%s", s->url);
		m->fetched = s->fetched;
		m->not_modified = s->not_modified;
		m->failed = s->failed;
		m->kid_refreshes = s->kid_refreshes;
		m->last_success = s->last_success;
		m->keys = s->keys != NULL ? jwks_ref_keys(s->keys)->n : 0;
	}
	pthread_mutex_unlock(&f->mu);
	return n;
}

/* ---- one fetch ---- */

static uint32_t backoff_cap(const struct slot *s)
{
	uint32_t cap = s->pv != NULL ? s->pv->jwks_refresh_min_ms : BACKOFF_MAX_MS;
	if (cap > BACKOFF_MAX_MS)
		cap = BACKOFF_MAX_MS;
	return cap < BACKOFF_MIN_MS ? BACKOFF_MIN_MS : cap;
}

static void fetch_free(struct fetch *x)
{
	if (x == NULL)
		return;
	if (x->q != NULL)
		dns_cancel(x->q);
	if (x->bev != NULL)
		bufferevent_free(x->bev);
	if (x->deadline != NULL)
		event_free(x->deadline);
	if (x->body != NULL)
		evbuffer_free(x->body);
	free(x->path);
	free(x->ca_file);
	free(x);
}

/* The attempt is over: its slot learns the outcome and when to try next. */
static void fetch_failed(struct fetch *x, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void fetch_failed(struct fetch *x, const char *fmt, ...)
{
	struct jwksfetch *f = x->f;
	struct slot *s = x->s;
	char msg[256];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	pthread_mutex_lock(&f->mu);
	s->failed++;
	snprintf(s->error, sizeof(s->error), "%s", msg);
	bool have = s->keys != NULL;
	pthread_mutex_unlock(&f->mu);
	oplog("warn", "oidc: JWKS %s: %s; %s, retrying in %u ms", s->url, msg,
	      have ? "the last keys fetched stay in use" : "no keys yet: its tokens are refused",
	      s->backoff_ms);
	s->due_ms = mono_ms() + s->backoff_ms;
	s->backoff_ms = s->backoff_ms * 2 > backoff_cap(s) ? backoff_cap(s) : s->backoff_ms * 2;
	s->fx = NULL;
	fetch_free(x);
}

static void fetch_done(struct fetch *x, struct jwks *set, const unsigned char digest[32])
{
	struct jwksfetch *f = x->f;
	struct slot *s = x->s;
	const struct policy_oidc_provider *pv = s->pv;
	int64_t fresh_ms = x->fresh_s < 0 ? (int64_t)pv->jwks_refresh_min_ms : x->fresh_s * 1000;
	if (fresh_ms < (int64_t)pv->jwks_refresh_min_ms)
		fresh_ms = pv->jwks_refresh_min_ms;
	if (fresh_ms > (int64_t)pv->jwks_refresh_max_ms)
		fresh_ms = pv->jwks_refresh_max_ms;
	struct jwks_ref *r = NULL, *old = NULL;
	if (set != NULL) {
		r = malloc(sizeof(*r));
		if (r == NULL) {
			jwks_destroy(set);
			fetch_failed(x, "out of memory");
			return;
		}
		atomic_init(&r->refs, 1);
		r->set = set;
	}
	bool changed = set != NULL && memcmp(digest, s->digest, 32) != 0;
	pthread_mutex_lock(&f->mu);
	if (r != NULL) {
		old = s->keys;
		s->keys = r;
		s->fetched++;
	} else {
		s->not_modified++;
	}
	s->last_success = (double)wall_ns() / 1e9;
	s->ever = s->ever || s->keys != NULL;
	s->error[0] = '\0';
	pthread_mutex_unlock(&f->mu);
	s->ok_ms = mono_ms();
	jwks_ref_put(old);
	if (set != NULL) {
		memcpy(s->digest, digest, 32);
		snprintf(s->etag, sizeof(s->etag), "%s", x->etag);
	}
	if (changed)
		oplog("info", "oidc: JWKS %s: %zu keys in use, fresh for %lld s", s->url, set->n,
		      (long long)(fresh_ms / 1000));
	s->due_ms = mono_ms() + (uint64_t)fresh_ms;
	s->backoff_ms = BACKOFF_MIN_MS;
	s->fx = NULL;
	fetch_free(x);
}

static void body_complete(struct fetch *x)
{
	if (x->status == 304) {
		if (x->etag_sent[0] == '\0') {
			fetch_failed(x, "HTTP 304 to a request without If-None-Match");
			return;
		}
		pthread_mutex_lock(&x->f->mu);
		bool gone = x->s->keys == NULL;
		pthread_mutex_unlock(&x->f->mu);
		if (gone) {
			/* The keys it confirms were dropped while it was on its way
			 * (jwks_max_stale): a 304 must not make an empty slot look fresh.  Ask
			 * again, without an ETag. */
			fetch_failed(x, "HTTP 304 for keys dropped meanwhile; fetching them whole");
			return;
		}
		fetch_done(x, NULL, NULL);
		return;
	}
	size_t len = evbuffer_get_length(x->body);
	const char *p = (const char *)evbuffer_pullup(x->body, -1);
	struct jwks *set = NULL;
	char err[128] = "";
	unsigned char digest[32];
	unsigned int dl = 0;
	int rc = jwks_parse(p != NULL ? p : "", len, &set, err, sizeof(err));
	if (rc != JWT_OK) {
		fetch_failed(x, "not a usable JWK Set: %s",
		             rc == JWT_ERR_NOMEM ? "out of memory" : err);
		return;
	}
	if (EVP_Digest(p, len, digest, &dl, EVP_sha256(), NULL) != 1) {
		jwks_destroy(set);
		fetch_failed(x, "out of memory");
		return;
	}
	fetch_done(x, set, digest);
}

static const struct http_header *header(const struct http_resp *r, const char *name)
{
	for (size_t i = 0; i < r->n_headers; i++)
		if (http_token_ieq(r->headers[i].name, name))
			return &r->headers[i];
	return NULL;
}

/* The head: status, framing, freshness, ETag.  False when the attempt has ended. */
static bool parse_head(struct fetch *x, struct evbuffer *in)
{
	struct evbuffer_ptr p = evbuffer_search(in, "\r\n\r\n", 4, NULL);
	if (p.pos < 0 || (size_t)p.pos + 4 > MAX_HEAD) {
		if (p.pos >= 0 || evbuffer_get_length(in) > MAX_HEAD)
			fetch_failed(x, "response head over %u bytes", MAX_HEAD);
		return false;
	}
	size_t hl = (size_t)p.pos + 4;
	struct http_resp *r = malloc(sizeof(*r));
	struct http_limits lim;
	http_limits_default(&lim);
	lim.max_head_bytes = MAX_HEAD;
	lim.max_line_bytes = MAX_HEAD;
	const char *h = (const char *)evbuffer_pullup(in, (ev_ssize_t)hl);
	int rc = r != NULL ? http_parse_response(h, hl, &lim, r) : HTTP_ERR_SYNTAX;
	if (rc <= 0) {
		free(r);
		fetch_failed(x, "malformed response head (%s)", http_status_str(rc));
		return false;
	}
	x->status = r->status;
	if (x->status != 200 && x->status != 304) {
		const struct http_header *loc = header(r, "location");
		bool redirect = x->status >= 300 && x->status < 400 && loc != NULL;
		free(r);
		fetch_failed(x, "HTTP %d%s", x->status,
		             redirect ? " (a redirect: jwks_url must name the JWKS itself)" : "");
		return false;
	}
	chunked_init(&x->ck);
	if (http_resp_framing(r, false, &x->fr) < 0 ||
	    (r->n_transfer_encoding > 0 && x->fr.kind != HTTP_FRAMING_CHUNKED)) {
		free(r);
		fetch_failed(x, "unsupported or invalid body framing");
		return false;
	}
	if (x->status == 304)
		x->fr.kind = HTTP_FRAMING_NONE; /* RFC 9110 §15.4.5: no content */
	if (x->fr.kind == HTTP_FRAMING_LENGTH && x->fr.length > JWKS_MAX_BYTES) {
		free(r);
		fetch_failed(x, "body over %u bytes", JWKS_MAX_BYTES);
		return false;
	}
	x->fresh_s = cachectl_freshness(r);
	const struct http_header *et = header(r, "etag");
	x->etag[0] = '\0';
	if (et != NULL && et->value.len > 0 && et->value.len <= ETAG_MAX) {
		bool ok = true;
		for (size_t i = 0; i < et->value.len; i++)
			ok = ok && et->value.p[i] > 0x20 && et->value.p[i] < 0x7f;
		if (ok) {
			memcpy(x->etag, et->value.p, et->value.len);
			x->etag[et->value.len] = '\0';
		}
	}
	x->remaining = x->fr.length;
	x->body_done = x->fr.kind == HTTP_FRAMING_NONE ||
	               (x->fr.kind == HTTP_FRAMING_LENGTH && x->fr.length == 0);
	free(r);
	evbuffer_drain(in, hl);
	x->have_head = true;
	return true;
}

/* Body bytes in, framing off.  False when the attempt has ended. */
static bool body_pump(struct fetch *x, struct evbuffer *in)
{
	while (!x->body_done && evbuffer_get_length(in) > 0) {
		struct evbuffer_iovec v;
		if (evbuffer_peek(in, -1, NULL, &v, 1) < 1)
			break;
		size_t used = v.iov_len;
		struct http_view data = {.p = v.iov_base, .len = v.iov_len};
		if (x->fr.kind == HTTP_FRAMING_CHUNKED) {
			used = 0;
			int st = chunked_decode(&x->ck, v.iov_base, v.iov_len, &used, &data);
			if (st < 0) {
				fetch_failed(x, "malformed chunked body");
				return false;
			}
			x->body_done = st == CHUNKED_DONE;
		} else if (x->fr.kind == HTTP_FRAMING_LENGTH) {
			if (used > x->remaining)
				used = data.len = (size_t)x->remaining;
			x->remaining -= used;
			x->body_done = x->remaining == 0;
		}
		if (evbuffer_get_length(x->body) + data.len > JWKS_MAX_BYTES) {
			fetch_failed(x, "body over %u bytes", JWKS_MAX_BYTES);
			return false;
		}
		if (data.len > 0 && evbuffer_add(x->body, data.p, data.len) != 0) {
			fetch_failed(x, "out of memory");
			return false;
		}
		evbuffer_drain(in, used);
	}
	return true;
}

static void read_cb(struct bufferevent *bev, void *arg)
{
	struct fetch *x = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	if (!x->have_head && !parse_head(x, in))
		return;
	if (!body_pump(x, in))
		return;
	if (x->body_done)
		body_complete(x);
}

static void connect_next(struct fetch *x);

static void event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct fetch *x = arg;
	if (what & BEV_EVENT_CONNECTED) {
		x->connected = true;
		return;
	}
	if ((what & BEV_EVENT_EOF) && x->have_head && x->fr.kind == HTTP_FRAMING_CLOSE) {
		/* The body ends with the connection (whatever came with the EOF first). */
		if (body_pump(x, bufferevent_get_input(bev)))
			body_complete(x);
		return;
	}
	unsigned long e = bufferevent_get_openssl_error(bev);
	SSL *ssl = bufferevent_openssl_get_ssl(bev);
	long vr = ssl != NULL ? SSL_get_verify_result(ssl) : X509_V_OK;
	int serr = 0, oerr = EVUTIL_SOCKET_ERROR();
	socklen_t sl = sizeof(serr);
	evutil_socket_t fd = bufferevent_getfd(bev);
	if (fd >= 0)
		(void)getsockopt(fd, SOL_SOCKET, SO_ERROR, &serr, &sl);
	if (e != 0 && ERR_GET_LIB(e) != 0) {
		/* A certificate or handshake failure is the server's answer: no other address. */
		char es[160];
		ERR_error_string_n(e, es, sizeof(es));
		ERR_clear_error();
		if (vr != X509_V_OK)
			fetch_failed(x, "TLS: certificate refused: %s",
			             X509_verify_cert_error_string(vr));
		else
			fetch_failed(x, "TLS: %s", es);
		return;
	}
	if (!x->connected) {
		snprintf(x->last_err, sizeof(x->last_err), "%s",
		         what & BEV_EVENT_TIMEOUT ? "connect timed out"
		         : serr != 0              ? strerror(serr)
		         : oerr != 0              ? strerror(oerr)
		                     : "connection refused or closed during the handshake");
		connect_next(x);
		return;
	}
	if (what & BEV_EVENT_TIMEOUT)
		fetch_failed(x, "timed out reading the response");
	else if (!x->have_head)
		fetch_failed(x, "connection closed before a response");
	else
		fetch_failed(x, "connection closed mid-response");
}

static void connect_next(struct fetch *x)
{
	if (x->bev != NULL) {
		bufferevent_free(x->bev);
		x->bev = NULL;
	}
	if (x->next_addr >= x->n_addrs) {
		fetch_failed(x, "cannot connect to %s port %u: %s", x->host, x->port,
		             x->last_err[0] ? x->last_err : "no address");
		return;
	}
	const struct pc_addr *a = &x->addrs[x->next_addr++];
	char why[200];
	SSL *ssl =
	    tls_client_for_host(x->ca_file, x->host, x->host_is_ip ? a : NULL, why, sizeof(why));
	if (ssl == NULL) {
		fetch_failed(x, "%s", why);
		return;
	}
	/* OpenSSL 3 calls an EOF without close_notify an error: a body that ends with the
	 * connection (no length) must still end.  Truncation is caught by the framing (length,
	 * chunked) or by the JSON (a cut JWK Set does not parse). */
	SSL_set_options(ssl, SSL_OP_IGNORE_UNEXPECTED_EOF);
	x->bev = bufferevent_openssl_socket_new(x->f->base, -1, ssl, BUFFEREVENT_SSL_CONNECTING,
	                                        BEV_OPT_CLOSE_ON_FREE);
	if (x->bev == NULL) {
		SSL_free(ssl);
		fetch_failed(x, "cannot create a TLS connection");
		return;
	}
	bufferevent_openssl_set_allow_dirty_shutdown(x->bev, 1);
	bufferevent_setcb(x->bev, read_cb, NULL, event_cb, x);
	struct timeval t = {IO_TIMEOUT_S, 0};
	bufferevent_set_timeouts(x->bev, &t, &t);
	struct evbuffer *out = bufferevent_get_output(x->bev);
	char hosthdr[HOST_NAME_MAX_LEN + 16];
	bool v6 = x->host_is_ip && a->family == ADDR_V6;
	if (x->port == 443)
		snprintf(hosthdr, sizeof(hosthdr), v6 ? "[%s]" : "%s", x->host);
	else
		snprintf(hosthdr, sizeof(hosthdr), v6 ? "[%s]:%u" : "%s:%u", x->host, x->port);
	evbuffer_add_printf(out,
	                    "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: portcullis/%s\r\n"
	                    "Accept: application/jwk-set+json, application/json\r\n"
	                    "%s%s%sConnection: close\r\n\r\n",
	                    x->path, hosthdr, PORTCULLIS_VERSION,
	                    x->etag_sent[0] ? "If-None-Match: " : "", x->etag_sent,
	                    x->etag_sent[0] ? "\r\n" : "");
	bufferevent_enable(x->bev, EV_READ | EV_WRITE);
	x->connected = false;
	struct sockaddr_storage ss;
	socklen_t sl = sockaddr_make(a, x->port, &ss);
	if (bufferevent_socket_connect(x->bev, (struct sockaddr *)&ss, (int)sl) != 0) {
		snprintf(x->last_err, sizeof(x->last_err), "connect: %s", strerror(errno));
		connect_next(x);
	}
}

static const char *dns_result_str(enum dns_result r)
{
	switch (r) {
	case DNS_NXDOMAIN:
		return "no such name (NXDOMAIN)";
	case DNS_NODATA:
		return "no A or AAAA record";
	case DNS_TIMEOUT:
		return "the pinned resolvers did not answer";
	default:
		return "the pinned resolvers failed";
	}
}

static void resolved(void *arg, enum dns_result res, const struct pc_addr *addrs, size_t n)
{
	struct fetch *x = arg;
	x->q = NULL;
	if (res != DNS_OK || n == 0) {
		fetch_failed(x, "resolving %s: %s", x->host, dns_result_str(res));
		return;
	}
	x->n_addrs = n < MAX_ADDRS ? n : MAX_ADDRS;
	memcpy(x->addrs, addrs, x->n_addrs * sizeof(*addrs));
	connect_next(x);
}

static void deadline_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	fetch_failed(arg, "no complete response within %d s", FETCH_DEADLINE_S);
}

static void fetch_start(struct jwksfetch *f, struct slot *s, bool kid)
{
	const struct policy_oidc_provider *pv = s->pv;
	struct fetch *x = calloc(1, sizeof(*x));
	if (x == NULL)
		return;
	x->f = f;
	x->s = s;
	x->kid = kid;
	x->port = pv->jwks_port;
	snprintf(x->host, sizeof(x->host), "%s", pv->jwks_host);
	x->path = strdup(pv->jwks_path);
	x->ca_file = pv->jwks_ca_file != NULL ? strdup(pv->jwks_ca_file) : NULL;
	x->body = evbuffer_new();
	x->deadline = evtimer_new(f->base, deadline_cb, x);
	snprintf(x->etag_sent, sizeof(x->etag_sent), "%s", s->keys != NULL ? s->etag : "");
	s->fx = x;
	s->last_start_ms = mono_ms();
	pthread_mutex_lock(&f->mu);
	s->want = false;
	if (kid)
		s->kid_refreshes++;
	pthread_mutex_unlock(&f->mu);
	struct timeval dl = {FETCH_DEADLINE_S, 0};
	if (x->path == NULL || (pv->jwks_ca_file != NULL && x->ca_file == NULL) ||
	    x->body == NULL || x->deadline == NULL || evtimer_add(x->deadline, &dl) != 0) {
		fetch_failed(x, "out of memory");
		return;
	}
	struct pc_host h;
	if (host_canon(x->host, strlen(x->host), &h) == HOST_OK && h.kind != HOST_NAME) {
		x->host_is_ip = true;
		x->addrs[0] = h.addr;
		x->n_addrs = 1;
		connect_next(x);
		return;
	}
	if (f->dns == NULL && f->cfg != NULL) {
		/* The last attempt to make the resolver failed (out of memory): again now. */
		char err[200];
		f->dns = dns_resolver_create(f->base, policy_settings(f->cfg), err, sizeof(err));
	}
	x->q = f->dns != NULL ? dns_lookup(f->dns, x->host, resolved, x) : NULL;
	if (x->q == NULL)
		fetch_failed(x, "resolving %s: cannot start the lookup", x->host);
}

/* ---- the thread ---- */

static bool same_resolvers(const struct policy_settings *a, const struct policy_settings *b)
{
	return a->n_resolvers == b->n_resolvers &&
	       memcmp(a->resolvers, b->resolvers, a->n_resolvers * sizeof(a->resolvers[0])) == 0 &&
	       a->resolver_timeout_ms == b->resolver_timeout_ms &&
	       a->resolver_attempts == b->resolver_attempts &&
	       a->resolver_max_answers == b->resolver_max_answers;
}

static const struct policy_oidc_provider *provider_for(const struct policy *p, const char *url)
{
	const struct policy_settings *ps = policy_settings(p);
	for (size_t i = 0; i < ps->n_oidc; i++)
		if (ps->oidc[i].jwks_url != NULL && strcmp(ps->oidc[i].jwks_url, url) == 0)
			return &ps->oidc[i];
	return NULL;
}

/* A newly configured policy: slots follow its URLs, the resolver its servers. */
/* Take s's keys away (under f->mu), so its tokens get oidc_jwks_unavailable until a fetch. */
static void drop_keys(struct jwksfetch *f, struct slot *s)
{
	pthread_mutex_lock(&f->mu);
	struct jwks_ref *old = s->keys;
	s->keys = NULL;
	pthread_mutex_unlock(&f->mu);
	jwks_ref_put(old);
	memset(s->digest, 0, sizeof(s->digest));
	s->etag[0] = '\0';
}

/* Start s over: its attempt in flight (made under other settings) ends, the next is now. */
static void refetch(struct slot *s)
{
	fetch_free(s->fx);
	s->fx = NULL;
	s->due_ms = 0;
	s->backoff_ms = BACKOFF_MIN_MS;
}

static bool same_text(const char *a, const char *b)
{
	return a == b || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

/* A newly configured policy: slots follow its URLs, the resolver its servers. */
static void apply(struct jwksfetch *f)
{
	pthread_mutex_lock(&f->mu);
	struct policy *p = f->pending;
	f->pending = NULL;
	pthread_mutex_unlock(&f->mu);
	if (p == NULL)
		return;
	const struct policy_settings *ps = policy_settings(p);
	bool new_resolvers = f->cfg == NULL || !same_resolvers(policy_settings(f->cfg), ps);
	if (new_resolvers) {
		/* Every attempt used the old servers (or their answers): all start over. */
		for (size_t i = 0; i < SLOTS; i++)
			if (f->slot[i].used)
				refetch(&f->slot[i]);
		dns_resolver_destroy(f->dns);
		char err[200];
		f->dns = dns_resolver_create(f->base, ps, err, sizeof(err));
		if (f->dns == NULL)
			oplog("error", "oidc: JWKS fetcher: %s", err);
	}
	for (size_t i = 0; i < SLOTS; i++) {
		struct slot *s = &f->slot[i];
		if (!s->used)
			continue;
		const struct policy_oidc_provider *was = s->pv, *now = provider_for(p, s->url);
		s->pv = now;
		if (now == NULL) {
			/* A URL the policy no longer names: its fetch and keys go. */
			fetch_free(s->fx);
			pthread_mutex_lock(&f->mu);
			struct jwks_ref *old = s->keys;
			memset(s, 0, sizeof(*s));
			pthread_mutex_unlock(&f->mu);
			jwks_ref_put(old);
			continue;
		}
		if (was == NULL)
			continue;
		if (!same_text(was->jwks_ca_file, now->jwks_ca_file)) {
			/* Keys vouched for by a trust anchor the policy no longer names. */
			oplog("info",
			      "oidc: JWKS %s: jwks_ca_file changed; its keys are fetched again",
			      s->url);
			drop_keys(f, s);
			refetch(s);
		} else if (was->jwks_refresh_min_ms != now->jwks_refresh_min_ms ||
		           was->jwks_refresh_max_ms != now->jwks_refresh_max_ms ||
		           was->jwks_max_stale_ms != now->jwks_max_stale_ms) {
			refetch(s); /* the next due time comes from the new bounds */
		}
	}
	for (size_t i = 0; i < ps->n_oidc; i++) {
		const struct policy_oidc_provider *pv = &ps->oidc[i];
		if (pv->jwks_url == NULL)
			continue;
		pthread_mutex_lock(&f->mu);
		struct slot *s = find(f, pv->jwks_url);
		for (size_t j = 0; s == NULL && j < SLOTS; j++)
			if (!f->slot[j].used) {
				s = &f->slot[j];
				memset(s, 0, sizeof(*s));
				s->used = true;
				snprintf(s->url, sizeof(s->url), "%s", pv->jwks_url);
				s->pv = pv;
				s->backoff_ms = BACKOFF_MIN_MS;
			}
		pthread_mutex_unlock(&f->mu);
	}
	policy_unref(f->cfg);
	f->cfg = p;
}

static void run_due(struct jwksfetch *f)
{
	uint64_t now = mono_ms();
	for (size_t i = 0; i < SLOTS; i++) {
		struct slot *s = &f->slot[i];
		if (!s->used || s->pv == NULL)
			continue;
		pthread_mutex_lock(&f->mu);
		bool want = s->want, have = s->keys != NULL;
		pthread_mutex_unlock(&f->mu);
		if (have && now - s->ok_ms > s->pv->jwks_max_stale_ms) {
			/* The issuer could not be asked for this long: a key it withdrew meanwhile
			 * must not verify for ever. */
			oplog("error",
			      "oidc: JWKS %s: no successful fetch for %u s (jwks_max_stale): keys "
			      "dropped, its tokens are refused until a fetch succeeds",
			      s->url, s->pv->jwks_max_stale_ms / 1000u);
			drop_keys(f, s);
		}
		if (s->fx != NULL)
			continue;
		uint64_t cool = s->pv->jwks_refresh_min_ms < KID_COOLDOWN_MS
		                    ? s->pv->jwks_refresh_min_ms
		                    : KID_COOLDOWN_MS;
		if (now >= s->due_ms)
			fetch_start(f, s, false);
		else if (want && now - s->last_start_ms >= cool)
			fetch_start(f, s, true);
	}
}

static void wake_cb(evutil_socket_t fd, short what, void *arg)
{
	struct jwksfetch *f = arg;
	uint64_t v;
	(void)what;
	if (read(fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
		oplog("warn", "oidc: JWKS fetcher wake-up: %s", strerror(errno));
	if (atomic_load(&f->stopping)) {
		event_base_loopexit(f->base, NULL);
		return;
	}
	apply(f);
	run_due(f);
}

static void tick_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	run_due(arg);
}

static void *fetch_main(void *arg)
{
	struct jwksfetch *f = arg;
	thread_role("pc-jwks", 1);
	event_base_dispatch(f->base);
	return NULL;
}

struct jwksfetch *jwksfetch_start(char *err, size_t errlen)
{
	struct jwksfetch *f = calloc(1, sizeof(*f));
	if (f == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	pthread_mutex_init(&f->mu, NULL);
	f->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	f->base = event_base_new();
	if (f->wake_fd < 0 || f->base == NULL)
		goto fail;
	f->wake_ev = event_new(f->base, f->wake_fd, EV_READ | EV_PERSIST, wake_cb, f);
	f->tick_ev = event_new(f->base, -1, EV_PERSIST, tick_cb, f);
	struct timeval tick = {0, TICK_MS * 1000};
	if (f->wake_ev == NULL || f->tick_ev == NULL || event_add(f->wake_ev, NULL) != 0 ||
	    event_add(f->tick_ev, &tick) != 0)
		goto fail;
	if (pthread_create(&f->thread, NULL, fetch_main, f) != 0)
		goto fail;
	f->thread_started = true;
	return f;
fail:
	snprintf(err, errlen, "cannot start the JWKS fetcher");
	jwksfetch_stop(f);
	return NULL;
}

void jwksfetch_stop(struct jwksfetch *f)
{
	if (f == NULL)
		return;
	if (f->thread_started) {
		atomic_store(&f->stopping, true);
		wake(f);
		pthread_join(f->thread, NULL);
	}
	for (size_t i = 0; i < SLOTS; i++) {
		fetch_free(f->slot[i].fx);
		jwks_ref_put(f->slot[i].keys);
	}
	dns_resolver_destroy(f->dns);
	if (f->wake_ev != NULL)
		event_free(f->wake_ev);
	if (f->tick_ev != NULL)
		event_free(f->tick_ev);
	if (f->base != NULL)
		event_base_free(f->base);
	if (f->wake_fd >= 0)
		close(f->wake_fd);
	policy_unref(f->pending);
	policy_unref(f->latest);
	policy_unref(f->cfg);
	for (size_t i = 0; i < f->n_gate; i++)
		free(f->gate[i]);
	pthread_mutex_destroy(&f->mu);
	free(f);
}
