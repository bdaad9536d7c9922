/* libFuzzer target: OIDC tokens (parse + verify against committed PUBLIC keys) and JWK Sets. */
#include "jwt.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Public keys only (their private halves were thrown away after signing the corpus). */
static const char JWKS[] =
    "{\"keys\": [{\"kty\": \"EC\", \"kid\": \"e1\", \"crv\": \"P-256\", \"use\": \"sig\", \"x\": "
    "\"_w4SrsttqzmqSbcgQwobcWKlY7bPeGuPcFz-wdgHk3w\", \"y\": "
    "\"1reUce7Iw6-Hf56itnCh0F-NX_FkzIp5oi3Oj6RROk0\"}, {\"kty\": \"RSA\", \"kid\": \"r1\", "
    "\"alg\": \"RS256\", \"n\": "
    "\"qCTPUi0X12z1ah-0kIXKcHU-ROkQn0jw5UQYx-uuRSNsCaShH_AEC1j87-VQcGs_"
    "5TfrmHpk7shJefATgzE55h7qOkeh3cuUiJVPCSEn8Er19nqBUbBqTZ8s0ixgQmrLgypSRjv8bjAnSePH2otoADDAcKWvPc"
    "A58pxrQFjvufR6pm0_UPnY3HZlOGQF151EGGbbrnU6D8KYK69Rif-1BDOQraZ_"
    "ZK7FKHkywKpcVEdr2AAtvgXqCNVhusEG3dGE59PqGkoU6uHjnAa29q-atcwFGvdGdra2_"
    "UHe7Jqcvmk6fEKZgLxwSi4AKtfNE_JBxX41Ay48SYRq9rqHaG_GrQ\", \"e\": \"AQAB\"}]}";

static void require(bool ok, const char *what)
{
	if (!ok) {
		fprintf(stderr, "fuzz_jwt: invariant violated: %s\n", what);
		abort();
	}
}

static struct jwks *keys(void)
{
	static struct jwks *ks;
	char err[128];
	if (ks == NULL && jwks_parse(JWKS, sizeof(JWKS) - 1, &ks, err, sizeof(err)) != JWT_OK)
		abort();
	return ks;
}

/* First byte 'J': the rest is a JWK Set; 'A': a Proxy-Authorization value.  Else a token. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > 0 && data[0] == 'A') {
		static char buf[JWT_MAX_TOKEN + 256];
		struct jwt_cred c;
		if (jwt_credentials((const char *)data + 1, size - 1, buf, sizeof(buf), &c) ==
		    JWT_OK)
			require(c.token_len > 0 && c.token != NULL &&
			            (c.basic
			                 ? (c.token >= buf &&
			                    c.token + c.token_len <= buf + sizeof(buf))
			                 : (c.token > (const char *)data &&
			                    c.token + c.token_len == (const char *)data + size)),
			        "credential views");
		return 0;
	}
	if (size > 0 && data[0] == 'J') {
		struct jwks *ks = NULL;
		char err[128];
		int rc = jwks_parse((const char *)data + 1, size - 1, &ks, err, sizeof(err));
		require((rc == JWT_OK) == (ks != NULL), "jwks result");
		require(rc != JWT_OK || (ks->n > 0 && ks->n <= JWKS_MAX_KEYS), "jwks count");
		jwks_destroy(ks);
		return 0;
	}
	static struct jwt t;
	int rc = jwt_parse((const char *)data, size, &t);
	if (rc != JWT_OK)
		return 0;
	require(size <= JWT_MAX_TOKEN, "size limit");
	require(t.signing_input == (const char *)data && t.signing_len < size, "signing input");
	require(t.n_claims <= JWT_MAX_CLAIMS && t.n_aud <= JWT_MAX_AUD, "counts");
	require(strcmp(t.alg, "none") != 0, "alg none parsed");
	static const char *const auds[] = {"portcullis"};
	struct jwt_policy pol = {.issuer = "https://gitlab.example.com",
	                         .audiences = auds,
	                         .n_audiences = 1,
	                         .algs = JWT_ALG_RS256 | JWT_ALG_ES256,
	                         .now = 1800000000,
	                         .leeway = 60};
	rc = jwt_verify(&t, keys(), &pol);
	/* Verified: it was signed by a corpus key, with exactly these properties. */
	if (rc == JWT_OK)
		require(t.iss != NULL && strcmp(t.iss, pol.issuer) == 0 && t.has_exp &&
		            t.exp + 60 >= pol.now,
		        "verified token's claims");
	return 0;
}
