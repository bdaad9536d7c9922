/* The connection core: states, the timer, identity and the slot, decisions, bytes, ending. */
#include "conn.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "audit.h"
#include "certid.h"
#include "clock.h"
#include "hash.h"
#include "kube.h"
#include "linger.h"
#include "oidc.h"
#include "oplog.h"
#include "podmap.h"
#include "refusal.h"
#include "sockaddr.h"
#include "srclimit.h"
#include "transport.h"

/* How long what was let through may take to reach the peers before the close (CS_FINISHING). */
#define FINISH_MS 5000
/* After the last byte to a client: how long to discard its input before closing (linger.h). */
#define LINGER_MS 2000
/* Client sockets lingering at once, per worker; beyond it the oldest is closed. */
#define LINGER_MAX 4096
/* The idle / lifetime deadline is never re-armed for less (the coarse clock's tick). */
#define ACTIVITY_SLACK_MS 10

static const char *const state_names[CS__COUNT] = {
    "proxy_header",       "request",          "resolving", "connecting", "hello",
    "server_hello",       "hello_retry",      "tunnel",    "forward",    "upgrading",
    "intercept_upstream", "intercept_client", "finishing", "closed",
};

#define BIT(s) (1u << (s))
/* Every transition a phase may make; anything else is a bug that must not pass silently. */
static const unsigned transitions[CS__COUNT] = {
    [CS_PROXY_HEADER] = BIT(CS_REQUEST) | BIT(CS_FINISHING),
    /* FORWARD: a request inside an intercepted tunnel goes out on its upstream */
    [CS_REQUEST] = BIT(CS_RESOLVING) | BIT(CS_CONNECTING) | BIT(CS_FORWARD) | BIT(CS_FINISHING),
    [CS_RESOLVING] = BIT(CS_CONNECTING) | BIT(CS_FINISHING),
    [CS_CONNECTING] = BIT(CS_HELLO) | BIT(CS_FORWARD) | BIT(CS_ICPT_UPSTREAM) | BIT(CS_FINISHING),
    [CS_HELLO] = BIT(CS_SERVER_HELLO) | BIT(CS_TUNNEL) | BIT(CS_FINISHING),
    [CS_SERVER_HELLO] = BIT(CS_TUNNEL) | BIT(CS_HELLO_RETRY) | BIT(CS_FINISHING),
    [CS_HELLO_RETRY] = BIT(CS_SERVER_HELLO) | BIT(CS_TUNNEL) | BIT(CS_FINISHING),
    [CS_TUNNEL] = BIT(CS_HELLO) | BIT(CS_FINISHING), /* HELLO: the first client byte was 0x16 */
    [CS_FORWARD] = BIT(CS_REQUEST) | BIT(CS_UPGRADING) | BIT(CS_FINISHING),
    [CS_UPGRADING] = BIT(CS_TUNNEL) | BIT(CS_FINISHING),
    [CS_ICPT_UPSTREAM] = BIT(CS_ICPT_CLIENT) | BIT(CS_FINISHING),
    [CS_ICPT_CLIENT] = BIT(CS_REQUEST) | BIT(CS_FINISHING),
    [CS_FINISHING] = 0,
    [CS_CLOSED] = 0,
};

static void set_state(struct conn *c, enum conn_state to)
{
	if (!(transitions[c->state] & BIT(to))) {
		oplog("error", "impossible connection state change %s -> %s", state_names[c->state],
		      state_names[to]);
		abort();
	}
	c->state = to;
}

void conn_enter(struct conn *c, enum conn_state to)
{
	set_state(c, to);
	conn_phases[to]->enter(c);
}

/* ---- the environment ---- */

static void reap_cb(evutil_socket_t fd, short what, void *arg)
{
	struct conn_env *env = arg;
	while (env->reap != NULL) {
		struct conn *c = env->reap;
		env->reap = c->next;
		free(c);
	}
}

int conn_env_init(struct conn_env *env, struct event_base *base)
{
	env->base = base;
	env->reap_ev = event_new(base, -1, 0, reap_cb, env);
	env->linger = linger_pool_create(base, LINGER_MAX);
	if (env->reap_ev == NULL || env->linger == NULL)
		return -1;
	return conn_audit_init(env); /* on failure conn_env_fini frees what it made */
}

void conn_env_fini(struct conn_env *env)
{
	conn_close_all(env);
	reap_cb(-1, 0, env);
	conn_audit_fini(env);
	if (env->reap_ev != NULL)
		event_free(env->reap_ev);
	linger_pool_destroy(env->linger);
	policy_unref(atomic_exchange(&env->next, NULL));
	policy_unref(env->policy);
	env->policy = NULL;
}

void conn_env_adopt(struct conn_env *env, struct policy *p)
{
	for (size_t i = 0; i < policy_tier_count(p) && i < METRICS_MAX_TIERS; i++)
		env->tier_slots[i] =
		    (uint16_t)metrics_tier_slot(env->tiers, policy_tier(p, i)->name);
	policy_unref(env->policy);
	env->policy = p;
}

void conn_env_refresh(struct conn_env *env)
{
	/* One relaxed load per request while nothing waits; a reload is taken at once. */
	if (atomic_load_explicit(&env->next, memory_order_relaxed) == NULL)
		return;
	struct policy *p = atomic_exchange(&env->next, NULL);
	if (p != NULL)
		conn_env_adopt(env, p);
}

/* ---- small helpers ---- */

void conn_arm_ms(struct conn *c, uint64_t ms)
{
	struct timeval tv = {.tv_sec = (time_t)(ms / 1000),
	                     .tv_usec = (suseconds_t)(ms % 1000) * 1000};
	evtimer_add(c->timer, &tv);
}

void conn_disarm(struct conn *c)
{
	evtimer_del(c->timer);
}

uint64_t conn_idle_left_ns(const struct conn *c)
{
	const struct policy_tier *t = conn_tier(c);
	uint64_t idle = (uint64_t)conn_pick(t ? t->idle_timeout_ms : 0,
	                                    policy_settings(c->policy)->idle_timeout_ms) *
	                1000000ull;
	uint64_t now = coarse_ns();
	return c->last_active + idle > now ? c->last_active + idle - now : 0;
}

void conn_arm_activity(struct conn *c)
{
	const struct policy_tier *t = conn_tier(c);
	const struct policy_settings *s = policy_settings(c->policy);
	uint64_t life =
	    (uint64_t)conn_pick(t ? t->max_lifetime_ms : 0, s->max_lifetime_ms) * 1000000ull;
	uint64_t idle_left = conn_idle_left_ns(c);
	uint64_t now_fine = mono_ns();
	uint64_t life_end = c->t0_mono + life;
	uint64_t life_left = life_end > now_fine ? life_end - now_fine : 0;
	if (life_left == 0) {
		conn_close(c, R_MAX_LIFETIME);
		return;
	}
	if (idle_left == 0) {
		conn_close(c, R_IDLE_TIMEOUT);
		return;
	}
	uint64_t left = idle_left < life_left ? idle_left : life_left;
	if (c->interim_next != 0) {
		uint64_t interim_left = conn_audit_interim(c, now_fine);
		if (interim_left < left)
			left = interim_left;
	}
	conn_arm_ms(c, left / 1000000ull + ACTIVITY_SLACK_MS);
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

bool conn_audit_mode(const struct conn *c)
{
	const struct policy_tier *t = conn_tier(c);
	return t != NULL && t->mode == TIER_AUDIT;
}

bool conn_tls_port(const struct conn *c, uint16_t port)
{
	const struct policy_tier *t = conn_tier(c);
	for (size_t i = 0; t != NULL && i < t->n_tls_ports; i++)
		if (t->tls_ports[i] == port)
			return true;
	return false;
}

int conn_buffered(struct conn *c)
{
	if (c->cbev == NULL && c->client != NULL)
		c->cbev = transport_buffered(c->client, c->env->base);
	if (c->ubev == NULL && c->upstream != NULL)
		c->ubev = transport_buffered(c->upstream, c->env->base);
	return (c->client == NULL || c->cbev != NULL) && (c->upstream == NULL || c->ubev != NULL)
	           ? 0
	           : -1;
}

void conn_unbuffered(struct conn *c)
{
	transport_unbuffer(c->client, c->cbev);
	transport_unbuffer(c->upstream, c->ubev);
	c->cbev = c->ubev = NULL;
}

void conn_upstream_done(struct conn *c)
{
	transport_unbuffer(c->upstream, c->ubev);
	c->ubev = NULL;
	transport_destroy(c->upstream);
	c->upstream = NULL;
}

int conn_push_input(struct bufferevent *bev, const void *p, size_t n)
{
	struct evbuffer *in = bufferevent_get_input(bev);
	/* A socket bufferevent's input is frozen at its end outside its own reads. */
	evbuffer_unfreeze(in, 0);
	int rc = evbuffer_add(in, p, n);
	evbuffer_freeze(in, 0);
	return rc;
}

/* ---- the one timer ---- */

static void timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct conn *c = arg;
	if (c->state == CS_FINISHING) {
		conn_close(c, c->finish_reason); /* what was let through did not get out in time */
		return;
	}
	conn_phases[c->state]->timeout(c);
}

/* ---- identity: the tier, from the pod map or the static sources ---- */

static const struct policy *listener_policy(const struct conn_env *env, size_t i, size_t *entry);

/* listen.proxy[i].auth of the connection's listener, as listener_policy finds it (TLS: off). */
static enum policy_auth listener_auth(const struct conn *c)
{
	if (c->listener == CONN_LISTENER_TLS)
		return POLICY_AUTH_OFF;
	size_t entry;
	const struct policy *lp = listener_policy(c->env, c->listener, &entry);
	return policy_settings(lp)->listen_auth[entry];
}

/*
 * 0. (identify's first step after a refused certificate) the OIDC token on a
 * listener with auth: its tier, a refusal (*why), or -1 with R_ALLOWED when
 * the other identities decide (no token on an optional listener; no rule
 * matched with no_match: source).  The result stays on c for the record.
 */
static int identify_oidc(struct conn *c, const struct policy *p,
                         const struct conn_credentials *cred, enum reason *why)
{
	enum policy_auth auth = listener_auth(c);
	if (auth == POLICY_AUTH_OFF)
		return -1;
	if (c->oidc == NULL && (c->oidc = malloc(sizeof(*c->oidc))) == NULL) {
		*why = R_INTERNAL_ERROR;
		return -1;
	}
	if (cred->repeated) {
		memset(c->oidc, 0, sizeof(*c->oidc));
		*why = R_OIDC_BAD_CREDENTIALS;
		return -1;
	}
	*why = oidc_identify(p, c->env->oidc, auth, cred->present, cred->value, cred->len, &c->src,
	                     c->env->podmap, c->pod != NULL ? c->pod->uid : NULL,
	                     (int64_t)(wall_ns() / 1000000000u), c->oidc);
	return *why == R_ALLOWED ? c->oidc->tier : -1;
}

/*
 * Identity, strongest first, in this one place (docs/tls-listener.md, docs/oidc.md):
 *  0. a certificate that was sent and does not verify is refused first; then on
 *     a listener with auth, the request's OIDC token (identify_oidc): its tier,
 *     its refusal, or (no token on an optional listener, no rule matched with
 *     no_match: source) on to 1;
 *  1. a client certificate on a TLS listener that asks for one: its tier by
 *     identity.client_certs, else a refusal (*why) - a certificate that was
 *     sent is never passed over for the source address; none sent with
 *     client_certs: request goes on to 2;
 *  2. a pod in the Kubernetes map (its tier from its namespace or tier label,
 *     through the snapshot p);
 *  3. static `sources`, then identity.unknown_source.
 * At accept the handshake has not happened: the source alone decides the
 * per-source slot's tier.
 */
static int identify(struct conn *c, const struct policy *p, const struct conn_credentials *cred,
                    enum reason *why)
{
	struct conn_env *env = c->env;
	*why = R_ALLOWED;
	if (c->peer != NULL && c->peer->refusal != R_ALLOWED) {
		*why = c->peer->refusal;
		return -1;
	}
	if (cred != NULL) {
		int t = identify_oidc(c, p, cred, why);
		if (t >= 0 || *why != R_ALLOWED)
			return t;
	}
	if (c->peer != NULL && c->peer->present) {
		const char *rule;
		int t = policy_identify_cert(p, &c->peer->id, &rule);
		if (t < 0)
			*why = R_CLIENT_CERT_NO_MATCH;
		return t;
	}
	if (c->pod == NULL && env->podmap != NULL && kube_client_overflowed(env->kube))
		return policy_settings(p)->unknown_source_tier; /* maybe a pod left out */
	if (c->pod == NULL)
		return policy_identify(p, &c->src);
	const char *label = policy_settings(p)->kube.tier_label;
	return policy_identify_pod(p, c->pod->ns,
	                           label != NULL ? pod_info_label(c->pod, label) : NULL);
}

/* The metrics label slot of the connection's tier. */
static unsigned tier_slot(const struct conn *c)
{
	if (c->tier < 0)
		return 0;
	if (c->policy == c->env->policy && (size_t)c->tier < METRICS_MAX_TIERS)
		return c->env->tier_slots[c->tier];
	return metrics_tier_slot(c->env->tiers, policy_tier(c->policy, (size_t)c->tier)->name);
}

void conn_would_deny(struct conn *c, enum reason why)
{
	if (c->would_deny)
		return;
	c->would_deny = true;
	c->would_deny_reason = why;
}

/* A TLS listener's client certificate, read once after the handshake. */
static enum reason read_peer(struct conn *c)
{
	void *ssl = transport_tls_session(c->client);
	if (c->peer != NULL || ssl == NULL || transport_handshaking(c->client))
		return R_ALLOWED;
	bool nomem;
	c->peer = certid_read(ssl, &nomem);
	return nomem ? R_INTERNAL_ERROR : R_ALLOWED;
}

enum reason conn_decide_begin(struct conn *c, const char *method, size_t method_len,
                              const struct conn_credentials *cred)
{
	struct conn_env *env = c->env;
	conn_env_refresh(env);
	if (c->policy != env->policy) {
		policy_unref(c->policy);
		c->policy = policy_ref(env->policy);
	}
	size_t n = method_len < sizeof(c->method) - 1 ? method_len : sizeof(c->method) - 1;
	memcpy(c->method, method, n);
	c->method[n] = '\0';
	c->have_request = true;
	c->t_head = mono_ns();
	enum reason why = read_peer(c);
	if (why != R_ALLOWED)
		return why;
	c->tier = identify(c, c->policy, cred, &why);
	c->tier_slot = tier_slot(c);
	if (c->over_source_limit)
		conn_would_deny(c, R_SOURCE_CONNECTION_LIMIT);
	return why;
}

enum reason conn_admit(struct conn *c, bool plain)
{
	policy_decide_host(c->policy, c->tier, &c->host, c->port, &c->verdict);
	if (c->verdict.would_deny)
		conn_would_deny(c, c->verdict.reason);
	if (!c->verdict.allow)
		return c->verdict.reason;
	const struct policy_tier *t = conn_tier(c);
	if (t == NULL)
		return R_UNKNOWN_SOURCE; /* a backstop: the host decision refuses it first */
	/* A TLS port carries TLS only, and only a CONNECT gets its ClientHello checked. */
	if (plain && conn_tls_port(c, c->port)) {
		if (t->mode != TIER_AUDIT)
			return R_TLS_REQUIRED;
		conn_would_deny(c, R_TLS_REQUIRED);
	}
	/* Fail closed: an exchange that could not be recorded does not happen, and one that
	 * does has room for its record however full the queue gets meanwhile. */
	if (!conn_audit_reserve(c))
		return R_AUDIT_UNAVAILABLE;
	uint32_t retry = 0;
	if (srclimit_budget_check(c->slot, t->upload_budget_bytes, mono_ns(), &retry) !=
	    SRCLIMIT_OK) {
		if (t->mode != TIER_AUDIT) {
			c->retry_after = retry;
			return R_SOURCE_UPLOAD_BUDGET;
		}
		conn_would_deny(c, R_SOURCE_UPLOAD_BUDGET);
	}
	return R_ALLOWED;
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
	if (upload && t != NULL && t->upload_budget_bytes != 0) {
		uint64_t ok =
		    srclimit_charge(c->slot, pass, t->upload_budget_bytes,
		                    (uint64_t)t->upload_budget_window_ms * 1000000ull, mono_ns());
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
	metrics_add(&c->env->metrics->bytes[c->tier_slot][upload ? 0 : 1], pass);
	c->last_active = coarse_ns();
	*cut_out = cut;
	return pass;
}

bool conn_charge_whole(struct conn *c, bool upload, uint64_t n, bool capped, enum reason *cut)
{
	uint64_t pass = conn_charge(c, upload, n, capped, cut);
	if (*cut == R_ALLOWED)
		return true;
	/* None of it goes: the counters say what moved (the budget keeps the charge). */
	if (upload) {
		c->up -= pass;
		c->cap_up -= capped ? pass : 0;
	} else {
		c->down -= pass;
		c->cap_down -= capped ? pass : 0;
	}
	return false;
}

/* ---- ending ---- */

/* Free every phase's private state (each release is idempotent). */
static void release_phases(struct conn *c)
{
	for (int s = 0; s < CS__COUNT; s++)
		if (conn_phases[s] != NULL && conn_phases[s]->release != NULL)
			conn_phases[s]->release(c);
}

static void end(struct conn *c, enum reason why, bool linger)
{
	struct conn_env *env = c->env;
	if (c->state == CS_CLOSED)
		return;
	conn_audit(c, why, c->have_dst);
	audit_log_unreserve(env->audit, c->audit_reserved); /* an exchange that had no record */
	c->audit_reserved = 0;
	release_phases(c);
	srclimit_release(env->srclimit, c->slot);
	c->slot = NULL;
	if (c->counted_active)
		atomic_fetch_sub_explicit(&env->metrics->tunnels_active[c->tier_slot], 1,
		                          memory_order_relaxed);
	free(c->tls);
	c->tls = NULL;
	free(c->url_path);
	c->url_path = NULL;
	free(c->user_agent);
	c->user_agent = NULL;
	free(c->oidc);
	c->oidc = NULL;
	conn_unbuffered(c);
	if (c->timer != NULL)
		event_free(c->timer);
	c->timer = NULL;
	if (c->reset_upstream)
		transport_reset(c->upstream);
	else
		transport_destroy(c->upstream);
	c->upstream = NULL;
	if (linger && c->client != NULL)
		linger_add(env->linger, transport_release(c->client), LINGER_MS);
	else
		transport_destroy(c->client);
	c->client = NULL;
	if (c->prev != NULL)
		c->prev->next = c->next;
	else
		env->conns = c->next;
	if (c->next != NULL)
		c->next->prev = c->prev;
	env->n_conns--;
	atomic_fetch_sub_explicit(env->n_open, 1, memory_order_relaxed);
	pod_info_unref(c->pod);
	c->pod = NULL;
	free(c->via);
	c->via = NULL;
	certid_free(c->peer);
	c->peer = NULL;
	policy_unref(c->policy);
	c->policy = NULL;
	/* Freed when the loop iteration unwinds: callers up the stack may still look at c. */
	c->state = CS_CLOSED;
	c->next = env->reap;
	env->reap = c;
	event_active(env->reap_ev, EV_TIMEOUT, 0);
	if (env->n_conns == 0 && env->on_last_close != NULL)
		env->on_last_close(env->on_last_close_arg);
}

void conn_close(struct conn *c, enum reason why)
{
	end(c, why, false);
}

void conn_close_all(struct conn_env *env)
{
	while (env->conns != NULL)
		conn_close(env->conns, R_DRAIN_TIMEOUT);
}

/* CS_FINISHING: close the upstream once its output is out; close when the client's is. */
static void finish_check(struct conn *c)
{
	if (c->ubev != NULL && evbuffer_get_length(bufferevent_get_output(c->ubev)) == 0) {
		transport_unbuffer(c->upstream, c->ubev);
		c->ubev = NULL;
		transport_destroy(c->upstream);
		c->upstream = NULL;
	}
	if (c->upstream == NULL && evbuffer_get_length(bufferevent_get_output(c->cbev)) == 0)
		end(c, c->finish_reason, true);
}

static void finish_write_cb(struct bufferevent *bev, void *arg)
{
	finish_check(arg);
}

static void finish_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct conn *c = arg;
	if (what == BEV_EVENT_CONNECTED)
		return; /* a TLS listener's handshake completed: the refusal is still to be written */
	if (bev == c->cbev) {
		conn_close(c, c->finish_reason); /* the client went away: nothing left to deliver */
		return;
	}
	evbuffer_drain(bufferevent_get_output(bev),
	               evbuffer_get_length(bufferevent_get_output(bev)));
	finish_check(c);
}

static void finish_side(struct conn *c, struct bufferevent *bev)
{
	struct evbuffer *in = bufferevent_get_input(bev);
	bufferevent_disable(bev, EV_READ);
	evbuffer_drain(in, evbuffer_get_length(in));
	bufferevent_setwatermark(bev, EV_WRITE, 0, 0);
	bufferevent_setcb(bev, NULL, finish_write_cb, finish_event_cb, c);
	bufferevent_enable(bev, EV_WRITE);
}

void conn_finish(struct conn *c, enum reason why)
{
	if (c->state == CS_FINISHING || c->state == CS_CLOSED)
		return;
	const struct conn_phase *ph = conn_phases[c->state];
	set_state(c, CS_FINISHING);
	c->finish_reason = why;
	if (ph->finish != NULL)
		ph->finish(
		    c); /* the phase hands over what it holds for sending, cancels the rest */
	if (c->state == CS_CLOSED)
		return;
	if (c->reset_upstream && c->upstream != NULL) {
		/* A refusal after 200: the upstream gets nothing more, and a reset. */
		transport_unbuffer(c->upstream, c->ubev);
		c->ubev = NULL;
		transport_reset(c->upstream);
		c->upstream = NULL;
	}
	if (conn_buffered(c) != 0) {
		conn_close(c, R_INTERNAL_ERROR);
		return;
	}
	finish_side(c, c->cbev);
	if (c->ubev != NULL)
		finish_side(c, c->ubev);
	conn_arm_ms(c, FINISH_MS);
	finish_check(c);
}

void conn_refuse(struct conn *c, enum reason why)
{
	if (c->state == CS_FINISHING || c->state == CS_CLOSED)
		return; /* already ending: nothing more goes to the client */
	c->verdict.allow = false;
	c->verdict.reason = why;
	c->status = reason_http_status(why);
	/* Every refusal the client is sent has its record, even with no request bytes (408). */
	c->have_request = true;
	conn_audit(c, why, false);
	char resp[512];
	size_t n = refusal_format(why, c->status, c->retry_after,
	                          strcasecmp(c->method, "HEAD") == 0, resp, sizeof(resp));
	if (n == 0 || conn_buffered(c) != 0 || bufferevent_write(c->cbev, resp, n) != 0) {
		conn_close(c, why);
		return;
	}
	conn_finish(c, why);
}

void conn_cut(struct conn *c, enum reason why)
{
	if (c->state == CS_FINISHING || c->state == CS_CLOSED)
		return;
	c->verdict.allow = false;
	c->verdict.reason = why;
	conn_audit(c, why, false);
	c->reset_upstream = true;
	conn_finish(c, why);
}

/* ---- keep-alive ---- */

void conn_next_exchange(struct conn *c)
{
	c->have_request = c->audited = c->have_dst = c->would_deny = c->plain = false;
	c->up = c->down = c->cap_up = c->cap_down = 0;
	c->status = 0;
	c->retry_after = 0;
	c->method[0] = '\0';
	c->tier = -1;
	c->tier_slot = 0;
	memset(&c->verdict, 0, sizeof(c->verdict));
	memset(&c->host, 0, sizeof(c->host));
	c->port = 0;
	free(c->url_path);
	c->url_path = NULL;
	free(c->user_agent);
	c->user_agent = NULL;
	free(c->oidc); /* the next request's token is its own */
	c->oidc = NULL;
	c->interim_next = 0;
	free(c->tls);
	c->tls = NULL;
	c->t0_mono = mono_ns();
	c->t0_wall = wall_ns();
	conn_enter(c, CS_REQUEST);
}

/* ---- accept: the slot and the identity, once per connection ---- */

/*
 * Refuse before a connection object exists (process limit, out of memory), with a record.
 * A TLS listener's client gets no status: it expects a handshake, not plain text.
 */
static void refuse_raw(struct conn_env *env, evutil_socket_t fd, const struct sockaddr *sa,
                       enum reason why, bool tls)
{
	conn_audit_raw(env, sa, why);
	if (tls) {
		close(fd);
		return;
	}
	char resp[512];
	size_t n = refusal_format(why, reason_http_status(why), why == R_CONNECTION_LIMIT ? 1 : 0,
	                          false, resp, sizeof(resp));
	/* Best effort, non-blocking: the socket is fresh so the send buffer is empty. */
	if (n > 0 && send(fd, resp, n, MSG_NOSIGNAL | MSG_DONTWAIT) < 0)
		(void)0;
	close(fd);
}

/*
 * What one source is for the per-source limits: a pod of the Kubernetes map
 * is itself, whatever addresses it has (two pods that share a /64 are two
 * sources); any other source is its address group (addr_source_group) within
 * its tier, so that a group holding sources of two tiers counts them apart.
 */
static void source_key(const struct conn *c, const struct policy_tier *t, struct pc_addr *k)
{
	memset(k, 0, sizeof(*k));
	if (c->pod != NULL) {
		size_t n = strlen(c->pod->uid);
		uint64_t h[2] = {hash_bytes(0x706f64, c->pod->uid, n),
		                 hash_bytes(0x756964, c->pod->uid, n)};
		k->family = SRCLIMIT_KEY_POD;
		memcpy(k->b, h, sizeof(h));
		return;
	}
	unsigned prefix = c->env->v6_prefix;
	addr_source_group(&c->src, prefix, k);
	if (k->family != ADDR_V6 || prefix >= 128)
		return; /* one address: one tier (tiers' sources never overlap) */
	const char *tier = t != NULL ? t->name : "";
	uint64_t h = hash_bytes(0x74696572, tier, strlen(tier));
	for (unsigned i = (prefix + 7) / 8; i < 16; i++) /* the host bits, zero until now */
		k->b[i] = (uint8_t)(h >> (8 * (i % 8)));
}

/*
 * The per-source hold: taken here, held across keep-alive until the close,
 * so idle connections, slow heads and idle keep-alive connections all count
 * against caps.connections_per_source of the tier the source has now (an
 * unknown source: the top-level value).  False: refused (c is finishing).
 */
static bool take_slot(struct conn *c)
{
	const struct policy_tier *t = conn_tier(c);
	uint32_t max = t != NULL ? t->connections_per_source
	                         : policy_settings(c->policy)->unknown_connections_per_source;
	uint32_t retry = 0;
	struct pc_addr group;
	source_key(c, t, &group);
	int r = srclimit_acquire(c->env->srclimit, &group, max, 0, 0, mono_ns(), &c->slot, &retry);
	if (r == SRCLIMIT_CONNS && t != NULL && t->mode == TIER_AUDIT) {
		/* Audit mode: admitted, and every exchange records the would-deny. */
		c->over_source_limit = true;
		r = srclimit_acquire(c->env->srclimit, &group, 0, 0, 0, mono_ns(), &c->slot,
		                     &retry);
	}
	if (r == SRCLIMIT_OK)
		return true;
	c->retry_after = 1;
	conn_refuse(c, r == SRCLIMIT_CONNS  ? R_SOURCE_CONNECTION_LIMIT
	               : r == SRCLIMIT_FULL ? R_SOURCE_TABLE_FULL
	                                    : R_INTERNAL_ERROR);
	return false;
}

/*
 * How listener i works (its proxy_protocol): the current snapshot's entry for
 * the address it is bound to, so that trusted CIDRs and modes reload; the
 * snapshot it was bound under when a reload dropped or moved that address
 * (listen.proxy itself is fixed until restart).  *entry: the entry's index.
 */
static const struct policy *listener_policy(const struct conn_env *env, size_t i, size_t *entry)
{
	const struct policy_settings *b = policy_settings(env->bound);
	const struct policy_settings *s = policy_settings(env->policy);
	*entry = i;
	if (i >= b->n_listen_proxy)
		return env->bound; /* impossible: the worker binds b's addresses */
	for (size_t j = 0; j < s->n_listen_proxy; j++) {
		if (s->listen_proxy[j].port == b->listen_proxy[i].port &&
		    addr_equal(&s->listen_proxy[j].addr, &b->listen_proxy[i].addr)) {
			*entry = j;
			return env->policy;
		}
	}
	return env->bound;
}

/*
 * A header took time to come: is its sender still a trusted balancer under the
 * policy current now?  And a pod is never one: a pod that could reach a PROXY
 * listener and were trusted (a CIDR that covers pods) would choose its own
 * source.  False: refused.
 */
static bool balancer_still_trusted(struct conn *c)
{
	struct conn_env *env = c->env;
	size_t entry;
	const struct policy *lp = listener_policy(env, c->via->listener, &entry);
	if (policy_settings(lp)->listen_pp[entry].accept == 0 ||
	    !policy_listen_trusted(lp, entry, &c->via->peer))
		return false;
	if (env->podmap != NULL) {
		struct pod_info *pod = podmap_lookup(env->podmap, &c->via->peer);
		pod_info_unref(pod);
		if (pod != NULL)
			return false;
	}
	return true;
}

void conn_start(struct conn *c)
{
	struct conn_env *env = c->env;
	if (conn_buffered(c) != 0) {
		conn_close(c, R_INTERNAL_ERROR);
		return;
	}
	/* Limits and identity under the policy current now (a header may have taken a while). */
	conn_env_refresh(env);
	if (c->policy != env->policy) {
		policy_unref(c->policy);
		c->policy = policy_ref(env->policy);
	}
	if (c->via != NULL && !balancer_still_trusted(c)) {
		/* Its header counts for nothing: the record names the peer itself. */
		c->src = c->via->peer;
		c->src_port = c->via->peer_port;
		c->via->proxied = false;
		c->via->vpce[0] = '\0';
		conn_refuse(c, R_PROXY_UNTRUSTED_PEER);
		return;
	}
	/* A socket cannot move to another pod: looked up once. */
	if (env->podmap != NULL)
		c->pod = podmap_lookup(env->podmap, &c->src);
	enum reason unused;
	c->tier = identify(c, c->policy, NULL, &unused); /* the slot's tier: no request yet */
	c->tier_slot = tier_slot(c);
	if (!take_slot(c))
		return;
	c->tier = -1; /* each request is identified under the policy current then */
	c->tier_slot = 0;
	if (c->state == CS_REQUEST)
		conn_phases[CS_REQUEST]->enter(c); /* straight from accept */
	else
		conn_enter(c, CS_REQUEST);
}

/* network.community_id of the client's flow: its address and port to the listener's. */
static void flow_id(struct conn *c, evutil_socket_t fd, const struct conn_local *known)
{
	struct pc_addr local;
	uint16_t lport;
	c->community_id[0] = '\0';
	if (known != NULL) {
		local = known->addr;
		lport = known->port;
	} else {
		struct sockaddr_storage ss;
		socklen_t len = sizeof(ss);
		if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0)
			return;
		sockaddr_to_addr((const struct sockaddr *)&ss, &local, &lport);
	}
	if (community_id_v1(&c->src, c->src_port, &local, lport, COMMUNITY_ID_TCP, 0,
	                    c->community_id) != 0)
		c->community_id[0] = '\0';
}

void conn_accept(struct conn_env *env, evutil_socket_t fd, const struct sockaddr *sa,
                 size_t listener, struct tls_listener *tls, const struct conn_local *local)
{
	conn_env_refresh(env);
	const struct policy_settings *s = policy_settings(env->policy);
	unsigned open = atomic_fetch_add_explicit(env->n_open, 1, memory_order_relaxed);
	if (open >= s->max_connections) {
		atomic_fetch_sub_explicit(env->n_open, 1, memory_order_relaxed);
		refuse_raw(env, fd, sa, R_CONNECTION_LIMIT, tls != NULL);
		return;
	}
	struct conn *c = calloc(1, sizeof(*c));
	struct transport *t = c == NULL     ? NULL
	                      : tls != NULL ? transport_tls_accept(fd, tls)
	                                    : transport_tcp(fd);
	if (t == NULL) {
		free(c);
		atomic_fetch_sub_explicit(env->n_open, 1, memory_order_relaxed);
		refuse_raw(env, fd, sa, R_INTERNAL_ERROR, tls != NULL);
		return;
	}
	c->env = env;
	c->client = t;
	c->listener = listener;
	c->state = CS_REQUEST;
	c->tier = -1;
	c->first_eof = R_CLIENT_CLOSED;
	c->t0_mono = mono_ns();
	c->t0_wall = wall_ns();
	c->policy = policy_ref(env->policy);
	sockaddr_to_addr(sa, &c->src, &c->src_port);
	c->id = audit_log_next_id(env->audit);
	flow_id(c, fd, local);
	c->next = env->conns;
	if (env->conns != NULL)
		env->conns->prev = c;
	env->conns = c;
	env->n_conns++;
	c->timer = evtimer_new(env->base, timer_cb, c);
	if (c->timer == NULL) {
		conn_close(c, R_INTERNAL_ERROR);
		return;
	}
	if (listener == CONN_LISTENER_TLS) {
		conn_start(c); /* a TLS listener reads no PROXY header */
		return;
	}
	size_t bound_index = listener;
	const struct policy *lp = listener_policy(env, listener, &listener);
	const struct policy_listen_pp *pp = &policy_settings(lp)->listen_pp[listener];
	if (pp->accept == 0) {
		conn_start(c);
		return;
	}
	/* Behind a load balancer: the source is what a trusted balancer's header says. */
	c->state = CS_PROXY_HEADER;
	c->via = calloc(1, sizeof(*c->via));
	if (c->via == NULL) {
		conn_close(c, R_INTERNAL_ERROR);
		return;
	}
	c->via->accept = (pp->accept & POLICY_PP_V1 ? PP_ACCEPT_V1 : 0) |
	                 (pp->accept & POLICY_PP_V2 ? PP_ACCEPT_V2 : 0);
	c->via->timeout_ms = pp->timeout_ms;
	c->via->listener = bound_index;
	c->via->peer = c->src;
	c->via->peer_port = c->src_port;
	if (!policy_listen_trusted(lp, listener, &c->src)) {
		conn_refuse(c, R_PROXY_UNTRUSTED_PEER);
		return;
	}
	conn_phases[CS_PROXY_HEADER]->enter(c);
}
