/* The connection's one audit emitter: a record per exchange, built from the connection. */
#include "conn.h"

#include <stdio.h>

#include <event2/event.h>

#include "audit.h"
#include "audit_agg.h"
#include "certid.h"
#include "oidc.h"
#include "clock.h"
#include "intercepted.h"
#include "podmap.h"
#include "sockaddr.h"

/* Keys of one worker's refusal aggregation (audit_agg.h); the interval it flushes at. */
#define AGG_SLOTS       4096
#define AGG_INTERVAL_MS 1000

/* Queue a record (into `reserved` promised bytes, given back whatever happens).  False when it
 * was lost (counted: by the writer when its queue was full). */
static bool submit(struct conn_env *env, const struct audit_rec *r, size_t reserved)
{
	char line[AUDIT_LINE_MAX];
	enum audit_format f = audit_log_format(env->audit);
	size_t n = audit_format_as(f, r, env->hostname, line, sizeof(line));
	if (reserved > 0 && n > reserved && !audit_log_reserve(env->audit, n - reserved)) {
		/* Longer than its promise and the queue has no more to promise: cut to the promise
		 * (what the first flight adds after admission fits it cut, test_audit shows), so
		 * that the record is written however full the queue is. */
		n = audit_format_as(f, r, env->hostname, line,
		                    reserved < sizeof(line) ? reserved + 1 : sizeof(line));
	} else if (reserved > 0 && n > reserved) {
		reserved = n; /* the difference is promised now */
	}
	if (n == 0) {
		audit_log_unreserve(env->audit, reserved);
		atomic_fetch_add_explicit(&env->audit_lost, 1, memory_order_relaxed);
		return false;
	}
	return audit_log_submit_reserved(env->audit, line, n, reserved) == 0;
}

/*
 * While the audit queue is under pressure, a source's refusals after the
 * first of each reason and tier in an interval are counted, not queued: true
 * when this one was.  Allowed exchanges are never aggregated.
 */
static bool refusal_counted(struct conn_env *env, const struct pc_addr *src, uint16_t src_port,
                            enum reason why, unsigned tier_slot, const char *tier)
{
	if (env->agg == NULL || !audit_log_pressed(env->audit))
		return false;
	struct pc_addr g;
	addr_source_group(src, env->v6_prefix, &g);
	if (audit_agg_note(env->agg, &g, src, src_port, why, tier_slot, tier, wall_ns()))
		return false;
	metrics_add(&env->metrics->audit_aggregated, 1);
	return true;
}

/* One counted record: this many refusals of one source, reason and tier. */
static void emit_aggregate(void *arg, const struct audit_agg_entry *e)
{
	struct conn_env *env = arg;
	struct audit_rec r = {
	    .ts_ns = e->last_ns,
	    .id_prefix = audit_log_id_prefix(env->audit),
	    .event_id = audit_log_next_id(env->audit),
	    .duration_ns =
	        e->last_ns >= e->first_ns ? e->last_ns - e->first_ns : 0, /* wall clock */
	    .reason = e->reason,
	    .src = &e->src,
	    .src_port = e->src_port,
	    .status = reason_http_status(e->reason),
	    .tier = e->tier[0] ? e->tier : NULL,
	    .aggregated = e->count,
	    .aggregated_overflow = e->overflow,
	    .start_ns = e->first_ns,
	};
	/* Lost, it stands for all it counted: the writer counted one, add the rest. */
	if (!submit(env, &r, 0) && e->count > 1)
		atomic_fetch_add_explicit(&env->audit_lost, e->count - 1, memory_order_relaxed);
}

/* Every interval: the counted records go out and every key is forgotten. */
static void flush_cb(evutil_socket_t fd, short what, void *arg)
{
	struct conn_env *env = arg;
	audit_agg_flush(env->agg, emit_aggregate, env);
}

int conn_audit_init(struct conn_env *env)
{
	env->agg = audit_agg_create(AGG_SLOTS);
	env->agg_ev = event_new(env->base, -1, EV_PERSIST, flush_cb, env);
	struct timeval tv = {AGG_INTERVAL_MS / 1000, (AGG_INTERVAL_MS % 1000) * 1000};
	return env->agg != NULL && env->agg_ev != NULL && event_add(env->agg_ev, &tv) == 0 ? 0 : -1;
}

void conn_audit_fini(struct conn_env *env)
{
	if (env->agg_ev != NULL)
		event_free(env->agg_ev);
	env->agg_ev = NULL;
	if (env->agg != NULL)
		audit_agg_flush(env->agg, emit_aggregate, env);
	audit_agg_destroy(env->agg);
	env->agg = NULL;
}

/*
 * The exchange's record as it stands (strings point into c): @timestamp and
 * event.end are now, event.start the exchange's start, and the duration is
 * measured on the monotonic clock (so end - start is exactly the duration).
 */
static void build(const struct conn *c, enum reason why, bool allowed, struct audit_rec *out)
{
	const struct policy_tier *t = conn_tier(c);
	uint64_t took = mono_ns() - c->t0_mono;
	struct audit_rec r = {
	    .ts_ns = c->t0_wall + took,
	    .start_ns = c->t0_wall,
	    .duration_ns = took,
	    .id_prefix = audit_log_id_prefix(c->env->audit),
	    .event_id = audit_log_next_id(c->env->audit),
	    .conn_id = c->id,
	    .community_id = c->community_id[0] ? c->community_id : NULL,
	    .user_agent = c->user_agent,
	    .tunnel_end = allowed,
	    .allowed = allowed,
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
	if (c->via != NULL && c->via->proxied) {
		r.src_nat = &c->via->peer;
		r.src_nat_port = c->via->peer_port;
		r.aws_vpce_id = c->via->vpce[0] ? c->via->vpce : NULL;
	}
	if (c->tls != NULL) {
		r.sni = c->tls->sni[0] ? c->tls->sni : NULL;
		r.tls_version = c->tls->version[0] ? c->tls->version : NULL;
		r.tls_next_protocol = c->tls->alpn[0] ? c->tls->alpn : NULL;
		r.ja4 = c->tls->ja4[0] ? c->tls->ja4 : NULL;
	}
	if (c->peer != NULL && c->peer->present) {
		const struct cert_identity *ci = c->peer;
		r.x509_subject = ci->subject;
		r.x509_issuer = ci->issuer;
		r.x509_serial = ci->serial[0] ? ci->serial : NULL;
		r.x509_cn = ci->cn[0] ? ci->cn : NULL;
		r.x509_sha256 = ci->sha256;
		r.x509_not_before = ci->not_before;
		r.x509_not_after = ci->not_after;
		for (size_t i = 0; i < ci->n_sans && i < 16; i++)
			r.x509_sans[r.n_x509_sans++] = ci->sans[i];
		r.user_id = ci->spiffe[0] ? ci->spiffe : NULL;
	}
	if (c->oidc != NULL && c->oidc->present) {
		const struct oidc_ident *o = c->oidc;
		r.oidc_token = o->token_sha[0] ? o->token_sha : NULL;
		r.oidc_issuer = o->issuer[0] ? o->issuer : NULL;
		r.oidc_subject = o->subject[0] ? o->subject : NULL;
		r.oidc_project = o->project[0] ? o->project : NULL;
		r.oidc_ref = o->ref[0] ? o->ref : NULL;
		r.oidc_pipeline = o->pipeline[0] ? o->pipeline : NULL;
		r.oidc_job = o->job[0] ? o->job : NULL;
		r.oidc_rule = o->rule; /* the identity's rule; rule.name stays the host rule's */
	}
	if (c->url_path != NULL) {
		/* A plain-HTTP exchange: the target as a URL (never the query). */
		r.url_domain = c->host.name;
		r.url_path = c->url_path;
		r.url_port = c->port;
	}
	if (c->icpt != NULL) {
		r.intercepted = true;
		r.intercept_rule = intercept_rule(c);
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
	*out = r;
}

bool conn_audit_reserve(struct conn *c)
{
	struct audit_rec r;
	char line[AUDIT_LINE_MAX];
	build(c, R_UPSTREAM_CLOSED, true, &r);
	r.bytes_up = r.bytes_down = r.duration_ns = UINT64_MAX; /* the widest numbers */
	r.event_id = UINT64_MAX;
	r.status = 200;
	size_t n = audit_format_as(audit_log_format(c->env->audit), &r, c->env->hostname, line,
	                           sizeof(line));
	size_t want = (n > 0 ? n : sizeof(line)) + AUDIT_RESERVE_SLACK;
	audit_log_unreserve(c->env->audit, c->audit_reserved);
	c->audit_reserved = 0;
	if (!audit_log_reserve(c->env->audit, want))
		return false;
	c->audit_reserved = want;
	return true;
}

void conn_audit(struct conn *c, enum reason why, bool allowed)
{
	if (c->audited || !c->have_request)
		return;
	c->audited = true;
	struct audit_rec r;
	build(c, why, allowed, &r);
	/* One metric count per exchange, whether its record is queued, counted or lost. */
	metrics_add(&c->env->metrics->conns[c->tier_slot][why][allowed ? MDEC_ALLOW : MDEC_DENY],
	            1);
	size_t reserved = c->audit_reserved;
	c->audit_reserved = 0;
	/* A refusal with a reservation (after admission) is not aggregated: its room is kept. */
	if (!allowed && reserved == 0 &&
	    refusal_counted(c->env, &c->src, c->src_port, why, c->tier_slot, r.tier))
		return;
	submit(c->env, &r, reserved);
}

void conn_audit_raw(struct conn_env *env, const struct sockaddr *sa, enum reason why)
{
	struct pc_addr src;
	uint16_t src_port;
	sockaddr_to_addr(sa, &src, &src_port);
	uint64_t id = audit_log_next_id(env->audit);
	struct audit_rec r = {
	    .ts_ns = wall_ns(),
	    .reason = why,
	    .id_prefix = audit_log_id_prefix(env->audit),
	    .event_id = id,
	    .conn_id = id, /* the connection had this one record */
	    .src = &src,
	    .src_port = src_port,
	    .status = reason_http_status(why),
	};
	metrics_add(&env->metrics->conns[0][why][MDEC_DENY], 1);
	if (refusal_counted(env, &src, src_port, why, 0, NULL))
		return;
	submit(env, &r, 0);
}

/* A start or interim record of the open tunnel: queued only into room nobody was promised. */
static void tunnel_record(struct conn *c, enum audit_phase phase)
{
	struct audit_rec r;
	build(c, R_ALLOWED, true, &r);
	r.phase = phase;
	r.tunnel_end = false;
	submit(c->env, &r, 0);
}

void conn_audit_session(struct conn *c)
{
	if (c->audited || !c->have_request)
		return;
	c->audited = true;
	struct audit_rec r;
	build(c, R_ALLOWED, true, &r);
	r.phase = AUDIT_START;
	r.tunnel_end = false;
	metrics_add(&c->env->metrics->conns[c->tier_slot][R_ALLOWED][MDEC_ALLOW], 1);
	size_t reserved = c->audit_reserved;
	c->audit_reserved = 0;
	submit(c->env, &r, reserved);
}

static uint64_t interim_ns(const struct conn *c)
{
	return (uint64_t)policy_settings(c->policy)->audit_interim_ms * 1000000ull;
}

void conn_audit_tunnel_start(struct conn *c)
{
	if (c->audited || !c->have_request)
		return;
	if (policy_settings(c->policy)->audit_tunnel_start)
		tunnel_record(c, AUDIT_START);
	uint64_t every = interim_ns(c);
	c->interim_next = every ? mono_ns() + every : 0;
}

uint64_t conn_audit_interim(struct conn *c, uint64_t now)
{
	uint64_t every = interim_ns(c);
	if (c->interim_next == 0 || every == 0 || c->audited || c->state != CS_TUNNEL) {
		c->interim_next = 0;
		return UINT64_MAX;
	}
	if (now >= c->interim_next) {
		tunnel_record(c, AUDIT_INTERIM);
		/* One record per interval however late the timer ran: the next is due a whole
		 * interval from now. */
		c->interim_next = now + every;
	}
	return c->interim_next - now;
}
