/* OIDC identity: JWKS files loaded with the snapshot, Proxy-Authorization verified, jobs bound. */
#include "oidc.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "fileio.h"
#include "jwksfetch.h"
#include "jwt.h"
#include "oidcbind.h"
#include "podmap.h"

/* ---- keys: one JWKS per provider, owned by the snapshot ---- */

struct oidc_keys {
	size_t n;
	struct jwks *set[POLICY_MAX_OIDC_PROVIDERS];
	unsigned char digest[POLICY_MAX_OIDC_PROVIDERS][32]; /* SHA-256 of each file's bytes */
};

static void keys_free(void *arg)
{
	struct oidc_keys *k = arg;
	if (k == NULL)
		return;
	for (size_t i = 0; i < k->n; i++)
		jwks_destroy(k->set[i]);
	free(k);
}

int oidc_keys_attach(struct policy *p, char *msg, size_t msglen, unsigned *line, unsigned *col)
{
	const struct policy_settings *s = policy_settings(p);
	if (s->n_oidc == 0)
		return 0;
	struct oidc_keys *k = calloc(1, sizeof(*k));
	if (k == NULL) {
		snprintf(msg, msglen, "out of memory loading the OIDC keys");
		return -1;
	}
	for (size_t i = 0; i < s->n_oidc; i++) {
		const struct policy_oidc_provider *pv = &s->oidc[i];
		k->n = i + 1;
		if (pv->jwks_file == NULL)
			continue; /* jwks_url: the fetcher's keys (st->fetch), not the snapshot's */
		*line = pv->jwks_line;
		*col = pv->jwks_col;
		char *buf = NULL, err[128];
		size_t len = 0;
		int rc = file_read_all(pv->jwks_file, JWKS_MAX_BYTES, &buf, &len);
		if (rc != FILEIO_OK) {
			snprintf(msg, msglen, "jwks_file %s: %s", pv->jwks_file,
			         rc == FILEIO_ERR_TOO_LARGE ? "larger than 64 KiB"
			                                    : strerror(errno));
			keys_free(k);
			return -1;
		}
		unsigned int dl = 0;
		rc = jwks_parse(buf, len, &k->set[i], err, sizeof(err));
		if (rc == JWT_OK &&
		    EVP_Digest(buf, len, k->digest[i], &dl, EVP_sha256(), NULL) != 1)
			rc = JWT_ERR_NOMEM;
		free(buf);
		if (rc != JWT_OK) {
			snprintf(msg, msglen, "jwks_file %s: %s", pv->jwks_file,
			         rc == JWT_ERR_NOMEM ? "out of memory" : err);
			keys_free(k);
			return -1;
		}
	}
	policy_set_ext(p, k, keys_free);
	return 0;
}

bool oidc_keys_same(const struct policy *a, const struct policy *b)
{
	const struct oidc_keys *x = policy_ext(a), *y = policy_ext(b);
	if (x == NULL || y == NULL)
		return x == y;
	return x->n == y->n && memcmp(x->digest, y->digest, sizeof(x->digest[0]) * x->n) == 0;
}

const char *oidc_jwks_path(const struct policy *p, size_t i)
{
	const struct policy_settings *s = policy_settings(p);
	for (size_t j = 0; j < s->n_oidc; j++)
		if (s->oidc[j].jwks_file != NULL && i-- == 0)
			return s->oidc[j].jwks_file;
	return NULL;
}

int oidc_state_init(struct oidc_state *st, size_t max_bindings)
{
	memset(st, 0, sizeof(*st));
	st->binds = oidcbind_create(max_bindings);
	return st->binds != NULL ? 0 : -1;
}

void oidc_state_fini(struct oidc_state *st)
{
	jwksfetch_stop(atomic_load(&st->fetch));
	atomic_store(&st->fetch, NULL);
	oidcbind_destroy(st->binds);
	st->binds = NULL;
}

/* ---- one request's token ---- */

static enum reason jwt_reason(int st)
{
	switch (st) {
	case JWT_ERR_TOO_LARGE:
		return R_OIDC_TOKEN_TOO_LARGE;
	case JWT_ERR_DUPLICATE:
		return R_OIDC_DUPLICATE_CLAIM;
	case JWT_ERR_ALG_NONE:
		return R_OIDC_ALG_NONE;
	case JWT_ERR_ALG:
		return R_OIDC_ALG_NOT_ALLOWED;
	case JWT_ERR_KID_UNKNOWN:
		return R_OIDC_KID_UNKNOWN;
	case JWT_ERR_KID_MISSING:
		return R_OIDC_KID_MISSING;
	case JWT_ERR_SIGNATURE:
		return R_OIDC_SIGNATURE_INVALID;
	case JWT_ERR_ISSUER:
		return R_OIDC_ISSUER_UNKNOWN;
	case JWT_ERR_AUDIENCE:
		return R_OIDC_AUDIENCE_MISMATCH;
	case JWT_ERR_EXPIRED:
		return R_OIDC_TOKEN_EXPIRED;
	case JWT_ERR_NOT_YET_VALID:
		return R_OIDC_TOKEN_NOT_YET_VALID;
	case JWT_ERR_NOMEM:
		return R_INTERNAL_ERROR;
	default:
		return R_OIDC_TOKEN_MALFORMED; /* format, base64, json, claims */
	}
}

static void copy(char *dst, size_t cap, const char *src)
{
	snprintf(dst, cap, "%s", src != NULL ? src : "");
}

static const char *claim_of(const void *ctx, const char *name)
{
	return jwt_claim(ctx, name);
}

/* The job's key: issuer and jti, else job_id (GitLab), else run_id and run_attempt (GitHub). */
static void job_key(const struct jwt *t, const struct policy_oidc_provider *pv, uint8_t out[32])
{
	const char *jti = jwt_claim(t, "jti"), *job = jwt_claim(t, "job_id");
	const char *run = jwt_claim(t, "run_id"), *attempt = jwt_claim(t, "run_attempt");
	char buf[1024];
	if (jti != NULL)
		snprintf(buf, sizeof(buf), "%s\njti\n%s", pv->issuer, jti);
	else if (job != NULL)
		snprintf(buf, sizeof(buf), "%s\njob\n%s", pv->issuer, job);
	else
		snprintf(buf, sizeof(buf), "%s\nrun\n%s\n%s", pv->issuer, run != NULL ? run : "",
		         attempt != NULL ? attempt : "");
	unsigned int n = 0;
	if (EVP_Digest(buf, strlen(buf), out, &n, EVP_sha256(), NULL) != 1)
		memset(out, 0, 32);
}

static void describe(const struct jwt *t, const struct policy_oidc_provider *pv,
                     struct oidc_ident *out)
{
	bool gh = pv->kind == POLICY_OIDC_GITHUB;
	copy(out->issuer, sizeof(out->issuer), t->iss);
	copy(out->subject, sizeof(out->subject), jwt_claim(t, "sub"));
	copy(out->project, sizeof(out->project), jwt_claim(t, gh ? "repository" : "project_path"));
	copy(out->ref, sizeof(out->ref), jwt_claim(t, "ref"));
	copy(out->pipeline, sizeof(out->pipeline), jwt_claim(t, gh ? "run_id" : "pipeline_id"));
	if (gh && jwt_claim(t, "run_id") != NULL)
		snprintf(out->job, sizeof(out->job), "%s.%s", jwt_claim(t, "run_id"),
		         jwt_claim(t, "run_attempt") != NULL ? jwt_claim(t, "run_attempt") : "1");
	else
		copy(out->job, sizeof(out->job), jwt_claim(t, "job_id"));
}

static void uid_key(const char *uid, uint8_t out[32])
{
	unsigned int n = 0;
	if (EVP_Digest(uid, strlen(uid), out, &n, EVP_sha256(), NULL) != 1)
		memset(out, 0xff, 32); /* never all zero: a pod's binding stays a pod's */
}

/* Is the pod with this key still the one at src in the pod map? */
static bool pod_alive(void *ctx, const struct pc_addr *src, const uint8_t key[32])
{
	struct pod_info *pi = podmap_lookup(ctx, src);
	uint8_t k[32];
	bool same = false;
	if (pi != NULL) {
		uid_key(pi->uid, k);
		same = memcmp(k, key, 32) == 0;
	}
	pod_info_unref(pi);
	return same;
}

/*
 * Verify: R_ALLOWED (*expired when exp alone failed and the provider's lease,
 * as the policy says now, may still cover it), or the refusal.
 */
static enum reason verify(const struct policy *p, struct oidc_state *st, const struct jwt *t,
                          int64_t now, const struct policy_oidc_provider **pvp, bool *expired)
{
	*expired = false;
	const struct policy_oidc_provider *pv = policy_oidc_provider(p, t->iss);
	if (pv == NULL)
		return R_OIDC_ISSUER_UNKNOWN;
	*pvp = pv;
	const struct jwks *keys = NULL;
	struct jwks_ref *ref = NULL;
	struct jwksfetch *fetch = st != NULL ? atomic_load(&st->fetch) : NULL;
	if (pv->jwks_url != NULL) {
		ref = jwksfetch_keys(fetch, pv->jwks_url);
		keys = ref != NULL ? jwks_ref_keys(ref) : NULL;
	} else {
		const struct oidc_keys *k = policy_ext(p);
		size_t idx = (size_t)(pv - policy_settings(p)->oidc);
		keys = k != NULL && idx < k->n ? k->set[idx] : NULL;
	}
	if (keys == NULL)
		return R_OIDC_JWKS_UNAVAILABLE;
	struct jwt_policy jp = {.issuer = pv->issuer,
	                        .audiences = pv->audiences,
	                        .n_audiences = pv->n_audiences,
	                        .algs = pv->algs,
	                        .now = now,
	                        .leeway = pv->leeway_ms / 1000};
	int rc = jwt_verify(t, keys, &jp);
	jwks_ref_put(ref);
	/* A kid the fetched set lacks may be a rotation: ask for a refresh (rate-limited). */
	if (rc == JWT_ERR_KID_UNKNOWN && pv->jwks_url != NULL)
		jwksfetch_kid_unknown(fetch, pv->jwks_url);
	if (rc != JWT_OK && rc != JWT_ERR_EXPIRED)
		return jwt_reason(rc);
	int64_t lease = (int64_t)(pv->lease_ms / 1000);
	/* Past exp, everything else verified: the lease of the policy in force, not the one
	 * the token was bound under, says how long after. */
	if (rc == JWT_ERR_EXPIRED && (lease == 0 || now > t->exp + lease))
		return R_OIDC_TOKEN_EXPIRED;
	*expired = rc == JWT_ERR_EXPIRED;
	return R_ALLOWED;
}

/*
 * A token that verified and whose request passes: its job bound to src, or
 * (expired) within its lease from the source it is bound to.  Only such a
 * token binds: a refused one would take the job's address from it and fill
 * the table.
 */
static enum reason bind(const struct policy_oidc_provider *pv, struct oidc_state *st,
                        const struct jwt *t, const uint8_t tok_hash[32], const struct pc_addr *src,
                        const struct oidcbind_pod *pod, int64_t now, bool expired)
{
	uint8_t job[32];
	job_key(t, pv, job);
	if (expired) {
		int b = oidcbind_lease(st->binds, job, tok_hash, src, pod, now);
		if (b == OIDCBIND_OTHER_SOURCE)
			return R_OIDC_TOKEN_REPLAYED;
		if (b != OIDCBIND_OK)
			return R_OIDC_TOKEN_EXPIRED;
		atomic_fetch_add_explicit(&st->leased, 1, memory_order_relaxed);
		return R_ALLOWED;
	}
	/* The binding lasts as long as the token passes: past exp within the leeway too, or
	 * a copy from another address then would find it ended and bind afresh. */
	int64_t lease = (int64_t)(pv->lease_ms / 1000), leeway = (int64_t)(pv->leeway_ms / 1000);
	int64_t until = t->exp + (lease > leeway ? lease : leeway);
	int b = oidcbind_check(st->binds, job, tok_hash, src, pod, until, now);
	if (b == OIDCBIND_OTHER_SOURCE)
		return R_OIDC_TOKEN_REPLAYED;
	atomic_fetch_add_explicit(&st->verified, 1, memory_order_relaxed);
	return R_ALLOWED;
}

/* Proxy-Authorization into a token; the provider's username checked once the issuer is known. */
struct presented {
	struct jwt_cred cred;
	char basic[JWT_MAX_TOKEN + 256];
};

enum reason oidc_identify(const struct policy *p, struct oidc_state *st, enum policy_auth auth,
                          bool have_hdr, const char *hdr, size_t hdr_len, const struct pc_addr *src,
                          struct podmap *pm, const char *pod_uid, int64_t now,
                          struct oidc_ident *out)
{
	memset(out, 0, sizeof(*out));
	out->tier = -1;
	if (auth == POLICY_AUTH_OFF)
		return R_ALLOWED;
	if (!have_hdr)
		return auth == POLICY_AUTH_REQUIRED ? R_OIDC_TOKEN_MISSING : R_ALLOWED;
	out->present = true;
	struct presented *pr = malloc(sizeof(*pr));
	struct jwt *t = malloc(sizeof(*t));
	enum reason why = R_INTERNAL_ERROR;
	if (pr == NULL || t == NULL)
		goto out;
	int rc = jwt_credentials(hdr, hdr_len, pr->basic, sizeof(pr->basic), &pr->cred);
	if (rc != JWT_OK) {
		why = rc == JWT_ERR_TOO_LARGE ? R_OIDC_TOKEN_TOO_LARGE : R_OIDC_BAD_CREDENTIALS;
		goto out;
	}
	uint8_t h[32];
	unsigned int hl = 0;
	if (EVP_Digest(pr->cred.token, pr->cred.token_len, h, &hl, EVP_sha256(), NULL) != 1)
		goto out;
	rc = jwt_parse(pr->cred.token, pr->cred.token_len, t);
	if (rc != JWT_OK) {
		/* Not a JWT (perhaps someone's proxy password): not even a hash of it is kept. */
		why = jwt_reason(rc);
		goto out;
	}
	for (size_t i = 0; i < 8; i++)
		snprintf(out->token_sha + 2 * i, 3, "%02x", h[i]);
	struct oidcbind_pod pod = {.alive = pm != NULL ? pod_alive : NULL, .ctx = pm};
	if (pm != NULL && pod_uid != NULL)
		uid_key(pod_uid, pod.key);
	const struct policy_oidc_provider *pv = NULL;
	bool expired;
	why = verify(p, st, t, now, &pv, &expired);
	if (why != R_ALLOWED)
		goto out;
	describe(t, pv, out);
	if (pv->username != NULL && pr->cred.basic &&
	    (strlen(pv->username) != pr->cred.user_len ||
	     memcmp(pv->username, pr->cred.user, pr->cred.user_len) != 0)) {
		why = R_OIDC_BAD_CREDENTIALS;
		goto out;
	}
	int tier = policy_identify_oidc(pv, claim_of, t, &out->rule);
	if (tier == POLICY_OIDC_NOT_CI)
		why = R_OIDC_NOT_CI_TOKEN;
	else if (tier == POLICY_OIDC_NO_RULE && !pv->no_match_source)
		why = R_OIDC_NO_MATCH;
	else
		why = bind(pv, st, t, h, src, &pod, now, expired);
	if (why == R_ALLOWED)
		out->tier = tier;
	else
		out->rule = NULL;
out:
	if (why != R_ALLOWED && st != NULL)
		atomic_fetch_add_explicit(&st->refused, 1, memory_order_relaxed);
	if (t != NULL)
		OPENSSL_cleanse(t, sizeof(*t));
	if (pr != NULL)
		OPENSSL_cleanse(pr, sizeof(*pr));
	free(t);
	free(pr);
	return why;
}
