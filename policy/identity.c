/* The identity: section of a policy: unknown_source and the Kubernetes pod identity source. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "policy_int.h"
#include "spiffe.h"

static const char *const identity_keys[] = {"unknown_source", "ipv6_source_prefix", "kubernetes",
                                            "client_certs", "oidc", NULL};
static const char *const cert_rule_keys[] = {"spiffe", "dns", "cn", "tier", NULL};
static const char *const kube_keys[] = {
    "api_server",   "token_file",    "ca_file",     "namespaces", "tier_label", "label_selector",
    "audit_labels", "watch_timeout", "backoff_max", "max_pods",   NULL};

#define SA_DIR "/var/run/secrets/kubernetes.io/serviceaccount/"

char *policy_arena_str(struct policy_loader *L, const char *s, size_t len)
{
	char *c = policy_arena_alloc(&L->p->arena, len + 1);
	if (c == NULL) {
		L->nomem = true;
		return NULL;
	}
	memcpy(c, s, len);
	c[len] = '\0';
	return c;
}

/* Index of the tier named s, or -1 with a located "did you mean" problem. */
int policy_tier_by_name(struct policy_loader *L, const struct policy_node *v, const char *what)
{
	const char *s, *names[POLICY_MAX_TIERS];
	size_t len;
	char t[72], hint[96];

	if (!policy_want_str(L, v, &s, &len))
		return -1;
	for (size_t i = 0; i < L->p->n_tiers; i++) {
		names[i] = L->p->tiers[i].pub.name;
		if (strlen(names[i]) == len && memcmp(names[i], s, len) == 0)
			return (int)i;
	}
	policy_diag(L, v, "\"%s\" is %s%s", policy_clip(s, len, t, sizeof(t)), what,
	            policy_suggest(s, len, names, L->p->n_tiers, hint, sizeof(hint)));
	return -1;
}

static bool is_alnum(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

/* RFC 1123 label as Kubernetes uses it for namespaces: [a-z0-9-], 1..63, alnum at both ends. */
static bool dns_label_ok(const char *s, size_t len)
{
	if (len == 0 || len > 63 || s[0] == '-' || s[len - 1] == '-')
		return false;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-'))
			return false;
	}
	return true;
}

/* A label key: [prefix/]name; prefix a DNS subdomain (<= 253), name <= 63 of [A-Za-z0-9._-]. */
static bool label_key_ok(const char *s, size_t len)
{
	const char *slash = memchr(s, '/', len);
	const char *name = slash ? slash + 1 : s;
	size_t nlen = len - (size_t)(name - s);

	if (slash != NULL) {
		size_t plen = (size_t)(slash - s), lab = 0;
		if (plen == 0 || plen > 253)
			return false;
		for (size_t i = 0; i <= plen; i++) {
			if (i == plen || s[i] == '.') {
				if (!dns_label_ok(s + i - lab, lab))
					return false;
				lab = 0;
			} else {
				lab++;
			}
		}
	}
	if (nlen == 0 || nlen > 63 || !is_alnum((unsigned char)name[0]) ||
	    !is_alnum((unsigned char)name[nlen - 1]))
		return false;
	for (size_t i = 0; i < nlen; i++) {
		unsigned char c = (unsigned char)name[i];
		if (!is_alnum(c) && c != '.' && c != '_' && c != '-')
			return false;
	}
	return true;
}

static const char *want_label_key(struct policy_loader *L, const struct policy_node *v)
{
	const char *s;
	size_t len;
	char t[72];

	if (!policy_want_str(L, v, &s, &len))
		return NULL;
	if (!label_key_ok(s, len)) {
		policy_diag(L, v,
		            "\"%s\" is not a Kubernetes label key ([prefix/]name: name 1 to 63 of "
		            "A-Z a-z 0-9 . _ - starting and ending alphanumeric, prefix a DNS name)",
		            policy_clip(s, len, t, sizeof(t)));
		return NULL;
	}
	return policy_arena_str(L, s, len);
}

static const char *want_abs_path(struct policy_loader *L, const struct policy_node *v,
                                 const char *def)
{
	const char *s;
	size_t len;

	if (v == NULL)
		return def;
	if (!policy_want_str(L, v, &s, &len))
		return def;
	if (len == 0 || s[0] != '/' || len > 4095 || memchr(s, '\0', len) != NULL) {
		policy_diag(L, v, "expected an absolute file path");
		return def;
	}
	return policy_arena_str(L, s, len);
}

/* "https://IP[:port]" with an IP literal: the in-cluster address is an IP and the proxy
 * never sends its own names to an unpinned resolver. */
static void want_api_server(struct policy_loader *L, const struct policy_node *v,
                            struct policy_kube *k)
{
	static const char scheme[] = "https://";
	const char *s;
	size_t len;
	struct pc_host h;
	uint16_t port;
	char t[72];

	if (!policy_want_str(L, v, &s, &len))
		return;
	if (len < sizeof(scheme) || strncasecmp(s, scheme, sizeof(scheme) - 1) != 0 ||
	    host_parse_authority(s + sizeof(scheme) - 1, len - (sizeof(scheme) - 1), 443, &h,
	                         &port) != HOST_OK ||
	    h.kind == HOST_NAME || port == 0) {
		policy_diag(L, v,
		            "\"%s\" is not https://IP:port (an IP address literal, IPv6 in "
		            "brackets; no path)",
		            policy_clip(s, len, t, sizeof(t)));
		return;
	}
	k->api_server.addr = h.addr;
	k->api_server.port = port;
	k->api_server_set = true;
}

static int ns_cmp(const void *a, const void *b)
{
	return strcmp(((const struct policy_kube_ns *)a)->ns, ((const struct policy_kube_ns *)b)->ns);
}

static void load_namespaces(struct policy_loader *L, const struct policy_node *m,
                            struct policy_kube *k)
{
	struct policy_kube_ns *v;
	char t[72];

	if (m->bad)
		return;
	if (policy_is_null(m) || (m->kind == PN_MAP && m->n == 0)) {
		policy_diag(L, m, "expected a mapping of namespace: tier (at least one)");
		return;
	}
	if (!policy_container(L, m, PN_MAP))
		return;
	if (m->n > POLICY_MAX_KUBE_NAMESPACES) {
		policy_diag(L, m, "too many namespaces (at most %u)", POLICY_MAX_KUBE_NAMESPACES);
		return;
	}
	v = policy_arena_alloc(&L->p->arena, m->n * sizeof(*v));
	if (v == NULL) {
		L->nomem = true;
		return;
	}
	for (const struct policy_node *key = m->first; key != NULL; key = key->next) {
		if (key->bad)
			continue;
		if (!dns_label_ok(key->s, key->len)) {
			policy_diag(L, key,
			            "\"%s\" is not a namespace name (1 to 63 of a-z 0-9 -, "
			            "alphanumeric at both ends)",
			            policy_clip(key->s, key->len, t, sizeof(t)));
			continue;
		}
		int tier = policy_tier_by_name(L, key->val, "not a tier name");
		if (tier < 0)
			continue;
		v[k->n_namespaces].ns = policy_arena_str(L, key->s, key->len);
		v[k->n_namespaces++].tier = tier;
	}
	qsort(v, k->n_namespaces, sizeof(*v), ns_cmp);
	k->namespaces = v;
}

static void load_audit_labels(struct policy_loader *L, const struct policy_node *seq,
                              struct policy_kube *k)
{
	const char **v;

	if (seq == NULL || !policy_container(L, seq, PN_SEQ))
		return;
	if (seq->n > POLICY_MAX_AUDIT_LABELS) {
		policy_diag(L, seq, "too many audit_labels (at most %u)", POLICY_MAX_AUDIT_LABELS);
		return;
	}
	v = policy_arena_alloc(&L->p->arena, seq->n * sizeof(*v));
	if (v == NULL) {
		L->nomem = true;
		return;
	}
	for (const struct policy_node *it = seq->first; it != NULL; it = it->next) {
		const char *key = want_label_key(L, it);
		if (key == NULL)
			continue;
		size_t i;
		for (i = 0; i < k->n_audit_labels && strcmp(v[i], key) != 0; i++)
			;
		if (i < k->n_audit_labels)
			policy_diag(L, it, "\"%s\" is listed twice", key);
		else
			v[k->n_audit_labels++] = key;
	}
	k->audit_labels = v;
}

/* A label selector as the API accepts it; the client percent-encodes it. */
static void want_selector(struct policy_loader *L, const struct policy_node *v,
                          struct policy_kube *k)
{
	const char *s;
	size_t len;

	if (!policy_want_str(L, v, &s, &len))
		return;
	if (len == 0 || len > 1024) {
		policy_diag(L, v, "expected a label selector of 1 to 1024 characters");
		return;
	}
	k->label_selector = policy_arena_str(L, s, len);
}

static void load_kubernetes(struct policy_loader *L, const struct policy_node *id)
{
	const struct policy_node *m = policy_section(L, id, "kubernetes", kube_keys);
	struct policy_kube *k = &L->p->set.kube;
	const struct policy_node *ns, *tl, *v;

	if (m == NULL)
		return;
	k->enabled = true;
	if ((v = policy_get(m, "api_server")) != NULL)
		want_api_server(L, v, k);
	k->token_file = want_abs_path(L, policy_get(m, "token_file"), SA_DIR "token");
	k->ca_file = want_abs_path(L, policy_get(m, "ca_file"), SA_DIR "ca.crt");
	ns = policy_get(m, "namespaces");
	tl = policy_get(m, "tier_label");
	if (ns != NULL && tl != NULL) {
		policy_diag(L, tl,
		            "namespaces and tier_label cannot both be set: a pod's tier comes "
		            "from its namespace or from its label, not both");
	} else if (ns == NULL && tl == NULL) {
		policy_diag(L, m, "needs namespaces (namespace: tier) or tier_label");
	} else if (ns != NULL) {
		load_namespaces(L, ns, k);
		if ((v = policy_get(m, "label_selector")) != NULL)
			policy_diag(L, v, "label_selector goes with tier_label (namespaces mode "
			                  "watches every pod of the listed namespaces)");
	} else {
		k->tier_label = want_label_key(L, tl);
		if ((v = policy_get(m, "label_selector")) != NULL)
			want_selector(L, v, k);
		else
			k->label_selector = k->tier_label;
	}
	load_audit_labels(L, policy_get(m, "audit_labels"), k);
	policy_want_ms(L, policy_get(m, "watch_timeout"), 10 * MS_S, MS_H, "10s", "1h",
	               &k->watch_timeout_ms);
	policy_want_ms(L, policy_get(m, "backoff_max"), MS_S, 10 * MS_M, "1s", "10m",
	               &k->backoff_max_ms);
	policy_want_u32(L, policy_get(m, "max_pods"), 1, 1000000, &k->max_pods);
}

/* One identity.client_certs rule: exactly one of spiffe, dns, cn; and a tier. */
static void load_cert_rule(struct policy_loader *L, const struct policy_node *it,
                           struct policy_cert_rule *r)
{
	static const char *const kinds[] = {"spiffe", "dns", "cn"};
	const struct policy_node *which = NULL;
	char t[72];
	if (!policy_container(L, it, PN_MAP))
		return;
	policy_check_keys(L, it, cert_rule_keys);
	for (int k = 0; k < 3; k++) {
		const struct policy_node *v = policy_get(it, kinds[k]);
		if (v == NULL)
			continue;
		if (which != NULL) {
			policy_diag(L, v,
			            "a rule matches by one of spiffe, dns or cn, not several");
			return;
		}
		which = v;
		r->kind = (enum policy_cert_match)k;
	}
	const struct policy_node *tier = policy_get(it, "tier");
	if (which == NULL) {
		policy_diag(L, it, "a rule needs one of spiffe, dns or cn");
		return;
	}
	if (tier == NULL)
		policy_missing(L, it, "tier");
	else
		r->tier = policy_tier_by_name(L, tier, "not a tier name");
	const char *s;
	size_t len;
	if (!policy_want_str(L, which, &s, &len))
		return;
	int st;
	switch (r->kind) {
	case POLICY_CERT_SPIFFE:
		st = spiffe_pattern_check(s, len);
		if (st != SPIFFE_OK)
			policy_diag(L, which, "\"%s\": %s", policy_clip(s, len, t, sizeof(t)),
			            spiffe_status_str(st));
		break;
	case POLICY_CERT_DNS:
		if (host_pattern_parse(s, len, &r->host, &r->wildcard) != HOST_OK ||
		    r->host.kind != HOST_NAME)
			policy_diag(L, which,
			            "\"%s\" is not a host name pattern (\"name\" or \"*.name\")",
			            policy_clip(s, len, t, sizeof(t)));
		break;
	case POLICY_CERT_CN:
		if (len == 0 || len > 64 || memchr(s, '\0', len) != NULL)
			policy_diag(L, which, "a common name is 1 to 64 bytes");
		break;
	}
	r->pattern = policy_arena_str(L, s, len);
	r->len = len;
}

static void load_cert_rules(struct policy_loader *L, const struct policy_node *v)
{
	struct policy_settings *set = &L->p->set;
	if (!policy_container(L, v, PN_SEQ))
		return;
	if (v->n > POLICY_MAX_CERT_RULES) {
		policy_diag(L, v, "at most %d rules", POLICY_MAX_CERT_RULES);
		return;
	}
	struct policy_cert_rule *rules = policy_arena_alloc(&L->p->arena, v->n * sizeof(*rules));
	if (rules == NULL) {
		L->nomem = true;
		return;
	}
	size_t n = 0;
	for (const struct policy_node *it = v->first; it != NULL; it = it->next) {
		memset(&rules[n], 0, sizeof(rules[n]));
		rules[n].tier = -1;
		load_cert_rule(L, it, &rules[n]);
		n++;
	}
	set->cert_rules = rules;
	set->n_cert_rules = n;
	if (set->listen_tls.client_certs == POLICY_CLIENT_CERTS_OFF)
		policy_diag(L, v,
		            "client certificate rules need listen.tls.client_certs: request "
		            "or require");
}

void policy_load_identity(struct policy_loader *L, const struct policy_node *root)
{
	const struct policy_node *m = policy_section(L, root, "identity", identity_keys);
	const struct policy_node *v = policy_get(m, "unknown_source");

	if (v != NULL && !policy_is_word(v, "deny")) {
		int t = policy_tier_by_name(L, v, "neither deny nor a tier name");
		if (t >= 0) {
			L->p->set.unknown_source_tier = t;
			L->p->unknown_line = v->line;
			L->p->unknown_col = v->col;
		}
	}
	policy_want_u32(L, policy_get(m, "ipv6_source_prefix"), 32, 128,
	                &L->p->set.ipv6_source_prefix);
	if (m != NULL)
		load_kubernetes(L, m);
	policy_load_oidc(L, m);
	v = policy_get(m, "client_certs");
	if (v != NULL)
		load_cert_rules(L, v);
	else if (L->p->set.listen_tls.client_certs != POLICY_CLIENT_CERTS_OFF)
		policy_diag_at(L, 0, 0, "identity",
		               "listen.tls.client_certs needs identity.client_certs rules (a "
		               "certificate that matches no rule is refused)");
}
