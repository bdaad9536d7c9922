/* OIDC ID tokens: base64url, JWS compact parsing (RFC 7515/7519), JWKS keys, RS256/ES256 checks. */
#ifndef PORTCULLIS_JWT_H
#define PORTCULLIS_JWT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>

/*
 * Pure: bytes in, values out; the clock is the caller's (`now`).  Every
 * limit is part of the contract:
 *  - a token is at most JWT_MAX_TOKEN bytes (GitLab's and GitHub's are
 *    1-2 KiB), each decoded JSON part at most JWT_MAX_JSON bytes, nested
 *    at most JWT_MAX_DEPTH deep, with at most JWT_MAX_CLAIMS members;
 *  - a JWKS file is at most JWKS_MAX_BYTES with at most JWKS_MAX_KEYS keys.
 * JSON goes through json_gate and the json walker (duplicate members refused,
 * anywhere in the header or the top level of the claims).
 */
#define JWT_MAX_TOKEN  8192
#define JWT_MAX_JSON   6144
#define JWT_MAX_DEPTH  8
#define JWT_MAX_CLAIMS 64
#define JWT_MAX_AUD    8
#define JWT_MAX_SIG    1024 /* an RSA-8192 signature */
#define JWT_ARENA      8192 /* copies of claim names and values */
#define JWKS_MAX_BYTES 65536
#define JWKS_MAX_KEYS  32

/* Algorithms a provider may be configured with (bits).  Nothing else is ever verified. */
#define JWT_ALG_RS256 1u
#define JWT_ALG_ES256 2u

enum jwt_status {
	JWT_OK = 0,
	JWT_ERR_TOO_LARGE = -1, /* over JWT_MAX_TOKEN / JWT_MAX_JSON / JWT_MAX_CLAIMS */
	JWT_ERR_FORMAT = -2,    /* not three non-empty dot-separated parts */
	JWT_ERR_BASE64 = -3,    /* not base64url, padding present, non-zero spare bits */
	JWT_ERR_JSON = -4,      /* a part is not a JSON object, or a member has the wrong type */
	JWT_ERR_DUPLICATE = -5, /* a member named twice (header or claims) */
	JWT_ERR_ALG_NONE = -6,  /* alg "none" (RFC 7518 §3.6): never */
	JWT_ERR_ALG = -7,       /* an alg the provider is not configured for (HS256, RS512, ...) */
	JWT_ERR_KID_UNKNOWN = -8, /* a kid no key in the JWKS has */
	JWT_ERR_KID_MISSING = -9, /* no kid, and more than one key could be meant */
	JWT_ERR_SIGNATURE = -10, /* the signature does not verify (or the key is of another type) */
	JWT_ERR_ISSUER = -11,    /* iss is not the provider's issuer (exact match) */
	JWT_ERR_AUDIENCE = -12,  /* aud missing, or none of its values accepted */
	JWT_ERR_EXPIRED = -13,   /* now > exp + leeway (every other check passed) */
	JWT_ERR_NOT_YET_VALID = -14, /* now + leeway < nbf, or iat in the future */
	JWT_ERR_CLAIMS = -15, /* exp missing, a time claim not an integer, crit in the header */
	JWT_ERR_NOMEM = -16,
};

/* "ok", "too_large", ... for messages and tests. */
const char *jwt_status_str(int st);

/*
 * Strict base64url without padding (RFC 4648 §5, RFC 7515 §2): only
 * [A-Za-z0-9_-], no '=', no whitespace, a length of 1 mod 4 refused, and
 * the unused bits of the last character must be zero (one encoding per
 * value).  Writes at most cap bytes; returns the decoded length, or
 * JWT_ERR_BASE64 / JWT_ERR_TOO_LARGE.
 */
long b64url_decode(const char *in, size_t len, unsigned char *out, size_t cap)
    __attribute__((warn_unused_result));

/*
 * Proxy-Authorization's credentials (RFC 9110 §11.6.2): "Basic" and
 * base64(user ":" token) (RFC 7617; standard alphabet, padded), or "Bearer"
 * and the token (RFC 6750 §2.1).  Scheme names are case-insensitive, one or
 * more spaces follow.  A Basic value is decoded into buf[cap]; user and
 * token are views into buf or into v.  JWT_ERR_FORMAT for another scheme,
 * bad base64, no ':' or an empty token; JWT_ERR_TOO_LARGE past cap.
 */
struct jwt_cred {
	const char *user;
	size_t user_len;
	const char *token;
	size_t token_len;
	bool basic;
};
int jwt_credentials(const char *v, size_t len, char *buf, size_t cap, struct jwt_cred *out)
    __attribute__((warn_unused_result));

struct jwt_claim {
	const char *name;  /* NUL-terminated, in the arena */
	const char *value; /* strings as decoded; integers and true/false as their JSON text */
};

/* A parsed, NOT yet verified token.  Big (about 16 KiB): heap or static, not a small stack. */
struct jwt {
	char alg[16];
	char kid[128];
	bool has_kid;
	const char *signing_input; /* header '.' payload: a view into the caller's token */
	size_t signing_len;
	unsigned char sig[JWT_MAX_SIG];
	size_t sig_len;
	/* claims: every top-level string, integer or boolean member */
	struct jwt_claim claims[JWT_MAX_CLAIMS];
	size_t n_claims;
	const char *iss; /* also among claims; NULL when absent */
	const char *aud[JWT_MAX_AUD];
	size_t n_aud;
	bool has_exp, has_nbf, has_iat;
	int64_t exp, nbf, iat;
	char arena[JWT_ARENA];
	size_t arena_used;
};

/*
 * Split and decode a compact JWS (header.payload.signature) of len bytes:
 * header members alg (string), kid (string), typ (ignored), crit (refused:
 * RFC 7515 §4.1.11, no extension is understood), others ignored; claims as
 * above (exp, nbf, iat must be integers; aud a string or an array of
 * strings).  out's views point into token.  Nothing is trusted yet.
 */
int jwt_parse(const char *token, size_t len, struct jwt *out) __attribute__((warn_unused_result));

/* A claim's value, or NULL. */
const char *jwt_claim(const struct jwt *t, const char *name);

/* ---- keys ---- */

enum jwks_kty { JWKS_RSA = 1, JWKS_EC_P256 = 2 };

struct jwks_key {
	char kid[128]; /* "" when the JWK has none */
	enum jwks_kty kty;
	unsigned alg; /* JWT_ALG_* the JWK names, or 0 (any its type allows) */
	EVP_PKEY *pkey;
};

struct jwks {
	size_t n;
	struct jwks_key keys[JWKS_MAX_KEYS];
};

/*
 * Parse a JWK Set (RFC 7517 §5): {"keys": [...]}.  RSA keys (n, e; 2048 to
 * 8192 bits) and EC P-256 keys (x, y: 32 bytes each, on the curve) whose
 * use is absent or "sig" are kept; JWKs of other types (oct, OKP, other
 * curves) and use "enc" are skipped.  A duplicate member, a duplicate kid, a
 * key whose numbers do not decode, or no usable key at all refuses the set.
 * err receives a reason.  *out is freed with jwks_destroy.
 */
int jwks_parse(const char *buf, size_t len, struct jwks **out, char *err, size_t errlen)
    __attribute__((warn_unused_result));
void jwks_destroy(struct jwks *k);

/* What a provider accepts. */
struct jwt_policy {
	const char *issuer;           /* exact string match */
	const char *const *audiences; /* at least one of them in aud */
	size_t n_audiences;
	unsigned algs;  /* JWT_ALG_* bits */
	int64_t now;    /* seconds since the epoch */
	int64_t leeway; /* seconds, for exp, nbf and iat */
};

/*
 * Verify t against keys and pol, in this order: alg ("none" first, then
 * configured), the key (kid, or the one key of the alg's type), the
 * signature (RS256: RSASSA-PKCS1-v1_5 with SHA-256; ES256: the raw 64-byte
 * r||s of RFC 7518 §3.4, turned into DER for OpenSSL), iss, aud, then nbf /
 * iat, and exp last: JWT_ERR_EXPIRED means every other check passed.
 */
int jwt_verify(const struct jwt *t, const struct jwks *keys, const struct jwt_policy *pol)
    __attribute__((warn_unused_result));

#endif
