/* OIDC ID tokens: strict base64url, the compact JWS split, header and claims through the JSON gate.
 */
#include "jwt.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "json_gate.h"
#include "json_walk.h"

const char *jwt_status_str(int st)
{
	switch (st) {
	case JWT_OK:
		return "ok";
	case JWT_ERR_TOO_LARGE:
		return "too_large";
	case JWT_ERR_FORMAT:
		return "format";
	case JWT_ERR_BASE64:
		return "base64";
	case JWT_ERR_JSON:
		return "json";
	case JWT_ERR_DUPLICATE:
		return "duplicate";
	case JWT_ERR_ALG_NONE:
		return "alg_none";
	case JWT_ERR_ALG:
		return "alg";
	case JWT_ERR_KID_UNKNOWN:
		return "kid_unknown";
	case JWT_ERR_KID_MISSING:
		return "kid_missing";
	case JWT_ERR_SIGNATURE:
		return "signature";
	case JWT_ERR_ISSUER:
		return "issuer";
	case JWT_ERR_AUDIENCE:
		return "audience";
	case JWT_ERR_EXPIRED:
		return "expired";
	case JWT_ERR_NOT_YET_VALID:
		return "not_yet_valid";
	case JWT_ERR_CLAIMS:
		return "claims";
	case JWT_ERR_NOMEM:
		return "nomem";
	default:
		return "unknown";
	}
}

/* ---- base64url (RFC 4648 §5) ---- */

static int b64val(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '-')
		return 62;
	if (c == '_')
		return 63;
	return -1; /* '=', '+', '/', whitespace, anything else */
}

long b64url_decode(const char *in, size_t len, unsigned char *out, size_t cap)
{
	if (len % 4 == 1)
		return JWT_ERR_BASE64; /* 6 bits cannot make a byte */
	size_t need = len / 4 * 3 + (len % 4 == 0 ? 0 : len % 4 - 1);
	if (need > cap)
		return JWT_ERR_TOO_LARGE;
	uint32_t acc = 0;
	unsigned bits = 0;
	size_t o = 0;
	for (size_t i = 0; i < len; i++) {
		int v = b64val((unsigned char)in[i]);
		if (v < 0)
			return JWT_ERR_BASE64;
		acc = (acc << 6) | (uint32_t)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			out[o++] = (unsigned char)(acc >> bits);
			acc &= (1u << bits) - 1;
		}
	}
	/* RFC 4648 §3.5: the spare bits are zero, so every value has one encoding. */
	if (acc != 0)
		return JWT_ERR_BASE64;
	return (long)o;
}

/* Standard base64 with padding (RFC 4648 §4), strict: Basic credentials. */
static long b64std_decode(const char *in, size_t len, unsigned char *out, size_t cap)
{
	if (len == 0 || len % 4 != 0)
		return JWT_ERR_FORMAT;
	size_t pad = in[len - 1] == '=' ? (in[len - 2] == '=' ? 2 : 1) : 0;
	char tmp[JWT_MAX_TOKEN * 2];
	if (len - pad > sizeof(tmp))
		return JWT_ERR_TOO_LARGE;
	for (size_t i = 0; i < len - pad; i++) {
		char c = in[i];
		if (c == '-' || c == '_')
			return JWT_ERR_FORMAT;
		tmp[i] = c == '+' ? '-' : c == '/' ? '_' : c;
	}
	long n = b64url_decode(tmp, len - pad, out, cap);
	return n == JWT_ERR_BASE64 ? JWT_ERR_FORMAT : n;
}

static bool scheme_is(const char *v, size_t len, const char *name, size_t *skip)
{
	size_t n = strlen(name);
	if (len <= n || strncasecmp(v, name, n) != 0 || v[n] != ' ')
		return false;
	while (n < len && v[n] == ' ')
		n++;
	*skip = n;
	return true;
}

int jwt_credentials(const char *v, size_t len, char *buf, size_t cap, struct jwt_cred *out)
{
	memset(out, 0, sizeof(*out));
	size_t skip;
	if (scheme_is(v, len, "bearer", &skip)) {
		out->token = v + skip;
		out->token_len = len - skip;
		return out->token_len > 0 ? JWT_OK : JWT_ERR_FORMAT;
	}
	if (!scheme_is(v, len, "basic", &skip))
		return JWT_ERR_FORMAT;
	long n = b64std_decode(v + skip, len - skip, (unsigned char *)buf, cap);
	if (n < 0)
		return (int)n;
	const char *colon = memchr(buf, ':', (size_t)n);
	if (colon == NULL || colon + 1 == buf + n)
		return JWT_ERR_FORMAT;
	out->basic = true;
	out->user = buf;
	out->user_len = (size_t)(colon - buf);
	out->token = colon + 1;
	out->token_len = (size_t)(buf + n - colon - 1);
	return JWT_OK;
}

/* ---- JSON objects, members checked for duplicates ---- */

static int gate_status(int rc)
{
	if (rc == JSON_GATE_ERR_NOMEM)
		return JWT_ERR_NOMEM;
	return rc == JSON_GATE_ERR_DEPTH ? JWT_ERR_TOO_LARGE : JWT_ERR_JSON;
}

static int walk_status(int rc)
{
	if (rc == JSON_WALK_ERR_NOMEM)
		return JWT_ERR_NOMEM;
	return rc == JSON_WALK_ERR_LIMIT ? JWT_ERR_TOO_LARGE : JWT_ERR_JSON;
}

/* One member's value, current in jp; return 0 to go on or a jwt_status. */
typedef int (*member_fn)(struct jwt *t, struct jp *jp, const char *key, size_t klen);

/*
 * Walk the top-level object of json[0..len): every member's name is compared
 * with every earlier one (RFC 7515 §5.2 lets a parser refuse duplicates; we
 * always do), then fn sees its value.  At most JWT_MAX_CLAIMS members.
 */
static int walk_object(struct jwt *t, const char *json, size_t len, member_fn fn)
{
	const char *src;
	size_t srclen;
	char *copy = NULL;
	char err[96];
	int rc = json_gate(json, len, JWT_MAX_DEPTH, &src, &srclen, &copy, err, sizeof(err));
	if (rc != JSON_GATE_OK)
		return gate_status(rc);
	struct jp jp;
	rc = jw_open(&jp, src, srclen, JWT_MAX_DEPTH, err, sizeof(err));
	if (rc != 0) {
		free(copy);
		return walk_status(rc);
	}
	/* Names seen so far: hashes first, the bytes only on a hash match. */
	char names[JWT_MAX_JSON];
	size_t off[JWT_MAX_CLAIMS + 1], n = 0, used = 0;
	int st = jw_begin(&jp) != 0 ? JWT_ERR_JSON : JWT_OK;
	while (st == JWT_OK) {
		if ((rc = jw_next(&jp)) != 0) {
			st = walk_status(rc);
			break;
		}
		if (jp.ev.type == YAML_MAPPING_END_EVENT)
			break;
		if (!jw_is_string(&jp.ev)) {
			st = JWT_ERR_JSON;
			break;
		}
		const char *k = (const char *)jp.ev.data.scalar.value;
		size_t klen = jp.ev.data.scalar.length;
		if (n == JWT_MAX_CLAIMS || used + klen + 1 > sizeof(names)) {
			st = JWT_ERR_TOO_LARGE;
			break;
		}
		if (memchr(k, '\0', klen) != NULL) {
			st = JWT_ERR_JSON;
			break;
		}
		for (size_t i = 0; i < n && st == JWT_OK; i++)
			if (off[i + 1] - off[i] - 1 == klen && memcmp(names + off[i], k, klen) == 0)
				st = JWT_ERR_DUPLICATE;
		if (st != JWT_OK)
			break;
		off[n] = used;
		memcpy(names + used, k, klen);
		names[used + klen] = '\0';
		used += klen + 1;
		off[++n] = used;
		if ((rc = jw_next(&jp)) != 0) {
			st = walk_status(rc);
			break;
		}
		st = fn(t, &jp, names + off[n - 1], klen);
	}
	if (st == JWT_OK && jw_end(&jp) != 0)
		st = JWT_ERR_JSON;
	jw_close(&jp);
	free(copy);
	return st;
}

static bool key_is(const char *key, size_t klen, const char *name)
{
	return klen == strlen(name) && memcmp(key, name, klen) == 0;
}

/* A string value into dst[cap]; JWT_ERR_JSON when not a string, too long or holding NUL. */
static int take_str(struct jp *jp, char *dst, size_t cap)
{
	const yaml_event_t *e = &jp->ev;
	if (!jw_is_string(e))
		return JWT_ERR_JSON;
	size_t n = e->data.scalar.length;
	if (n >= cap || memchr(e->data.scalar.value, '\0', n) != NULL)
		return JWT_ERR_JSON;
	memcpy(dst, e->data.scalar.value, n);
	dst[n] = '\0';
	return JWT_OK;
}

static int header_member(struct jwt *t, struct jp *jp, const char *key, size_t klen)
{
	if (key_is(key, klen, "alg"))
		return take_str(jp, t->alg, sizeof(t->alg));
	if (key_is(key, klen, "kid")) {
		t->has_kid = true;
		return take_str(jp, t->kid, sizeof(t->kid));
	}
	if (key_is(key, klen, "crit"))
		return JWT_ERR_CLAIMS; /* RFC 7515 §4.1.11: no extension is understood here */
	/* typ, and jku / x5u / jwk / x5c: never used to find a key. */
	return jw_skip(jp) != 0 ? JWT_ERR_JSON : JWT_OK;
}

static const char *arena_copy(struct jwt *t, const void *s, size_t n)
{
	if (t->arena_used + n + 1 > sizeof(t->arena))
		return NULL;
	char *d = t->arena + t->arena_used;
	memcpy(d, s, n);
	d[n] = '\0';
	t->arena_used += n + 1;
	return d;
}

/* An integer NumericDate (RFC 7519 §2); fractions and exponents are refused. */
static bool parse_time(const char *s, size_t n, int64_t *out)
{
	size_t i = 0;
	bool neg = n > 0 && s[0] == '-';
	i = neg ? 1 : 0;
	if (i == n || n - i > 15)
		return false; /* beyond 10^15 s nobody is issuing tokens */
	int64_t v = 0;
	for (; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		v = v * 10 + (s[i] - '0');
	}
	*out = neg ? -v : v;
	return true;
}

/* One audience string (current event) into t->aud; a NUL in it would end it early for strcmp. */
static int aud_value(struct jwt *t, const yaml_event_t *e)
{
	if (!jw_is_string(e) || memchr(e->data.scalar.value, '\0', e->data.scalar.length) != NULL)
		return JWT_ERR_JSON;
	if (t->n_aud == JWT_MAX_AUD)
		return JWT_ERR_TOO_LARGE;
	const char *v = arena_copy(t, e->data.scalar.value, e->data.scalar.length);
	if (v == NULL)
		return JWT_ERR_TOO_LARGE;
	t->aud[t->n_aud++] = v;
	return JWT_OK;
}

static int claim_aud(struct jwt *t, struct jp *jp)
{
	if (jp->ev.type != YAML_SEQUENCE_START_EVENT)
		return aud_value(t, &jp->ev);
	for (;;) {
		if (jw_next(jp) != 0)
			return JWT_ERR_JSON;
		if (jp->ev.type == YAML_SEQUENCE_END_EVENT)
			return JWT_OK;
		int st = aud_value(t, &jp->ev);
		if (st != JWT_OK)
			return st;
	}
}

static int claim_member(struct jwt *t, struct jp *jp, const char *key, size_t klen)
{
	const yaml_event_t *e = &jp->ev;
	if (key_is(key, klen, "aud"))
		return claim_aud(t, jp);
	if (e->type == YAML_SEQUENCE_START_EVENT || e->type == YAML_MAPPING_START_EVENT)
		return jw_skip(jp) != 0 ? JWT_ERR_JSON : JWT_OK; /* not matchable: ignored */
	const char *val = (const char *)e->data.scalar.value;
	size_t vlen = e->data.scalar.length;
	bool str = jw_is_string(e);
	enum json_lit lit = str ? JSON_LIT_BAD : jw_plain_lit(e);
	if (!str && lit == JSON_LIT_BAD)
		return JWT_ERR_JSON;
	if (lit == JSON_LIT_NULL)
		return JWT_OK;
	if (str && memchr(val, '\0', vlen) != NULL)
		return JWT_ERR_JSON;
	int64_t *when = key_is(key, klen, "exp")   ? &t->exp
	                : key_is(key, klen, "nbf") ? &t->nbf
	                : key_is(key, klen, "iat") ? &t->iat
	                                           : NULL;
	if (when != NULL) {
		if (lit != JSON_LIT_NUMBER || !parse_time(val, vlen, when))
			return JWT_ERR_CLAIMS;
		bool *has = when == &t->exp   ? &t->has_exp
		            : when == &t->nbf ? &t->has_nbf
		                              : &t->has_iat;
		*has = true;
	}
	if (key_is(key, klen, "iss") && !str)
		return JWT_ERR_CLAIMS;
	const char *name = arena_copy(t, key, klen);
	const char *value = name != NULL ? arena_copy(t, val, vlen) : NULL;
	if (value == NULL)
		return JWT_ERR_TOO_LARGE;
	t->claims[t->n_claims].name = name;
	t->claims[t->n_claims].value = value;
	t->n_claims++;
	if (key_is(key, klen, "iss"))
		t->iss = value;
	return JWT_OK;
}

const char *jwt_claim(const struct jwt *t, const char *name)
{
	for (size_t i = 0; i < t->n_claims; i++)
		if (strcmp(t->claims[i].name, name) == 0)
			return t->claims[i].value;
	return NULL;
}

/* Decode one base64url part into buf[JWT_MAX_JSON] and walk it as an object. */
static int json_part(struct jwt *t, const char *p, size_t n, member_fn fn)
{
	char buf[JWT_MAX_JSON];
	long m = b64url_decode(p, n, (unsigned char *)buf, sizeof(buf));
	if (m < 0)
		return (int)m;
	return walk_object(t, buf, (size_t)m, fn);
}

int jwt_parse(const char *token, size_t len, struct jwt *out)
{
	memset(out, 0, offsetof(struct jwt, arena));
	out->arena_used = 0;
	if (len > JWT_MAX_TOKEN)
		return JWT_ERR_TOO_LARGE;
	const char *d1 = memchr(token, '.', len);
	const char *d2 = d1 != NULL ? memchr(d1 + 1, '.', len - (size_t)(d1 + 1 - token)) : NULL;
	if (d2 == NULL || memchr(d2 + 1, '.', len - (size_t)(d2 + 1 - token)) != NULL)
		return JWT_ERR_FORMAT; /* a JWE has five parts; we take JWS only */
	size_t hl = (size_t)(d1 - token), pl = (size_t)(d2 - d1 - 1),
	       sl = len - (size_t)(d2 + 1 - token);
	/* An empty signature is what alg "none" carries: the header says which refusal. */
	if (hl == 0 || pl == 0)
		return JWT_ERR_FORMAT;
	int st = json_part(out, token, hl, header_member);
	if (st != JWT_OK)
		return st;
	if (strcmp(out->alg, "none") == 0)
		return JWT_ERR_ALG_NONE;
	if (out->alg[0] == '\0')
		return JWT_ERR_JSON; /* RFC 7515 §4.1.1: alg is required */
	if (sl == 0)
		return JWT_ERR_FORMAT;
	st = json_part(out, d1 + 1, pl, claim_member);
	if (st != JWT_OK)
		return st;
	long m = b64url_decode(d2 + 1, sl, out->sig, sizeof(out->sig));
	if (m < 0)
		return (int)m;
	out->sig_len = (size_t)m;
	out->signing_input = token;
	out->signing_len = (size_t)(d2 - token);
	return JWT_OK;
}
