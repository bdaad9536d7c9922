/* Audit records in ECS 9.4: one JSON line per record (pure formatter). */
#include "audit.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "config.h"
#include "ascii.h"
#include "jsonw.h"

void audit_id_hex(uint64_t prefix, uint64_t id, char out[33])
{
	for (int i = 0; i < 16; i++) {
		out[i] = ascii_hex_digit((unsigned)(prefix >> (60 - 4 * i)), false);
		out[16 + i] = ascii_hex_digit((unsigned)(id >> (60 - 4 * i)), false);
	}
	out[32] = '\0';
}

static bool is_connect(const struct audit_rec *r)
{
	return r->method == NULL || strcmp(r->method, "CONNECT") == 0;
}

const char *audit_action(const struct audit_rec *r)
{
	if (r->aggregated > 0)
		return "refusals-aggregated";
	if (!is_connect(r))
		return "http-request";
	return r->tunnel_end || r->phase != AUDIT_FINAL ? "tunnel" : "connect";
}

/*
 * event.category and event.type: each type is one ECS 9.4 expects for every
 * category listed (ecs_flat.yml, expected_event_types):
 *   a refusal (any method) ........ [network] [connection, denied]
 *   a tunnel started .............. [network] [connection, start, allowed]
 *   a tunnel still open ........... [network] [connection, info]
 *   a tunnel closed ............... [network] [connection, end, allowed]
 *   a plain-HTTP exchange ended ... [network, web] [access]
 * (web expects only access, error and info.)
 */
static void put_categorisation(struct jsonw *w, const struct audit_rec *r)
{
	bool web = r->phase == AUDIT_FINAL && r->tunnel_end && r->allowed && !is_connect(r);
	jsonw_key(w, "category");
	jsonw_raw(w, web ? "[\"network\",\"web\"]" : "[\"network\"]", web ? 17 : 11);
	const char *type;
	if (web)
		type = "[\"access\"]";
	else if (r->phase == AUDIT_START)
		type = "[\"connection\",\"start\",\"allowed\"]";
	else if (r->phase == AUDIT_INTERIM)
		type = "[\"connection\",\"info\"]";
	else if (!r->allowed)
		type = "[\"connection\",\"denied\"]";
	else if (r->tunnel_end)
		type = "[\"connection\",\"end\",\"allowed\"]";
	else
		type = "[\"connection\",\"allowed\"]";
	jsonw_key(w, "type");
	jsonw_raw(w, type, strlen(type));
}

static uint64_t start_of(const struct audit_rec *r)
{
	if (r->start_ns != 0)
		return r->start_ns;
	return r->ts_ns >= r->duration_ns ? r->ts_ns - r->duration_ns : 0;
}

static void put_event(struct jsonw *w, const struct audit_rec *r)
{
	char id[33];
	jsonw_obj(w, "event");
	jsonw_kv_str(w, "kind", "event");
	put_categorisation(w, r);
	jsonw_kv_str(w, "action", audit_action(r));
	jsonw_kv_str(w, "outcome", r->allowed ? "success" : "failure");
	jsonw_kv_str(w, "reason", reason_name(r->reason));
	if (r->event_id != 0) {
		audit_id_hex(r->id_prefix, r->event_id, id);
		jsonw_kv_str(w, "id", id);
	}
	jsonw_kv_str(w, "dataset", "portcullis.audit");
	jsonw_kv_str(w, "module", "portcullis");
	jsonw_kv_time(w, "start", start_of(r));
	jsonw_kv_time(w, "end", r->ts_ns);
	jsonw_kv_u64(w, "duration", r->duration_ns);
	jsonw_obj_end(w);
	if (r->conn_id != 0) {
		audit_id_hex(r->id_prefix, r->conn_id, id);
		jsonw_obj(w, "trace");
		jsonw_kv_str(w, "id", id);
		jsonw_obj_end(w);
	}
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

static bool has_bytes(const struct audit_rec *r)
{
	return r->tunnel_end || r->phase != AUDIT_FINAL || r->bytes_up != 0 || r->bytes_down != 0;
}

static void put_endpoints(struct jsonw *w, const struct audit_rec *r)
{
	bool bytes = has_bytes(r);
	if (r->src != NULL || r->src_port != 0 || bytes) {
		jsonw_obj(w, "source");
		if (r->src != NULL)
			kv_ip(w, "ip", r->src);
		if (r->src_port != 0)
			jsonw_kv_u64(w, "port", r->src_port);
		if (bytes)
			jsonw_kv_u64(w, "bytes", r->bytes_up);
		if (r->user_id != NULL) {
			/* The certificate's SPIFFE ID: the workload identity a SIEM looks for. */
			jsonw_obj(w, "user");
			jsonw_kv_text(w, "id", r->user_id);
			jsonw_obj_end(w);
		}
		if (r->src_nat != NULL) {
			/* ECS: "translated ip of source based NAT sessions ... load balancers". */
			jsonw_obj(w, "nat");
			kv_ip(w, "ip", r->src_nat);
			jsonw_kv_u64(w, "port", r->src_nat_port);
			jsonw_obj_end(w);
		}
		jsonw_obj_end(w);
	}
	if (r->dst_domain != NULL || r->dst_ip != NULL || r->dst_port != 0 || bytes) {
		jsonw_obj(w, "destination");
		if (r->dst_domain != NULL)
			jsonw_kv_text(w, "domain", r->dst_domain);
		if (r->dst_ip != NULL)
			kv_ip(w, "ip", r->dst_ip);
		if (r->dst_port != 0)
			jsonw_kv_u64(w, "port", r->dst_port);
		if (bytes)
			jsonw_kv_u64(w, "bytes", r->bytes_down);
		jsonw_obj_end(w);
	}
	jsonw_obj(w, "network");
	jsonw_kv_str(w, "transport", "tcp");
	jsonw_kv_str(w, "protocol", "http");
	jsonw_kv_str(w, "direction", "outbound");
	if (r->community_id != NULL)
		jsonw_kv_str(w, "community_id", r->community_id);
	jsonw_obj_end(w);
}

static void put_http(struct jsonw *w, const struct audit_rec *r)
{
	if (r->method != NULL || r->status > 0) {
		jsonw_obj(w, "http");
		if (r->method != NULL) {
			jsonw_obj(w, "request");
			jsonw_kv_text(w, "method", r->method);
			jsonw_obj_end(w);
		}
		if (r->status > 0) {
			jsonw_obj(w, "response");
			jsonw_kv_u64(w, "status_code", (uint64_t)r->status);
			jsonw_obj_end(w);
		}
		jsonw_obj_end(w);
	}
	if (r->url_domain != NULL || r->url_path != NULL) {
		jsonw_obj(w, "url");
		if (r->url_domain != NULL)
			jsonw_kv_text(w, "domain", r->url_domain);
		if (r->url_path != NULL)
			jsonw_kv_text(w, "path", r->url_path);
		if (r->url_port != 0)
			jsonw_kv_u64(w, "port", r->url_port);
		if (r->intercepted)
			jsonw_kv_str(w, "scheme", "https");
		jsonw_obj_end(w);
	}
	if (r->user_agent != NULL) {
		jsonw_obj(w, "user_agent");
		jsonw_kv_text(w, "original", r->user_agent);
		jsonw_obj_end(w);
	}
}

/* A JSON array of client strings under key k. */
static void kv_strs(struct jsonw *w, const char *k, const char *const *v, size_t n)
{
	jsonw_arr(w, k);
	for (size_t i = 0; i < n; i++) {
		jsonw_elem(w);
		jsonw_text(w, v[i]);
	}
	jsonw_arr_end(w);
}

/* tls.client's certificate fields (ECS x509 and hash), on a TLS listener with client certs. */
static void put_x509(struct jsonw *w, const struct audit_rec *r)
{
	if (r->x509_sha256 != NULL && r->x509_sha256[0] != '\0') {
		jsonw_obj(w, "hash");
		jsonw_kv_str(w, "sha256", r->x509_sha256);
		jsonw_obj_end(w);
	}
	jsonw_obj(w, "x509");
	jsonw_obj(w, "subject");
	jsonw_kv_text(w, "distinguished_name", r->x509_subject);
	if (r->x509_cn != NULL)
		kv_strs(w, "common_name", &r->x509_cn, 1);
	jsonw_obj_end(w);
	if (r->x509_issuer != NULL) {
		jsonw_obj(w, "issuer");
		jsonw_kv_text(w, "distinguished_name", r->x509_issuer);
		jsonw_obj_end(w);
	}
	if (r->x509_serial != NULL)
		jsonw_kv_text(w, "serial_number", r->x509_serial);
	if (r->x509_not_before > 0)
		jsonw_kv_time(w, "not_before", (uint64_t)r->x509_not_before * 1000000000u);
	if (r->x509_not_after > 0)
		jsonw_kv_time(w, "not_after", (uint64_t)r->x509_not_after * 1000000000u);
	size_t ns = r->n_x509_sans < 16 ? r->n_x509_sans : 16;
	if (ns > 0)
		kv_strs(w, "alternative_names", r->x509_sans, ns);
	jsonw_obj_end(w);
}

static void put_tls(struct jsonw *w, const struct audit_rec *r)
{
	if (r->sni == NULL && r->tls_version == NULL && r->tls_next_protocol == NULL &&
	    r->ja4 == NULL && r->x509_subject == NULL)
		return;
	jsonw_obj(w, "tls");
	if (r->tls_version != NULL) {
		jsonw_kv_str(w, "version", r->tls_version);
		jsonw_kv_str(w, "version_protocol", "tls");
	}
	if (r->tls_next_protocol != NULL)
		jsonw_kv_text(w, "next_protocol", r->tls_next_protocol);
	if (r->sni != NULL || r->ja4 != NULL || r->x509_subject != NULL) {
		jsonw_obj(w, "client");
		if (r->sni != NULL)
			jsonw_kv_text(w, "server_name", r->sni);
		if (r->ja4 != NULL)
			jsonw_kv_str(w, "ja4", r->ja4);
		if (r->x509_subject != NULL)
			put_x509(w, r);
		jsonw_obj_end(w);
	}
	jsonw_obj_end(w);
}

static void put_pod(struct jsonw *w, const struct audit_rec *r)
{
	if (r->pod_name == NULL)
		return;
	jsonw_obj(w, "orchestrator");
	if (r->pod_ns != NULL)
		jsonw_kv_text(w, "namespace", r->pod_ns);
	jsonw_obj(w, "resource");
	jsonw_kv_str(w, "type", "pod");
	jsonw_kv_text(w, "name", r->pod_name);
	if (r->pod_uid != NULL)
		jsonw_kv_text(w, "id", r->pod_uid);
	size_t nl = r->n_pod_labels < 8 ? r->n_pod_labels : 8;
	if (nl > 0) {
		jsonw_arr(w, "label"); /* ECS keyword array of "key:value" */
		for (size_t i = 0; i < nl; i++) {
			char kv[512];
			const char *v = r->pod_label_values[i];
			size_t kl = strlen(r->pod_label_keys[i]);
			size_t room = kl < sizeof(kv) - 2 ? sizeof(kv) - 2 - kl : 0;
			snprintf(kv, sizeof(kv), "%s:%.*s", r->pod_label_keys[i],
			         (int)jsonw_utf8_cut(v, strlen(v), room), v);
			jsonw_elem(w);
			jsonw_text(w, kv);
		}
		jsonw_arr_end(w);
	}
	jsonw_obj_end(w);
	jsonw_obj_end(w);
}

static void put_labels(struct jsonw *w, const struct audit_rec *r)
{
	const char *hint = reason_hint(r->reason);
	bool cut = w->text_max != SIZE_MAX; /* audit_format: this pass cuts (see there) */
	if (r->would_deny == NULL && r->aggregated == 0 && r->aws_vpce_id == NULL && hint == NULL &&
	    r->oidc_token == NULL && !r->intercepted && !cut)
		return;
	jsonw_obj(w, "labels");
	if (cut)
		jsonw_kv_str(w, "truncated", "true");
	if (hint != NULL)
		jsonw_kv_text(w, "hint", hint); /* long: cut with the client's strings */
	if (r->would_deny != NULL)
		jsonw_kv_str(w, "would_deny", r->would_deny);
	/* No ECS field names a consumer's VPC endpoint: cloud.* describes the observer's own
	 * host, observer.ingress.* its own interfaces. */
	if (r->aws_vpce_id != NULL)
		jsonw_kv_text(w, "aws_vpce_id", r->aws_vpce_id);
	if (r->intercepted)
		jsonw_kv_str(w, "intercepted", "true");
	if (r->intercept_rule != NULL)
		jsonw_kv_text(w, "intercept_rule", r->intercept_rule);
	/* The job an OIDC token named: ECS has no CI fields; labels are keywords a SIEM filters on.
	 * Claims are signed, but a job chooses some of them (a branch name): cut like the client's. */
	static const char *const oidc_keys[] = {"oidc_token_sha256", "oidc_issuer", "oidc_project",
	                                        "oidc_ref",          "oidc_pipeline_id", "oidc_job_id",
	                                        "oidc_rule"};
	const char *oidc_vals[] = {r->oidc_token, r->oidc_issuer,  r->oidc_project, r->oidc_ref,
	                           r->oidc_pipeline, r->oidc_job, r->oidc_rule};
	for (size_t i = 0; r->oidc_token != NULL && i < 7; i++)
		if (oidc_vals[i] != NULL)
			jsonw_kv_text(w, oidc_keys[i], oidc_vals[i]);
	if (r->aggregated > 0) {
		char n[24];
		snprintf(n, sizeof(n), "%llu", (unsigned long long)r->aggregated);
		jsonw_kv_str(w, "aggregated_refusals", n); /* ECS labels are keywords */
		if (r->aggregated_overflow)
			jsonw_kv_str(w, "aggregated_scope", "many-sources");
	}
	jsonw_obj_end(w);
}

/* "host:port" of the target, or "-". */
static void target_text(const struct audit_rec *r, char *buf, size_t n)
{
	char ip[ADDR_STRLEN];
	const char *h = r->dst_domain;
	if (h == NULL && r->dst_ip != NULL && addr_format(r->dst_ip, ip, sizeof(ip)) > 0)
		h = ip;
	if (h == NULL)
		snprintf(buf, n, "-");
	else if (r->dst_ip != NULL && r->dst_ip->family == ADDR_V6 && h == ip)
		snprintf(buf, n, "[%s]:%u", h, (unsigned)r->dst_port);
	else
		snprintf(buf, n, "%s:%u", h, (unsigned)r->dst_port);
}

/* message: one short line for a human reading the record. */
static void put_message(struct jsonw *w, const struct audit_rec *r)
{
	char t[300], m[512];
	const char *method = r->method != NULL ? r->method : "CONNECT";
	const char *reason = reason_name(r->reason);
	target_text(r, t, sizeof(t));
	unsigned long long up = (unsigned long long)r->bytes_up;
	unsigned long long down = (unsigned long long)r->bytes_down;
	if (r->aggregated > 0)
		snprintf(m, sizeof(m), "%llu refusals (%s) aggregated",
		         (unsigned long long)r->aggregated, reason);
	else if (r->phase == AUDIT_START)
		snprintf(m, sizeof(m), "%s %s tunnel open", method, t);
	else if (r->phase == AUDIT_INTERIM)
		snprintf(m, sizeof(m), "%s %s tunnel open for %llus, %llu bytes up, %llu down",
		         method, t, (unsigned long long)(r->duration_ns / 1000000000u), up, down);
	else if (!r->allowed && r->method == NULL && r->dst_domain == NULL && r->dst_ip == NULL)
		snprintf(m, sizeof(m), "connection refused before a request: %s", reason);
	else if (!r->allowed)
		snprintf(m, sizeof(m), "%s %s denied: %s", method, t, reason);
	else if (is_connect(r))
		snprintf(m, sizeof(m), "%s %s tunnel closed: %s, %llu bytes up, %llu down", method,
		         t, reason, up, down);
	else
		snprintf(m, sizeof(m), "%s %s answered %d, %llu bytes up, %llu down", method, t,
		         r->status, up, down);
	jsonw_kv_text(w, "message", m);
}

static size_t format_ecs(const struct audit_rec *r, const char *hostname, char *buf, size_t n,
                         size_t text_max)
{
	struct jsonw w;
	jsonw_init(&w, buf, n);
	w.text_max = text_max;
	jsonw_obj(&w, NULL);
	jsonw_kv_time(&w, "@timestamp", r->ts_ns);
	jsonw_obj(&w, "ecs");
	jsonw_kv_str(&w, "version", "9.4.0");
	jsonw_obj_end(&w);
	put_message(&w, r);
	put_event(&w, r);
	put_endpoints(&w, r);
	put_http(&w, r);
	put_tls(&w, r);
	if (r->rule != NULL || r->tier != NULL) {
		jsonw_obj(&w, "rule");
		if (r->rule != NULL)
			jsonw_kv_str(&w, "name", r->rule);
		if (r->tier != NULL)
			jsonw_kv_str(&w, "ruleset", r->tier);
		jsonw_obj_end(&w);
	}
	put_pod(&w, r);
	put_labels(&w, r);
	if (r->oidc_subject != NULL) {
		/* The job's identity from its token: user.id is the token's sub. */
		jsonw_obj(&w, "user");
		jsonw_kv_text(&w, "id", r->oidc_subject);
		jsonw_obj_end(&w);
	}
	if (r->user_id != NULL || r->oidc_subject != NULL) {
		const char *users[2];
		size_t nu = 0;
		if (r->user_id != NULL)
			users[nu++] = r->user_id;
		if (r->oidc_subject != NULL)
			users[nu++] = r->oidc_subject;
		jsonw_obj(&w, "related");
		kv_strs(&w, "user", users, nu);
		jsonw_obj_end(&w);
	}
	jsonw_obj(&w, "observer");
	if (hostname != NULL)
		jsonw_kv_str(&w, "hostname", hostname);
	jsonw_kv_str(&w, "product", "portcullis");
	jsonw_kv_str(&w, "vendor", "portcullis");
	jsonw_kv_str(&w, "type", "proxy");
	jsonw_kv_str(&w, "version", PORTCULLIS_VERSION);
	jsonw_obj_end(&w);
	jsonw_obj_end(&w);
	jsonw_raw(&w, "\n", 1);
	return jsonw_end(&w);
}

/*
 * A record too long for buf is written again with the client's strings cut to
 * each of these (bytes between the quotes), the first that fits, and marked
 * labels.truncated.  Something was cut then: the same record uncut and
 * marked would be longer still.  At 0 a record is its fixed fields: under
 * 3 KiB with every optional one (test_audit's worst case).
 */
const size_t audit_text_caps[AUDIT_TEXT_CAPS] = {SIZE_MAX, 256, 64, 0};

size_t audit_format(const struct audit_rec *r, const char *hostname, char *buf, size_t n)
{
	if (r == NULL || buf == NULL || n == 0)
		return 0;
	size_t len = 0;
	for (size_t i = 0; i < AUDIT_TEXT_CAPS && len == 0; i++)
		len = format_ecs(r, hostname, buf, n, audit_text_caps[i]);
	return len;
}

size_t audit_format_as(enum audit_format f, const struct audit_rec *r, const char *hostname,
                       char *buf, size_t n)
{
	return f == AUDIT_FMT_OCSF ? audit_format_ocsf(r, hostname, buf, n)
	                           : audit_format(r, hostname, buf, n);
}
