/* OIDC identity for the connection core: keys loaded with each snapshot, a token verified and
 * bound. */
#ifndef PORTCULLIS_OIDC_H
#define PORTCULLIS_OIDC_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "policy.h"

/*
 * The providers' keys (jwks_file) are read with the policy file and live in
 * its snapshot (policy_set_ext): a reload reads them again, and a JWKS that
 * does not parse refuses the whole reload (the previous snapshot and its
 * keys stay, the failure is counted).  The server watches the files'
 * directories and reloads when one changes.
 *
 * Load every provider's JWKS into p.  0, or -1 with *msg ("<path>: why") and
 * the provider's line and column for the report.
 */
int oidc_keys_attach(struct policy *p, char *msg, size_t msglen, unsigned *line, unsigned *col)
    __attribute__((warn_unused_result));

/* Do a and b hold keys from the same JWKS bytes (both none: true)? */
bool oidc_keys_same(const struct policy *a, const struct policy *b);

/* The JWKS files of p (for the server's watch): the i-th of the providers with one, or NULL
 * past the end. */
const char *oidc_jwks_path(const struct policy *p, size_t i);

/* Process-wide state: the job bindings and the counters (shared by every worker). */
struct jwksfetch;
struct oidc_state {
	struct oidcbind *binds;
	/* The jwks_url fetcher, started by the server once a policy names a URL (or NULL). */
	_Atomic(struct jwksfetch *) fetch;
	atomic_ullong verified, leased, refused; /* tokens by result */
};

int oidc_state_init(struct oidc_state *st, size_t max_bindings) __attribute__((warn_unused_result));
void oidc_state_fini(struct oidc_state *st);

/* What a request's token said, for its audit record (every field "" when unknown). */
struct oidc_ident {
	bool present;       /* a Proxy-Authorization came on an auth listener */
	int tier;           /* the rule's tier, or -1 */
	const char *rule;   /* the matching rule's name (in the snapshot), or NULL */
	char token_sha[17]; /* the first 16 hex digits of the token's SHA-256: never the token */
	char issuer[128];
	char subject[256];
	char project[256]; /* project_path (GitLab) / repository (GitHub) */
	char ref[256];
	char pipeline[32]; /* pipeline_id / run_id */
	char job[48];      /* job_id / run_id.run_attempt */
};

/*
 * Identity from Proxy-Authorization (hdr, hdr_len; have_hdr false when the
 * request has none) on a listener with auth.  R_ALLOWED and out->tier >= 0:
 * the token decides.  R_ALLOWED and out->tier < 0: no token on an optional
 * listener, or no rule matched on a provider with no_match: source — the
 * other identities decide.  Anything else: the refusal.
 *
 * A token is verified in full every time it is presented (signature,
 * issuer, audience, times); once the user name, CI claims and rules also
 * pass, its job is bound to src (a refused request binds nothing).  After exp the same
 * token from the same source passes for the provider's lease; from another
 * source it is refused as a replay while the binding lasts.
 */
struct podmap;
/*
 * With the pod map on (pm non-NULL), the binding also names the pod at src
 * (pod_uid, NULL when the address is no pod's) and ends when that pod is no
 * longer the one at its address.
 */
enum reason oidc_identify(const struct policy *p, struct oidc_state *st, enum policy_auth auth,
                          bool have_hdr, const char *hdr, size_t hdr_len, const struct pc_addr *src,
                          struct podmap *pm, const char *pod_uid, int64_t now,
                          struct oidc_ident *out);

#endif
