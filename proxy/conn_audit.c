/* The connection's one audit emitter: a record per exchange, built from the connection. */
#include "conn.h"

#include <stdio.h>

#include "audit.h"
#include "clock.h"
#include "podmap.h"
#include "sockaddr.h"

/* A record whose strings are all at their limits fits (audit.h: 6 bytes per escaped byte). */
#define AUDIT_LINE_MAX 16384

static void submit(struct conn_env *env, const struct audit_rec *r)
{
	char line[AUDIT_LINE_MAX];
	size_t n = audit_format(r, env->hostname, line, sizeof(line));
	/* A full queue is counted by the writer itself; count only records that did not format. */
	if (n == 0) {
		atomic_fetch_add_explicit(&env->audit_lost, 1, memory_order_relaxed);
	} else if (audit_log_submit(env->audit, line, n) != 0) {
		/* the writer counts the records it had no room for */
	}
}

void conn_audit(struct conn *c, enum reason why, bool allowed)
{
	if (c->audited || !c->have_request)
		return;
	c->audited = true;
	const struct policy_tier *t = conn_tier(c);
	struct audit_rec r = {
	    .ts_ns = c->t0_wall,
	    .duration_ns = mono_ns() - c->t0_mono,
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
	if (c->tls != NULL) {
		r.sni = c->tls->sni[0] ? c->tls->sni : NULL;
		r.tls_version = c->tls->version[0] ? c->tls->version : NULL;
		r.tls_next_protocol = c->tls->alpn[0] ? c->tls->alpn : NULL;
	}
	if (c->url_path != NULL) {
		/* A plain-HTTP exchange: the target as a URL (never the query). */
		r.url_domain = c->host.name;
		r.url_path = c->url_path;
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
	metrics_add(&c->env->metrics->conns[c->tier_slot][why][allowed ? MDEC_ALLOW : MDEC_DENY],
	            1);
	submit(c->env, &r);
}

void conn_audit_raw(struct conn_env *env, const struct sockaddr *sa, enum reason why)
{
	struct pc_addr src;
	uint16_t src_port;
	sockaddr_to_addr(sa, &src, &src_port);
	struct audit_rec r = {
	    .ts_ns = wall_ns(),
	    .reason = why,
	    .src = &src,
	    .src_port = src_port,
	    .status = reason_http_status(why),
	};
	metrics_add(&env->metrics->conns[0][why][MDEC_DENY], 1);
	submit(env, &r);
}
