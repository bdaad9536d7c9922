/* One client connection: request, decision, resolution, upstream connect, relay, audit. */
#include "conn.h"
#include "conn_int.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "audit.h"
#include "dns.h"
#include "http_parse.h"
#include "kube.h"
#include "podmap.h"
#include "policy.h"
#include "server.h"
#include "srclimit.h"

/* After a refusal is flushed: how long to drain the client's input before closing. */
#define LINGER_MS 2000
/* How long a client may take to read a refusal. */
#define RESPOND_MS 5000
#define AUDIT_LINE_MAX 16384

static const char *const state_names[] = {"request", "resolving", "connecting", "hello",
					  "tunnel",  "forward",   "responding", "linger"};

static void connect_next(struct conn *c);

uint64_t conn_coarse_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

void conn_set_state(struct conn *c, enum conn_state to)
{
	/* Allowed transitions; anything else is a bug that must not pass silently. */
	static const unsigned allowed[] = {
		[CS_REQUEST] = 1u << CS_RESOLVING | 1u << CS_CONNECTING | 1u << CS_RESPONDING,
		[CS_RESOLVING] = 1u << CS_CONNECTING | 1u << CS_RESPONDING,
		[CS_CONNECTING] = 1u << CS_HELLO | 1u << CS_TUNNEL | 1u << CS_FORWARD |
				  1u << CS_RESPONDING,
		[CS_FORWARD] = 1u << CS_REQUEST | 1u << CS_RESPONDING | 1u << CS_TUNNEL,
		[CS_HELLO] = 1u << CS_TUNNEL,
		[CS_TUNNEL] = 1u << CS_HELLO, /* only before the client's first byte (peek) */
		[CS_RESPONDING] = 1u << CS_LINGER,
		[CS_LINGER] = 0,
	};
	if (!(allowed[c->state] & (1u << to))) {
		oplog("error", "impossible connection state change %s -> %s", state_names[c->state],
		      state_names[to]);
		abort();
	}
	c->state = to;
}

void conn_arm_ms(struct conn *c, uint64_t ms)
{
	struct timeval tv = {.tv_sec = (time_t)(ms / 1000), .tv_usec = (suseconds_t)(ms % 1000) * 1000};
	evtimer_add(c->timer, &tv);
}

uint32_t conn_pick(uint32_t tier_val, uint32_t global_val)
{
	return tier_val ? tier_val : global_val;
}

const struct policy_tier *conn_tier(const struct conn *c)
{
	if (c->tier < 0)
		return NULL;
	return policy_tier(c->policy, (size_t)c->tier);
}

/* ---- bytes ---- */

uint64_t conn_charge(struct conn *c, bool upload, uint64_t n, bool capped, enum reason *cut_out)
{
	const struct policy_tier *t = conn_tier(c);
	uint64_t pass = n;
	enum reason cut = R_ALLOWED;
	uint64_t cap = t == NULL || !capped ? 0 : upload ? t->upload_bytes : t->download_bytes;
	uint64_t cap_used = upload ? c->cap_up : c->cap_down;
	if (cap != 0 && cap_used + pass > cap) {
		pass = cap_used >= cap ? 0 : cap - cap_used;
		cut = upload ? R_UPLOAD_CAP : R_DOWNLOAD_CAP;
	}
	if (upload && c->slot != NULL && t != NULL && t->upload_budget_bytes != 0) {
		uint64_t ok = srclimit_charge(c->slot, pass, t->upload_budget_bytes,
					      (uint64_t)t->upload_budget_window_ms * 1000000ull,
					      mono_ns());
		if (ok < pass) {
			pass = ok;
			cut = R_SOURCE_UPLOAD_BUDGET;
		}
	}
	if (pass > n)
		pass = n; /* never more than was read */
	if (cut != R_ALLOWED && t != NULL && t->mode == TIER_AUDIT) {
		/* Audit mode: caps are recorded as would-deny, never enforced. */
		conn_would_deny(c, cut);
		pass = n;
		cut = R_ALLOWED;
	}
	if (upload) {
		c->up += pass;
		c->cap_up += capped ? pass : 0;
	} else {
		c->down += pass;
		c->cap_down += capped ? pass : 0;
	}
	metrics_add(&c->w->metrics->bytes[c->tier_slot][upload ? 0 : 1], pass);
	c->last_active = conn_coarse_ns();
	*cut_out = cut;
	return pass;
}

/* ---- audit ---- */

void conn_audit(struct conn *c, enum reason why, bool tunnel_end)
{
	if (c->audited || !c->have_request)
		return;
	c->audited = true;
	const struct policy_tier *t = conn_tier(c);
	struct audit_rec r = {
		.ts_ns = c->t0_wall,
		.duration_ns = mono_ns() - c->t0_mono,
		.tunnel_end = tunnel_end,
		.allowed = tunnel_end,
		.reason = why,
		.src = &c->src,
		.src_port = c->src_port,
		.dst_domain = c->host.kind == HOST_NAME ? c->host.name : NULL,
		.dst_ip = c->have_dst ? &c->dst : NULL,
		.dst_port = c->port,
		.method = c->method[0] ? c->method : NULL,
		.status = c->status,
		.bytes_up = c->up,
		.bytes_down = c->down,
		.rule = c->verdict.rule && c->verdict.rule[0] ? c->verdict.rule : NULL,
		.tier = t ? t->name : NULL,
		.would_deny = c->would_deny ? reason_name(c->would_deny_reason) : NULL,
	};
	if (c->tls != NULL) {
		r.sni = c->tls->sni[0] ? c->tls->sni : NULL;
		r.tls_version = c->tls->version[0] ? c->tls->version : NULL;
		r.tls_next_protocol = c->tls->alpn[0] ? c->tls->alpn : NULL;
	}
	if (c->http != NULL) {
		r.url_domain = c->host.name;
		r.url_path = forward_path(c);
		r.url_port = c->port;
	}
	if (c->host.kind != HOST_NAME && c->host.kind != 0 && !c->have_dst)
		r.dst_ip = &c->host.addr;
	if (c->pod != NULL) {
		const struct policy_kube *k = &policy_settings(c->policy)->kube;
		r.pod_ns = c->pod->ns;
		r.pod_name = c->pod->name;
		r.pod_uid = c->pod->uid;
		for (size_t i = 0; i < k->n_audit_labels && r.n_pod_labels < 8; i++) {
			const char *v = pod_info_label(c->pod, k->audit_labels[i]);
			if (v != NULL) {
				r.pod_label_keys[r.n_pod_labels] = k->audit_labels[i];
				r.pod_label_values[r.n_pod_labels++] = v;
			}
		}
	}
	/* One metric count per audit record, whether or not the writer could take it. */
	metrics_add(&c->w->metrics->conns[c->tier_slot][why][tunnel_end ? MDEC_ALLOW : MDEC_DENY], 1);
	char line[AUDIT_LINE_MAX];
	size_t n = audit_format(&r, c->w->srv->hostname, line, sizeof(line));
	/* A full queue is counted by the writer itself; count only records that did not format. */
	if (n == 0) {
		atomic_fetch_add_explicit(&c->w->stats.audit_lost, 1, memory_order_relaxed);
	} else if (audit_log_submit(c->w->srv->audit, line, n) != 0) {
		/* the writer counts the records it had no room for */
	}
}

/* ---- teardown: the one path ---- */

void conn_close(struct conn *c, enum reason why)
{
	struct worker *w = c->w;
	conn_audit(c, why, c->state == CS_TUNNEL || c->state == CS_HELLO || c->state == CS_FORWARD);
	forward_free(c);
	srclimit_release(w->srv->srclimit, c->slot);
	if (c->counted_active)
		atomic_fetch_sub_explicit(&w->metrics->tunnels_active[c->tier_slot], 1,
					  memory_order_relaxed);
	free(c->tls);
	if (c->dq != NULL)
		dns_cancel(c->dq);
	if (c->uconn_ev != NULL)
		event_free(c->uconn_ev);
	if (c->ufd >= 0)
		close(c->ufd);
	tunnel_free(c);
	if (c->ubev != NULL)
		bufferevent_free(c->ubev);
	if (c->cbev != NULL)
		bufferevent_free(c->cbev);
	if (c->timer != NULL)
		event_free(c->timer);
	free(c->addrs);
	if (c->prev != NULL)
		c->prev->next = c->next;
	else
		w->conns = c->next;
	if (c->next != NULL)
		c->next->prev = c->prev;
	w->n_conns--;
	pod_info_unref(c->pod);
	policy_unref(c->policy);
	free(c);
	atomic_fetch_sub_explicit(&w->srv->n_conns, 1, memory_order_relaxed);
	worker_conn_gone(w);
}

void conn_would_deny(struct conn *c, enum reason why)
{
	if (c->would_deny)
		return;
	c->would_deny = true;
	c->would_deny_reason = why;
}

void conn_close_all(struct worker *w)
{
	while (w->conns != NULL)
		conn_close(w->conns, R_DRAIN_TIMEOUT);
}

/* ---- refusals ---- */

static const char *status_text(int status)
{
	switch (status) {
	case 400: return "Bad Request";
	case 403: return "Forbidden";
	case 408: return "Request Timeout";
	case 414: return "URI Too Long";
	case 429: return "Too Many Requests";
	case 431: return "Request Header Fields Too Large";
	case 500: return "Internal Server Error";
	case 501: return "Not Implemented";
	case 502: return "Bad Gateway";
	case 503: return "Service Unavailable";
	case 504: return "Gateway Timeout";
	case 505: return "HTTP Version Not Supported";
	default: return "Error";
	}
}

/* RFC 9209 §2: Proxy-Status names the proxy, the error type and our reason in details. */
/* RFC 9110 §9.3.2: the answer to HEAD has the same head but no content. */
static size_t format_refusal(enum reason why, int status, uint32_t retry_after, bool head,
			     char *buf, size_t n)
{
	char retry[40] = "";
	/* RFC 9110 §10.2.3: how long to wait before trying again (429 / 503). */
	if (retry_after > 0)
		snprintf(retry, sizeof(retry), "Retry-After: %u\r\n", retry_after);
	char body[96];
	int blen = snprintf(body, sizeof(body), "portcullis refused the request: %s\n",
			    reason_name(why));
	int len = snprintf(buf, n,
			   "HTTP/1.1 %d %s\r\n"
			   "Proxy-Status: portcullis; error=%s; details=\"%s\"\r\n"
			   "%s"
			   "Content-Type: text/plain\r\n"
			   "Content-Length: %d\r\n"
			   "Connection: close\r\n"
			   "\r\n%s",
			   status, status_text(status), reason_proxy_status(why), reason_name(why), retry,
			   blen, head ? "" : body);
	return len > 0 && (size_t)len < n ? (size_t)len : 0;
}

static void linger_read_cb(struct bufferevent *bev, void *arg)
{
	struct evbuffer *in = bufferevent_get_input(bev);
	evbuffer_drain(in, evbuffer_get_length(in));
}

static void linger_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct conn *c = arg;
	conn_close(c, c->verdict.reason);
}

static void respond_write_cb(struct bufferevent *bev, void *arg)
{
	struct conn *c = arg;
	/*
	 * The refusal is flushed: shut our write side and read until the client
	 * closes (bounded), so unread request bytes do not turn into a RST that
	 * destroys the response before the client reads it.
	 */
	shutdown(bufferevent_getfd(bev), SHUT_WR);
	conn_set_state(c, CS_LINGER);
	bufferevent_setcb(bev, linger_read_cb, NULL, linger_event_cb, c);
	bufferevent_enable(bev, EV_READ);
	linger_read_cb(bev, c);
	conn_arm_ms(c, LINGER_MS);
}

static void respond_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct conn *c = arg;
	conn_close(c, c->verdict.reason);
}

/* Drop an upstream connect attempt in progress, if any. */
static void connect_abandon(struct conn *c)
{
	if (c->uconn_ev != NULL) {
		event_free(c->uconn_ev);
		c->uconn_ev = NULL;
	}
	if (c->ufd >= 0) {
		close(c->ufd);
		c->ufd = -1;
	}
}

void conn_refuse(struct conn *c, enum reason why)
{
	c->verdict.allow = false;
	c->verdict.reason = why;
	c->status = reason_http_status(why);
	if (c->dq != NULL) {
		dns_cancel(c->dq);
		c->dq = NULL;
	}
	connect_abandon(c);
	/* Every refusal the client is sent has its audit record, even with no request bytes (408). */
	c->have_request = true;
	conn_audit(c, why, false);

	char resp[512];
	size_t n = format_refusal(why, c->status, c->retry_after, strcmp(c->method, "HEAD") == 0,
				  resp, sizeof(resp));
	conn_set_state(c, CS_RESPONDING);
	bufferevent_disable(c->cbev, EV_READ);
	bufferevent_setwatermark(c->cbev, EV_WRITE, 0, 0);
	bufferevent_setcb(c->cbev, NULL, respond_write_cb, respond_event_cb, c);
	if (n == 0 || bufferevent_write(c->cbev, resp, n) != 0) {
		conn_close(c, why);
		return;
	}
	conn_arm_ms(c, RESPOND_MS);
}

/* ---- upstream connect: only vetted addresses, in order, never resolving again ---- */

static enum reason connect_errno_reason(int err)
{
	switch (err) {
	case ECONNREFUSED: return R_UPSTREAM_REFUSED;
	case ETIMEDOUT: return R_UPSTREAM_TIMEOUT;
	default: return R_UPSTREAM_UNREACHABLE;
	}
}

/* The upstream is connected: a tunnel for CONNECT, one forwarded exchange for plain HTTP. */
static void upstream_connected(struct conn *c, evutil_socket_t fd)
{
	if (c->http == NULL) {
		tunnel_start(c, fd);
		return;
	}
	c->ufd = -1;
	c->have_dst = true;
	c->dst = c->addrs[c->addr_idx];
	free(c->addrs);
	c->addrs = NULL;
	forward_start(c, fd);
}

static void connect_failed(struct conn *c, enum reason why)
{
	c->connect_fail = why;
	connect_abandon(c);
	c->addr_idx++;
	connect_next(c);
}

static void connect_ready_cb(evutil_socket_t fd, short what, void *arg)
{
	struct conn *c = arg;
	int err = 0;
	socklen_t len = sizeof(err);
	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
		err = errno;
	if (err != 0) {
		connect_failed(c, connect_errno_reason(err));
		return;
	}
	metrics_observe(&c->w->metrics->connect, mono_ns() - c->t_step);
	evtimer_del(c->timer);
	event_free(c->uconn_ev);
	c->uconn_ev = NULL;
	upstream_connected(c, fd);
}

static void connect_next(struct conn *c)
{
	const struct policy_tier *t = conn_tier(c);
	const struct policy_settings *s = policy_settings(c->policy);
	for (; c->addr_idx < c->n_addrs; c->addr_idx++) {
		const struct pc_addr *a = &c->addrs[c->addr_idx];
		struct sockaddr_storage ss;
		socklen_t sl = sockaddr_make(a, c->port, &ss);
		c->t_step = mono_ns();
		int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (fd < 0) {
			c->connect_fail = R_INTERNAL_ERROR;
			continue;
		}
		if (connect(fd, (struct sockaddr *)&ss, sl) == 0) {
			metrics_observe(&c->w->metrics->connect, mono_ns() - c->t_step);
			upstream_connected(c, fd);
			return;
		}
		if (errno != EINPROGRESS) {
			c->connect_fail = connect_errno_reason(errno);
			close(fd);
			continue;
		}
		c->ufd = fd;
		c->uconn_ev = event_new(c->w->base, fd, EV_WRITE, connect_ready_cb, c);
		if (c->uconn_ev == NULL || event_add(c->uconn_ev, NULL) != 0) {
			conn_refuse(c, R_INTERNAL_ERROR);
			return;
		}
		conn_arm_ms(c, conn_pick(t ? t->connect_timeout_ms : 0, s->connect_timeout_ms));
		return;
	}
	conn_refuse(c, c->connect_fail);
}

static void connect_start(struct conn *c, const struct pc_addr *addrs, size_t n)
{
	struct verdict v;
	policy_decide_addrs(c->policy, c->tier, addrs, n, &v);
	if (!v.allow) {
		conn_refuse(c, v.reason);
		return;
	}
	c->addrs = malloc(n * sizeof(*addrs));
	if (c->addrs == NULL) {
		conn_refuse(c, R_INTERNAL_ERROR);
		return;
	}
	memcpy(c->addrs, addrs, n * sizeof(*addrs));
	c->n_addrs = n;
	c->addr_idx = 0;
	c->connect_fail = R_UPSTREAM_UNREACHABLE;
	conn_set_state(c, CS_CONNECTING);
	connect_next(c);
}

static void dns_done(void *arg, enum dns_result res, const struct pc_addr *addrs, size_t n)
{
	struct conn *c = arg;
	struct worker_metrics *m = c->w->metrics;
	c->dq = NULL;
	metrics_observe(&m->dns, mono_ns() - c->t_step);
	switch (res) {
	case DNS_OK: break;
	case DNS_NXDOMAIN: metrics_add(&m->dns_errors[MDNS_NXDOMAIN], 1); break;
	case DNS_NODATA: metrics_add(&m->dns_errors[MDNS_NODATA], 1); break;
	case DNS_TIMEOUT: metrics_add(&m->dns_errors[MDNS_TIMEOUT], 1); break;
	default: metrics_add(&m->dns_errors[MDNS_ERROR], 1); break;
	}
	switch (res) {
	case DNS_OK: connect_start(c, addrs, n); return;
	case DNS_NXDOMAIN: conn_refuse(c, R_DNS_NXDOMAIN); return;
	case DNS_TIMEOUT: conn_refuse(c, R_DNS_TIMEOUT); return;
	case DNS_NODATA:
	case DNS_ERROR:
	default: conn_refuse(c, R_DNS_ERROR); return;
	}
}

/* ---- request ---- */

static enum reason parse_error_reason(int err)
{
	switch (err) {
	case HTTP_ERR_TOO_LARGE:
	case HTTP_ERR_LINE_TOO_LONG:
	case HTTP_ERR_TOO_MANY:
	case HTTP_ERR_URI_TOO_LONG: return R_HEADERS_TOO_LARGE;
	case HTTP_ERR_VERSION: return R_VERSION_NOT_SUPPORTED;
	default: return R_BAD_REQUEST;
	}
}

/* The metrics label slot of the connection's tier. */
static unsigned tier_slot(const struct conn *c)
{
	if (c->tier < 0)
		return 0;
	if (c->policy == c->w->policy && (size_t)c->tier < METRICS_MAX_TIERS)
		return c->w->tier_slots[c->tier];
	/* The worker adopted a newer policy since this connection was accepted. */
	return metrics_tier_slot(&c->w->srv->tiers, policy_tier(c->policy, (size_t)c->tier)->name);
}

/* Per-source concurrency and upload budget (caps). Returns false when refused. */
static bool source_limits(struct conn *c)
{
	const struct policy_tier *t = conn_tier(c);
	if (t == NULL)
		return true;
	uint32_t retry = 0;
	int r = srclimit_acquire(c->w->srv->srclimit, &c->src, t->connections_per_source,
				 t->upload_budget_bytes,
				 (uint64_t)t->upload_budget_window_ms * 1000000ull, mono_ns(), &c->slot,
				 &retry);
	if (r == SRCLIMIT_OK)
		return true;
	enum reason why = r == SRCLIMIT_CONNS    ? R_SOURCE_CONNECTION_LIMIT
			  : r == SRCLIMIT_BUDGET ? R_SOURCE_UPLOAD_BUDGET
						 : R_INTERNAL_ERROR;
	if (t->mode == TIER_AUDIT && why != R_INTERNAL_ERROR) {
		conn_would_deny(c, why);
		return true;
	}
	c->retry_after = r == SRCLIMIT_BUDGET && retry > 0 ? retry : 1;
	conn_refuse(c, why);
	return false;
}

/*
 * The tier of the client.  A pod in the Kubernetes map wins over static
 * `sources` (a pod's tier comes from its namespace or tier label, through the
 * connection's snapshot); an address the map does not hold falls back to
 * `sources`, then identity.unknown_source.  The pod is looked up once per
 * connection: a socket cannot move to another pod.
 */
static int conn_identify(struct conn *c)
{
	struct podmap *map = c->w->srv->podmap;
	if (map != NULL && c->pod == NULL)
		c->pod = podmap_lookup(map, &c->src);
	if (c->pod == NULL && map != NULL && kube_client_overflowed(c->w->srv->kube))
		return policy_settings(c->policy)->unknown_source_tier; /* maybe a pod left out */
	if (c->pod == NULL)
		return policy_identify(c->policy, &c->src);
	const char *label = policy_settings(c->policy)->kube.tier_label;
	return policy_identify_pod(c->policy, c->pod->ns,
				   label != NULL ? pod_info_label(c->pod, label) : NULL);
}

/*
 * Decide on a complete request head.  The head (head_len bytes) is drained
 * from the client input once the views in req are no longer needed; what
 * follows it stays there for the tunnel.
 */
static void handle_request(struct conn *c, const struct http_req *req, size_t head_len)
{
	size_t mlen = req->method.len < sizeof(c->method) - 1 ? req->method.len
							       : sizeof(c->method) - 1;
	memcpy(c->method, req->method.p, mlen);
	c->method[mlen] = '\0';
	c->have_request = true;
	c->t_head = mono_ns();
	c->tier = conn_identify(c);
	c->tier_slot = tier_slot(c);

	/* RFC 9112 §3.2: an HTTP/1.1 request without Host is refused (1.0 clients may omit it). */
	if (req->version_minor == 1 && !req->has_host) {
		conn_refuse(c, R_BAD_REQUEST);
		return;
	}
	if (req->method_kind != HTTP_M_CONNECT) {
		/* Plain HTTP: the absolute-form target is the only thing decided and dialled. */
		enum reason why = forward_prepare(c, req);
		if (why != R_ALLOWED) {
			conn_refuse(c, why);
			return;
		}
	} else if (req->n_content_length > 0 || req->n_transfer_encoding > 0) {
		/* RFC 9110 §9.3.6: a CONNECT request has no content. */
		conn_refuse(c, R_BAD_REQUEST);
		return;
	} else if (host_parse_authority(req->target.p, req->target.len, 0, &c->host, &c->port) !=
		   HOST_OK) {
		conn_refuse(c, R_INVALID_HOST);
		return;
	}
	policy_decide_host(c->policy, c->tier, &c->host, c->port, &c->verdict);
	if (c->verdict.would_deny)
		conn_would_deny(c, c->verdict.reason);
	if (!c->verdict.allow) {
		conn_refuse(c, c->verdict.reason);
		return;
	}
	/* Fail closed: a connection that could not be recorded does not happen. */
	if (!audit_log_available(c->w->srv->audit)) {
		conn_refuse(c, R_AUDIT_UNAVAILABLE);
		return;
	}
	if (!source_limits(c))
		return;
	evbuffer_drain(bufferevent_get_input(c->cbev), head_len);
	evtimer_del(c->timer);
	bufferevent_disable(c->cbev, EV_READ);
	bufferevent_setwatermark(c->cbev, EV_READ, 0, 0);
	if (c->host.kind != HOST_NAME) {
		connect_start(c, &c->host.addr, 1);
		return;
	}
	conn_set_state(c, CS_RESOLVING);
	/* A backstop only: the resolver enforces timeout x attempts itself. */
	const struct policy_settings *s = policy_settings(c->policy);
	uint64_t n = s->n_resolvers ? s->n_resolvers : 1;
	conn_arm_ms(c, (uint64_t)s->resolver_timeout_ms * (s->resolver_attempts + 1) * n + 1000);
	c->t_step = mono_ns();
	c->dq = dns_lookup(c->w->dns, c->host.name, dns_done, c);
	if (c->dq == NULL)
		conn_refuse(c, R_DNS_ERROR);
}

static void request_read_cb(struct bufferevent *bev, void *arg)
{
	struct conn *c = arg;
	const struct policy_settings *s = policy_settings(c->policy);
	struct http_limits lim;
	http_limits_default(&lim);
	lim.max_head_bytes = s->max_header_bytes;
	/* One long header (a JWT in Proxy-Authorization) may use the whole head budget. */
	lim.max_line_bytes = s->max_header_bytes;
	lim.max_headers = s->max_headers;

	struct evbuffer *in = bufferevent_get_input(bev);
	size_t len = evbuffer_get_length(in);
	size_t look = len < lim.max_head_bytes + 1 ? len : lim.max_head_bytes + 1;
	const char *p = (const char *)evbuffer_pullup(in, (ev_ssize_t)look);
	if (p == NULL) {
		conn_refuse(c, R_INTERNAL_ERROR);
		return;
	}
	struct http_req req;
	int r = http_parse_request(p, look, &lim, &req);
	if (r == HTTP_NEED_MORE)
		return;
	if (r < 0) {
		conn_refuse(c, parse_error_reason(r));
		return;
	}
	/* c may be gone after this call. */
	handle_request(c, &req, (size_t)r);
}

static void request_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct conn *c = arg;
	/* The client went away before a complete request: nothing was decided, nothing to audit. */
	conn_close(c, (what & BEV_EVENT_ERROR) ? R_CLIENT_ERROR : R_CLIENT_CLOSED);
}

/*
 * Keep-alive: the exchange is done and recorded; reset everything that
 * belonged to it and read the next request, which is decided on its own under
 * the worker's current policy.
 */
void conn_next_request(struct conn *c)
{
	struct worker *w = c->w;
	srclimit_release(w->srv->srclimit, c->slot);
	c->slot = NULL;
	forward_free(c);
	policy_unref(c->policy);
	c->policy = policy_ref(w->policy);
	c->have_request = c->audited = c->have_dst = c->would_deny = false;
	c->up = c->down = c->cap_up = c->cap_down = 0;
	c->status = 0;
	c->retry_after = 0;
	c->method[0] = '\0';
	c->tier = -1;
	c->tier_slot = 0;
	memset(&c->verdict, 0, sizeof(c->verdict));
	memset(&c->host, 0, sizeof(c->host));
	c->port = 0;
	c->t0_mono = mono_ns();
	c->t0_wall = wall_ns();
	conn_set_state(c, CS_REQUEST);
	const struct policy_settings *s = policy_settings(c->policy);
	bufferevent_setcb(c->cbev, request_read_cb, NULL, request_event_cb, c);
	bufferevent_setwatermark(c->cbev, EV_READ, 0, s->max_header_bytes + 1);
	bufferevent_enable(c->cbev, EV_READ);
	conn_arm_ms(c, s->header_timeout_ms);
	if (evbuffer_get_length(bufferevent_get_input(c->cbev)) > 0)
		request_read_cb(c->cbev, c); /* a pipelined request is already here */
}

/* ---- the one timer ---- */

static void timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct conn *c = arg;
	switch (c->state) {
	case CS_REQUEST: conn_refuse(c, R_REQUEST_TIMEOUT); return;
	case CS_RESOLVING: conn_refuse(c, R_DNS_TIMEOUT); return;
	case CS_CONNECTING: connect_failed(c, R_UPSTREAM_TIMEOUT); return;
	case CS_HELLO:
	case CS_FORWARD:
	case CS_TUNNEL: tunnel_timer(c); return;
	case CS_RESPONDING:
	case CS_LINGER: conn_close(c, c->verdict.reason); return;
	}
}

/* ---- accept ---- */

static void addr_from_sockaddr(const struct sockaddr *sa, struct pc_addr *a, uint16_t *port)
{
	memset(a, 0, sizeof(*a));
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)sa;
		a->family = ADDR_V4;
		memcpy(a->b, &sin->sin_addr, 4);
		*port = ntohs(sin->sin_port);
		return;
	}
	const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)sa;
	*port = ntohs(sin6->sin6_port);
	static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
	if (memcmp(&sin6->sin6_addr, mapped, 12) == 0) {
		/* A dual-stack listener: the client is an IPv4 address. */
		a->family = ADDR_V4;
		memcpy(a->b, (const uint8_t *)&sin6->sin6_addr + 12, 4);
		return;
	}
	a->family = ADDR_V6;
	memcpy(a->b, &sin6->sin6_addr, 16);
}

/* Refuse before a connection object exists (limits, out of memory), with its audit record. */
static void refuse_raw(struct worker *w, evutil_socket_t fd, const struct sockaddr *sa,
		       enum reason why)
{
	struct pc_addr src;
	uint16_t src_port;
	addr_from_sockaddr(sa, &src, &src_port);
	struct audit_rec r = {
		.ts_ns = wall_ns(),
		.reason = why,
		.src = &src,
		.src_port = src_port,
		.status = reason_http_status(why),
	};
	metrics_add(&w->metrics->conns[0][why][MDEC_DENY], 1);
	char line[AUDIT_LINE_MAX];
	size_t len = audit_format(&r, w->srv->hostname, line, sizeof(line));
	if (len == 0) {
		atomic_fetch_add_explicit(&w->stats.audit_lost, 1, memory_order_relaxed);
	} else if (audit_log_submit(w->srv->audit, line, len) != 0) {
		/* the writer counts the records it had no room for */
	}
	char resp[512];
	size_t n = format_refusal(why, reason_http_status(why), why == R_CONNECTION_LIMIT ? 1 : 0, false,
				  resp, sizeof(resp));
	/* Best effort, non-blocking: the socket is fresh so the send buffer is empty. */
	if (n > 0 && send(fd, resp, n, MSG_NOSIGNAL | MSG_DONTWAIT) < 0)
		(void)0;
	close(fd);
}

void conn_accept(struct worker *w, evutil_socket_t fd, const struct sockaddr *sa, int salen)
{
	struct server *srv = w->srv;
	const struct policy_settings *s = policy_settings(w->policy);
	unsigned open = atomic_fetch_add_explicit(&srv->n_conns, 1, memory_order_relaxed);
	if (open >= s->max_connections) {
		atomic_fetch_sub_explicit(&srv->n_conns, 1, memory_order_relaxed);
		refuse_raw(w, fd, sa, R_CONNECTION_LIMIT);
		return;
	}
	struct conn *c = calloc(1, sizeof(*c));
	if (c == NULL) {
		atomic_fetch_sub_explicit(&srv->n_conns, 1, memory_order_relaxed);
		refuse_raw(w, fd, sa, R_INTERNAL_ERROR);
		return;
	}
	c->w = w;
	c->policy = policy_ref(w->policy);
	c->ufd = -1;
	c->tier = -1;
	c->t0_mono = mono_ns();
	c->t0_wall = wall_ns();
	addr_from_sockaddr(sa, &c->src, &c->src_port);
	c->next = w->conns;
	if (w->conns != NULL)
		w->conns->prev = c;
	w->conns = c;
	w->n_conns++;

	/* evconnlistener accept4()s with SOCK_NONBLOCK, and TCP_NODELAY comes from the listener. */
	c->cbev = bufferevent_socket_new(w->base, fd, BEV_OPT_CLOSE_ON_FREE);
	c->timer = evtimer_new(w->base, timer_cb, c);
	if (c->cbev == NULL || c->timer == NULL) {
		if (c->cbev == NULL)
			close(fd);
		conn_close(c, R_INTERNAL_ERROR);
		return;
	}
	bufferevent_setcb(c->cbev, request_read_cb, NULL, request_event_cb, c);
	/* Never buffer more of a request head than the limit allows (+1 to detect overflow). */
	bufferevent_setwatermark(c->cbev, EV_READ, 0, s->max_header_bytes + 1);
	/* EV_WRITE is enabled from creation; enabling it again would poll an empty output. */
	bufferevent_enable(c->cbev, EV_READ);
	conn_arm_ms(c, s->header_timeout_ms);
	(void)salen;

	/*
	 * The request head usually arrives right behind the handshake: read what
	 * is there now.  A complete head is decided in this loop pass, and the
	 * read event enabled above never reaches the kernel (the changelist folds
	 * it and the disable that follows into no epoll_ctl).  Nothing there or an
	 * EOF: the read event reports it as for any later read.  An error is
	 * handled here, as the read event would (recv has consumed it).
	 */
	size_t want = (size_t)s->max_header_bytes + 1;
	ssize_t n = recv(fd, w->relay_buf, want < WORKER_RELAY_BUF ? want : WORKER_RELAY_BUF, 0);
	if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
		conn_close(c, R_CLIENT_ERROR); /* before a request: nothing to audit */
		return;
	}
	if (n <= 0)
		return;
	struct evbuffer *in = bufferevent_get_input(c->cbev);
	/* A socket bufferevent's input is frozen at its end outside its own reads. */
	evbuffer_unfreeze(in, 0);
	int added = evbuffer_add(in, w->relay_buf, (size_t)n);
	evbuffer_freeze(in, 0);
	if (added != 0) {
		conn_close(c, R_INTERNAL_ERROR);
		return;
	}
	request_read_cb(c->cbev, c); /* c may be gone after this call */
}
