/* Policy loading: the v1 schema, section by section, validated into an immutable snapshot. */
#include "policy.h"
#include "policy_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "addr.h"
#include "fileio.h"
#include "hash.h"
#include "host.h"
#include "ranges.h"

static char *pstrdup(struct policy_loader *L, const char *s, size_t len)
{
	char *c = policy_arena_alloc(&L->p->arena, len + 1);
	if (c == NULL) {
		L->nomem = true;
		return NULL;
	}
	memcpy(c, s, len);
	return c;
}

/* ---- addresses ---- */

static bool is_unspecified(const struct pc_addr *a)
{
	static const uint8_t zero[16];
	return memcmp(a->b, zero, a->family == ADDR_V4 ? 4 : 16) == 0;
}

/* Could binding both fail or shadow each other? Same port, and same or wildcard address. */
static bool sockaddr_conflict(const struct policy_sockaddr *x, const struct policy_sockaddr *y)
{
	return x->port == y->port && (addr_equal(&x->addr, &y->addr) || is_unspecified(&x->addr) ||
	                              is_unspecified(&y->addr));
}

static const char *fmt_sockaddr(const struct policy_sockaddr *sa, char *out, size_t cap)
{
	char a[ADDR_STRLEN];
	addr_format(&sa->addr, a, sizeof(a));
	snprintf(out, cap, sa->addr.family == ADDR_V6 ? "[%s]:%u" : "%s:%u", a, sa->port);
	return out;
}

/* "ip:port" or "[v6]:port"; with a default port also "ip", "v6" or "[v6]".  No names. */
static bool want_sockaddr(struct policy_loader *L, const struct policy_node *n,
                          uint16_t default_port, struct policy_sockaddr *out)
{
	char t[64];
	const char *s, *host, *port = NULL;
	size_t len, hlen, plen = 0;
	unsigned pfx;
	uint64_t pv = default_port;

	if (!policy_want_str(L, n, &s, &len))
		return false;
	host = s;
	hlen = len;
	if (len > 0 && s[0] == '[') {
		const char *rb = memchr(s, ']', len);
		if (rb == NULL || (rb + 1 < s + len && rb[1] != ':'))
			goto bad;
		host = s + 1;
		hlen = (size_t)(rb - host);
		if (rb + 1 < s + len) {
			port = rb + 2;
			plen = (size_t)(s + len - port);
		}
	} else {
		const char *c = memchr(s, ':', len);
		if (c != NULL && memchr(c + 1, ':', (size_t)(s + len - c - 1)) == NULL) {
			hlen = (size_t)(c - s);
			port = c + 1;
			plen = (size_t)(s + len - port);
		}
	}
	if (port != NULL && (policy_parse_uint(port, plen, &pv) != 0 || pv < 1 || pv > 65535)) {
		policy_diag(L, n, "invalid port in \"%s\" (1 to 65535)",
		            policy_clip(s, len, t, sizeof(t)));
		return false;
	}
	if (port == NULL && default_port == 0) {
		policy_diag(L, n, "\"%s\" needs a port (\"ip:port\" or \"[v6]:port\")",
		            policy_clip(s, len, t, sizeof(t)));
		return false;
	}
	/* A bare address parses as a /32 or /128; brackets are for IPv6 only. */
	if (memchr(host, '/', hlen) != NULL ||
	    range_parse_cidr(host, hlen, &out->addr, &pfx) != RANGE_OK ||
	    (host != s && out->addr.family != ADDR_V6))
		goto bad;
	out->port = (uint16_t)pv;
	return true;
bad:
	for (size_t i = 0; i < len; i++) {
		if ((s[i] >= 'g' && s[i] <= 'z') || (s[i] >= 'G' && s[i] <= 'Z')) {
			policy_diag(L, n,
			            "\"%s\": host names are not allowed here, write an IP address",
			            policy_clip(s, len, t, sizeof(t)));
			return false;
		}
	}
	policy_diag(L, n,
	            "\"%s\" is not an IP address with optional port (\"ip:port\", \"[v6]:port\")",
	            policy_clip(s, len, t, sizeof(t)));
	return false;
}

static bool want_cidr(struct policy_loader *L, const struct policy_node *n, struct pc_addr *a,
                      unsigned *plen)
{
	char t[64], fix[ADDR_STRLEN];
	const char *s;
	size_t len;

	if (!policy_want_str(L, n, &s, &len))
		return false;
	int rc = range_parse_cidr(s, len, a, plen);
	if (rc == RANGE_OK)
		return true;
	policy_clip(s, len, t, sizeof(t));
	if (rc == RANGE_ERR_PREFIX) {
		policy_diag(L, n,
		            "invalid CIDR \"%s\": prefix length out of range (0-32 for IPv4, 0-128 "
		            "for IPv6)",
		            t);
	} else if (rc == RANGE_ERR_HOSTBITS) {
		/* Suggest the network: the address part alone, masked to the prefix. */
		const char *slash = memchr(s, '/', len);
		uint64_t bits = 0;
		unsigned full;
		struct pc_addr m;
		if (slash == NULL ||
		    range_parse_cidr(s, (size_t)(slash - s), &m, &full) != RANGE_OK ||
		    policy_parse_uint(slash + 1, len - (size_t)(slash - s) - 1, &bits) != 0 ||
		    bits > full) {
			policy_diag(L, n, "invalid CIDR \"%s\": host bits are set after the prefix",
			            t);
			return false;
		}
		for (unsigned i = 0; i < 16; i++) {
			unsigned keep =
			    bits > i * 8 ? (bits - i * 8 >= 8 ? 8 : (unsigned)bits - i * 8) : 0;
			m.b[i] &= (uint8_t)(0xff00u >> keep);
		}
		addr_format(&m, fix, sizeof(fix));
		policy_diag(L, n,
		            "invalid CIDR \"%s\": host bits are set after the prefix (did you "
		            "mean %s/%u?)",
		            t, fix, (unsigned)bits);
	} else if (rc == RANGE_ERR_NOMEM) {
		L->nomem = true;
	} else {
		policy_diag(L, n, "invalid CIDR \"%s\": expected a.b.c.d/len or ipv6/len", t);
	}
	return false;
}

static bool prefix_overlap(const struct pc_addr *a, unsigned la, const struct pc_addr *b,
                           unsigned lb)
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

/*
 * A list of CIDRs into set with tag.  With tier >= 0 it is that tier's `sources`:
 * overlaps with other tiers' sources are errors.  Exact duplicates in a list are errors.
 */
static void cidr_list(struct policy_loader *L, const struct policy_node *seq, struct range_set *set,
                      int tier, const struct policy_cidr **list, size_t *n_list)
{
	char t[64];
	struct policy_src_seen *mine;
	struct policy_cidr *kept;
	size_t n = 0, cap;

	if (seq == NULL || !policy_container(L, seq, PN_SEQ))
		return;
	cap = seq->n < POLICY_MAX_CIDRS ? seq->n : POLICY_MAX_CIDRS;
	mine = policy_arena_alloc(&L->tree, cap * sizeof(*mine));
	kept = policy_arena_alloc(&L->p->arena, cap * sizeof(*kept));
	if (mine == NULL || kept == NULL) {
		L->nomem = true;
		return;
	}
	*list = kept;
	for (const struct policy_node *it = seq->first; it != NULL; it = it->next) {
		struct policy_src_seen e = {.tier = tier, .line = it->line, .col = it->col};
		if (n == POLICY_MAX_CIDRS) {
			policy_diag(L, it, "too many entries (at most %u)", POLICY_MAX_CIDRS);
			return;
		}
		if (!want_cidr(L, it, &e.a, &e.plen))
			continue;
		size_t i;
		for (i = 0; i < n; i++)
			if (mine[i].plen == e.plen &&
			    prefix_overlap(&mine[i].a, e.plen, &e.a, e.plen))
				break;
		if (i < n) {
			policy_diag(L, it, "duplicate entry (first at line %u, column %u)",
			            mine[i].line, mine[i].col);
			continue;
		}
		mine[n++] = e;
		if (tier >= 0) {
			for (i = 0; i < L->n_srcs; i++)
				if (L->srcs[i].tier != tier &&
				    prefix_overlap(&L->srcs[i].a, L->srcs[i].plen, &e.a, e.plen))
					break;
			if (i < L->n_srcs) {
				const struct policy_src_seen *o = &L->srcs[i];
				char oa[ADDR_STRLEN];
				addr_format(&o->a, oa, sizeof(oa));
				policy_diag(L, it,
				            "%s overlaps %s/%u of tier '%s' (line %u): a source "
				            "address must belong to exactly one tier",
				            policy_clip(it->s, it->len, t, sizeof(t)), oa, o->plen,
				            L->p->tiers[o->tier].pub.name, o->line);
				continue;
			}
			if (L->n_srcs == POLICY_MAX_SOURCES) {
				policy_diag(L, it, "too many sources over all tiers (at most %u)",
				            POLICY_MAX_SOURCES);
				return;
			}
			L->srcs[L->n_srcs++] = e;
		}
		kept[*n_list] = (struct policy_cidr){e.a, e.plen, e.line, e.col};
		(*n_list)++;
		if (range_set_add(set, &e.a, e.plen, tier >= 0 ? tier : 0) != RANGE_OK)
			L->nomem = true;
	}
}

/* ---- sections ---- */

static const char *const root_keys[] = {
    "version",  "listen", "resolver", "blocked_ranges", "audit", "limits",       "timeouts",
    "identity", "tls",    "caps",     "http",           "tiers", "interception", NULL};
static const char *const listen_keys[] = {"proxy", "https", "tls", "admin", "workers", NULL};
static const char *const listener_keys[] = {"address", "proxy_protocol", "auth", NULL};
static const char *const pp_keys[] = {"mode", "trusted", "timeout", NULL};
static const char *const listen_tls_keys[] = {"cert",      "key", "client_certs",
                                              "client_ca", "crl", NULL};
static const char *const resolver_keys[] = {"servers", "timeout", "attempts", "max_answers", NULL};
static const char *const audit_keys[] = {"output", "queue_size", "format", "tunnel_start",
                                         "interim", NULL};
static const char *const limits_keys[] = {"max_connections", "max_sources", "header_timeout", "max_header_bytes",
                                          "max_headers", NULL};
static const char *const timeouts_keys[] = {"connect", "idle", "max_lifetime", "drain", NULL};
static const char *const tier_keys[] = {"mode", "sources",  "allow", "allow_ranges", "tls", "caps",
                                        "http", "timeouts", NULL};
static const char *const rule_keys[] = {"host", "ports", "name", "intercept", NULL};
static const char *const tls_keys[] = {"require_sni", "sni_must_match", "require_tls_ports",
                                       "allow_ech",   "hello_timeout",  "max_hello_bytes",
                                       "ja4_allow",   "ja4_deny",       NULL};
static const char *const caps_keys[] = {"upload_bytes", "download_bytes", "connections_per_source",
                                        "upload_bytes_per_source", NULL};
static const char *const budget_keys[] = {"bytes", "window", NULL};
static const char *const http_keys[] = {"methods", "allow_upgrade", NULL};

/*
 * One address or a list of 1..max; conflicting or duplicate entries are refused.
 * With maps, an entry may also be a mapping whose `address` is the address
 * (a listener with settings); at[i] is the entry itself.
 */
static size_t sockaddr_list(struct policy_loader *L, const struct policy_node *v,
                            uint16_t default_port, struct policy_sockaddr *out, size_t max,
                            const struct policy_node **at, bool maps)
{
	char t1[64], t2[64];
	size_t n = 0;

	if (v->bad)
		return 0;
	if ((v->kind == PN_MAP && !maps) || policy_is_null(v) || (v->kind == PN_SEQ && v->n == 0)) {
		policy_diag(L, v, "expected an address or a list of 1 to %zu addresses", max);
		return 0;
	}
	for (const struct policy_node *it = v->kind == PN_SEQ ? v->first : v; it != NULL;
	     it = v->kind == PN_SEQ ? it->next : NULL) {
		if (n == max) {
			policy_diag(L, it, "too many addresses (at most %zu)", max);
			break;
		}
		const struct policy_node *a = it;
		if (maps && it->kind == PN_MAP) {
			policy_check_keys(L, it, listener_keys);
			a = policy_get(it, "address");
			if (a == NULL) {
				policy_missing(L, it, "address");
				continue;
			}
		}
		if (!want_sockaddr(L, a, default_port, &out[n]))
			continue;
		size_t i;
		for (i = 0; i < n && !sockaddr_conflict(&out[i], &out[n]); i++)
			;
		if (i < n) {
			policy_diag(L, a, "%s conflicts with %s (line %u)",
			            fmt_sockaddr(&out[n], t1, sizeof(t1)),
			            fmt_sockaddr(&out[i], t2, sizeof(t2)), at[i]->line);
			continue;
		}
		at[n++] = it;
	}
	return n;
}

/*
 * listen.proxy[i].proxy_protocol: mode off / v1 / v2 / either, the balancers'
 * CIDRs (required unless off), the header's own timeout.
 */
static void load_listen_pp(struct policy_loader *L, const struct policy_node *entry, size_t i)
{
	struct policy_listen_pp *pp = &L->p->set.listen_pp[i];
	const struct policy_node *m = policy_section(L, entry, "proxy_protocol", pp_keys);
	const struct policy_node *v;

	pp->timeout_ms = 3 * MS_S;
	if (m == NULL) {
		if (policy_get(entry, "proxy_protocol") != NULL &&
		    policy_is_null(policy_get(entry, "proxy_protocol")))
			policy_diag(L, policy_get(entry, "proxy_protocol"),
			            "expected a mapping with mode and trusted");
		return;
	}
	v = policy_get(m, "mode");
	if (v == NULL)
		policy_missing(L, m, "mode");
	else if (policy_is_word(v, "off"))
		pp->accept = 0;
	else if (policy_is_word(v, "v1"))
		pp->accept = POLICY_PP_V1;
	else if (policy_is_word(v, "v2"))
		pp->accept = POLICY_PP_V2;
	else if (policy_is_word(v, "either"))
		pp->accept = POLICY_PP_V1 | POLICY_PP_V2;
	else if (!v->bad)
		policy_diag(L, v, "expected off, v1, v2 or either");
	policy_want_ms(L, policy_get(m, "timeout"), 100, MS_M, "100ms", "1m", &pp->timeout_ms);
	v = policy_get(m, "trusted");
	L->p->pp_trusted[i] = range_set_create();
	if (L->p->pp_trusted[i] == NULL) {
		L->nomem = true;
		return;
	}
	if (v != NULL)
		cidr_list(L, v, L->p->pp_trusted[i], -1, &L->p->pp_trusted_list[i],
		          &L->p->n_pp_trusted_list[i]);
	/* Never guessed, never from anyone: the balancers' addresses are required. */
	if (pp->accept != 0 && range_set_count(L->p->pp_trusted[i]) == 0 && (v == NULL || !v->bad))
		policy_diag(L, v != NULL ? v : m,
		            "a listener with PROXY protocol needs the load balancers' CIDRs in "
		            "trusted");
}

/* A file path: a non-empty string without NUL. */
const char *policy_want_path(struct policy_loader *L, const struct policy_node *v)
{
	const char *str;
	size_t len;
	if (v == NULL || !policy_want_str(L, v, &str, &len))
		return NULL;
	if (len == 0 || memchr(str, '\0', len) != NULL) {
		policy_diag(L, v, "expected a file path");
		return NULL;
	}
	return pstrdup(L, str, len);
}

/* listen.https and listen.tls: TLS listeners and their certificate, key and client CA. */
static void load_listen_tls(struct policy_loader *L, const struct policy_node *m,
                            const struct policy_node *const *proxy_nodes)
{
	struct policy_settings *s = &L->p->set;
	struct policy_listen_tls *t = &s->listen_tls;
	const struct policy_node *nodes[POLICY_MAX_LISTEN] = {NULL};
	const struct policy_node *v = policy_get(m, "https");
	char t1[64], t2[64];

	if (v != NULL)
		s->n_listen_https =
		    sockaddr_list(L, v, 0, s->listen_https, POLICY_MAX_LISTEN, nodes, false);
	for (size_t i = 0; i < s->n_listen_https; i++) {
		for (size_t j = 0; j < s->n_listen_proxy; j++)
			if (sockaddr_conflict(&s->listen_https[i], &s->listen_proxy[j]))
				policy_diag(L, nodes[i], "%s conflicts with the proxy address %s",
				            fmt_sockaddr(&s->listen_https[i], t1, sizeof(t1)),
				            fmt_sockaddr(&s->listen_proxy[j], t2, sizeof(t2)));
		if (sockaddr_conflict(&s->listen_https[i], &s->listen_admin))
			policy_diag(L, nodes[i], "%s conflicts with the admin address %s",
			            fmt_sockaddr(&s->listen_https[i], t1, sizeof(t1)),
			            fmt_sockaddr(&s->listen_admin, t2, sizeof(t2)));
	}
	(void)proxy_nodes;
	const struct policy_node *tn = policy_get(m, "tls");
	const struct policy_node *tm = policy_section(L, m, "tls", listen_tls_keys);
	if (tn == NULL) {
		if (s->n_listen_https > 0)
			policy_missing(L, m, "tls");
		return;
	}
	if (v == NULL)
		policy_diag(L, tn, "listen.tls goes with listen.https (the TLS listeners)");
	if (tm == NULL)
		return;
	t->cert = policy_want_path(L, policy_get(tm, "cert"));
	t->key = policy_want_path(L, policy_get(tm, "key"));
	if (policy_get(tm, "cert") == NULL)
		policy_missing(L, tm, "cert");
	if (policy_get(tm, "key") == NULL)
		policy_missing(L, tm, "key");
	const struct policy_node *cc = policy_get(tm, "client_certs");
	if (cc == NULL || policy_is_word(cc, "off"))
		t->client_certs = POLICY_CLIENT_CERTS_OFF;
	else if (policy_is_word(cc, "request"))
		t->client_certs = POLICY_CLIENT_CERTS_REQUEST;
	else if (policy_is_word(cc, "require"))
		t->client_certs = POLICY_CLIENT_CERTS_REQUIRE;
	else if (!cc->bad)
		policy_diag(L, cc, "expected off, request or require");
	t->client_ca = policy_want_path(L, policy_get(tm, "client_ca"));
	t->crl = policy_want_path(L, policy_get(tm, "crl"));
	if (t->client_certs != POLICY_CLIENT_CERTS_OFF && policy_get(tm, "client_ca") == NULL)
		policy_diag(L, cc,
		            "client_certs: %s needs client_ca (the CA bundle to verify against)",
		            t->client_certs == POLICY_CLIENT_CERTS_REQUIRE ? "require" : "request");
	if (t->client_certs == POLICY_CLIENT_CERTS_OFF &&
	    (policy_get(tm, "client_ca") != NULL || policy_get(tm, "crl") != NULL))
		policy_diag(L,
		            policy_get(tm, "client_ca") ? policy_get(tm, "client_ca")
		                                        : policy_get(tm, "crl"),
		            "client_ca and crl go with client_certs: request or require");
}

/* listen.proxy[i].auth: off (default), optional or required (docs/oidc.md). */
static void load_listen_auth(struct policy_loader *L, const struct policy_node *entry, size_t i)
{
	const struct policy_node *v = policy_get(entry, "auth");
	if (v == NULL)
		return;
	if (policy_is_word(v, "off"))
		L->p->set.listen_auth[i] = POLICY_AUTH_OFF;
	else if (policy_is_word(v, "optional"))
		L->p->set.listen_auth[i] = POLICY_AUTH_OPTIONAL;
	else if (policy_is_word(v, "required"))
		L->p->set.listen_auth[i] = POLICY_AUTH_REQUIRED;
	else if (!v->bad)
		policy_diag(L, v, "expected off, optional or required");
}

static void load_listen(struct policy_loader *L, const struct policy_node *root)
{
	struct policy_settings *s = &L->p->set;
	const struct policy_node *m = policy_section(L, root, "listen", listen_keys);
	const struct policy_node *v, *nodes[POLICY_MAX_LISTEN] = {NULL};
	const struct policy_node *admin_node;
	bool admin_ok = true;
	char t1[64], t2[64];

	v = policy_get(m, "proxy");
	if (v != NULL) {
		s->n_listen_proxy =
		    sockaddr_list(L, v, 0, s->listen_proxy, POLICY_MAX_LISTEN, nodes, true);
		for (size_t i = 0; i < s->n_listen_proxy; i++)
			if (nodes[i]->kind == PN_MAP) {
				load_listen_pp(L, nodes[i], i);
				load_listen_auth(L, nodes[i], i);
			}
	}
	admin_node = policy_get(m, "admin");
	if (admin_node != NULL)
		admin_ok = want_sockaddr(L, admin_node, 0, &s->listen_admin);
	for (size_t i = 0; admin_ok && i < s->n_listen_proxy; i++) {
		if (!sockaddr_conflict(&s->listen_proxy[i], &s->listen_admin))
			continue;
		if (admin_node != NULL)
			policy_diag(L, admin_node,
			            "%s conflicts with the proxy address %s: admin must "
			            "differ from every proxy address",
			            fmt_sockaddr(&s->listen_admin, t1, sizeof(t1)),
			            fmt_sockaddr(&s->listen_proxy[i], t2, sizeof(t2)));
		else if (nodes[i] != NULL)
			policy_diag(L, nodes[i], "%s conflicts with the default admin address %s",
			            fmt_sockaddr(&s->listen_proxy[i], t2, sizeof(t2)),
			            fmt_sockaddr(&s->listen_admin, t1, sizeof(t1)));
	}
	load_listen_tls(L, m, nodes);
	v = policy_get(m, "workers");
	if (v != NULL && policy_is_word(v, "auto")) {
		s->workers = 0;
	} else if (v != NULL && !v->bad) {
		uint64_t w;
		if (v->kind == PN_SCALAR && v->plain && policy_parse_uint(v->s, v->len, &w) == 0 &&
		    w >= 1 && w <= 64)
			s->workers = (unsigned)w;
		else
			policy_diag(L, v, "expected \"auto\" or an integer from 1 to 64");
	}
}

static void load_resolver(struct policy_loader *L, const struct policy_node *root)
{
	struct policy_settings *s = &L->p->set;
	const struct policy_node *r = policy_get(root, "resolver");
	const struct policy_node *m, *v, *at[POLICY_MAX_RESOLVERS];

	if (r == NULL) {
		policy_missing(L, root, "resolver");
		return;
	}
	m = policy_section(L, root, "resolver", resolver_keys);
	if (m == NULL && !policy_is_null(r))
		return; /* wrong type, reported */
	v = policy_get(m, "servers");
	if (v == NULL)
		policy_missing(L, m ? m : r, "servers");
	else
		s->n_resolvers =
		    sockaddr_list(L, v, 53, s->resolvers, POLICY_MAX_RESOLVERS, at, false);
	policy_want_ms(L, policy_get(m, "timeout"), 100, 30 * MS_S, "100ms", "30s",
	               &s->resolver_timeout_ms);
	policy_want_u32(L, policy_get(m, "attempts"), 1, 5, &s->resolver_attempts);
	policy_want_u32(L, policy_get(m, "max_answers"), 1, 64, &s->resolver_max_answers);
}

static void load_globals(struct policy_loader *L, const struct policy_node *root)
{
	struct policy_settings *s = &L->p->set;
	const struct policy_node *m, *v;
	uint64_t x;

	m = policy_section(L, root, "limits", limits_keys);
	policy_want_u32(L, policy_get(m, "max_connections"), 1, 1000000, &s->max_connections);
	policy_want_u32(L, policy_get(m, "max_sources"), 1, 10000000, &s->max_sources);
	policy_want_ms(L, policy_get(m, "header_timeout"), 100, 10 * MS_M, "100ms", "10m",
	               &s->header_timeout_ms);
	if (policy_want_unit(L, policy_get(m, "max_header_bytes"), false, 1024, 65536, "1KiB",
	                     "64KiB", &x))
		s->max_header_bytes = (uint32_t)x;
	L->p->header_bytes_set = policy_get(m, "max_header_bytes") != NULL;
	policy_want_u32(L, policy_get(m, "max_headers"), 1, 128, &s->max_headers);

	m = policy_section(L, root, "timeouts", timeouts_keys);
	policy_want_ms(L, policy_get(m, "connect"), 100, 5 * MS_M, "100ms", "5m",
	               &s->connect_timeout_ms);
	policy_want_ms(L, policy_get(m, "idle"), MS_S, 24 * MS_H, "1s", "24h", &s->idle_timeout_ms);
	policy_want_ms(L, policy_get(m, "max_lifetime"), MS_S, 168 * MS_H, "1s", "168h",
	               &s->max_lifetime_ms);
	policy_want_ms(L, policy_get(m, "drain"), 0, MS_H, "0", "1h", &s->drain_timeout_ms);

	m = policy_section(L, root, "audit", audit_keys);
	const char *str;
	size_t len;
	v = policy_get(m, "output");
	if (v != NULL && policy_want_str(L, v, &str, &len)) {
		if (len == 0)
			policy_diag(L, v, "must not be empty (\"-\" is standard output)");
		s->audit_output = pstrdup(L, str, len);
	}
	v = policy_get(m, "format");
	if (v != NULL && !v->bad) {
		if (policy_is_word(v, "ecs"))
			s->audit_format = POLICY_AUDIT_ECS;
		else if (policy_is_word(v, "ocsf"))
			s->audit_format = POLICY_AUDIT_OCSF;
		else
			policy_diag(L, v, "expected ecs or ocsf");
	}
	/* OCSF records are about a third longer than ECS ones (measured: 1.2-1.5 KiB). */
	uint64_t room = s->audit_format == POLICY_AUDIT_OCSF ? AUDIT_ROOM_PER_CONN_OCSF
	                                                     : AUDIT_ROOM_PER_CONN;
	if (policy_want_unit(L, policy_get(m, "queue_size"), false, 65536, 1ull << 30, "64KiB",
	                     "1GiB", &x)) {
		s->audit_queue_bytes = x;
		L->p->queue_line = policy_get(m, "queue_size")->line;
		L->p->queue_col = policy_get(m, "queue_size")->col;
	} else if (policy_get(m, "queue_size") == NULL &&
	           (uint64_t)s->max_connections * room > s->audit_queue_bytes) {
		/* Unset: room for every connection's promised record, however many are allowed. */
		s->audit_queue_bytes = (uint64_t)s->max_connections * room;
	}
	policy_want_bool(L, policy_get(m, "tunnel_start"), &s->audit_tunnel_start);
	v = policy_get(m, "interim");
	if (v != NULL && policy_is_word(v, "off"))
		s->audit_interim_ms = 0;
	else
		policy_want_ms(L, v, 10 * MS_S, 24 * MS_H, "10s", "24h", &s->audit_interim_ms);

	v = policy_get(root, "version");
	if (v == NULL)
		policy_missing(L, root, "version");
	else if (policy_want_uint(L, v, 0, UINT64_MAX, &x) && x != 1)
		policy_diag(L, v, "unsupported version %llu (this portcullis reads version 1)",
		            (unsigned long long)x);
}

/* A list of ports into the snapshot arena; at_least is 0 or 1. */
static bool port_list(struct policy_loader *L, const struct policy_node *v, size_t at_least,
                      const uint16_t **out, size_t *n_out)
{
	uint16_t *ports;
	const struct policy_node *at[POLICY_MAX_PORTS];
	size_t n = 0;

	if (!policy_want(L, v, PN_SEQ))
		return false;
	if (v->n < at_least) {
		policy_diag(L, v, "at least one port is required");
		return false;
	}
	if (v->n > POLICY_MAX_PORTS) {
		policy_diag(L, v, "too many ports (at most %u)", POLICY_MAX_PORTS);
		return false;
	}
	ports = policy_arena_alloc(&L->p->arena, (v->n ? v->n : 1) * sizeof(*ports));
	if (ports == NULL) {
		L->nomem = true;
		return false;
	}
	bool ok = true;
	for (const struct policy_node *it = v->first; it != NULL; it = it->next) {
		uint64_t port;
		if (!policy_want_uint(L, it, 1, 65535, &port)) {
			ok = false;
			continue;
		}
		size_t i;
		for (i = 0; i < n && ports[i] != port; i++)
			;
		if (i < n) {
			policy_diag(L, it, "duplicate port %u (first at line %u, column %u)",
			            (unsigned)port, at[i]->line, at[i]->col);
			ok = false;
			continue;
		}
		at[n] = it;
		ports[n++] = (uint16_t)port;
	}
	*out = ports;
	*n_out = n;
	return ok;
}

/* Plain words for host_pattern_parse's status codes. */
static const char *host_problem(int rc)
{
	switch (rc) {
	case HOST_ERR_CHAR:
		return "only letters, digits, '-', '_' and '.' are allowed (IDNs as xn-- punycode, "
		       "ports in 'ports')";
	case HOST_ERR_LABEL:
		return "each label must be 1 to 63 characters, not starting or ending with '-'";
	case HOST_ERR_TOO_LONG:
		return "name longer than 253 characters";
	case HOST_ERR_BAD_IP:
		return "not a valid IP address (write IPv4 as a plain dotted quad)";
	case HOST_ERR_ZONE:
		return "IPv6 zone ids are not allowed";
	case HOST_ERR_PUNYCODE:
		return "malformed xn-- (punycode) label";
	case HOST_ERR_WILDCARD:
		return "wildcard only allowed as the whole first label, over at least two labels "
		       "(\"*.example.com\")";
	default:
		return host_status_str(rc);
	}
}

static void load_rule(struct policy_loader *L, const struct policy_node *n, struct policy_rule *r)
{
	static const uint16_t default_port[] = {443};
	char t[64];
	const char *s;
	size_t len;
	const struct policy_node *v;

	r->ports = default_port;
	r->n_ports = 1;
	r->line = n->line;
	r->col = n->col;
	if (n->kind == PN_SCALAR && !n->bad && !policy_is_null(n)) {
		policy_diag(L, n, "expected a mapping like {host: \"%s\"}, got a scalar",
		            policy_clip(n->s, n->len, t, sizeof(t)));
		return;
	}
	if (!policy_want(L, n, PN_MAP))
		return;
	policy_check_keys(L, n, rule_keys);
	v = policy_get(n, "host");
	if (v == NULL) {
		policy_missing(L, n, "host");
	} else if (policy_want_str(L, v, &s, &len)) {
		int rc = host_pattern_parse(s, len, &r->pat, &r->wildcard);
		if (rc != HOST_OK)
			policy_diag(L, v, "invalid host pattern \"%s\": %s",
			            policy_clip(s, len, t, sizeof(t)), host_problem(rc));
		else {
			char text[HOST_NAME_MAX_LEN + 3];
			snprintf(text, sizeof(text), "%s%s", r->wildcard ? "*." : "", r->pat.name);
			r->name = r->pattern = pstrdup(L, text, strlen(text));
		}
	}
	v = policy_get(n, "ports");
	if (v != NULL)
		(void)port_list(L, v, 1, &r->ports, &r->n_ports);
	v = policy_get(n, "name");
	if (v != NULL && policy_want_str(L, v, &s, &len)) {
		if (len == 0 || len > POLICY_RULE_NAME_MAX)
			policy_diag(L, v, "rule name must be 1 to %u characters",
			            POLICY_RULE_NAME_MAX);
		else
			r->name = pstrdup(L, s, len);
	}
	v = policy_get(n, "intercept");
	if (v != NULL)
		policy_load_intercept(L, v, r);
}

/* caps.upload_bytes_per_source: {bytes: SIZE, window: DURATION}, both required; or none. */
static void load_budget(struct policy_loader *L, const struct policy_node *v,
                        struct policy_tier *pt)
{
	uint64_t bytes = 0;
	uint32_t ms = 0;

	if (v == NULL || v->bad)
		return;
	if (policy_is_word(v, "none")) {
		pt->upload_budget_bytes = 0;
		pt->upload_budget_window_ms = 0;
		return;
	}
	if (v->kind != PN_MAP) {
		policy_diag(L, v, "expected a mapping {bytes: SIZE, window: DURATION} or none");
		return;
	}
	policy_check_keys(L, v, budget_keys);
	const struct policy_node *b = policy_get(v, "bytes"), *w = policy_get(v, "window");
	if (b == NULL)
		policy_missing(L, v, "bytes");
	if (w == NULL)
		policy_missing(L, v, "window");
	bool ok = policy_want_unit(L, b, false, 1, UINT64_MAX, "1", "16EiB", &bytes);
	if (policy_want_ms(L, w, MS_S, 24 * MS_H, "1s", "24h", &ms) && ok) {
		pt->upload_budget_bytes = bytes;
		pt->upload_budget_window_ms = ms;
	}
}

/*
 * One http.methods entry: 1 to 32 of A-Z and '-', a subset of the RFC 9110
 * §5.6.2 token that holds every registered method; never CONNECT.
 */
bool policy_want_method(struct policy_loader *L, const struct policy_node *n, const char **s,
                        size_t *len)
{
	char t[48], up[POLICY_METHOD_MAX + 1];
	bool ok, lower = false;

	if (!policy_want_str(L, n, s, len))
		return false;
	policy_clip(*s, *len, t, sizeof(t));
	/* In any case: "connect" is refused for what it means, not for its spelling. */
	if (*len == 7 && strncasecmp(*s, "CONNECT", 7) == 0) {
		policy_diag(
		    L, n,
		    "%s is not a plain-HTTP method: CONNECT is governed by the allow rules, "
		    "their ports and tls:",
		    t);
		return false;
	}
	ok = *len >= 1 && *len <= POLICY_METHOD_MAX;
	for (size_t i = 0; ok && i < *len; i++) {
		char c = (*s)[i];
		if (c >= 'a' && c <= 'z') {
			lower = true;
			c = (char)(c - 'a' + 'A');
		} else if (!((c >= 'A' && c <= 'Z') || c == '-')) {
			ok = false;
		}
		up[i] = c;
	}
	if (!ok) {
		policy_diag(L, n, "invalid method \"%s\": use 1 to %u of A-Z and '-' (e.g. GET)", t,
		            POLICY_METHOD_MAX);
		return false;
	}
	if (lower) {
		/* RFC 9110 §9.1: methods are case-sensitive, "get" is not GET. */
		up[*len] = '\0';
		policy_diag(L, n,
		            "method \"%s\" is not uppercase (methods are case-sensitive); did you "
		            "mean '%s'?",
		            t, up);
		return false;
	}
	return true;
}

/*
 * tls.ja4_allow / tls.ja4_deny: a list of 1..POLICY_MAX_JA4 distinct JA4
 * fingerprints (policy_ja4_valid), or an empty list [] (none: clears a
 * top-level list in a tier).
 */
static void load_ja4_list(struct policy_loader *L, const struct policy_node *v,
                          const char *const **out, size_t *n_out)
{
	const char **l;
	size_t n = 0;
	bool ok = true;

	if (v == NULL || v->bad)
		return;
	if (v->kind != PN_SEQ) {
		policy_diag(L, v, "expected a list of JA4 fingerprints");
		return;
	}
	if (v->n > POLICY_MAX_JA4) {
		policy_diag(L, v, "too many JA4 fingerprints (at most %u)", POLICY_MAX_JA4);
		return;
	}
	l = v->n ? policy_arena_alloc(&L->p->arena, v->n * sizeof(*l)) : NULL;
	if (v->n && l == NULL) {
		L->nomem = true;
		return;
	}
	for (const struct policy_node *it = v->first; it != NULL; it = it->next) {
		const char *s;
		size_t len, i;
		if (!policy_want_str(L, it, &s, &len))
			ok = false;
		else if (!policy_ja4_valid(s, len)) {
			policy_diag(L, it,
			            "\"%.*s\" is not a JA4 fingerprint (like "
			            "t13d1516h2_8daaf6152771_e5627efa2ab1, hashes in lowercase)",
			            (int)(len < 64 ? len : 64), s);
			ok = false;
		} else {
			for (i = 0; i < n && strcmp(l[i], s) != 0; i++)
				;
			if (i < n) {
				policy_diag(L, it, "duplicate JA4 fingerprint %s", l[i]);
				ok = false;
			} else if ((l[n++] = pstrdup(L, s, len)) == NULL) {
				return;
			}
		}
	}
	if (ok) {
		*out = l;
		*n_out = n;
	}
}

/* http.methods (and intercept.requests[i].methods): 1..32 distinct methods, or any (*n = 0). */
bool policy_load_method_list(struct policy_loader *L, const struct policy_node *v,
                             const char *const **out, size_t *n_out)
{
	const struct policy_node *at[POLICY_MAX_METHODS];
	const char **m;
	size_t n = 0;
	bool ok = true;

	if (v == NULL || v->bad)
		return false;
	if (policy_is_word(v, "any")) {
		*out = NULL;
		*n_out = 0;
		return true;
	}
	if (v->kind != PN_SEQ) {
		policy_diag(L, v, "expected a list of 1 to %u methods, or any", POLICY_MAX_METHODS);
		return false;
	}
	if (v->n == 0) {
		policy_diag(L, v, "at least one method is required (any allows every method)");
		return false;
	}
	if (v->n > POLICY_MAX_METHODS) {
		policy_diag(L, v, "too many methods (at most %u)", POLICY_MAX_METHODS);
		return false;
	}
	m = policy_arena_alloc(&L->p->arena, v->n * sizeof(*m));
	if (m == NULL) {
		L->nomem = true;
		return false;
	}
	for (const struct policy_node *it = v->first; it != NULL; it = it->next) {
		const char *s;
		size_t len, i;
		if (!policy_want_method(L, it, &s, &len)) {
			ok = false;
			continue;
		}
		for (i = 0; i < n && !(strlen(m[i]) == len && memcmp(m[i], s, len) == 0); i++)
			;
		if (i < n) {
			policy_diag(L, it, "duplicate method %s (first at line %u, column %u)",
			            m[i], at[i]->line, at[i]->col);
			ok = false;
			continue;
		}
		if ((m[n] = pstrdup(L, s, len)) == NULL)
			return false;
		at[n++] = it;
	}
	if (ok) {
		*out = m;
		*n_out = n;
	}
	return ok;
}

/* tls:, caps: and http: of a tier, or at top level (the tiers' defaults), over what pt holds. */
static void load_tier_blocks(struct policy_loader *L, const struct policy_node *m,
                             struct policy_tier *pt)
{
	const struct policy_node *sub, *v;
	uint64_t x;

	sub = policy_section(L, m, "tls", tls_keys);
	policy_want_bool(L, policy_get(sub, "require_sni"), &pt->require_sni);
	policy_want_bool(L, policy_get(sub, "sni_must_match"), &pt->sni_must_match);
	policy_want_bool(L, policy_get(sub, "allow_ech"), &pt->allow_ech);
	v = policy_get(sub, "require_tls_ports");
	if (v != NULL)
		(void)port_list(L, v, 0, &pt->tls_ports, &pt->n_tls_ports);
	policy_want_ms(L, policy_get(sub, "hello_timeout"), 100, 60 * MS_S, "100ms", "60s",
	               &pt->hello_timeout_ms);
	if (policy_want_unit(L, policy_get(sub, "max_hello_bytes"), false, 512, 65536, "512B",
	                     "64KiB", &x))
		pt->max_hello_bytes = (uint32_t)x;
	load_ja4_list(L, policy_get(sub, "ja4_allow"), &pt->ja4_allow, &pt->n_ja4_allow);
	load_ja4_list(L, policy_get(sub, "ja4_deny"), &pt->ja4_deny, &pt->n_ja4_deny);

	sub = policy_section(L, m, "caps", caps_keys);
	policy_want_unit(L, policy_get(sub, "upload_bytes"), false, 0, UINT64_MAX, "0", "16EiB",
	                 &pt->upload_bytes);
	policy_want_unit(L, policy_get(sub, "download_bytes"), false, 0, UINT64_MAX, "0", "16EiB",
	                 &pt->download_bytes);
	if ((v = policy_get(sub, "connections_per_source")) != NULL &&
	    policy_want_uint(L, v, 0, 1000000, &x))
		pt->connections_per_source = (uint32_t)x;
	load_budget(L, policy_get(sub, "upload_bytes_per_source"), pt);

	sub = policy_section(L, m, "http", http_keys);
	(void)policy_load_method_list(L, policy_get(sub, "methods"), &pt->http_methods,
	                              &pt->n_http_methods);
	policy_want_bool(L, policy_get(sub, "allow_upgrade"), &pt->http_allow_upgrade);
}

static void load_tier_body(struct policy_loader *L, const struct policy_node *m,
                           struct policy_tier_int *t, int idx)
{
	struct policy_tier *pt = &t->pub;
	const struct policy_node *v, *sub;

	v = policy_get(m, "mode");
	if (v != NULL) {
		t->mode_line = v->line;
		t->mode_col = v->col;
	}
	if (v != NULL && policy_is_word(v, "audit"))
		pt->mode = TIER_AUDIT;
	else if (v != NULL && !policy_is_word(v, "enforce") && policy_want(L, v, PN_SCALAR)) {
		char t1[40], hint[40];
		static const char *const modes[] = {"enforce", "audit"};
		policy_diag(L, v, "expected enforce or audit, got \"%s\"%s",
		            policy_clip(v->s, v->len, t1, sizeof(t1)),
		            policy_suggest(v->s, v->len, modes, 2, hint, sizeof(hint)));
	}
	cidr_list(L, policy_get(m, "sources"), L->p->sources, idx, &t->sources_list,
	          &t->n_sources_list);
	v = policy_get(m, "allow");
	if (v != NULL) {
		t->allow_line = v->line;
		t->allow_col = v->col;
	}
	if (v != NULL && policy_container(L, v, PN_SEQ)) {
		struct policy_rule *rules;
		size_t n = v->n > POLICY_MAX_RULES ? POLICY_MAX_RULES : v->n;
		if (v->n > POLICY_MAX_RULES)
			policy_diag(L, v, "too many rules (at most %u)", POLICY_MAX_RULES);
		rules = policy_arena_alloc(&L->p->arena, n * sizeof(*rules));
		if (rules == NULL) {
			L->nomem = true;
			return;
		}
		const struct policy_node *it = v->first;
		for (size_t i = 0; i < n; i++, it = it->next)
			load_rule(L, it, &rules[i]);
		t->rules = rules;
		t->n_rules = n;
		L->p->n_rules += n;
	}
	cidr_list(L, policy_get(m, "allow_ranges"), t->allow_ranges, -1, &t->allow_list,
	          &t->n_allow_list);
	load_tier_blocks(L, m, pt);

	sub = policy_section(L, m, "timeouts", timeouts_keys);
	if ((v = policy_get(sub, "drain")) != NULL)
		policy_diag(L, v->key,
		            "drain is a global timeout only (set timeouts.drain at top level)");
	policy_want_ms(L, policy_get(sub, "connect"), 100, 5 * MS_M, "100ms", "5m",
	               &pt->connect_timeout_ms);
	policy_want_ms(L, policy_get(sub, "idle"), MS_S, 24 * MS_H, "1s", "24h",
	               &pt->idle_timeout_ms);
	policy_want_ms(L, policy_get(sub, "max_lifetime"), MS_S, 168 * MS_H, "1s", "168h",
	               &pt->max_lifetime_ms);
}

static bool tier_name_ok(const struct policy_node *k)
{
	if (k->len == 0 || k->len > POLICY_TIER_NAME_MAX)
		return false;
	for (size_t i = 0; i < k->len; i++) {
		char c = k->s[i];
		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-'))
			return false;
	}
	return true;
}

static void load_tiers(struct policy_loader *L, const struct policy_node *root)
{
	struct policy *p = L->p;
	const struct policy_node *m = policy_get(root, "tiers");
	size_t n = 0;

	if (m == NULL) {
		policy_missing(L, root, "tiers");
		return;
	}
	if (!policy_container(L, m, PN_MAP) && !policy_is_null(m))
		return;
	for (const struct policy_node *k = m->first; k != NULL; k = k->next)
		n += !k->bad;
	if (n == 0) {
		policy_diag(L, m, "at least one tier is required");
		return;
	}
	p->tiers = policy_arena_alloc(&p->arena, n * sizeof(*p->tiers));
	L->srcs = policy_arena_alloc(&L->tree, POLICY_MAX_SOURCES * sizeof(*L->srcs));
	if (p->tiers == NULL || L->srcs == NULL) {
		L->nomem = true;
		return;
	}
	for (const struct policy_node *k = m->first; k != NULL; k = k->next) {
		if (k->bad)
			continue;
		if (p->n_tiers == POLICY_MAX_TIERS) {
			policy_diag(L, k, "too many tiers (at most %u)", POLICY_MAX_TIERS);
			return;
		}
		char t[72];
		if (!tier_name_ok(k))
			policy_diag(L, k, "invalid tier name \"%s\": use 1 to 63 of a-z 0-9 _ -",
			            policy_clip(k->s, k->len, t, sizeof(t)));
		else if (policy_is_word(k, "deny"))
			policy_diag(L, k, "\"deny\" is reserved (identity.unknown_source: deny)");
		struct policy_tier_int *tier = &p->tiers[p->n_tiers];
		tier->pub = L->tier_defaults; /* top level over built-in, key by key */
		tier->allow_ranges = range_set_create();
		tier->pub.name = pstrdup(L, k->s, k->len);
		if (tier->allow_ranges == NULL || tier->pub.name == NULL) {
			L->nomem = true;
			return;
		}
		int idx = (int)p->n_tiers++;
		tier->key_line = k->line;
		tier->key_col = k->col;
		if (k->val != NULL && k->val->kind == PN_MAP && k->val->n > 0) {
			tier->body_line = k->val->line;
			tier->body_col = k->val->col;
		}
		if (policy_container(L, k->val, PN_MAP)) {
			policy_check_keys(L, k->val, tier_keys);
			load_tier_body(L, k->val, tier, idx);
		}
	}
}

/* ---- entry points ---- */

static int diag_cmp_pos(const struct policy_diag *a, const struct policy_diag *b)
{
	unsigned la = a->line ? a->line : ~0u, lb = b->line ? b->line : ~0u;
	if (la != lb)
		return la < lb ? -1 : 1;
	return a->col < b->col ? -1 : (a->col > b->col);
}

/* Stable insertion sort by position of the diags this load added (at most 100). */
static void diags_sort(struct policy_diags *d, size_t from)
{
	for (size_t i = from + 1; i < d->n; i++) {
		struct policy_diag x = d->v[i];
		size_t j = i;
		for (; j > from && diag_cmp_pos(&d->v[j - 1], &x) > 0; j--)
			d->v[j] = d->v[j - 1];
		d->v[j] = x;
	}
}

int policy_load_buffer(const char *buf, size_t len, struct policy **out, struct policy_diags *d)
{
	struct policy_loader L = {.d = d, .buf = buf ? buf : "", .len = buf ? len : 0};
	struct policy_node *root = NULL;
	size_t from = d ? d->n : 0;
	int rc;

	*out = NULL;
	rc = policy_create(&L.p);
	if (rc != POLICY_OK)
		goto out;
	if (L.len > POLICY_MAX_FILE_BYTES) {
		policy_diag_at(&L, 0, 0, "", "policy is larger than 1 MiB");
	} else if (policy_tree_build(&L, &root)) {
		if (root == NULL || policy_is_null(root)) {
			policy_diag_at(&L, 1, 1, "",
			               "policy is empty (needs at least version, resolver "
			               "and tiers)");
		} else if (root->kind != PN_MAP) {
			if (!root->bad)
				policy_diag_at(
				    &L, root->line, root->col, "",
				    "the policy must be a mapping of keys at the top level");
		} else {
			policy_check_keys(&L, root, root_keys);
			load_globals(&L, root);
			load_listen(&L, root);
			load_resolver(&L, root);
			cidr_list(&L, policy_get(root, "blocked_ranges"), L.p->blocked, -1,
			          &L.p->blocked_list, &L.p->n_blocked_list);
			/* The tiers' defaults: built-in, then top-level tls:, caps: and http:. */
			policy_tier_builtin(&L.tier_defaults, &L.p->set);
			load_tier_blocks(&L, root, &L.tier_defaults);
			policy_load_interception(&L, root);
			L.p->default_tls_ports = L.tier_defaults.tls_ports;
			L.p->n_default_tls_ports = L.tier_defaults.n_tls_ports;
			L.p->set.unknown_connections_per_source =
			    L.tier_defaults.connections_per_source;
			load_tiers(&L, root);
			policy_load_identity(&L, root);
		}
	}
	if (L.nomem)
		rc = POLICY_ERR_NOMEM;
	else if (L.n_err > 0)
		rc = POLICY_ERR_INVALID;
out:
	policy_arena_fini(&L.tree);
	if (d != NULL)
		diags_sort(d, from);
	if (rc != POLICY_OK) {
		policy_destroy(L.p);
		return rc;
	}
	*out = L.p;
	return POLICY_OK;
}

int policy_load_file(const char *path, struct policy **out, struct policy_diags *d,
		     char sha256[65])
{
	struct policy_loader L = {.d = d};
	char *buf = NULL, err[128], msg[200];
	size_t len = 0;

	*out = NULL;
	if (sha256 != NULL)
		sha256[0] = '\0';
	int rc = file_read_all(path, POLICY_MAX_FILE_BYTES, &buf, &len);
	if (rc == FILEIO_ERR_NOMEM)
		return POLICY_ERR_NOMEM;
	if (rc == FILEIO_ERR_TOO_LARGE) {
		policy_diag_at(&L, 0, 0, "", "policy is larger than 1 MiB");
		return POLICY_ERR_INVALID;
	}
	if (rc != FILEIO_OK) {
		int e = errno;
		snprintf(msg, sizeof(msg), "cannot read the policy: %s",
		         e == ENOENT   ? "not found"
		         : e == EISDIR ? "is a directory, not a policy file"
		         : e == EACCES ? "permission denied"
		                       : strerror_r(e, err, sizeof(err)));
		policy_diag_at(&L, 0, 0, "", msg);
		return POLICY_ERR_IO;
	}
	if (sha256 != NULL && sha256_hex(buf, len, sha256) != 0) {
		free(buf);
		return POLICY_ERR_NOMEM;
	}
	rc = policy_load_buffer(buf, len, out, d);
	free(buf);
	return rc;
}
