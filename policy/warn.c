/* Warnings: policies that are valid but dangerous, each with a stable code and its place. */
#include "warn.h"
#include "policy_int.h"

#include <libpsl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hash.h"

static const char *const names[PW__COUNT] = {
    [PW_ALLOW_RANGE_EVERYTHING] = "allow_range_everything",
    [PW_ALLOW_RANGE_METADATA] = "allow_range_metadata",
    [PW_ALLOW_RANGE_LOOPBACK] = "allow_range_loopback",
    [PW_SOURCES_EVERYTHING] = "sources_everything",
    [PW_UNKNOWN_SOURCE_TIER] = "unknown_source_tier",
    [PW_RULE_IP_LITERAL] = "rule_ip_literal",
    [PW_RULE_BLOCKED_ADDRESS] = "rule_blocked_address",
    [PW_RULE_PUBLIC_SUFFIX] = "rule_public_suffix",
    [PW_RULE_DUPLICATE] = "rule_duplicate",
    [PW_RULE_SHADOWED] = "rule_shadowed",
    [PW_TIER_AUDIT_MODE] = "tier_audit_mode",
    [PW_TLS_PORT_UNCHECKED] = "tls_port_unchecked",
    [PW_AUDIT_QUEUE_SMALL] = "audit_queue_small",
    [PW_PROXY_TRUSTED_BROAD] = "proxy_trusted_broad",
    [PW_OIDC_RULE_UNSCOPED] = "oidc_rule_unscoped",
};

const char *policy_warn_name(enum policy_warn w)
{
	return (unsigned)w < PW__COUNT ? names[w] : "unknown";
}

bool policy_is_public_suffix(const char *name)
{
	/* The list compiled into Debian's libpsl: static data, no file is read. */
	const psl_ctx_t *psl = psl_builtin();
	if (psl == NULL)
		return true; /* fail closed: without the list every suffix is suspect */
	return psl_is_public_suffix2(psl, name, PSL_TYPE_ANY | PSL_TYPE_NO_STAR_RULE) != 0;
}

static void add(struct policy_warnings *out, enum policy_warn code, unsigned line, unsigned col,
                const char *fmt, ...) __attribute__((format(printf, 5, 6)));

static void add(struct policy_warnings *out, enum policy_warn code, unsigned line, unsigned col,
                const char *fmt, ...)
{
	if (out->n == POLICY_MAX_WARNINGS) {
		out->truncated = true;
		return;
	}
	struct policy_warning *w = &out->v[out->n++];
	w->code = code;
	w->line = line;
	w->col = col;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(w->msg, sizeof(w->msg), fmt, ap);
	va_end(ap);
}

/* Does prefix a/la overlap prefix b/lb (one contains the other)? */
static bool overlap(const struct pc_addr *a, unsigned la, const struct pc_addr *b, unsigned lb)
{
	unsigned bits = la < lb ? la : lb;
	if (a->family != b->family)
		return false;
	if (memcmp(a->b, b->b, bits / 8) != 0)
		return false;
	if (bits % 8 == 0)
		return true;
	uint8_t mask = (uint8_t)(0xff00u >> (bits % 8));
	return (a->b[bits / 8] & mask) == (b->b[bits / 8] & mask);
}

static const char *cidr_text(const struct policy_cidr *c, char *buf, size_t cap)
{
	char a[ADDR_STRLEN];
	addr_format(&c->a, a, sizeof(a));
	snprintf(buf, cap, "%s/%u", a, c->plen);
	return buf;
}

/*
 * Cloud metadata and platform endpoints: AWS, GCP, Azure and OpenStack
 * (169.254.169.254), ECS task metadata (169.254.170.2), Azure wireserver
 * (168.63.129.16), Alibaba Cloud (100.100.100.200), AWS over IPv6 (fd00:ec2::254).
 */
static const struct {
	uint8_t family;
	uint8_t b[16];
	const char *text;
} metadata[] = {
    {ADDR_V4, {169, 254, 169, 254}, "169.254.169.254"},
    {ADDR_V4, {169, 254, 170, 2}, "169.254.170.2"},
    {ADDR_V4, {168, 63, 129, 16}, "168.63.129.16"},
    {ADDR_V4, {100, 100, 100, 200}, "100.100.100.200"},
    {ADDR_V6, {0xfd, 0, 0, 0, 0, 0, 0x0e, 0xc2, 0, 0, 0, 0, 0, 0, 0x02, 0x54}, "fd00:ec2::254"},
};

static void warn_allow_ranges(const struct policy_tier_int *t, struct policy_warnings *out)
{
	static const struct pc_addr lo4 = {ADDR_V4, {127}};
	static const struct pc_addr lo6 = {ADDR_V6, {[15] = 1}};
	char c[64];

	for (size_t i = 0; i < t->n_allow_list; i++) {
		const struct policy_cidr *e = &t->allow_list[i];
		cidr_text(e, c, sizeof(c));
		if (e->plen == 0) {
			add(out, PW_ALLOW_RANGE_EVERYTHING, e->line, e->col,
			    "tiers.%s.allow_ranges[%zu]: %s lifts every blocked range, cloud "
			    "metadata and loopback included: list only the internal ranges this "
			    "tier must reach",
			    t->pub.name, i, c);
			continue;
		}
		size_t m;
		for (m = 0; m < sizeof(metadata) / sizeof(metadata[0]); m++) {
			struct pc_addr a = {.family = metadata[m].family};
			memcpy(a.b, metadata[m].b, 16);
			if (overlap(&e->a, e->plen, &a, a.family == ADDR_V4 ? 32 : 128))
				break;
		}
		if (m < sizeof(metadata) / sizeof(metadata[0])) {
			add(out, PW_ALLOW_RANGE_METADATA, e->line, e->col,
			    "tiers.%s.allow_ranges[%zu]: %s holds the cloud metadata address %s: "
			    "a job of this tier can read the node's credentials",
			    t->pub.name, i, c, metadata[m].text);
		} else if (overlap(&e->a, e->plen, &lo4, 8) || overlap(&e->a, e->plen, &lo6, 128)) {
			add(out, PW_ALLOW_RANGE_LOOPBACK, e->line, e->col,
			    "tiers.%s.allow_ranges[%zu]: %s overlaps loopback: a job of this tier "
			    "can reach services listening on the proxy's own host",
			    t->pub.name, i, c);
		}
	}
}

static void warn_sources(const struct policy *p, const struct policy_tier_int *t,
                         struct policy_warnings *out)
{
	char c[64];
	for (size_t i = 0; i < t->n_sources_list; i++) {
		const struct policy_cidr *e = &t->sources_list[i];
		if (e->plen == 0)
			add(out, PW_SOURCES_EVERYTHING, e->line, e->col,
			    "tiers.%s.sources[%zu]: %s puts every %s client in this tier, "
			    "whatever it is: list the runners' CIDRs",
			    t->pub.name, i, cidr_text(e, c, sizeof(c)),
			    e->a.family == ADDR_V4 ? "IPv4" : "IPv6");
	}
	(void)p;
}

/*
 * A trusted balancer sets the source of what it forwards.  A range that is /0,
 * or that holds a tier's clients, lets those clients send their own header and
 * take another tier's identity, limits and audit name.
 */
static void warn_trusted(const struct policy *p, struct policy_warnings *out)
{
	char c[64];
	for (size_t l = 0; l < p->set.n_listen_proxy; l++) {
		for (size_t i = 0; i < p->n_pp_trusted_list[l]; i++) {
			const struct policy_cidr *e = &p->pp_trusted_list[l][i];
			if (e->plen == 0) {
				add(out, PW_PROXY_TRUSTED_BROAD, e->line, e->col,
				    "listen.proxy[%zu].proxy_protocol.trusted[%zu]: %s trusts every "
				    "peer to name its own source; list the load balancers' addresses",
				    l, i, cidr_text(e, c, sizeof(c)));
				continue;
			}
			for (size_t t = 0; t < p->n_tiers; t++) {
				const struct policy_tier_int *ti = &p->tiers[t];
				size_t k = 0;
				while (k < ti->n_sources_list &&
				       !overlap(&e->a, e->plen, &ti->sources_list[k].a,
				                ti->sources_list[k].plen))
					k++;
				if (k == ti->n_sources_list)
					continue;
				add(out, PW_PROXY_TRUSTED_BROAD, e->line, e->col,
				    "listen.proxy[%zu].proxy_protocol.trusted[%zu]: %s overlaps the "
				    "sources of tier '%s' (line %u): a client there could send its own "
				    "PROXY header and choose its source; trust only the balancers' "
				    "addresses",
				    l, i, cidr_text(e, c, sizeof(c)), ti->pub.name,
				    ti->sources_list[k].line);
				break;
			}
		}
	}
}

/* A rule's pattern as a key: "a:" address, "n:" exact name, "w:" wildcard suffix. */
static size_t rule_key(const struct policy_rule *r, char *buf, size_t cap)
{
	int n = snprintf(buf, cap, "%c:%s",
	                 r->pat.kind != HOST_NAME ? 'a' : (r->wildcard ? 'w' : 'n'), r->pat.name);
	return n < 0 ? 0 : ((size_t)n < cap ? (size_t)n : cap - 1);
}

/*
 * Earlier rules of one tier by pattern key, each key with the union of the
 * ports its rules allow and the first of them.  Open addressing, sized for the
 * tier's rules at most half full.
 */
struct seen {
	char *key; /* NULL: empty slot */
	uint16_t *ports;
	size_t n_ports;
	size_t first; /* index of the first rule with this key */
};

struct seen_table {
	struct seen *slot;
	size_t mask;
	uint64_t seed;
};

static struct seen *seen_find(struct seen_table *t, const char *key, size_t len, bool insert)
{
	size_t i = (size_t)hash_bytes(t->seed, key, len) & t->mask;
	for (;; i = (i + 1) & t->mask) {
		struct seen *s = &t->slot[i];
		if (s->key == NULL) {
			if (!insert)
				return NULL;
			s->key = strndup(key, len);
			return s->key != NULL ? s : NULL;
		}
		if (strlen(s->key) == len && memcmp(s->key, key, len) == 0)
			return s;
	}
}

static bool has_port(const struct seen *s, uint16_t port)
{
	for (size_t i = 0; s != NULL && i < s->n_ports; i++)
		if (s->ports[i] == port)
			return true;
	return false;
}

/*
 * The earlier keys that cover every host rule r matches: its own key; for a
 * name or a wildcard, every wildcard over a proper suffix of at least two labels.
 */
static size_t covering(struct seen_table *tab, const struct policy_rule *r, struct seen **cov,
                       size_t cap)
{
	char key[HOST_NAME_MAX_LEN + 4];
	size_t n = 0, len = rule_key(r, key, sizeof(key));
	struct seen *s = seen_find(tab, key, len, false);
	if (s != NULL)
		cov[n++] = s;
	if (r->pat.kind != HOST_NAME)
		return n;
	/* *.x covers the name x.y.z and the wildcard *.y.z: walk the suffixes after each dot. */
	for (const char *d = strchr(r->pat.name, '.'); d != NULL && n < cap; d = strchr(d + 1, '.')) {
		if (strchr(d + 1, '.') == NULL)
			break; /* a wildcard needs two labels */
		len = (size_t)snprintf(key, sizeof(key), "w:%s", d + 1);
		if ((s = seen_find(tab, key, len, false)) != NULL)
			cov[n++] = s;
	}
	/* A wildcard rule itself: *.a is covered by w:a (its own key, above) or by w:suffix. */
	return n;
}

static int warn_shadowed(const struct policy_tier_int *t, struct policy_warnings *out)
{
	struct seen_table tab = {.seed = 0x5eed0fa11ed0b0b5ull};
	size_t size = 16;
	int rc = POLICY_OK;

	while (size < 2 * t->n_rules)
		size *= 2;
	tab.slot = calloc(size, sizeof(*tab.slot));
	if (tab.slot == NULL)
		return POLICY_ERR_NOMEM;
	tab.mask = size - 1;
	for (size_t j = 0; j < t->n_rules; j++) {
		const struct policy_rule *r = &t->rules[j];
		struct seen *cov[HOST_NAME_MAX_LEN / 2 + 2];
		size_t nc = r->name != NULL ? covering(&tab, r, cov, sizeof(cov) / sizeof(cov[0])) : 0;
		const struct seen *by = NULL;
		bool all = nc > 0;
		for (size_t k = 0; all && k < r->n_ports; k++) {
			size_t c;
			for (c = 0; c < nc && !has_port(cov[c], r->ports[k]); c++)
				;
			if (c == nc)
				all = false;
			else if (by == NULL || cov[c]->first < by->first)
				by = cov[c];
		}
		if (all && by != NULL) {
			const struct policy_rule *first = &t->rules[by->first];
			bool same = first->wildcard == r->wildcard && first->pat.kind == r->pat.kind &&
			            strcmp(first->pat.name, r->pat.name) == 0;
			add(out, same ? PW_RULE_DUPLICATE : PW_RULE_SHADOWED, r->line, r->col,
			    same ? "tiers.%s.allow[%zu]: %s%s repeats the rule at line %u; every "
			           "port it allows is already allowed, so it never decides"
			         : "tiers.%s.allow[%zu]: %s%s can never decide: the earlier rule at "
			           "line %u already matches every host and port it allows",
			    t->pub.name, j, r->wildcard ? "*." : "", r->pat.name, first->line);
		}
		if (r->name == NULL)
			continue; /* a rule that failed to load has no pattern */
		char key[HOST_NAME_MAX_LEN + 4];
		size_t len = rule_key(r, key, sizeof(key));
		struct seen *s = seen_find(&tab, key, len, true);
		if (s == NULL) {
			rc = POLICY_ERR_NOMEM;
			break;
		}
		if (s->ports == NULL)
			s->first = j;
		uint16_t *np = realloc(s->ports, (s->n_ports + r->n_ports) * sizeof(*np));
		if (np == NULL) {
			rc = POLICY_ERR_NOMEM;
			break;
		}
		s->ports = np;
		for (size_t k = 0; k < r->n_ports; k++)
			if (!has_port(s, r->ports[k]))
				s->ports[s->n_ports++] = r->ports[k];
	}
	for (size_t i = 0; i < size; i++) {
		free(tab.slot[i].key);
		free(tab.slot[i].ports);
	}
	free(tab.slot);
	return rc;
}

static bool port_in(uint16_t port, const uint16_t *v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (v[i] == port)
			return true;
	return false;
}

static void warn_rules(const struct policy *p, int ti, struct policy_warnings *out)
{
	const struct policy_tier_int *t = &p->tiers[ti];
	char a[ADDR_STRLEN];

	for (size_t j = 0; j < t->n_rules; j++) {
		const struct policy_rule *r = &t->rules[j];
		if (r->name == NULL)
			continue;
		if (r->pat.kind != HOST_NAME) {
			struct policy_block b;
			addr_format(&r->pat.addr, a, sizeof(a));
			if (policy_addr_blocked_why(p, ti, &r->pat.addr, &b))
				add(out, PW_RULE_BLOCKED_ADDRESS, r->line, r->col,
				    "tiers.%s.allow[%zu]: %s is in a blocked range, so this rule "
				    "never allows (blocked_address in every mode); to reach it, add "
				    "its range to the tier's allow_ranges",
				    t->pub.name, j, a);
			else
				add(out, PW_RULE_IP_LITERAL, r->line, r->col,
				    "tiers.%s.allow[%zu]: %s is an IP address: it allows whoever "
				    "holds that address and no TLS name check can tie it to a "
				    "service; allow the service's name",
				    t->pub.name, j, a);
		} else if (r->wildcard && policy_is_public_suffix(r->pat.name)) {
			add(out, PW_RULE_PUBLIC_SUFFIX, r->line, r->col,
			    "tiers.%s.allow[%zu]: *.%s: %s is a public suffix (the names under "
			    "it belong to different owners), so this allows all of them; list the "
			    "names you need",
			    t->pub.name, j, r->pat.name, r->pat.name);
		}
		for (size_t k = 0; k < r->n_ports; k++) {
			uint16_t port = r->ports[k];
			if (port_in(port, t->pub.tls_ports, t->pub.n_tls_ports))
				continue;
			if (port != 443 &&
			    !port_in(port, p->default_tls_ports, p->n_default_tls_ports))
				continue;
			add(out, PW_TLS_PORT_UNCHECKED, r->line, r->col,
			    "tiers.%s.allow[%zu]: port %u is allowed but is not in the tier's "
			    "tls.require_tls_ports: plain http:// to it is forwarded and a "
			    "CONNECT to it carries anything (no SNI check)",
			    t->pub.name, j, port);
			break;
		}
	}
}

static int cmp_place(const void *x, const void *y)
{
	const struct policy_warning *a = x, *b = y;
	if (a->line != b->line)
		return a->line < b->line ? -1 : 1;
	if (a->col != b->col)
		return a->col < b->col ? -1 : 1;
	return a->code < b->code ? -1 : (a->code > b->code);
}

/*
 * Does a pattern fix whose project it is?  Without '*' it names one; otherwise
 * its first '*' must come after a literal first segment and its '/' (group/
 * then anything).  '*' spans '/', so a leading '*' or "group*" also matches
 * another owner's names.
 */
static bool pins(const char *pattern)
{
	const char *star = strchr(pattern, '*'), *slash = strchr(pattern, '/');
	if (star == NULL)
		return pattern[0] != '\0';
	return slash != NULL && slash != pattern && slash < star;
}

/*
 * identity.oidc rules that name no project or owner.  Whoever runs jobs on a
 * shared issuer (gitlab.com, GitHub) chooses a token's audience, so such a
 * rule gives its tier to every project there that asks for the audience.
 */
static void warn_oidc(const struct policy_settings *s, struct policy_warnings *out)
{
	/* The claims that name the project a job runs in (job_workflow_ref does not: any
	 * repository may call a reusable workflow). */
	static const char *const scoping[] = {"project_path", "namespace_path", "project_id",
	                                      "namespace_id", "repository",     "repository_owner",
	                                      "repository_id", "repository_owner_id"};
	for (size_t i = 0; i < s->n_oidc; i++) {
		const struct policy_oidc_provider *pv = &s->oidc[i];
		for (size_t j = 0; j < pv->n_rules; j++) {
			const struct policy_oidc_rule *r = &pv->rules[j];
			bool scoped = false;
			for (size_t k = 0; k < r->n_match && !scoped; k++)
				for (size_t q = 0; q < sizeof(scoping) / sizeof(scoping[0]); q++)
					if (strcmp(r->match[k].claim, scoping[q]) == 0 &&
					    pins(r->match[k].pattern))
						scoped = true;
			if (!scoped)
				add(out, PW_OIDC_RULE_UNSCOPED, r->line, r->col,
				    "identity.oidc rule '%s' names no project, namespace, repository or "
				    "owner: any project on issuer %s can mint a token with your audience "
				    "that it matches; add project_path/namespace_path (GitLab) or "
				    "repository/repository_owner (GitHub)",
				    r->name, pv->issuer);
		}
	}
}

int policy_warn(const struct policy *p, struct policy_warnings *out)
{
	const struct policy_settings *s = &p->set;
	int rc = POLICY_OK;

	out->n = 0;
	out->truncated = false;
	if (p->unknown_line != 0 && s->unknown_source_tier >= 0)
		add(out, PW_UNKNOWN_SOURCE_TIER, p->unknown_line, p->unknown_col,
		    "identity.unknown_source: every client that matches no tier's sources gets "
		    "tier '%s' (a new subnet, a misrouted host); prefer deny",
		    p->tiers[s->unknown_source_tier].pub.name);
	uint64_t room = s->audit_format == POLICY_AUDIT_OCSF ? AUDIT_ROOM_PER_CONN_OCSF
	                                                     : AUDIT_ROOM_PER_CONN;
	if (p->queue_line != 0 && s->audit_queue_bytes < (uint64_t)s->max_connections * room)
		add(out, PW_AUDIT_QUEUE_SMALL, p->queue_line, p->queue_col,
		    "audit.queue_size: %llu bytes is below 2 KiB x limits.max_connections (%llu): "
		    "open connections' promised records can fill it and new connections are "
		    "refused (audit_unavailable); raise it or leave it unset",
		    (unsigned long long)s->audit_queue_bytes,
		    (unsigned long long)s->max_connections * room);
	warn_trusted(p, out);
	warn_oidc(s, out);
	for (size_t i = 0; i < p->n_tiers; i++) {
		const struct policy_tier_int *t = &p->tiers[i];
		if (t->pub.mode == TIER_AUDIT)
			add(out, PW_TIER_AUDIT_MODE, t->mode_line, t->mode_col,
			    "tiers.%s.mode: audit lets through everything its allowlist, TLS and "
			    "caps rules would refuse (recorded as would_deny); switch to enforce "
			    "once the records are clean",
			    t->pub.name);
		warn_allow_ranges(t, out);
		warn_sources(p, t, out);
		warn_rules(p, (int)i, out);
		if (rc == POLICY_OK)
			rc = warn_shadowed(t, out);
	}
	qsort(out->v, out->n, sizeof(out->v[0]), cmp_place);
	return rc;
}
