/* JWK Sets into OpenSSL public keys (EVP_PKEY_fromdata), and a token's signature and claims
 * checked. */
#include "jwt.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/param_build.h>

#include "json_gate.h"
#include "json_walk.h"

#define JWK_FIELD_MAX 1400 /* base64url of an RSA-8192 modulus is 1366 characters */

/* The members of one JWK we read, as written. */
struct jwk_raw {
	char kty[16], kid[128], use[16], alg[16], crv[16];
	char n[JWK_FIELD_MAX], e[32], x[64], y[64];
};

static const char *const jwk_names[] = {"kty", "kid", "use", "alg", "crv", "n", "e", "x", "y"};

/* err = "keys[i]: msg" (i == SIZE_MAX: msg alone); returns st. */
static int fail(char *err, size_t errlen, int st, const char *msg, size_t i)
{
	if (i == SIZE_MAX)
		snprintf(err, errlen, "%s", msg);
	else
		snprintf(err, errlen, "keys[%zu]: %s", i, msg);
	return st;
}

static char *jwk_slot(struct jwk_raw *r, int which, size_t *cap)
{
	switch (which) {
	case 0:
		*cap = sizeof(r->kty);
		return r->kty;
	case 1:
		*cap = sizeof(r->kid);
		return r->kid;
	case 2:
		*cap = sizeof(r->use);
		return r->use;
	case 3:
		*cap = sizeof(r->alg);
		return r->alg;
	case 4:
		*cap = sizeof(r->crv);
		return r->crv;
	case 5:
		*cap = sizeof(r->n);
		return r->n;
	case 6:
		*cap = sizeof(r->e);
		return r->e;
	case 7:
		*cap = sizeof(r->x);
		return r->x;
	default:
		*cap = sizeof(r->y);
		return r->y;
	}
}

/*
 * One JWK object (current event: its start): every member name is compared
 * with every earlier one.  At most 32 members of at most 63 bytes each (JWK
 * names are short; a longer one refuses the set rather than escape the check).
 */
static int read_jwk(struct jp *jp, struct jwk_raw *r)
{
	char names[32][64];
	memset(r, 0, sizeof(*r));
	if (jp->ev.type != YAML_MAPPING_START_EVENT)
		return JSON_WALK_ERR_SHAPE;
	for (size_t m = 0;; m++) {
		if (jw_next(jp) != 0)
			return JSON_WALK_ERR_SYNTAX;
		if (jp->ev.type == YAML_MAPPING_END_EVENT)
			return 0;
		if (!jw_is_string(&jp->ev) || m == 32)
			return JSON_WALK_ERR_SHAPE;
		const char *k = (const char *)jp->ev.data.scalar.value;
		size_t klen = jp->ev.data.scalar.length;
		if (klen >= sizeof(names[0]) || memchr(k, '\0', klen) != NULL)
			return JSON_WALK_ERR_SHAPE;
		for (size_t i = 0; i < m; i++)
			if (strcmp(names[i], k) == 0)
				return JSON_WALK_ERR_SHAPE; /* a member named twice */
		memcpy(names[m], k, klen + 1);
		int which = -1;
		for (int i = 0; i < 9; i++)
			if (strlen(jwk_names[i]) == klen && memcmp(jwk_names[i], k, klen) == 0)
				which = i;
		if (jw_next(jp) != 0)
			return JSON_WALK_ERR_SYNTAX;
		if (which < 0) {
			if (jw_skip(jp) != 0) /* x5c, key_ops, ...: not read */
				return JSON_WALK_ERR_SYNTAX;
			continue;
		}
		size_t cap;
		char *dst = jwk_slot(r, which, &cap);
		if (jw_take_str(jp, dst, cap, jwk_names[which]) != 1)
			return JSON_WALK_ERR_SHAPE;
	}
}

/* Big-endian unsigned bytes of a base64url member. */
static BIGNUM *bn_b64(const char *s, size_t maxbytes)
{
	unsigned char buf[JWK_FIELD_MAX];
	long n = b64url_decode(s, strlen(s), buf, maxbytes < sizeof(buf) ? maxbytes : sizeof(buf));
	if (n <= 0)
		return NULL;
	return BN_bin2bn(buf, (int)n, NULL);
}

static EVP_PKEY *fromdata(const char *type, OSSL_PARAM_BLD *bld)
{
	EVP_PKEY *pkey = NULL;
	OSSL_PARAM *params = OSSL_PARAM_BLD_to_param(bld);
	EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, type, NULL);
	if (params != NULL && ctx != NULL && EVP_PKEY_fromdata_init(ctx) == 1 &&
	    EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) != 1)
		pkey = NULL;
	/* The point is on the curve, the modulus odd and the exponent sane. */
	if (pkey != NULL) {
		EVP_PKEY_CTX *chk = EVP_PKEY_CTX_new_from_pkey(NULL, pkey, NULL);
		if (chk == NULL || EVP_PKEY_public_check(chk) != 1) {
			EVP_PKEY_free(pkey);
			pkey = NULL;
		}
		EVP_PKEY_CTX_free(chk);
	}
	EVP_PKEY_CTX_free(ctx);
	OSSL_PARAM_free(params);
	ERR_clear_error();
	return pkey;
}

static EVP_PKEY *rsa_key(const struct jwk_raw *r)
{
	BIGNUM *n = bn_b64(r->n, 1024), *e = bn_b64(r->e, 8);
	EVP_PKEY *pkey = NULL;
	OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
	if (n != NULL && e != NULL && bld != NULL && BN_num_bits(n) >= 2048 &&
	    BN_num_bits(n) <= 8192 && BN_num_bits(e) >= 2 && BN_num_bits(e) <= 33 &&
	    OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, n) == 1 &&
	    OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, e) == 1)
		pkey = fromdata("RSA", bld);
	OSSL_PARAM_BLD_free(bld);
	BN_free(n);
	BN_free(e);
	return pkey;
}

static EVP_PKEY *ec_key(const struct jwk_raw *r)
{
	unsigned char pt[65];
	pt[0] = 0x04; /* SEC 1 §2.3.3: uncompressed */
	if (b64url_decode(r->x, strlen(r->x), pt + 1, 32) != 32 ||
	    b64url_decode(r->y, strlen(r->y), pt + 33, 32) != 32)
		return NULL;
	EVP_PKEY *pkey = NULL;
	OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
	if (bld != NULL &&
	    OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, "prime256v1", 0) ==
	        1 &&
	    OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, pt, sizeof(pt)) == 1)
		pkey = fromdata("EC", bld);
	OSSL_PARAM_BLD_free(bld);
	return pkey;
}

/* 1 kept, 0 skipped (another type or use), or a jwt_status. */
static int make_key(const struct jwk_raw *r, struct jwks_key *k)
{
	if (r->use[0] != '\0' && strcmp(r->use, "sig") != 0)
		return 0;
	memset(k, 0, sizeof(*k));
	memcpy(k->kid, r->kid, sizeof(k->kid));
	if (strcmp(r->kty, "RSA") == 0) {
		if (r->alg[0] != '\0' && strcmp(r->alg, "RS256") != 0)
			return 0; /* RS512, PS256, ...: never verified here */
		k->kty = JWKS_RSA;
		k->alg = r->alg[0] != '\0' ? JWT_ALG_RS256 : 0;
		k->pkey = rsa_key(r);
	} else if (strcmp(r->kty, "EC") == 0 && strcmp(r->crv, "P-256") == 0) {
		if (r->alg[0] != '\0' && strcmp(r->alg, "ES256") != 0)
			return 0;
		k->kty = JWKS_EC_P256;
		k->alg = r->alg[0] != '\0' ? JWT_ALG_ES256 : 0;
		k->pkey = ec_key(r);
	} else {
		return 0; /* oct (a shared secret), OKP, other curves */
	}
	return k->pkey != NULL ? 1 : JWT_ERR_JSON;
}

void jwks_destroy(struct jwks *k)
{
	if (k == NULL)
		return;
	for (size_t i = 0; i < k->n; i++)
		EVP_PKEY_free(k->keys[i].pkey);
	free(k);
}

static int parse_keys(struct jp *jp, struct jwks *ks, char *err, size_t errlen)
{
	struct jwk_raw *r = malloc(sizeof(*r));
	if (r == NULL)
		return JWT_ERR_NOMEM;
	int st = JWT_OK;
	for (size_t i = 0; st == JWT_OK; i++) {
		if (jw_next(jp) != 0) {
			st = fail(err, errlen, JWT_ERR_JSON, "not JSON", i);
			break;
		}
		if (jp->ev.type == YAML_SEQUENCE_END_EVENT)
			break;
		if (i == JWKS_MAX_KEYS) {
			st = fail(err, errlen, JWT_ERR_TOO_LARGE, "more than 32 keys", SIZE_MAX);
			break;
		}
		if (read_jwk(jp, r) != 0) {
			st = fail(err, errlen, JWT_ERR_JSON,
			          "not a JWK (a member repeated, or of the wrong type)", i);
			break;
		}
		int rc = make_key(r, &ks->keys[ks->n]);
		if (rc < 0)
			st = fail(err, errlen, rc, "its numbers do not make a public key", i);
		for (size_t j = 0; rc == 1 && j < ks->n; j++)
			if (strcmp(ks->keys[j].kid, ks->keys[ks->n].kid) == 0)
				rc = -1;
		if (rc == -1) {
			EVP_PKEY_free(ks->keys[ks->n].pkey);
			st = fail(err, errlen, JWT_ERR_DUPLICATE, "its kid is not unique", i);
		} else if (rc == 1) {
			ks->n++;
		}
	}
	free(r);
	return st;
}

int jwks_parse(const char *buf, size_t len, struct jwks **out, char *err, size_t errlen)
{
	static const char *const top[] = {"keys"};
	*out = NULL;
	snprintf(err, errlen, "not a JWK Set");
	if (len > JWKS_MAX_BYTES)
		return fail(err, errlen, JWT_ERR_TOO_LARGE, "larger than 64 KiB", SIZE_MAX);
	const char *src;
	size_t srclen;
	char *copy = NULL, e2[96];
	int rc = json_gate(buf, len, JWT_MAX_DEPTH, &src, &srclen, &copy, e2, sizeof(e2));
	if (rc != JSON_GATE_OK)
		return fail(err, errlen, JWT_ERR_JSON, "not JSON", SIZE_MAX);
	struct jwks *ks = calloc(1, sizeof(*ks));
	struct jp jp;
	if (ks == NULL || jw_open(&jp, src, srclen, JWT_MAX_DEPTH, e2, sizeof(e2)) != 0) {
		free(ks);
		free(copy);
		return JWT_ERR_NOMEM;
	}
	int st = jw_begin(&jp) == 0 ? JWT_OK : JWT_ERR_JSON;
	uint32_t seen = 0;
	bool have_keys = false;
	while (st == JWT_OK) {
		int which;
		rc = jw_next_key(&jp, top, 1, &seen, &which, "");
		if (rc < 0)
			st = rc == JSON_WALK_ERR_SHAPE ? JWT_ERR_DUPLICATE : JWT_ERR_JSON;
		if (rc <= 0)
			break;
		if (which < 0) {
			st = jw_skip(&jp) == 0 ? JWT_OK : JWT_ERR_JSON;
			continue;
		}
		if (jp.ev.type != YAML_SEQUENCE_START_EVENT) {
			st = fail(err, errlen, JWT_ERR_JSON, "keys is not an array", SIZE_MAX);
			break;
		}
		have_keys = true;
		st = parse_keys(&jp, ks, err, errlen);
	}
	if (st == JWT_OK && jw_end(&jp) != 0)
		st = JWT_ERR_JSON;
	if (st == JWT_OK && (!have_keys || ks->n == 0))
		st = fail(err, errlen, JWT_ERR_JSON, "no RS256 or ES256 signing key", SIZE_MAX);
	jw_close(&jp);
	free(copy);
	if (st != JWT_OK) {
		jwks_destroy(ks);
		return st;
	}
	*out = ks;
	return JWT_OK;
}

/* ---- verification ---- */

static unsigned alg_bit(const char *alg)
{
	if (strcmp(alg, "RS256") == 0)
		return JWT_ALG_RS256;
	if (strcmp(alg, "ES256") == 0)
		return JWT_ALG_ES256;
	return 0;
}

static bool key_fits(const struct jwks_key *k, unsigned alg)
{
	enum jwks_kty want = alg == JWT_ALG_RS256 ? JWKS_RSA : JWKS_EC_P256;
	return k->kty == want && (k->alg == 0 || k->alg == alg);
}

/* The key: the kid's, or without a kid the only key of the alg's type. */
static int pick_key(const struct jwt *t, const struct jwks *keys, unsigned alg,
                    const struct jwks_key **out)
{
	const struct jwks_key *found = NULL;
	size_t fits = 0;
	for (size_t i = 0; i < keys->n; i++) {
		const struct jwks_key *k = &keys->keys[i];
		if (t->has_kid && strcmp(k->kid, t->kid) == 0) {
			*out = k;
			/* The kid names a key of another type or alg: the header lies about one. */
			return key_fits(k, alg) ? JWT_OK : JWT_ERR_ALG;
		}
		if (!t->has_kid && key_fits(k, alg)) {
			found = k;
			fits++;
		}
	}
	if (t->has_kid)
		return JWT_ERR_KID_UNKNOWN;
	if (fits != 1)
		return fits == 0 ? JWT_ERR_KID_UNKNOWN : JWT_ERR_KID_MISSING;
	*out = found;
	return JWT_OK;
}

/* RFC 7518 §3.4: ES256 is R || S, 32 bytes each; OpenSSL wants an ECDSA-Sig-Value in DER. */
static int es256_der(const unsigned char *rs, size_t n, unsigned char **der)
{
	if (n != 64)
		return -1;
	ECDSA_SIG *sig = ECDSA_SIG_new();
	BIGNUM *r = BN_bin2bn(rs, 32, NULL), *s = BN_bin2bn(rs + 32, 32, NULL);
	if (sig == NULL || r == NULL || s == NULL || ECDSA_SIG_set0(sig, r, s) != 1) {
		ECDSA_SIG_free(sig);
		BN_free(r);
		BN_free(s);
		return -1;
	}
	int len = i2d_ECDSA_SIG(sig, der);
	ECDSA_SIG_free(sig);
	return len;
}

static bool signature_ok(const struct jwt *t, const struct jwks_key *k, unsigned alg)
{
	unsigned char *der = NULL;
	const unsigned char *sig = t->sig;
	size_t sig_len = t->sig_len;
	if (alg == JWT_ALG_ES256) {
		int n = es256_der(t->sig, t->sig_len, &der);
		if (n <= 0)
			return false;
		sig = der;
		sig_len = (size_t)n;
	} else if ((int)t->sig_len != EVP_PKEY_get_size(k->pkey)) {
		return false;
	}
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	bool ok = md != NULL && EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, k->pkey) == 1 &&
	          EVP_DigestVerify(md, sig, sig_len, (const unsigned char *)t->signing_input,
	                           t->signing_len) == 1;
	EVP_MD_CTX_free(md);
	OPENSSL_free(der);
	ERR_clear_error();
	return ok;
}

static bool audience_ok(const struct jwt *t, const struct jwt_policy *pol)
{
	for (size_t i = 0; i < t->n_aud; i++)
		for (size_t j = 0; j < pol->n_audiences; j++)
			if (strcmp(t->aud[i], pol->audiences[j]) == 0)
				return true;
	return false;
}

int jwt_verify(const struct jwt *t, const struct jwks *keys, const struct jwt_policy *pol)
{
	if (strcmp(t->alg, "none") == 0)
		return JWT_ERR_ALG_NONE;
	/* The provider's configured algorithms decide; the header only picks among them. */
	unsigned alg = alg_bit(t->alg);
	if (alg == 0 || (alg & pol->algs) == 0)
		return JWT_ERR_ALG;
	const struct jwks_key *k = NULL;
	int st = pick_key(t, keys, alg, &k);
	if (st != JWT_OK)
		return st;
	if (!signature_ok(t, k, alg))
		return JWT_ERR_SIGNATURE;
	if (t->iss == NULL || strcmp(t->iss, pol->issuer) != 0)
		return JWT_ERR_ISSUER;
	if (!audience_ok(t, pol))
		return JWT_ERR_AUDIENCE;
	if (!t->has_exp)
		return JWT_ERR_CLAIMS; /* RFC 7519 §4.1.4; OIDC Core §2 makes exp required */
	if (t->has_nbf && pol->now + pol->leeway < t->nbf)
		return JWT_ERR_NOT_YET_VALID;
	if (t->has_iat && pol->now + pol->leeway < t->iat)
		return JWT_ERR_NOT_YET_VALID;
	if (pol->now > t->exp + pol->leeway)
		return JWT_ERR_EXPIRED;
	return JWT_OK;
}
