/* Decisions and identity on a loaded snapshot, plus the snapshot's lifetime and accessors. */
#include "policy.h"
#include "policy_int.h"
#include "spiffe.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct policy *policy_ref(struct policy *p)
{
	if (p != NULL)
		atomic_fetch_add_explicit(&p->refs, 1, memory_order_relaxed);
	return p;
}

void policy_unref(struct policy *p)
{
	if (p == NULL)
		return;
	/* acq_rel: every use by other holders happens before the free. */
	if (atomic_fetch_sub_explicit(&p->refs, 1, memory_order_acq_rel) == 1)
		policy_destroy(p);
}

int policy_create(struct policy **out)
{
	static const struct policy_sockaddr proxy = {{ADDR_V4, {127, 0, 0, 1}}, 3128};
	static const struct policy_sockaddr admin = {{ADDR_V4, {127, 0, 0, 1}}, 9090};
	struct policy *p = calloc(1, sizeof(*p));

	if (p == NULL)
		return POLICY_ERR_NOMEM;
	atomic_init(&p->refs, 1);
	*out = p;
	p->blocked = range_set_create();
	p->sources = range_set_create();
	if (p->blocked == NULL || p->sources == NULL ||
	    range_set_add_builtin_blocked(p->blocked) != RANGE_OK)
		return POLICY_ERR_NOMEM;
	struct policy_settings *s = &p->set;
	s->listen_proxy[0] = proxy;
	s->n_listen_proxy = 1;
	s->listen_admin = admin;
	s->resolver_timeout_ms = 1500;
	s->resolver_attempts = 2;
	s->resolver_max_answers = 16;
	s->audit_output = "-";
	s->audit_queue_bytes = 16u << 20;
	s->audit_interim_ms = 5 * MS_M;
	s->max_connections = 10000;
	s->max_sources = 1000000;
	s->ipv6_source_prefix = 64;
	s->header_timeout_ms = 10 * MS_S;
	s->max_header_bytes = 8192;
	s->max_headers = 100;
	s->connect_timeout_ms = 5 * MS_S;
	s->idle_timeout_ms = 5 * MS_M;
	s->max_lifetime_ms = MS_H;
	s->drain_timeout_ms = 30 * MS_S;
	s->unknown_source_tier = -1;
	s->kube.watch_timeout_ms = 5 * MS_M;
	s->kube.backoff_max_ms = 30 * MS_S;
	s->kube.max_pods = 65536;
	s->interception.leaf_lifetime_ms = 24 * MS_H;
	s->interception.cache_size = 1000;
	return POLICY_OK;
}

void policy_tier_builtin(struct policy_tier *t, const struct policy_settings *s)
{
	static const uint16_t tls443[] = {443};

	t->require_sni = true;
	t->sni_must_match = true;
	t->allow_ech = false;
	t->tls_ports = tls443;
	t->n_tls_ports = 1;
	t->hello_timeout_ms = 5 * MS_S;
	t->max_hello_bytes = 16384;
	t->upload_bytes = 0;
	t->download_bytes = 0;
	t->connections_per_source = 256;
	t->upload_budget_bytes = 0;
	t->upload_budget_window_ms = 0;
	t->http_methods = NULL; /* any */
	t->n_http_methods = 0;
	t->http_allow_upgrade = false;
	t->connect_timeout_ms = s->connect_timeout_ms;
	t->idle_timeout_ms = s->idle_timeout_ms;
	t->max_lifetime_ms = s->max_lifetime_ms;
}

void policy_destroy(struct policy *p)
{
	if (p == NULL)
		return;
	for (size_t i = 0; i < p->n_tiers; i++)
		range_set_destroy(p->tiers[i].allow_ranges);
	range_set_destroy(p->blocked);
	range_set_destroy(p->sources);
	for (size_t i = 0; i < POLICY_MAX_LISTEN; i++)
		range_set_destroy(p->pp_trusted[i]);
	if (p->ext_free != NULL)
		p->ext_free(p->ext);
	policy_arena_fini(&p->arena);
	free(p);
}

const struct policy_settings *policy_settings(const struct policy *p)
{
	return &p->set;
}

size_t policy_tier_count(const struct policy *p)
{
	return p->n_tiers;
}

const struct policy_tier *policy_tier(const struct policy *p, size_t i)
{
	return i < p->n_tiers ? &p->tiers[i].pub : NULL;
}

size_t policy_rule_count(const struct policy *p)
{
	return p->n_rules;
}

size_t policy_range_count(const struct policy *p)
{
	size_t n = range_set_count(p->blocked);
	for (size_t i = 0; i < p->n_tiers; i++)
		n += range_set_count(p->tiers[i].allow_ranges);
	return n;
}

/*
 * A dual-stack listener sees IPv4 clients as ::ffff:a.b.c.d: identify them by
 * their IPv4 address.  Only the mapped form: 6to4, Teredo or NAT64 sources are
 * IPv6 hosts and must not borrow an IPv4 tier.
 */
static bool cert_rule_match(const struct policy_cert_rule *r, const struct policy_cert_id *id)
{
	switch (r->kind) {
	case POLICY_CERT_SPIFFE:
		return id->spiffe != NULL &&
		       spiffe_pattern_match(r->pattern, r->len, id->spiffe, strlen(id->spiffe));
	case POLICY_CERT_CN:
		return id->cn != NULL && strlen(id->cn) == r->len &&
		       memcmp(id->cn, r->pattern, r->len) == 0;
	case POLICY_CERT_DNS:
		for (size_t i = 0; i < id->n_dns; i++) {
			struct pc_host h;
			/* A SAN that is no canonical host name (a wildcard SAN, junk) matches
			 * nothing. */
			if (host_canon(id->dns[i], strlen(id->dns[i]), &h) == HOST_OK &&
			    h.kind == HOST_NAME && host_pattern_match(&r->host, r->wildcard, &h))
				return true;
		}
		return false;
	}
	return false;
}

int policy_identify_cert(const struct policy *p, const struct policy_cert_id *id, const char **rule)
{
	const struct policy_settings *s = &p->set;
	*rule = NULL;
	for (size_t i = 0; i < s->n_cert_rules; i++) {
		if (cert_rule_match(&s->cert_rules[i], id)) {
			*rule = s->cert_rules[i].pattern;
			return s->cert_rules[i].tier;
		}
	}
	return -1;
}

int policy_identify(const struct policy *p, const struct pc_addr *src)
{
	static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
	struct pc_addr v4;
	int tag;
	unsigned plen;

	if (src->family == ADDR_V6 && memcmp(src->b, mapped, sizeof(mapped)) == 0) {
		memset(&v4, 0, sizeof(v4));
		v4.family = ADDR_V4;
		memcpy(v4.b, src->b + 12, 4);
		src = &v4;
	}
	if (range_set_lookup(p->sources, src, &tag, &plen))
		return tag;
	return p->set.unknown_source_tier;
}

bool policy_listen_trusted(const struct policy *p, size_t listener, const struct pc_addr *peer)
{
	static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
	struct pc_addr v4;

	if (listener >= p->set.n_listen_proxy || p->set.listen_pp[listener].accept == 0 ||
	    p->pp_trusted[listener] == NULL)
		return false;
	/* A dual-stack listener sees an IPv4 balancer as ::ffff:a.b.c.d. */
	if (peer->family == ADDR_V6 && memcmp(peer->b, mapped, sizeof(mapped)) == 0) {
		memset(&v4, 0, sizeof(v4));
		v4.family = ADDR_V4;
		memcpy(v4.b, peer->b + 12, 4);
		peer = &v4;
	}
	return range_set_contains(p->pp_trusted[listener], peer);
}

int policy_identify_pod(const struct policy *p, const char *ns, const char *tier_label_value)
{
	const struct policy_kube *k = &p->set.kube;

	if (k->tier_label != NULL) {
		if (tier_label_value == NULL)
			return p->set.unknown_source_tier;
		for (size_t i = 0; i < p->n_tiers; i++)
			if (strcmp(p->tiers[i].pub.name, tier_label_value) == 0)
				return (int)i;
		return p->set.unknown_source_tier;
	}
	size_t lo = 0, hi = k->n_namespaces;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = strcmp(ns, k->namespaces[mid].ns);
		if (c == 0)
			return k->namespaces[mid].tier;
		if (c < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	return p->set.unknown_source_tier;
}

bool policy_tier_method_allowed(const struct policy_tier *t, const char *method, size_t len)
{
	if (t == NULL || method == NULL || len == 0)
		return false;
	/* CONNECT opens a tunnel; the allow rules decide it, never http.methods. */
	if (len == 7 && memcmp(method, "CONNECT", 7) == 0)
		return false;
	if (t->n_http_methods == 0)
		return true;
	/* Exact bytes: methods are case-sensitive (RFC 9110 §9.1). */
	for (size_t i = 0; i < t->n_http_methods; i++)
		if (strlen(t->http_methods[i]) == len &&
		    memcmp(t->http_methods[i], method, len) == 0)
			return true;
	return false;
}

bool policy_tier_ja4_allowed(const struct policy_tier *t, const char *ja4)
{
	if (t == NULL || ja4 == NULL)
		return false;
	for (size_t i = 0; i < t->n_ja4_deny; i++)
		if (strcmp(t->ja4_deny[i], ja4) == 0)
			return false;
	if (t->n_ja4_allow == 0)
		return true;
	for (size_t i = 0; i < t->n_ja4_allow; i++)
		if (strcmp(t->ja4_allow[i], ja4) == 0)
			return true;
	return false;
}

static bool in_set(char c, const char *set)
{
	return c != '\0' && strchr(set, c) != NULL;
}

bool policy_ja4_valid(const char *s, size_t n)
{
	static const char lower_alnum[] = "0123456789abcdefghijklmnopqrstuvwxyz";
	static const char alpn[] = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
	static const char hex[] = "0123456789abcdef";
	if (s == NULL || n != 36) /* 10 + "_" + 12 + "_" + 12 */
		return false;
	if (!in_set(s[0], "tqd") || !in_set(s[1], lower_alnum) || !in_set(s[2], lower_alnum) ||
	    !in_set(s[3], "di") || s[10] != '_' || s[23] != '_')
		return false;
	for (size_t i = 4; i < 8; i++)
		if (!in_set(s[i], "0123456789"))
			return false;
	/* The ALPN characters are the protocol's own, either case. */
	if (!in_set(s[8], alpn) || !in_set(s[9], alpn))
		return false;
	for (size_t i = 11; i < n; i++)
		if (i != 23 && !in_set(s[i], hex))
			return false;
	return true;
}

static const struct policy_tier_int *tier_of(const struct policy *p, int tier)
{
	if (p == NULL || tier < 0 || (size_t)tier >= p->n_tiers)
		return NULL;
	return &p->tiers[tier];
}

/* The prefix of a that is plen bits long, the rest zeroed. */
static struct pc_addr masked(const struct pc_addr *a, unsigned plen)
{
	struct pc_addr m = *a;
	for (unsigned i = 0; i < 16; i++) {
		unsigned keep = plen > i * 8 ? (plen - i * 8 >= 8 ? 8 : plen - i * 8) : 0;
		m.b[i] &= (uint8_t)(0xff00u >> keep);
	}
	return m;
}

/* Fill *why (when not NULL) for a blocked view; line is that of a blocked_ranges entry. */
static void tell(const struct policy *p, struct policy_block *why, const struct pc_addr *view,
                 bool embedded, unsigned plen)
{
	if (why == NULL)
		return;
	memset(why, 0, sizeof(*why));
	why->view = *view;
	why->embedded = embedded;
	why->plen = plen;
	why->prefix = masked(view, plen);
	for (size_t i = 0; i < p->n_blocked_list; i++)
		if (p->blocked_list[i].plen == plen && addr_equal(&p->blocked_list[i].a, &why->prefix))
			why->line = p->blocked_list[i].line;
}

/* One view of an address: in a blocked range and not lifted by the tier's allow_ranges. */
static bool view_blocked(const struct policy *p, const struct policy_tier_int *t,
                         const struct pc_addr *a, bool embedded, struct policy_block *why)
{
	unsigned plen;
	if (!range_set_lookup(p->blocked, a, NULL, &plen))
		return false;
	if (t != NULL && range_set_lookup(t->allow_ranges, a, NULL, NULL))
		return false;
	tell(p, why, a, embedded, plen);
	return true;
}

/*
 * Blocked when the address itself, or any IPv4 address embedded in it (mapped,
 * compat, NAT64, 6to4, Teredo client and server), is blocked and that same
 * address is not in the tier's allow_ranges.  View by view, so an allowed
 * Teredo server cannot vouch for a blocked Teredo client.
 */
bool policy_addr_blocked(const struct policy *p, int tier, const struct pc_addr *a)
{
	return policy_addr_blocked_why(p, tier, a, NULL);
}

bool policy_addr_blocked_why(const struct policy *p, int tier, const struct pc_addr *a,
                             struct policy_block *why)
{
	const struct policy_tier_int *t = tier_of(p, tier);
	struct pc_addr v4[ADDR_EMBEDDED_MAX];

	if (why != NULL)
		memset(why, 0, sizeof(*why));
	/* Fail closed on anything that is not an address. */
	if (p == NULL || a == NULL || (a->family != ADDR_V4 && a->family != ADDR_V6))
		return true;
	if (view_blocked(p, t, a, false, why))
		return true;
	/* Fail closed: an IPv4 address we cannot read out of a NAT64 address could be any. */
	if (addr_nat64_unknown_layout(a) && (t == NULL || !range_set_lookup(t->allow_ranges, a, NULL, NULL))) {
		tell(p, why, a, false, 32);
		if (why != NULL)
			why->nat64_unknown = true;
		return true;
	}
	size_t n = addr_embedded_v4_all(a, v4, ADDR_EMBEDDED_MAX);
	for (size_t i = 0; i < n && i < ADDR_EMBEDDED_MAX; i++)
		if (view_blocked(p, t, &v4[i], true, why))
			return true;
	return false;
}

bool policy_source_place(const struct policy *p, int tier, const struct pc_addr *src, char *cidr,
                         size_t cap, unsigned *line)
{
	static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
	const struct policy_tier_int *t = tier_of(p, tier);
	const struct policy_cidr *best = NULL;
	struct pc_addr v4;

	if (t == NULL || src == NULL)
		return false;
	if (src->family == ADDR_V6 && memcmp(src->b, mapped, sizeof(mapped)) == 0) {
		memset(&v4, 0, sizeof(v4));
		v4.family = ADDR_V4;
		memcpy(v4.b, src->b + 12, 4);
		src = &v4;
	}
	for (size_t i = 0; i < t->n_sources_list; i++) {
		const struct policy_cidr *c = &t->sources_list[i];
		struct pc_addr m = masked(src, c->plen);
		if (c->a.family == src->family && addr_equal(&m, &c->a) &&
		    (best == NULL || c->plen > best->plen))
			best = c;
	}
	if (best == NULL)
		return false;
	char a[ADDR_STRLEN];
	addr_format(&best->a, a, sizeof(a));
	snprintf(cidr, cap, "%s/%u", a, best->plen);
	*line = best->line;
	return true;
}

bool policy_tier_places(const struct policy *p, int tier, struct policy_tier_places *out)
{
	const struct policy_tier_int *t = tier_of(p, tier);
	if (t == NULL)
		return false;
	*out = (struct policy_tier_places){t->key_line,  t->key_col,   t->body_line, t->body_col,
	                                   t->allow_line, t->allow_col, t->n_rules};
	return true;
}

bool policy_rule_place(const struct policy *p, int tier, size_t i, const char **name,
                       unsigned *line, unsigned *col)
{
	const struct policy_tier_int *t = tier_of(p, tier);
	if (t == NULL || i >= t->n_rules)
		return false;
	*name = t->rules[i].name;
	*line = t->rules[i].line;
	*col = t->rules[i].col;
	return true;
}

static bool rule_matches(const struct policy_rule *r, const struct pc_host *h)
{
	/* Name patterns only match names and address rules only addresses. */
	if ((r->pat.kind == HOST_NAME) != (h->kind == HOST_NAME))
		return false;
	if (h->kind != HOST_NAME)
		return addr_equal(&r->pat.addr, &h->addr);
	return host_pattern_match(&r->pat, r->wildcard, h);
}

static void deny(struct verdict *out, enum reason r)
{
	out->allow = false;
	out->would_deny = false;
	out->reason = r;
	out->rule = "";
	out->rule_line = 0;
	out->host_rule_line = 0;
	out->intercept = NULL;
}

void policy_decide_host(const struct policy *p, int tier, const struct pc_host *host, uint16_t port,
                        struct verdict *out)
{
	const struct policy_tier_int *t = tier_of(p, tier);
	enum reason why = R_HOST_NOT_ALLOWED;
	unsigned host_line = 0;

	deny(out, R_UNKNOWN_SOURCE);
	if (t == NULL)
		return;
	if (host == NULL) {
		deny(out, R_INVALID_HOST);
		return;
	}
	/* A blocked literal is refused in every mode: audit never opens a path to metadata. */
	if (host->kind != HOST_NAME && policy_addr_blocked(p, tier, &host->addr)) {
		deny(out, R_BLOCKED_ADDRESS);
		return;
	}
	for (size_t i = 0; i < t->n_rules; i++) {
		const struct policy_rule *r = &t->rules[i];
		if (!rule_matches(r, host))
			continue;
		for (size_t j = 0; j < r->n_ports; j++) {
			if (r->ports[j] == port) {
				out->allow = true;
				out->reason = R_ALLOWED;
				out->rule = r->name;
				out->rule_line = r->line;
				out->intercept = r->intercept;
				return;
			}
		}
		why = R_PORT_NOT_ALLOWED;
		if (host_line == 0)
			host_line = r->line;
	}
	deny(out, why);
	out->host_rule_line = host_line;
	if (t->pub.mode == TIER_AUDIT) {
		out->allow = true;
		out->would_deny = true;
	}
}

void policy_decide_addrs(const struct policy *p, int tier, const struct pc_addr *addrs, size_t n,
                         struct verdict *out)
{
	deny(out, R_UNKNOWN_SOURCE);
	if (tier_of(p, tier) == NULL)
		return;
	if (addrs == NULL || n == 0) {
		deny(out, R_DNS_ERROR);
		return;
	}
	for (size_t i = 0; i < n; i++) {
		if (policy_addr_blocked(p, tier, &addrs[i])) {
			deny(out, R_RESOLVED_TO_BLOCKED);
			return;
		}
	}
	out->allow = true;
	out->reason = R_ALLOWED;
}
