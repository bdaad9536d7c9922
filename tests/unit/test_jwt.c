/* Unit tests for proxy/proto/jwt.c and jwks.c: base64url, the split, every refusal, RS256/ES256. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>

#include "jwt.h"

/* Keys made at test time: no private key is committed. */
static EVP_PKEY *rsa1, *rsa2, *ec1;
static const int64_t NOW = 1800000000;

static void b64url(const unsigned char *in, size_t n, char *out)
{
	static const char a[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
	size_t o = 0;
	for (size_t i = 0; i < n; i += 3) {
		uint32_t v = (uint32_t)in[i] << 16;
		if (i + 1 < n)
			v |= (uint32_t)in[i + 1] << 8;
		if (i + 2 < n)
			v |= in[i + 2];
		out[o++] = a[(v >> 18) & 63];
		out[o++] = a[(v >> 12) & 63];
		if (i + 1 < n)
			out[o++] = a[(v >> 6) & 63];
		if (i + 2 < n)
			out[o++] = a[v & 63];
	}
	out[o] = '\0';
}

static void b64s(const char *s, char *out)
{
	b64url((const unsigned char *)s, strlen(s), out);
}

static void bn_b64(EVP_PKEY *k, const char *name, char *out, int pad)
{
	BIGNUM *bn = NULL;
	assert_int_equal(EVP_PKEY_get_bn_param(k, name, &bn), 1);
	unsigned char buf[512];
	int n = pad > 0 ? BN_bn2binpad(bn, buf, pad) : BN_bn2bin(bn, buf);
	b64url(buf, (size_t)n, out);
	BN_free(bn);
}

/* A JWK for k (public part only). */
static void jwk(EVP_PKEY *k, const char *kid, char *out, size_t cap)
{
	char a[700], b[700];
	if (EVP_PKEY_is_a(k, "RSA")) {
		bn_b64(k, OSSL_PKEY_PARAM_RSA_N, a, 0);
		bn_b64(k, OSSL_PKEY_PARAM_RSA_E, b, 0);
		snprintf(out, cap,
		         "{\"kty\":\"RSA\",%s%s%s\"use\":\"sig\",\"n\":\"%s\",\"e\":\"%s\"}",
		         kid ? "\"kid\":\"" : "", kid ? kid : "", kid ? "\"," : "", a, b);
	} else {
		bn_b64(k, OSSL_PKEY_PARAM_EC_PUB_X, a, 32);
		bn_b64(k, OSSL_PKEY_PARAM_EC_PUB_Y, b, 32);
		snprintf(out, cap,
		         "{\"kty\":\"EC\",%s%s%s\"crv\":\"P-256\",\"x\":\"%s\",\"y\":\"%s\"}",
		         kid ? "\"kid\":\"" : "", kid ? kid : "", kid ? "\"," : "", a, b);
	}
}

static struct jwks *keys_of(const char *json)
{
	struct jwks *ks = NULL;
	char err[128];
	int rc = jwks_parse(json, strlen(json), &ks, err, sizeof(err));
	if (rc != JWT_OK)
		fail_msg("jwks_parse: %s (%s)", jwt_status_str(rc), err);
	return ks;
}

/* The usual test set: RSA "r1", RSA "r2", EC "e1". */
static struct jwks *std_keys(void)
{
	char a[2048], b[2048], c[512], all[5000];
	jwk(rsa1, "r1", a, sizeof(a));
	jwk(rsa2, "r2", b, sizeof(b));
	jwk(ec1, "e1", c, sizeof(c));
	snprintf(all, sizeof(all), "{\"keys\":[%s,%s,%s]}", a, b, c);
	return keys_of(all);
}

/* header.payload signed with k (alg from the key unless forced); the token into out. */
static void sign(EVP_PKEY *k, const char *header, const char *payload, char *out)
{
	char h[2048], p[4096];
	b64s(header, h);
	b64s(payload, p);
	char input[8192];
	snprintf(input, sizeof(input), "%s.%s", h, p);
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	unsigned char sig[600];
	size_t n = sizeof(sig);
	assert_int_equal(EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, k), 1);
	assert_int_equal(EVP_DigestSign(md, sig, &n, (unsigned char *)input, strlen(input)), 1);
	EVP_MD_CTX_free(md);
	unsigned char raw[64];
	if (EVP_PKEY_is_a(k, "EC")) {
		/* DER ECDSA-Sig-Value to the JWS raw r||s */
		const unsigned char *q = sig;
		ECDSA_SIG *es = d2i_ECDSA_SIG(NULL, &q, (long)n);
		assert_non_null(es);
		BN_bn2binpad(ECDSA_SIG_get0_r(es), raw, 32);
		BN_bn2binpad(ECDSA_SIG_get0_s(es), raw + 32, 32);
		ECDSA_SIG_free(es);
		memcpy(sig, raw, 64);
		n = 64;
	}
	char s[1200];
	b64url(sig, n, s);
	sprintf(out, "%s.%s", input, s);
}

#define CLAIMS_FMT                                                                                 \
	"{\"iss\":\"https://gitlab.example.com\",\"aud\":%s,\"exp\":%lld,\"iat\":%lld,"            \
	"\"sub\":\"project_path:g/p:ref_type:branch:ref:main\",\"project_path\":\"g/p\","          \
	"\"job_id\":\"42\",\"pipeline_source\":\"push\",\"ref_protected\":\"true\","               \
	"\"runner_id\":17,\"shared\":true}"

static void claims(char *out, const char *aud, int64_t exp)
{
	sprintf(out, CLAIMS_FMT, aud, (long long)exp, (long long)(NOW - 10));
}

static const char *const AUDS[] = {"portcullis", "other"};

static struct jwt_policy pol(unsigned algs)
{
	struct jwt_policy p = {.issuer = "https://gitlab.example.com",
	                       .audiences = AUDS,
	                       .n_audiences = 2,
	                       .algs = algs,
	                       .now = NOW,
	                       .leeway = 60};
	return p;
}

/* parse + verify; the status of whichever failed. */
static int check(const char *token, const struct jwks *ks, unsigned algs)
{
	static struct jwt t;
	int st = jwt_parse(token, strlen(token), &t);
	if (st != JWT_OK)
		return st;
	struct jwt_policy p = pol(algs);
	return jwt_verify(&t, ks, &p);
}

static int setup(void **state)
{
	rsa1 = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
	rsa2 = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
	ec1 = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	return rsa1 && rsa2 && ec1 ? 0 : -1;
}

static int teardown(void **state)
{
	EVP_PKEY_free(rsa1);
	EVP_PKEY_free(rsa2);
	EVP_PKEY_free(ec1);
	return 0;
}

static void test_b64url(void **state)
{
	unsigned char out[16];
	assert_int_equal(b64url_decode("", 0, out, sizeof(out)), 0);
	assert_int_equal(b64url_decode("YQ", 2, out, sizeof(out)), 1);
	assert_int_equal(out[0], 'a');
	assert_int_equal(b64url_decode("YWI", 3, out, sizeof(out)), 2);
	assert_int_equal(b64url_decode("YWJj", 4, out, sizeof(out)), 3);
	assert_memory_equal(out, "abc", 3);
	assert_int_equal(b64url_decode("-_8", 3, out, sizeof(out)), 2);
	assert_int_equal(out[0], 0xfb);
	assert_int_equal(out[1], 0xff);
	/* padding, standard-alphabet characters, whitespace, a dangling character */
	assert_int_equal(b64url_decode("YQ==", 4, out, sizeof(out)), JWT_ERR_BASE64);
	assert_int_equal(b64url_decode("+/8", 3, out, sizeof(out)), JWT_ERR_BASE64);
	assert_int_equal(b64url_decode("YW I", 4, out, sizeof(out)), JWT_ERR_BASE64);
	assert_int_equal(b64url_decode("YWJjZ", 5, out, sizeof(out)), JWT_ERR_BASE64);
	/* non-zero spare bits: "YR" would also decode to 'a' */
	assert_int_equal(b64url_decode("YR", 2, out, sizeof(out)), JWT_ERR_BASE64);
	assert_int_equal(b64url_decode("YWJjYWJj", 8, out, 5), JWT_ERR_TOO_LARGE);
	assert_int_equal(b64url_decode("Y\0Q", 3, out, sizeof(out)), JWT_ERR_BASE64);
}

static void test_rs256_and_es256_verify(void **state)
{
	struct jwks *ks = std_keys();
	char c[1024], tok[4096];
	claims(c, "\"portcullis\"", NOW + 600);
	sign(rsa1, "{\"alg\":\"RS256\",\"kid\":\"r1\",\"typ\":\"JWT\"}", c, tok);
	assert_int_equal(check(tok, ks, JWT_ALG_RS256), JWT_OK);
	sign(rsa2, "{\"alg\":\"RS256\",\"kid\":\"r2\"}", c, tok);
	assert_int_equal(check(tok, ks, JWT_ALG_RS256 | JWT_ALG_ES256), JWT_OK);
	sign(ec1, "{\"alg\":\"ES256\",\"kid\":\"e1\"}", c, tok);
	assert_int_equal(check(tok, ks, JWT_ALG_ES256), JWT_OK);
	/* aud as an array */
	claims(c, "[\"x\",\"other\"]", NOW + 600);
	sign(ec1, "{\"alg\":\"ES256\",\"kid\":\"e1\"}", c, tok);
	assert_int_equal(check(tok, ks, JWT_ALG_ES256), JWT_OK);
	/* claims kept for matching: strings as decoded, integers and booleans as text */
	static struct jwt t;
	assert_int_equal(jwt_parse(tok, strlen(tok), &t), JWT_OK);
	assert_string_equal(jwt_claim(&t, "project_path"), "g/p");
	assert_string_equal(jwt_claim(&t, "runner_id"), "17");
	assert_string_equal(jwt_claim(&t, "shared"), "true");
	assert_null(jwt_claim(&t, "environment"));
	jwks_destroy(ks);
}

static void test_alg_refusals(void **state)
{
	struct jwks *ks = std_keys();
	char c[1024], tok[4096], h[256], p[2048];
	claims(c, "\"portcullis\"", NOW + 600);
	/* alg none, with and without a signature part */
	b64s("{\"alg\":\"none\"}", h);
	b64s(c, p);
	sprintf(tok, "%s.%s.", h, p);
	assert_int_equal(check(tok, ks, JWT_ALG_RS256), JWT_ERR_ALG_NONE);
	sprintf(tok, "%s.%s.c2ln", h, p);
	assert_int_equal(check(tok, ks, JWT_ALG_RS256), JWT_ERR_ALG_NONE);
	/* HS256 keyed with the RSA public key's bytes: refused before any key is touched */
	sign(rsa1, "{\"alg\":\"HS256\",\"kid\":\"r1\"}", c, tok);
	assert_int_equal(check(tok, ks, JWT_ALG_RS256), JWT_ERR_ALG);
	/* a real ES256 token against a provider configured for RS256 only */
	sign(ec1, "{\"alg\":\"ES256\",\"kid\":\"e1\"}", c, tok);
	assert_int_equal(check(tok, ks, JWT_ALG_RS256), JWT_ERR_ALG);
	/* RS512 is never verified */
	sign(rsa1, "{\"alg\":\"RS512\",\"kid\":\"r1\"}", c, tok);
	assert_int_equal(check(tok, ks, JWT_ALG_RS256 | JWT_ALG_ES256), JWT_ERR_ALG);
	/* the header says ES256 but the kid is an RSA key */
	sign(rsa1, "{\"alg\":\"ES256\",\"kid\":\"r1\"}", c, tok);
	assert_int_equal(check(tok, ks, JWT_ALG_RS256 | JWT_ALG_ES256), JWT_ERR_ALG);
	/* no alg at all */
	sign(rsa1, "{\"kid\":\"r1\"}", c, tok);
	assert_int_equal(check(tok, ks, JWT_ALG_RS256), JWT_ERR_JSON);
	/* crit is not understood */
	sign(rsa1, "{\"alg\":\"RS256\",\"kid\":\"r1\",\"crit\":[\"exp\"]}", c, tok);
	assert_int_equal(check(tok, ks, JWT_ALG_RS256), JWT_ERR_CLAIMS);
	jwks_destroy(ks);
}

static void test_kid(void **state)
{
	struct jwks *ks = std_keys();
	char c[1024], tok[4096];
	claims(c, "\"portcullis\"", NOW + 600);
	sign(rsa1, "{\"alg\":\"RS256\",\"kid\":\"nope\"}", c, tok);
	assert_int_equal(check(tok, ks, JWT_ALG_RS256), JWT_ERR_KID_UNKNOWN);
	/* two RSA keys and no kid: ambiguous */
	sign(rsa1, "{\"alg\":\"RS256\"}", c, tok);
	assert_int_equal(check(tok, ks, JWT_ALG_RS256), JWT_ERR_KID_MISSING);
	/* one EC key and no kid: that key */
	sign(ec1, "{\"alg\":\"ES256\"}", c, tok);
	assert_int_equal(check(tok, ks, JWT_ALG_ES256), JWT_OK);
	/* signed by r2, claiming r1 */
	sign(rsa2, "{\"alg\":\"RS256\",\"kid\":\"r1\"}", c, tok);
	assert_int_equal(check(tok, ks, JWT_ALG_RS256), JWT_ERR_SIGNATURE);
	jwks_destroy(ks);
}

static void test_signature_tampering(void **state)
{
	struct jwks *ks = std_keys();
	char c[1024], tok[4096], p[2048];
	claims(c, "\"portcullis\"", NOW + 600);
	sign(ec1, "{\"alg\":\"ES256\",\"kid\":\"e1\"}", c, tok);
	/* another payload under the same signature */
	char *d1 = strchr(tok, '.'), *d2 = strchr(d1 + 1, '.');
	char forged[4096];
	char c2[1024];
	claims(c2, "\"portcullis\"", NOW + 6000);
	b64s(c2, p);
	sprintf(forged, "%.*s.%s%s", (int)(d1 - tok), tok, p, d2);
	assert_int_equal(check(forged, ks, JWT_ALG_ES256), JWT_ERR_SIGNATURE);
	/* a signature of 3 bytes instead of 64 */
	char shortsig[4096];
	sprintf(shortsig, "%.*sAAAA", (int)(d2 + 1 - tok), tok);
	assert_int_equal(check(shortsig, ks, JWT_ALG_ES256), JWT_ERR_SIGNATURE);
	/* RSA: flip the last signature character's bits (kept canonical) */
	sign(rsa1, "{\"alg\":\"RS256\",\"kid\":\"r1\"}", c, tok);
	size_t n = strlen(tok);
	tok[n - 2] = tok[n - 2] == 'A' ? 'B' : 'A';
	assert_int_equal(check(tok, ks, JWT_ALG_RS256), JWT_ERR_SIGNATURE);
	jwks_destroy(ks);
}

static void test_claims_refusals(void **state)
{
	struct jwks *ks = std_keys();
	char c[1024], tok[4096];
	const char *h = "{\"alg\":\"RS256\",\"kid\":\"r1\"}";
	claims(c, "\"portcullis\"", NOW + 600);
	/* the issuer with a trailing slash is another issuer */
	char *at = strstr(c, "example.com\"");
	memmove(at + 12, at + 11, strlen(at + 11) + 1);
	at[11] = '/';
	sign(rsa1, h, c, tok);
	assert_int_equal(check(tok, ks, JWT_ALG_RS256), JWT_ERR_ISSUER);
	claims(c, "\"someone-else\"", NOW + 600);
	sign(rsa1, h, c, tok);
	assert_int_equal(check(tok, ks, JWT_ALG_RS256), JWT_ERR_AUDIENCE);
	claims(c, "[]", NOW + 600);
	sign(rsa1, h, c, tok);
	assert_int_equal(check(tok, ks, JWT_ALG_RS256), JWT_ERR_AUDIENCE);
	sign(rsa1, h, "{\"iss\":\"https://gitlab.example.com\",\"exp\":1900000000}", tok);
	assert_int_equal(check(tok, ks, JWT_ALG_RS256), JWT_ERR_AUDIENCE);
	/* expired beyond the leeway, and within it */
	claims(c, "\"portcullis\"", NOW - 61);
	sign(rsa1, h, c, tok);
	assert_int_equal(check(tok, ks, JWT_ALG_RS256), JWT_ERR_EXPIRED);
	claims(c, "\"portcullis\"", NOW - 59);
	sign(rsa1, h, c, tok);
	assert_int_equal(check(tok, ks, JWT_ALG_RS256), JWT_OK);
	/* not yet valid */
	sprintf(c,
	        "{\"iss\":\"https://gitlab.example.com\",\"aud\":\"portcullis\",\"exp\":%lld,"
	        "\"nbf\":%lld}",
	        (long long)NOW + 900, (long long)NOW + 120);
	sign(rsa1, h, c, tok);
	assert_int_equal(check(tok, ks, JWT_ALG_RS256), JWT_ERR_NOT_YET_VALID);
	sprintf(c,
	        "{\"iss\":\"https://gitlab.example.com\",\"aud\":\"portcullis\",\"exp\":%lld,"
	        "\"iat\":%lld}",
	        (long long)NOW + 900, (long long)NOW + 120);
	sign(rsa1, h, c, tok);
	assert_int_equal(check(tok, ks, JWT_ALG_RS256), JWT_ERR_NOT_YET_VALID);
	/* exp missing, fractional, a string */
	sign(rsa1, h, "{\"iss\":\"https://gitlab.example.com\",\"aud\":\"portcullis\"}", tok);
	assert_int_equal(check(tok, ks, JWT_ALG_RS256), JWT_ERR_CLAIMS);
	sign(rsa1, h, "{\"iss\":\"x\",\"aud\":\"portcullis\",\"exp\":1.9e9}", tok);
	assert_int_equal(check(tok, ks, JWT_ALG_RS256), JWT_ERR_CLAIMS);
	sign(rsa1, h, "{\"iss\":\"x\",\"aud\":\"portcullis\",\"exp\":\"1900000000\"}", tok);
	assert_int_equal(check(tok, ks, JWT_ALG_RS256), JWT_ERR_CLAIMS);
	jwks_destroy(ks);
}

static void test_duplicates_and_shape(void **state)
{
	struct jwks *ks = std_keys();
	char tok[4096];
	const char *h = "{\"alg\":\"RS256\",\"kid\":\"r1\"}";
	/* a second project_path after the first: the later one must not win */
	sign(rsa1, h,
	     "{\"iss\":\"https://gitlab.example.com\",\"aud\":\"portcullis\",\"exp\":1900000000,"
	     "\"project_path\":\"g/p\",\"project_path\":\"admin/p\"}",
	     tok);
	assert_int_equal(check(tok, ks, JWT_ALG_RS256), JWT_ERR_DUPLICATE);
	/* the same name spelled with an escape */
	sign(rsa1, h, "{\"iss\":\"a\",\"i\\u0073s\":\"b\",\"exp\":1}", tok);
	assert_int_equal(check(tok, ks, JWT_ALG_RS256), JWT_ERR_DUPLICATE);
	sign(rsa1, "{\"alg\":\"RS256\",\"alg\":\"none\"}", "{\"exp\":1}", tok);
	assert_int_equal(check(tok, ks, JWT_ALG_RS256), JWT_ERR_DUPLICATE);
	/* not an object, trailing garbage, too deep */
	sign(rsa1, h, "[1,2]", tok);
	assert_int_equal(check(tok, ks, JWT_ALG_RS256), JWT_ERR_JSON);
	sign(rsa1, h, "{\"exp\":1} x", tok);
	assert_int_equal(check(tok, ks, JWT_ALG_RS256), JWT_ERR_JSON);
	sign(rsa1, h, "{\"a\":[[[[[[[[[[[[1]]]]]]]]]]]],\"exp\":1}", tok);
	assert_int_equal(check(tok, ks, JWT_ALG_RS256), JWT_ERR_TOO_LARGE);
	/* a NUL inside a claim value */
	sign(rsa1, h, "{\"project_path\":\"g/p\\u0000x\",\"exp\":1}", tok);
	assert_int_equal(check(tok, ks, JWT_ALG_RS256), JWT_ERR_JSON);
	/* iss not a string */
	sign(rsa1, h, "{\"iss\":7,\"exp\":1}", tok);
	assert_int_equal(check(tok, ks, JWT_ALG_RS256), JWT_ERR_CLAIMS);
	/* a NUL inside aud: strcmp would stop there and take "portcullis\0x" for "portcullis" */
	char c[1024];
	claims(c, "\"portcullis\\u0000x\"", NOW + 600);
	sign(rsa1, h, c, tok);
	assert_int_equal(check(tok, ks, JWT_ALG_RS256), JWT_ERR_JSON);
	claims(c, "[\"x\",\"other\\u0000.evil\"]", NOW + 600);
	sign(rsa1, h, c, tok);
	assert_int_equal(check(tok, ks, JWT_ALG_RS256), JWT_ERR_JSON);
	jwks_destroy(ks);
}

static void test_format(void **state)
{
	struct jwks *ks = std_keys();
	char c[1024], tok[4096], t2[4200];
	claims(c, "\"portcullis\"", NOW + 600);
	sign(rsa1, "{\"alg\":\"RS256\",\"kid\":\"r1\"}", c, tok);
	assert_int_equal(check("", ks, JWT_ALG_RS256), JWT_ERR_FORMAT);
	assert_int_equal(check("a.b", ks, JWT_ALG_RS256), JWT_ERR_FORMAT);
	assert_int_equal(check("..", ks, JWT_ALG_RS256), JWT_ERR_FORMAT);
	sprintf(t2, "%s.x.y", tok);
	assert_int_equal(check(t2, ks, JWT_ALG_RS256), JWT_ERR_FORMAT); /* five parts: JWE */
	/* padding on the signature, on the header */
	sprintf(t2, "%s==", tok);
	assert_int_equal(check(t2, ks, JWT_ALG_RS256), JWT_ERR_BASE64);
	char *d1 = strchr(tok, '.');
	sprintf(t2, "%.*s=%s", (int)(d1 - tok), tok, d1);
	assert_int_equal(check(t2, ks, JWT_ALG_RS256), JWT_ERR_BASE64);
	/* standard base64 characters */
	sprintf(t2, "%s", tok);
	t2[strlen(t2) - 1] = '+';
	assert_int_equal(check(t2, ks, JWT_ALG_RS256), JWT_ERR_BASE64);
	/* oversized: one byte over the limit */
	static char big[JWT_MAX_TOKEN + 2];
	memset(big, 'A', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	big[10] = '.';
	big[20] = '.';
	assert_int_equal(check(big, ks, JWT_ALG_RS256), JWT_ERR_TOO_LARGE);
	/* too many claims */
	char many[6000];
	size_t o = (size_t)sprintf(many, "{\"exp\":1");
	for (int i = 0; i < JWT_MAX_CLAIMS + 1; i++)
		o += (size_t)sprintf(many + o, ",\"c%d\":1", i);
	sprintf(many + o, "}");
	sign(rsa1, "{\"alg\":\"RS256\",\"kid\":\"r1\"}", many, tok);
	assert_int_equal(check(tok, ks, JWT_ALG_RS256), JWT_ERR_TOO_LARGE);
	jwks_destroy(ks);
}

static int jwks_status(const char *json)
{
	struct jwks *ks = NULL;
	char err[128];
	int rc = jwks_parse(json, strlen(json), &ks, err, sizeof(err));
	if (rc == JWT_OK)
		assert_non_null(ks);
	else
		assert_null(ks);
	jwks_destroy(ks);
	return rc;
}

static void test_jwks(void **state)
{
	char a[2048], e[512], j[5000];
	jwk(rsa1, "r1", a, sizeof(a));
	jwk(ec1, "e1", e, sizeof(e));
	sprintf(j, "{\"keys\":[%s]}", a);
	assert_int_equal(jwks_status(j), JWT_OK);
	/* a duplicate kid, a duplicate member, a duplicate "keys" */
	sprintf(j, "{\"keys\":[%s,%s]}", a, a);
	assert_int_equal(jwks_status(j), JWT_ERR_DUPLICATE);
	sprintf(j, "{\"keys\":[%.*s,\"kty\":\"RSA\"}]}", (int)strlen(e) - 1, e);
	assert_int_equal(jwks_status(j), JWT_ERR_JSON);
	/* a member we do not read, named twice */
	sprintf(j, "{\"keys\":[{\"x5t\":\"a\",\"x5t\":\"b\",%s]}", e + 1);
	assert_int_equal(jwks_status(j), JWT_ERR_JSON);
	sprintf(j, "{\"keys\":[{\"%064d\":1,%s]}", 0, e + 1);
	assert_int_equal(jwks_status(j), JWT_ERR_JSON);
	sprintf(j, "{\"keys\":[{\"x5t\":\"a\",%s]}", e + 1);
	assert_int_equal(jwks_status(j), JWT_OK);
	sprintf(j, "{\"keys\":[%s],\"keys\":[]}", e);
	assert_int_equal(jwks_status(j), JWT_ERR_DUPLICATE);
	/* oct keys (shared secrets) and enc keys are skipped: nothing usable left */
	assert_int_equal(jwks_status("{\"keys\":[{\"kty\":\"oct\",\"k\":\"c2VjcmV0\"}]}"),
	                 JWT_ERR_JSON);
	sprintf(j, "{\"keys\":[{\"kty\":\"oct\",\"k\":\"c2VjcmV0\"},%s]}", e);
	assert_int_equal(jwks_status(j), JWT_OK);
	assert_int_equal(jwks_status("{\"keys\":[]}"), JWT_ERR_JSON);
	assert_int_equal(jwks_status("{}"), JWT_ERR_JSON);
	assert_int_equal(jwks_status("[]"), JWT_ERR_JSON);
	/* a point off the curve */
	assert_int_equal(jwks_status("{\"keys\":[{\"kty\":\"EC\",\"crv\":\"P-256\","
	                             "\"x\":\"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\","
	                             "\"y\":\"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAE\"}]}"),
	                 JWT_ERR_JSON);
	/* a 512-bit RSA modulus */
	assert_int_equal(jwks_status("{\"keys\":[{\"kty\":\"RSA\",\"e\":\"AQAB\",\"n\":\""
	                             "AQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
	                             "AAAAAAAAAAAAAAAAAAAAAAAAAAB\"}]}"),
	                 JWT_ERR_JSON);
	/* padding in a key number */
	assert_int_equal(
	    jwks_status("{\"keys\":[{\"kty\":\"RSA\",\"e\":\"AQAB=\",\"n\":\"AQAB\"}]}"),
	    JWT_ERR_JSON);
	/* an alg the JWK itself pins: RS256 tokens never verify against an ES256-only JWK */
	static char big[JWKS_MAX_BYTES + 10];
	memset(big, ' ', sizeof(big) - 1);
	big[0] = '{';
	big[sizeof(big) - 2] = '}';
	assert_int_equal(jwks_status(big), JWT_ERR_TOO_LARGE);
}

static int cred(const char *v, struct jwt_cred *c)
{
	static char buf[256];
	return jwt_credentials(v, strlen(v), buf, sizeof(buf), c);
}

static void test_credentials(void **state)
{
	struct jwt_cred c;
	/* "oidc:a.b.c" */
	assert_int_equal(cred("Basic b2lkYzphLmIuYw==", &c), JWT_OK);
	assert_true(c.basic);
	assert_int_equal(c.user_len, 4);
	assert_memory_equal(c.user, "oidc", 4);
	assert_int_equal(c.token_len, 5);
	assert_memory_equal(c.token, "a.b.c", 5);
	assert_int_equal(cred("basic   b2lkYzphLmIuYw==", &c), JWT_OK); /* RFC 9110: any case */
	assert_int_equal(cred("Bearer a.b.c", &c), JWT_OK);
	assert_false(c.basic);
	assert_int_equal(c.token_len, 5);
	assert_int_equal(cred("BEARER x", &c), JWT_OK);
	/* ":a.b.c": an empty user is allowed (only a configured username is checked) */
	assert_int_equal(cred("Basic OmEuYi5j", &c), JWT_OK);
	assert_int_equal(c.user_len, 0);
	assert_int_equal(cred("Bearer ", &c), JWT_ERR_FORMAT);
	assert_int_equal(cred("Bearer", &c), JWT_ERR_FORMAT);
	assert_int_equal(cred("Digest x", &c), JWT_ERR_FORMAT);
	assert_int_equal(cred("Basicb2lkYzphLmIuYw==", &c), JWT_ERR_FORMAT);
	assert_int_equal(cred("Basic b2lkYzphLmIuYw", &c), JWT_ERR_FORMAT);   /* unpadded */
	assert_int_equal(cred("Basic b2lkYzph-mIuYw==", &c), JWT_ERR_FORMAT); /* url alphabet */
	assert_int_equal(cred("Basic b2lk", &c), JWT_ERR_FORMAT);             /* "oid": no ':' */
	assert_int_equal(cred("Basic b2lkYzo=", &c), JWT_ERR_FORMAT); /* "oidc:": no token */
	assert_int_equal(cred("Basic b2=kYzo=", &c), JWT_ERR_FORMAT); /* '=' inside */
	char big[600];
	memcpy(big, "Basic ", 6);
	memset(big + 6, 'Q', 512);
	big[518] = '\0';
	assert_int_equal(cred(big, &c), JWT_ERR_TOO_LARGE);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_b64url),
	    cmocka_unit_test(test_rs256_and_es256_verify),
	    cmocka_unit_test(test_alg_refusals),
	    cmocka_unit_test(test_kid),
	    cmocka_unit_test(test_signature_tampering),
	    cmocka_unit_test(test_claims_refusals),
	    cmocka_unit_test(test_duplicates_and_shape),
	    cmocka_unit_test(test_format),
	    cmocka_unit_test(test_jwks),
	    cmocka_unit_test(test_credentials),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
