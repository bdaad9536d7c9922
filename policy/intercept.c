/* TLS interception in the policy: the interception: section, rules' intercept: blocks, and
 * the decision on each request inside an intercepted tunnel. */
#include "policy.h"
#include "policy_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "urlpath.h"

static const char *const interception_keys[] = {"ca_cert",       "ca_key",     "upstream_ca",
                                                "leaf_lifetime", "cache_size", NULL};
static const char *const intercept_keys[] = {"default", "max_request_body", "encoded_slash",
                                             "requests", NULL};
static const char *const request_keys[] = {"name", "methods", "path", "action", NULL};

/* ---- loading ---- */

void policy_load_interception(struct policy_loader *L, const struct policy_node *root)
{
	struct policy_interception *ic = &L->p->set.interception;
	const struct policy_node *n = policy_get(root, "interception");
	const struct policy_node *m;

	if (n == NULL)
		return;
	L->interception_given = true;
	m = policy_section(L, root, "interception", interception_keys);
	if (m == NULL) {
		if (policy_is_null(n))
			policy_diag(L, n, "expected a mapping with ca_cert and ca_key");
		return;
	}
	ic->ca_cert = policy_want_path(L, policy_get(m, "ca_cert"));
	ic->ca_key = policy_want_path(L, policy_get(m, "ca_key"));
	if (policy_get(m, "ca_cert") == NULL)
		policy_missing(L, m, "ca_cert");
	if (policy_get(m, "ca_key") == NULL)
		policy_missing(L, m, "ca_key");
	ic->upstream_ca = policy_want_path(L, policy_get(m, "upstream_ca"));
	/* Days are not a policy unit: 30 days is 720h. */
	policy_want_ms(L, policy_get(m, "leaf_lifetime"), MS_H, 720 * MS_H, "1h", "720h (30 days)",
	               &ic->leaf_lifetime_ms);
	policy_want_u32(L, policy_get(m, "cache_size"), 1, 100000, &ic->cache_size);
	ic->enabled = ic->ca_cert != NULL && ic->ca_key != NULL;
}

/* action: / default: allow or deny into *allow; false (reported) otherwise. */
static bool want_action(struct policy_loader *L, const struct policy_node *v, bool *allow)
{
	char t[40];
	if (v->bad)
		return false;
	if (policy_is_word(v, "allow") || policy_is_word(v, "deny")) {
		*allow = v->s[0] == 'a';
		return true;
	}
	if (v->kind != PN_SCALAR)
		policy_diag(L, v, "expected allow or deny");
	else
		policy_diag(L, v, "expected allow or deny, got \"%s\"",
		            policy_clip(v->s, v->len, t, sizeof(t)));
	return false;
}

/* path: a glob, checked like a request path, compiled into the snapshot. */
static bool want_glob(struct policy_loader *L, const struct policy_node *v,
                      struct policy_intercept_req *e)
{
	char t[64];
	const char *s;
	size_t len;

	if (!policy_want_str(L, v, &s, &len))
		return false;
	int rc = urlpath_check(s, len, true, NULL);
	if (rc != URLPATH_OK) {
		policy_diag(L, v, "invalid path pattern \"%s\": %s",
		            policy_clip(s, len, t, sizeof(t)), urlpath_status_str(rc));
		return false;
	}
	void *mem = policy_arena_alloc(&L->p->arena, urlpath_glob_size(s, len));
	e->path = policy_arena_str(L, s, len);
	if (mem == NULL || e->path == NULL) {
		L->nomem = true;
		return false;
	}
	e->glob = urlpath_glob_compile(s, len, mem);
	return true;
}

/* One requests: entry; false when it is not valid (reported). */
static bool load_request(struct policy_loader *L, const struct policy_node *it,
                         const struct policy_rule *r, size_t i, struct policy_intercept_req *e)
{
	const struct policy_node *v;
	char def[HOST_NAME_MAX_LEN + 32];
	bool ok = true;

	e->line = it->line;
	e->col = it->col;
	if (!policy_want(L, it, PN_MAP))
		return false;
	policy_check_keys(L, it, request_keys);
	v = policy_get(it, "name");
	if (v != NULL) {
		const char *s;
		size_t len;
		if (!policy_want_str(L, v, &s, &len)) {
			ok = false;
		} else if (len == 0 || len > POLICY_RULE_NAME_MAX) {
			policy_diag(L, v, "name must be 1 to %u characters", POLICY_RULE_NAME_MAX);
			ok = false;
		} else {
			e->name = policy_arena_str(L, s, len);
		}
	} else {
		snprintf(def, sizeof(def), "%s[%zu]", r->pattern ? r->pattern : "?", i);
		e->name = policy_arena_str(L, def, strlen(def));
	}
	v = policy_get(it, "methods");
	if (v != NULL && !policy_load_method_list(L, v, &e->methods, &e->n_methods))
		ok = false;
	v = policy_get(it, "path");
	if (v == NULL) {
		policy_missing(L, it, "path");
		ok = false;
	} else if (!want_glob(L, v, e)) {
		ok = false;
	}
	v = policy_get(it, "action");
	if (v == NULL) {
		policy_missing(L, it, "action");
		ok = false;
	} else if (!want_action(L, v, &e->allow)) {
		ok = false;
	}
	return ok;
}

/*
 * intercept: {default, max_request_body, requests}.  Needs the top-level
 * interception: section (the CA that signs the leaves).
 */
void policy_load_intercept(struct policy_loader *L, const struct policy_node *v,
                           struct policy_rule *r)
{
	struct policy_intercept *ic;
	struct policy_intercept_req *reqs = NULL;
	const struct policy_node *x;
	bool ok = true;

	if (v->bad)
		return;
	if (v->kind != PN_MAP) {
		policy_diag(L, v, "expected a mapping like {default: deny, requests: [...]}");
		return;
	}
	if (!L->interception_given)
		policy_diag(L, v->key,
		            "intercept needs the top-level interception: section (ca_cert and "
		            "ca_key: the CA that signs the certificates the proxy presents)");
	policy_check_keys(L, v, intercept_keys);
	ic = policy_arena_alloc(&L->p->arena, sizeof(*ic));
	if (ic == NULL) {
		L->nomem = true;
		return;
	}
	memset(ic, 0, sizeof(*ic));
	x = policy_get(v, "default");
	if (x != NULL && !want_action(L, x, &ic->default_allow))
		ok = false;
	x = policy_get(v, "max_request_body");
	if (x != NULL &&
	    !policy_want_unit(L, x, false, 1, UINT64_MAX, "1", "16EiB", &ic->max_request_body))
		ok = false;
	x = policy_get(v, "encoded_slash");
	if (x != NULL && !x->bad) {
		char t[40];
		if (policy_is_word(x, "decode") || policy_is_word(x, "refuse")) {
			ic->decode_encoded_slash = x->s[0] == 'd';
		} else {
			policy_diag(L, x, "expected refuse or decode, got \"%s\"",
			            x->kind == PN_SCALAR ? policy_clip(x->s, x->len, t, sizeof(t))
			                                 : "?");
			ok = false;
		}
	}
	x = policy_get(v, "requests");
	if (x != NULL && policy_container(L, x, PN_SEQ)) {
		if (x->n > POLICY_MAX_INTERCEPT_REQS) {
			policy_diag(L, x, "too many requests entries (at most %u)",
			            POLICY_MAX_INTERCEPT_REQS);
			return;
		}
		reqs = policy_arena_alloc(&L->p->arena, x->n * sizeof(*reqs));
		if (reqs == NULL) {
			L->nomem = true;
			return;
		}
		memset(reqs, 0, x->n * sizeof(*reqs));
		size_t i = 0;
		for (const struct policy_node *it = x->first; it != NULL; it = it->next, i++)
			if (!load_request(L, it, r, i, &reqs[i]))
				ok = false;
		ic->requests = reqs;
		ic->n_requests = x->n;
	} else if (x != NULL && !x->bad && !policy_is_null(x)) {
		ok = false; /* reported by policy_container */
	}
	if (ok)
		r->intercept = ic;
}

/* ---- decisions ---- */

static bool method_listed(const struct policy_intercept_req *e, const char *m, size_t len)
{
	if (e->n_methods == 0)
		return true;
	if (m == NULL)
		return false;
	/* Methods are case-sensitive (RFC 9110 §9.1), but some servers upper-case what they get:
	 * "put" must meet a PUT deny, and an allowed GET lets "get" by (which means GET or
	 * nothing). */
	for (size_t i = 0; i < e->n_methods; i++) {
		if (strlen(e->methods[i]) == len && strncasecmp(e->methods[i], m, len) == 0)
			return true;
		/* Most frameworks answer HEAD with the GET handler: a deny of GET covers it. */
		if (!e->allow && strcmp(e->methods[i], "GET") == 0 && len == 4 &&
		    strncasecmp(m, "HEAD", 4) == 0)
			return true;
	}
	return false;
}

/* The decision on one reading of a path (no query): the checks, then the first entry. */
static enum reason decide_one(const struct policy_intercept *ic, const char *method, size_t mlen,
                              const char *path, size_t len, const char **rule_name, bool *entry)
{
	size_t plen;
	*rule_name = "";
	*entry = false;
	if (urlpath_check(path, len, false, &plen) != URLPATH_OK)
		return R_INTERCEPT_BAD_PATH;
	for (size_t i = 0; i < ic->n_requests; i++) {
		const struct policy_intercept_req *e = &ic->requests[i];
		if (method_listed(e, method, mlen) && urlpath_glob_match(e->glob, path, plen)) {
			*rule_name = e->name;
			*entry = true;
			return e->allow ? R_ALLOWED : R_INTERCEPT_DENIED;
		}
	}
	*rule_name = "default";
	return ic->default_allow ? R_ALLOWED : R_INTERCEPT_DENIED;
}

/*
 * One reading of a path: its bytes (NUL included, if the path has one) and
 * length; lenient: a trailing-slash reading, which refuses only as a bad path
 * or by meeting a deny entry (not by falling to default: deny: "/org/"
 * allowed by an entry for everything under /org/ is not refused because "/org" is not).
 */
struct reading {
	const char *p;
	size_t len;
	bool lenient;
};

/*
 * The readings of a path a server may act on, written one after another into
 * out (*n: how many, at most 4): the path as sent (with encoded_slash: decode,
 * "%2F" as '/'); without the ";parameters" of its segments, as servlet
 * containers read it; and either without a trailing '/', as many frameworks
 * route it.  out needs 4 * len bytes.
 */
static void readings(const struct policy_intercept *ic, const char *path, size_t len, char *out,
                     struct reading rd[4], size_t *n)
{
	size_t o = 0;
	for (size_t i = 0; i < len; i++) {
		if (ic->decode_encoded_slash && path[i] == '%' && len - i >= 3 &&
		    path[i + 1] == '2' && (path[i + 2] == 'f' || path[i + 2] == 'F')) {
			out[o++] = '/';
			i += 2;
		} else {
			out[o++] = path[i];
		}
	}
	rd[0] = (struct reading){out, o, false};
	*n = 1;
	char *next = out + o;
	if (memchr(out, ';', o) != NULL) {
		size_t k = 0;
		bool skip = false;
		for (size_t i = 0; i < o; i++) {
			if (out[i] == '/')
				skip = false;
			else if (out[i] == ';')
				skip = true;
			if (!skip)
				next[k++] = out[i];
		}
		rd[(*n)++] = (struct reading){next, k, false};
		next += k;
	}
	size_t have = *n;
	for (size_t j = 0; j < have; j++) {
		if (rd[j].len > 1 && rd[j].p[rd[j].len - 1] == '/') {
			memcpy(next, rd[j].p, rd[j].len - 1);
			rd[(*n)++] = (struct reading){next, rd[j].len - 1, true};
			next += rd[j].len - 1;
		}
	}
}

enum reason policy_intercept_decide(const struct policy_intercept *ic, const char *method,
                                    size_t mlen, const char *target, size_t tlen,
                                    const char **rule_name)
{
	const char *unused;

	if (rule_name == NULL)
		rule_name = &unused;
	*rule_name = "";
	if (ic == NULL)
		return R_INTERCEPT_DENIED;
	/* The query is never matched; a '#' anywhere is refused (urlpath_check). */
	const char *q = target != NULL ? memchr(target, '?', tlen) : NULL;
	if (target == NULL || tlen == 0 || memchr(target, '#', tlen) != NULL)
		return R_INTERCEPT_BAD_PATH;
	size_t len = q != NULL ? (size_t)(q - target) : tlen;
	char *buf = malloc(4 * len + 1);
	if (buf == NULL)
		return R_INTERCEPT_BAD_PATH; /* out of memory: fail closed */
	struct reading rd[4];
	size_t n;
	readings(ic, target, len, buf, rd, &n);
	/* The path as sent decides; every other reading must be allowed too, but a lenient one
	 * refuses only as a bad path or by meeting a deny entry. */
	bool entry;
	enum reason why = decide_one(ic, method, mlen, rd[0].p, rd[0].len, rule_name, &entry);
	for (size_t i = 1; i < n && why != R_INTERCEPT_BAD_PATH; i++) {
		const char *name;
		enum reason one = decide_one(ic, method, mlen, rd[i].p, rd[i].len, &name, &entry);
		if (one == R_INTERCEPT_BAD_PATH ||
		    (one == R_INTERCEPT_DENIED && (entry || !rd[i].lenient))) {
			why = one;
			*rule_name = name;
		}
	}
	free(buf);
	return why;
}

uint64_t policy_intercept_max_body(const struct policy_intercept *ic)
{
	return ic != NULL ? ic->max_request_body : 0;
}

size_t policy_tier_intercepts(const struct policy *p, int tier, const char **patterns, size_t cap)
{
	size_t n = 0;

	if (p == NULL || tier < 0 || (size_t)tier >= p->n_tiers)
		return 0;
	const struct policy_tier_int *t = &p->tiers[tier];
	for (size_t i = 0; i < t->n_rules; i++) {
		const struct policy_rule *r = &t->rules[i];
		size_t j;
		if (r->intercept == NULL || r->pattern == NULL)
			continue;
		for (j = 0; j < i; j++)
			if (t->rules[j].intercept != NULL && t->rules[j].pattern != NULL &&
			    strcmp(t->rules[j].pattern, r->pattern) == 0)
				break;
		if (j < i)
			continue;
		if (n < cap)
			patterns[n] = r->pattern;
		n++;
	}
	return n;
}
