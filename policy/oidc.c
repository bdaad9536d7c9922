/* identity.oidc: CI jobs' OIDC ID token providers, their rules, and claims matched to a tier. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "host.h"
#include "policy_int.h"

static const char *const oidc_keys[] = {"providers", "max_bindings", NULL};
static const char *const provider_keys[] = {
    "name",           "kind",     "issuer",       "audiences",        "algorithms",
    "jwks_file",      "jwks_url", "jwks_ca_file", "jwks_refresh_min", "jwks_refresh_max",
    "jwks_max_stale", "leeway",   "lease",        "username",         "no_match",
    "rules",          NULL};
static const char *const rule_keys[] = {"name", "match", "tier", NULL};

/* The claims a rule may name, per kind (docs/oidc.md).  Integer claims match as decimal text. */
static const char *const gitlab_claims[] = {
    "project_path",      "namespace_path",     "ref",
    "ref_type",          "ref_protected",      "environment",
    "pipeline_source",   "runner_environment", "project_id",
    "namespace_id",      "runner_id",          "environment_protected",
    "ci_config_ref_uri", "user_login",         NULL};
static const char *const github_claims[] = {
    "repository",       "repository_owner",   "ref",           "environment",
    "job_workflow_ref", "runner_environment", "repository_id", "repository_owner_id",
    "event_name",       "ref_type",           "workflow_ref",  NULL};

/* The claims every CI token of a kind carries (a login token of the same issuer lacks them). */
static const char *const gitlab_ci[] = {"job_id", "pipeline_source"};
static const char *const github_ci[] = {"run_id", "repository"};

static size_t count(const char *const *v)
{
	size_t n = 0;
	while (v[n] != NULL)
		n++;
	return n;
}

static bool in_list(const char *const *v, const char *s, size_t len)
{
	for (size_t i = 0; v[i] != NULL; i++)
		if (strlen(v[i]) == len && memcmp(v[i], s, len) == 0)
			return true;
	return false;
}

/* A string node copied into the arena (NULL when not a non-empty string without NUL). */
static const char *want_text(struct policy_loader *L, const struct policy_node *v, const char *what)
{
	const char *s;
	size_t len;
	if (v == NULL || !policy_want_str(L, v, &s, &len))
		return NULL;
	if (len == 0 || len > 1024 || memchr(s, '\0', len) != NULL) {
		policy_diag(L, v, "%s must be 1 to 1024 bytes", what);
		return NULL;
	}
	return policy_arena_str(L, s, len);
}

/* A non-empty list of strings (a single string is a list of one). */
static const char *const *want_strs(struct policy_loader *L, const struct policy_node *v,
                                    size_t max, size_t *n, const char *what)
{
	*n = 0;
	if (v == NULL)
		return NULL;
	size_t k = v->kind == PN_SEQ ? v->n : 1;
	if (v->kind == PN_MAP || k == 0 || k > max) {
		policy_diag(L, v, "%s: expected 1 to %zu strings", what, max);
		return NULL;
	}
	const char **out = policy_arena_alloc(&L->p->arena, k * sizeof(*out));
	if (out == NULL) {
		L->nomem = true;
		return NULL;
	}
	if (v->kind == PN_SCALAR) {
		out[0] = want_text(L, v, what);
		*n = out[0] != NULL;
		return out;
	}
	for (const struct policy_node *it = v->first; it != NULL; it = it->next) {
		const char *s = want_text(L, it, what);
		if (s != NULL)
			out[(*n)++] = s;
	}
	return out;
}

static void load_algs(struct policy_loader *L, const struct policy_node *v,
                      struct policy_oidc_provider *pv)
{
	pv->algs = 1u; /* RS256: what GitLab and GitHub sign with */
	if (v == NULL)
		return;
	size_t n;
	const char *const *a = want_strs(L, v, 2, &n, "algorithms");
	pv->algs = 0;
	for (size_t i = 0; i < n; i++) {
		if (strcmp(a[i], "RS256") == 0)
			pv->algs |= 1u;
		else if (strcmp(a[i], "ES256") == 0)
			pv->algs |= 2u;
		else
			policy_diag(L, v,
			            "algorithm \"%s\" is not supported: RS256 or ES256 (never "
			            "none, never an HMAC)",
			            a[i]);
	}
}

static void load_rule(struct policy_loader *L, const struct policy_node *it,
                      const struct policy_oidc_provider *pv, size_t idx, struct policy_oidc_rule *r)
{
	char t[72], hint[96];
	r->tier = -1;
	r->line = it->line;
	r->col = it->col;
	if (!policy_container(L, it, PN_MAP))
		return;
	policy_check_keys(L, it, rule_keys);
	const struct policy_node *v = policy_get(it, "name");
	r->name = v != NULL ? want_text(L, v, "name") : NULL;
	if (r->name == NULL) {
		char def[96];
		snprintf(def, sizeof(def), "%s[%zu]", pv->name != NULL ? pv->name : "oidc", idx);
		r->name = policy_arena_str(L, def, strlen(def));
	}
	v = policy_get(it, "tier");
	if (v == NULL)
		policy_missing(L, it, "tier");
	else
		r->tier = policy_tier_by_name(L, v, "not a tier name");
	const char *const *names = pv->kind == POLICY_OIDC_GITHUB ? github_claims : gitlab_claims;
	const struct policy_node *m = policy_get(it, "match");
	if (m == NULL) {
		policy_missing(L, it, "match");
		return;
	}
	if (m->kind != PN_MAP) {
		policy_diag(L, m, "expected a mapping of claim: pattern");
		return;
	}
	if (m->n == 0) {
		/* On a shared issuer (gitlab.com, GitHub) any project can mint a CI token with the
		 * audience it likes: a rule that names no claim would give this tier to all of
		 * them. */
		policy_diag(L, m,
		            "a rule matches at least one claim (an empty match takes every CI "
		            "job of the issuer, whichever project asked for the audience)");
		return;
	}
	if (m->n > POLICY_MAX_OIDC_MATCH) {
		policy_diag(L, m, "at most %d claims", POLICY_MAX_OIDC_MATCH);
		return;
	}
	struct policy_oidc_match *mm = policy_arena_alloc(&L->p->arena, (m->n + 1) * sizeof(*mm));
	if (mm == NULL) {
		L->nomem = true;
		return;
	}
	size_t n = 0;
	for (const struct policy_node *kv = m->first; kv != NULL; kv = kv->next) {
		if (!in_list(names, kv->s, kv->len)) {
			policy_diag(L, kv, "\"%s\" is not a %s claim a rule can match%s",
			            policy_clip(kv->s, kv->len, t, sizeof(t)),
			            pv->kind == POLICY_OIDC_GITHUB ? "GitHub" : "GitLab",
			            policy_suggest(kv->s, kv->len, names, count(names), hint,
			                           sizeof(hint)));
			continue;
		}
		/* true / 42 written bare are matched as their text, as the token's are. */
		const struct policy_node *val = kv->val;
		if (val == NULL || val->kind != PN_SCALAR || val->len == 0) {
			policy_diag(L, kv, "a claim's pattern is a non-empty string");
			continue;
		}
		mm[n].claim = policy_arena_str(L, kv->s, kv->len);
		mm[n].pattern = policy_arena_str(L, val->s, val->len);
		n++;
	}
	r->match = mm;
	r->n_match = n;
}

/*
 * jwks_url: "https://" authority path, nothing else: no userinfo, no fragment,
 * no byte outside visible ASCII.  The host is canonicalised like an allowlist
 * host; the path keeps any query.  False with a diagnostic.
 */
static bool load_jwks_url(struct policy_loader *L, const struct policy_node *v,
                          struct policy_oidc_provider *pv)
{
	const char *u = pv->jwks_url;
	size_t len = strlen(u);
	if (strncmp(u, "https://", 8) != 0) {
		policy_diag(L, v, "jwks_url must be an https:// URL");
		return false;
	}
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)u[i] <= 0x20 || (unsigned char)u[i] >= 0x7f || u[i] == '#') {
			policy_diag(L, v,
			            "jwks_url: a space, control, non-ASCII byte or # at byte %zu",
			            i + 1);
			return false;
		}
	const char *auth = u + 8, *slash = strchr(auth, '/');
	const char *q = strchr(auth, '?');
	if (q != NULL && (slash == NULL || q < slash))
		slash = q; /* https://host?x: the path is "/?x" */
	size_t alen = slash != NULL ? (size_t)(slash - auth) : strlen(auth);
	struct pc_host h;
	uint16_t port = 0;
	int rc = host_parse_authority(auth, alen, 443, &h, &port);
	if (rc != HOST_OK) {
		policy_diag(L, v, "jwks_url: bad host or port (%s)", host_status_str(rc));
		return false;
	}
	pv->jwks_host = policy_arena_str(L, h.name, h.len);
	pv->jwks_port = port;
	if (slash == NULL)
		pv->jwks_path = policy_arena_str(L, "/", 1);
	else if (*slash == '?') {
		char buf[1030];
		snprintf(buf, sizeof(buf), "/%s", slash);
		pv->jwks_path = policy_arena_str(L, buf, strlen(buf));
	} else
		pv->jwks_path = policy_arena_str(L, slash, strlen(slash));
	return pv->jwks_host != NULL && pv->jwks_path != NULL;
}

/* The provider's keys: jwks_file, or jwks_url with its CA and cache bounds. */
static void load_jwks(struct policy_loader *L, const struct policy_node *it,
                      struct policy_oidc_provider *pv)
{
	const struct policy_node *f = policy_get(it, "jwks_file"), *u = policy_get(it, "jwks_url");
	if (f == NULL && u == NULL) {
		policy_missing(L, it, "jwks_file");
		return;
	}
	if (f != NULL && u != NULL) {
		policy_diag(L, u, "a provider takes its keys from jwks_file or jwks_url, not both");
		return;
	}
	const struct policy_node *v = f != NULL ? f : u;
	pv->jwks_line = v->line;
	pv->jwks_col = v->col;
	if (f != NULL) {
		pv->jwks_file = want_text(L, f, "jwks_file");
		if (pv->jwks_file != NULL && pv->jwks_file[0] != '/')
			policy_diag(L, f, "jwks_file must be an absolute path");
		for (const char *const *k =
		         (const char *const[]){"jwks_ca_file", "jwks_refresh_min",
		                               "jwks_refresh_max", "jwks_max_stale", NULL};
		     *k != NULL; k++)
			if (policy_get(it, *k) != NULL)
				policy_diag(L, policy_get(it, *k), "%s goes with jwks_url", *k);
		return;
	}
	pv->jwks_url = want_text(L, u, "jwks_url");
	if (pv->jwks_url != NULL)
		(void)load_jwks_url(L, u, pv);
	v = policy_get(it, "jwks_ca_file");
	if (v != NULL) {
		pv->jwks_ca_file = want_text(L, v, "jwks_ca_file");
		if (pv->jwks_ca_file != NULL && pv->jwks_ca_file[0] != '/')
			policy_diag(L, v, "jwks_ca_file must be an absolute path");
	}
	pv->jwks_refresh_min_ms = 5 * MS_M;
	pv->jwks_refresh_max_ms = 60 * MS_M;
	policy_want_ms(L, policy_get(it, "jwks_refresh_min"), MS_S, 24 * 60 * MS_M, "1s", "24h",
	               &pv->jwks_refresh_min_ms);
	policy_want_ms(L, policy_get(it, "jwks_refresh_max"), MS_S, 7 * 24 * 60 * MS_M, "1s",
	               "168h", &pv->jwks_refresh_max_ms);
	const struct policy_node *mx = policy_get(it, "jwks_refresh_max");
	if (pv->jwks_refresh_max_ms < pv->jwks_refresh_min_ms)
		policy_diag(L, mx != NULL ? mx : u, "jwks_refresh_max is below jwks_refresh_min");
	/* Keys the issuer can no longer be asked about are not trusted for ever: a key it
	 * withdrew must stop verifying even while its JWKS URL cannot be reached. */
	pv->jwks_max_stale_ms = 24 * 60 * MS_M; /* default: a day, or the ceiling when longer */
	if (pv->jwks_max_stale_ms < pv->jwks_refresh_max_ms)
		pv->jwks_max_stale_ms = pv->jwks_refresh_max_ms;
	const struct policy_node *ms = policy_get(it, "jwks_max_stale");
	policy_want_ms(L, ms, MS_S, 30u * 24 * 60 * MS_M, "1s", "720h", &pv->jwks_max_stale_ms);
	if (pv->jwks_max_stale_ms < pv->jwks_refresh_max_ms)
		policy_diag(L, ms != NULL ? ms : u, "jwks_max_stale is below jwks_refresh_max");
}

static void load_provider(struct policy_loader *L, const struct policy_node *it,
                          struct policy_oidc_provider *pv)
{
	if (!policy_container(L, it, PN_MAP))
		return;
	policy_check_keys(L, it, provider_keys);
	pv->name = want_text(L, policy_get(it, "name"), "name");
	if (policy_get(it, "name") == NULL)
		policy_missing(L, it, "name");
	const struct policy_node *v = policy_get(it, "kind");
	if (v == NULL)
		policy_missing(L, it, "kind");
	else if (policy_is_word(v, "github"))
		pv->kind = POLICY_OIDC_GITHUB;
	else if (!policy_is_word(v, "gitlab") && !v->bad)
		policy_diag(L, v, "expected gitlab or github");
	v = policy_get(it, "issuer");
	if (v == NULL)
		policy_missing(L, it, "issuer");
	pv->issuer = want_text(L, v, "issuer");
	if (pv->issuer != NULL && strncmp(pv->issuer, "https://", 8) != 0)
		policy_diag(L, v,
		            "an issuer is an https:// URL, exactly as the tokens' iss says it");
	v = policy_get(it, "audiences");
	if (v == NULL)
		policy_missing(L, it, "audiences");
	pv->audiences = want_strs(L, v, POLICY_MAX_OIDC_AUDIENCES, &pv->n_audiences, "audiences");
	load_algs(L, policy_get(it, "algorithms"), pv);
	load_jwks(L, it, pv);
	pv->leeway_ms = 60 * MS_S;
	policy_want_ms(L, policy_get(it, "leeway"), 0, 5 * MS_M, "0s", "5m", &pv->leeway_ms);
	policy_want_ms(L, policy_get(it, "lease"), 0, 24 * 60 * MS_M, "0s", "24h", &pv->lease_ms);
	v = policy_get(it, "username");
	if (v != NULL)
		pv->username = want_text(L, v, "username");
	v = policy_get(it, "no_match");
	if (v != NULL && policy_is_word(v, "source"))
		pv->no_match_source = true;
	else if (v != NULL && !policy_is_word(v, "deny") && !v->bad)
		policy_diag(L, v, "expected deny or source");
	v = policy_get(it, "rules");
	if (v == NULL) {
		policy_missing(L, it, "rules");
		return;
	}
	if (!policy_container(L, v, PN_SEQ))
		return;
	if (v->n > POLICY_MAX_OIDC_RULES) {
		policy_diag(L, v, "at most %d rules", POLICY_MAX_OIDC_RULES);
		return;
	}
	struct policy_oidc_rule *rules = policy_arena_alloc(&L->p->arena, v->n * sizeof(*rules));
	if (rules == NULL) {
		L->nomem = true;
		return;
	}
	size_t n = 0;
	for (const struct policy_node *r = v->first; r != NULL; r = r->next) {
		memset(&rules[n], 0, sizeof(rules[n]));
		load_rule(L, r, pv, n, &rules[n]);
		n++;
	}
	pv->rules = rules;
	pv->n_rules = n;
}

static bool same_text(const char *a, const char *b)
{
	return a == b || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

/* Two providers sharing a jwks_url share its keys: they must fetch it the same way. */
static bool same_jwks_source(const struct policy_oidc_provider *a,
                             const struct policy_oidc_provider *b)
{
	return same_text(a->jwks_ca_file, b->jwks_ca_file) &&
	       a->jwks_refresh_min_ms == b->jwks_refresh_min_ms &&
	       a->jwks_refresh_max_ms == b->jwks_refresh_max_ms &&
	       a->jwks_max_stale_ms == b->jwks_max_stale_ms;
}

void policy_load_oidc(struct policy_loader *L, const struct policy_node *id)
{
	struct policy_settings *s = &L->p->set;
	s->oidc_max_bindings = 65536;
	const struct policy_node *m = policy_section(L, id, "oidc", oidc_keys);
	bool any_auth = false;
	for (size_t i = 0; i < s->n_listen_proxy; i++)
		any_auth = any_auth || s->listen_auth[i] != POLICY_AUTH_OFF;
	if (m == NULL) {
		if (any_auth)
			policy_diag_at(L, 0, 0, "listen.proxy",
			               "auth on a listener needs identity.oidc.providers");
		return;
	}
	policy_want_u32(L, policy_get(m, "max_bindings"), 16, 10000000, &s->oidc_max_bindings);
	const struct policy_node *v = policy_get(m, "providers");
	if (v == NULL) {
		policy_missing(L, m, "providers");
		return;
	}
	if (!policy_container(L, v, PN_SEQ))
		return;
	if (v->n > POLICY_MAX_OIDC_PROVIDERS) {
		policy_diag(L, v, "at most %d providers", POLICY_MAX_OIDC_PROVIDERS);
		return;
	}
	struct policy_oidc_provider *pv = policy_arena_alloc(&L->p->arena, v->n * sizeof(*pv));
	if (pv == NULL) {
		L->nomem = true;
		return;
	}
	size_t n = 0;
	for (const struct policy_node *it = v->first; it != NULL; it = it->next) {
		memset(&pv[n], 0, sizeof(pv[n]));
		load_provider(L, it, &pv[n]);
		for (size_t j = 0; j < n && pv[n].issuer != NULL; j++)
			if (pv[j].issuer != NULL && strcmp(pv[j].issuer, pv[n].issuer) == 0)
				policy_diag(L, it, "issuer %s is named by two providers",
				            pv[n].issuer);
		for (size_t j = 0; j < n && pv[n].name != NULL; j++)
			if (pv[j].name != NULL && strcmp(pv[j].name, pv[n].name) == 0)
				policy_diag(L, it, "provider name %s is used twice", pv[n].name);
		for (size_t j = 0; j < n && pv[n].jwks_url != NULL; j++)
			if (pv[j].jwks_url != NULL && strcmp(pv[j].jwks_url, pv[n].jwks_url) == 0 &&
			    !same_jwks_source(&pv[j], &pv[n]))
				policy_diag(
				    L, it,
				    "providers %s and %s fetch %s with different jwks_ca_file or "
				    "jwks_refresh_min/max/max_stale: one URL, one way to fetch it",
				    pv[j].name ? pv[j].name : "?", pv[n].name ? pv[n].name : "?",
				    pv[n].jwks_url);
		n++;
	}
	s->oidc = pv;
	s->n_oidc = n;
	if (!any_auth)
		policy_diag(L, v,
		            "identity.oidc.providers need a listener with auth: optional or "
		            "required (listen.proxy[i].auth)");
	/* A token is 1-2 KiB, 4/3 of that again in Basic: room unless the file says otherwise. */
	if (!L->p->header_bytes_set && s->max_header_bytes < 16384)
		s->max_header_bytes = 16384;
}

/* ---- matching (pure) ---- */

bool policy_oidc_glob(const char *g, const char *s)
{
	const char *star = NULL, *resume = NULL;
	while (*s != '\0') {
		if (*g == '*') {
			star = g++;
			resume = s;
		} else if (*g == *s) {
			g++;
			s++;
		} else if (star != NULL) {
			g = star + 1;
			s = ++resume;
		} else {
			return false;
		}
	}
	while (*g == '*')
		g++;
	return *g == '\0';
}

const struct policy_oidc_provider *policy_oidc_provider(const struct policy *p, const char *iss)
{
	for (size_t i = 0; iss != NULL && i < p->set.n_oidc; i++)
		if (p->set.oidc[i].issuer != NULL && strcmp(p->set.oidc[i].issuer, iss) == 0)
			return &p->set.oidc[i];
	return NULL;
}

int policy_identify_oidc(const struct policy_oidc_provider *pv,
                         const char *(*claim)(const void *ctx, const char *name), const void *ctx,
                         const char **rule)
{
	const char *const *ci = pv->kind == POLICY_OIDC_GITHUB ? github_ci : gitlab_ci;
	*rule = NULL;
	for (size_t i = 0; i < 2; i++) {
		const char *v = claim(ctx, ci[i]);
		if (v == NULL || v[0] == '\0')
			return POLICY_OIDC_NOT_CI;
	}
	for (size_t i = 0; i < pv->n_rules; i++) {
		const struct policy_oidc_rule *r = &pv->rules[i];
		bool all = true;
		for (size_t j = 0; all && j < r->n_match; j++) {
			const char *v = claim(ctx, r->match[j].claim);
			all = v != NULL && policy_oidc_glob(r->match[j].pattern, v);
		}
		if (all) {
			*rule = r->name;
			return r->tier;
		}
	}
	return POLICY_OIDC_NO_RULE;
}

void policy_set_ext(struct policy *p, void *ext, void (*free_fn)(void *))
{
	p->ext = ext;
	p->ext_free = free_fn;
}

const void *policy_ext(const struct policy *p)
{
	return p->ext;
}
