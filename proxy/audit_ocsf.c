/* Audit records in OCSF 1.1.0: Network Activity (4001) and HTTP Activity (4002), one JSON line. */
#include "audit.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "config.h"
#include "jsonw.h"

/*
 * The mapping (docs/siem.md has the table):
 *   a CONNECT (or a refusal before any method) ... class 4001 Network Activity:
 *     refusal 5 Refuse, start 1 Open, interim 6 Traffic, close 2 Close;
 *   any other method ............................. class 4002 HTTP Activity, the
 *     activity its method names (Get 3, Post 6...; 99 Other when 1.1.0 has none).
 * type_uid = class_uid * 100 + activity_id (OCSF "Classification").  Times are
 * milliseconds since the epoch (timestamp_t), the duration in milliseconds.
 * What OCSF 1.1.0 has no attribute for goes under `unmapped`: the JA4 (as
 * ja4_fingerprint_list, the shape OCSF 1.3 gives it), the Community ID, the
 * reason code, the pod and the audit-mode would-deny.
 */

#define OCSF_VERSION     "1.1.0"
#define CATEGORY_NETWORK 4
#define CLASS_NETWORK    4001
#define CLASS_HTTP       4002

static bool is_connect(const struct audit_rec *r)
{
	return r->method == NULL || strcmp(r->method, "CONNECT") == 0;
}

struct activity {
	int id;
	const char *name;
};

/* 4002's activities: the methods OCSF 1.1.0 names (http.json). */
static struct activity http_activity(const char *m)
{
	static const struct activity a[] = {
	    {2, "Delete"}, {3, "Get"}, {4, "Head"},  {5, "Options"},
	    {6, "Post"},   {7, "Put"}, {8, "Trace"},
	};
	static const char *const names[] = {"DELETE", "GET", "HEAD", "OPTIONS",
	                                    "POST",   "PUT", "TRACE"};
	for (size_t i = 0; i < sizeof(a) / sizeof(a[0]); i++)
		if (strcmp(m, names[i]) == 0)
			return a[i];
	return (struct activity){99, "Other"};
}

static struct activity network_activity(const struct audit_rec *r)
{
	if (r->phase == AUDIT_START)
		return (struct activity){1, "Open"};
	if (r->phase == AUDIT_INTERIM)
		return (struct activity){6, "Traffic"};
	if (!r->allowed)
		return (struct activity){5, "Refuse"};
	return (struct activity){2, "Close"};
}

static void kv_ip(struct jsonw *w, const char *k, const struct pc_addr *a)
{
	char t[ADDR_STRLEN];
	size_t n = addr_format(a, t, sizeof(t));
	if (n == 0 || n >= sizeof(t))
		return;
	jsonw_key(w, k);
	jsonw_raw(w, "\"", 1);
	jsonw_raw(w, t, n);
	jsonw_raw(w, "\"", 1);
}

static void put_classification(struct jsonw *w, const struct audit_rec *r, bool http)
{
	struct activity a = http ? http_activity(r->method) : network_activity(r);
	int cls = http ? CLASS_HTTP : CLASS_NETWORK;
	char type_name[64];
	jsonw_kv_u64(w, "category_uid", CATEGORY_NETWORK);
	jsonw_kv_str(w, "category_name", "Network Activity");
	jsonw_kv_u64(w, "class_uid", (uint64_t)cls);
	jsonw_kv_str(w, "class_name", http ? "HTTP Activity" : "Network Activity");
	jsonw_kv_u64(w, "activity_id", (uint64_t)a.id);
	jsonw_kv_str(w, "activity_name", a.name);
	jsonw_kv_u64(w, "type_uid", (uint64_t)cls * 100u + (uint64_t)a.id);
	snprintf(type_name, sizeof(type_name), "%s: %s",
	         http ? "HTTP Activity" : "Network Activity", a.name);
	jsonw_kv_str(w, "type_name", type_name);
	/* A refusal is worth a look (Low); everything let through is Informational. */
	jsonw_kv_u64(w, "severity_id", r->allowed ? 1 : 2);
	jsonw_kv_str(w, "severity", r->allowed ? "Informational" : "Low");
	jsonw_kv_u64(w, "status_id", r->allowed ? 1 : 2);
	jsonw_kv_str(w, "status", r->allowed ? "Success" : "Failure");
	jsonw_kv_str(w, "status_detail", reason_name(r->reason));
	/* security_control profile: what the proxy did. */
	jsonw_kv_u64(w, "action_id", r->allowed ? 1 : 2);
	jsonw_kv_str(w, "action", r->allowed ? "Allowed" : "Denied");
	jsonw_kv_u64(w, "disposition_id", r->allowed ? 1 : 2);
	jsonw_kv_str(w, "disposition", r->allowed ? "Allowed" : "Blocked");
}

static void put_times(struct jsonw *w, const struct audit_rec *r)
{
	uint64_t start = r->start_ns                  ? r->start_ns
	                 : r->ts_ns >= r->duration_ns ? r->ts_ns - r->duration_ns
	                                              : 0;
	jsonw_kv_u64(w, "time", r->ts_ns / 1000000u);
	jsonw_kv_u64(w, "start_time", start / 1000000u);
	jsonw_kv_u64(w, "end_time", r->ts_ns / 1000000u);
	jsonw_kv_u64(w, "duration", r->duration_ns / 1000000u);
	jsonw_kv_u64(w, "timezone_offset", 0);
	if (r->aggregated > 0)
		jsonw_kv_u64(w, "count", r->aggregated);
}

static void put_metadata(struct jsonw *w, const struct audit_rec *r)
{
	char id[33];
	jsonw_obj(w, "metadata");
	jsonw_kv_str(w, "version", OCSF_VERSION);
	jsonw_obj(w, "product");
	jsonw_kv_str(w, "name", "portcullis");
	jsonw_kv_str(w, "vendor_name", "portcullis");
	jsonw_kv_str(w, "version", PORTCULLIS_VERSION);
	jsonw_obj_end(w);
	jsonw_arr(w, "profiles");
	jsonw_elem(w);
	jsonw_str(w, "network_proxy");
	jsonw_elem(w);
	jsonw_str(w, "security_control");
	jsonw_arr_end(w);
	jsonw_kv_str(w, "log_name", "portcullis.audit");
	if (r->event_id != 0) {
		audit_id_hex(r->id_prefix, r->event_id, id);
		jsonw_kv_str(w, "uid", id);
	}
	if (r->conn_id != 0) {
		audit_id_hex(r->id_prefix, r->conn_id, id);
		jsonw_kv_str(w, "correlation_uid", id);
	}
	jsonw_obj_end(w);
}

static void put_endpoints(struct jsonw *w, const struct audit_rec *r, const char *hostname)
{
	char id[33];
	jsonw_obj(w, "src_endpoint");
	if (r->src != NULL)
		kv_ip(w, "ip", r->src);
	if (r->src_port != 0)
		jsonw_kv_u64(w, "port", r->src_port);
	jsonw_obj_end(w);
	jsonw_obj(w, "dst_endpoint");
	if (r->dst_domain != NULL)
		jsonw_kv_text(w, "hostname", r->dst_domain);
	if (r->dst_ip != NULL)
		kv_ip(w, "ip", r->dst_ip);
	if (r->dst_port != 0)
		jsonw_kv_u64(w, "port", r->dst_port);
	jsonw_obj_end(w);
	jsonw_obj(w, "proxy_endpoint");
	if (hostname != NULL)
		jsonw_kv_str(w, "hostname", hostname);
	jsonw_kv_str(w, "name", "portcullis");
	jsonw_obj_end(w);
	jsonw_obj(w, "connection_info");
	jsonw_kv_u64(w, "direction_id", 2);
	jsonw_kv_str(w, "direction", "Outbound");
	jsonw_kv_u64(w, "protocol_num", 6);
	jsonw_kv_str(w, "protocol_name", "tcp");
	if (r->conn_id != 0) {
		audit_id_hex(r->id_prefix, r->conn_id, id);
		jsonw_kv_str(w, "uid", id);
	}
	jsonw_obj_end(w);
	if (r->tunnel_end || r->phase != AUDIT_FINAL || r->bytes_up || r->bytes_down) {
		jsonw_obj(w, "traffic");
		jsonw_kv_u64(w, "bytes_out", r->bytes_up);
		jsonw_kv_u64(w, "bytes_in", r->bytes_down);
		jsonw_kv_u64(w, "bytes", r->bytes_up + r->bytes_down);
		jsonw_obj_end(w);
	}
}

static void put_tls(struct jsonw *w, const struct audit_rec *r)
{
	if (r->tls_version == NULL)
		return; /* tls.version is required in the tls object */
	jsonw_obj(w, "tls");
	jsonw_kv_str(w, "version", r->tls_version);
	if (r->sni != NULL)
		jsonw_kv_text(w, "sni", r->sni);
	jsonw_obj_end(w);
}

/* 4002: the request and the response (both required); the URL of a plain-HTTP request. */
static void put_http(struct jsonw *w, const struct audit_rec *r, bool *method_unmapped)
{
	struct activity a = http_activity(r->method);
	*method_unmapped = a.id == 99;
	jsonw_obj(w, "http_request");
	if (!*method_unmapped)
		jsonw_kv_text(w, "http_method", r->method);
	if (r->user_agent != NULL)
		jsonw_kv_text(w, "user_agent", r->user_agent);
	if (r->url_domain != NULL || r->url_path != NULL) {
		jsonw_obj(w, "url");
		if (r->url_domain != NULL)
			jsonw_kv_text(w, "hostname", r->url_domain);
		if (r->url_path != NULL)
			jsonw_kv_text(w, "path", r->url_path);
		if (r->url_port != 0)
			jsonw_kv_u64(w, "port", r->url_port);
		jsonw_kv_str(w, "scheme", r->intercepted ? "https" : "http");
		jsonw_obj_end(w);
	}
	jsonw_obj_end(w);
	jsonw_obj(w, "http_response");
	jsonw_kv_u64(w, "code", r->status > 0 ? (uint64_t)r->status : 0);
	jsonw_obj_end(w);
}

static void put_rule(struct jsonw *w, const struct audit_rec *r)
{
	if (r->rule == NULL && r->tier == NULL)
		return;
	jsonw_obj(w, "firewall_rule");
	if (r->rule != NULL)
		jsonw_kv_str(w, "name", r->rule);
	if (r->tier != NULL)
		jsonw_kv_str(w, "category", r->tier);
	jsonw_obj_end(w);
}

static void put_unmapped(struct jsonw *w, const struct audit_rec *r, bool http, bool method)
{
	jsonw_obj(w, "unmapped");
	jsonw_kv_str(w, "reason", reason_name(r->reason));
	if (w->text_max != SIZE_MAX) /* audit_format_ocsf: this pass cuts */
		jsonw_kv_str(w, "truncated", "true");
	if (r->ja4 != NULL) {
		/* OCSF 1.3's ja4_fingerprint_list: [{type_id 1 (JA4), value}] */
		jsonw_arr(w, "ja4_fingerprint_list");
		jsonw_elem(w);
		jsonw_obj(w, NULL);
		jsonw_kv_u64(w, "type_id", 1);
		jsonw_kv_str(w, "type", "JA4");
		jsonw_kv_str(w, "value", r->ja4);
		jsonw_obj_end(w);
		jsonw_arr_end(w);
	}
	if (r->community_id != NULL)
		jsonw_kv_str(w, "community_id", r->community_id);
	if (method && r->method != NULL)
		jsonw_kv_text(w, "http_method", r->method);
	if (!http && r->method != NULL)
		jsonw_kv_text(w, "http_method", r->method);
	if (!http && r->status > 0)
		jsonw_kv_u64(w, "http_status", (uint64_t)r->status);
	if (r->tls_next_protocol != NULL)
		jsonw_kv_text(w, "tls_alpn", r->tls_next_protocol);
	if (r->would_deny != NULL)
		jsonw_kv_str(w, "would_deny", r->would_deny);
	if (reason_hint(r->reason) != NULL)
		jsonw_kv_text(w, "hint", reason_hint(r->reason)); /* long: cut with the client's */
	if (r->src_nat != NULL) {
		/* The load balancer a PROXY header came through: OCSF 1.1 has no place for it. */
		jsonw_obj(w, "src_nat");
		kv_ip(w, "ip", r->src_nat);
		jsonw_kv_u64(w, "port", r->src_nat_port);
		jsonw_obj_end(w);
	}
	if (r->aws_vpce_id != NULL)
		jsonw_kv_text(w, "aws_vpce_id", r->aws_vpce_id);
	if (r->intercepted)
		jsonw_kv_str(w, "intercepted", "true");
	if (r->intercept_rule != NULL)
		jsonw_kv_text(w, "intercept_rule", r->intercept_rule);
	if (r->user_id != NULL)
		jsonw_kv_text(w, "spiffe_id", r->user_id);
	if (r->x509_subject != NULL)
		jsonw_kv_text(w, "client_cert_subject", r->x509_subject);
	if (r->x509_sha256 != NULL && r->x509_sha256[0] != '\0')
		jsonw_kv_str(w, "client_cert_sha256", r->x509_sha256);
	if (r->oidc_token != NULL) {
		/* OCSF 1.1 has no CI job object: the token's job, as in ECS's labels. */
		jsonw_obj(w, "oidc");
		jsonw_kv_str(w, "token_sha256", r->oidc_token);
		static const char *const k[] = {"issuer", "subject",  "project", "ref",
		                                "pipeline_id", "job_id", "rule"};
		const char *v[] = {r->oidc_issuer, r->oidc_subject, r->oidc_project, r->oidc_ref,
		                   r->oidc_pipeline, r->oidc_job, r->oidc_rule};
		for (size_t i = 0; i < 7; i++)
			if (v[i] != NULL)
				jsonw_kv_text(w, k[i], v[i]); /* a job chooses some claims: cut like the client's */
		jsonw_obj_end(w);
	}
	if (r->aggregated_overflow)
		jsonw_kv_str(w, "aggregated_scope", "many-sources");
	if (r->pod_name != NULL) {
		jsonw_obj(w, "pod");
		if (r->pod_ns != NULL)
			jsonw_kv_text(w, "namespace", r->pod_ns);
		jsonw_kv_text(w, "name", r->pod_name);
		if (r->pod_uid != NULL)
			jsonw_kv_text(w, "uid", r->pod_uid);
		jsonw_obj_end(w);
	}
	jsonw_obj_end(w);
}

static size_t format_ocsf(const struct audit_rec *r, const char *hostname, char *buf, size_t n,
                          size_t text_max)
{
	struct jsonw w;
	bool method_unmapped = false;
	bool http = !is_connect(r);
	jsonw_init(&w, buf, n);
	w.text_max = text_max;
	jsonw_obj(&w, NULL);
	put_classification(&w, r, http);
	put_times(&w, r);
	put_metadata(&w, r);
	put_endpoints(&w, r, hostname);
	if (http)
		put_http(&w, r, &method_unmapped);
	put_tls(&w, r);
	put_rule(&w, r);
	put_unmapped(&w, r, http, method_unmapped);
	jsonw_obj_end(&w);
	jsonw_raw(&w, "\n", 1);
	return jsonw_end(&w);
}

/* As audit_format: a record too long for buf is cut (audit_text_caps) and marked. */
size_t audit_format_ocsf(const struct audit_rec *r, const char *hostname, char *buf, size_t n)
{
	if (r == NULL || buf == NULL || n == 0)
		return 0;
	size_t len = 0;
	for (size_t i = 0; i < AUDIT_TEXT_CAPS && len == 0; i++)
		len = format_ocsf(r, hostname, buf, n, audit_text_caps[i]);
	return len;
}
