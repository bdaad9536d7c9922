/* The JSON gate: RFC 8259 grammar and depth in one pass; a text libyaml reads as the same JSON. */
#include "json_gate.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ascii.h"

/*
 * A tokenizer with the grammar as a "what may come next" state and a stack of
 * object/array bits: any byte outside a string that JSON does not allow there
 * (quotes of the other kind, '#', '&', '*', '!', '?', '|', '>', '%', '@', a
 * BOM) is refused, so what libyaml sees as strings is exactly what this sees
 * as strings.  Runs twice when it must rewrite: once to size the copy, once
 * to fill it.  Nothing past len is read.
 */

_Static_assert(JSON_GATE_MAX_DEPTH <= 64, "object/array bits are kept in a uint64_t");

enum gate_want {
	WANT_VALUE,          /* document start, after ':' or after ',' in an array */
	WANT_VALUE_OR_CLOSE, /* after '[' */
	WANT_KEY,            /* after ',' in an object */
	WANT_KEY_OR_CLOSE,   /* after '{' */
	WANT_COLON,          /* after a key */
	WANT_NEXT,           /* after a value inside a container: ',' or the close */
	WANT_NOTHING,        /* after the top-level value: whitespace only */
};

struct gate {
	const unsigned char *in;
	size_t len, i;
	char *out; /* NULL on the sizing pass */
	size_t cap; /* bytes at out */
	size_t n;  /* bytes written (or that would be) */
	bool changed;
	unsigned depth;
	uint64_t objects; /* bit d: the container at depth d + 1 is an object */
	enum gate_want want;
	unsigned max_depth;
	char *err;
	size_t errlen;
};

static int gate_fail(struct gate *g, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int gate_fail(struct gate *g, int status, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	if (g->err != NULL && g->errlen > 0)
		vsnprintf(g->err, g->errlen, fmt, ap);
	va_end(ap);
	return status;
}

static void emit(struct gate *g, const void *p, size_t n)
{
	/* A long key is written then replaced: what would pass cap is never written. */
	if (g->out != NULL && n <= g->cap && g->n <= g->cap - n)
		memcpy(g->out + g->n, p, n);
	g->n += n;
}

static int hex4(const unsigned char *p)
{
	int v = 0;
	for (int k = 0; k < 4; k++) {
		int d = ascii_hex_value(p[k]);
		if (d < 0)
			return -1;
		v = v << 4 | d;
	}
	return v;
}

static void emit_utf8(struct gate *g, uint32_t cp)
{
	unsigned char b[4];
	size_t n;
	if (cp < 0x800) {
		b[0] = (unsigned char)(0xc0 | cp >> 6);
		b[1] = (unsigned char)(0x80 | (cp & 0x3f));
		n = 2;
	} else if (cp < 0x10000) {
		b[0] = (unsigned char)(0xe0 | cp >> 12);
		b[1] = (unsigned char)(0x80 | (cp >> 6 & 0x3f));
		b[2] = (unsigned char)(0x80 | (cp & 0x3f));
		n = 3;
	} else {
		b[0] = (unsigned char)(0xf0 | cp >> 18);
		b[1] = (unsigned char)(0x80 | (cp >> 12 & 0x3f));
		b[2] = (unsigned char)(0x80 | (cp >> 6 & 0x3f));
		b[3] = (unsigned char)(0x80 | (cp & 0x3f));
		n = 4;
	}
	emit(g, b, n);
}

/* One escape at in[i] == '\\' (RFC 8259 §7).  Passes it on, or rewrites a surrogate. */
static int gate_escape(struct gate *g, size_t *run)
{
	const unsigned char *p = g->in + g->i;
	size_t left = g->len - g->i;

	if (left < 2)
		return gate_fail(g, JSON_GATE_ERR_SYNTAX, "unterminated string");
	if (p[1] != 0 && strchr("\"\\/bfnrt", p[1]) != NULL) {
		g->i += 2;
		return 0;
	}
	if (p[1] != 'u')
		return gate_fail(g, JSON_GATE_ERR_SYNTAX, "invalid escape \\%c at offset %zu",
		                 p[1] >= 0x20 && p[1] < 0x7f ? p[1] : '?', g->i);
	if (left < 6)
		return gate_fail(g, JSON_GATE_ERR_SYNTAX, "unterminated string");
	int cp = hex4(p + 2);
	if (cp < 0)
		return gate_fail(g, JSON_GATE_ERR_SYNTAX, "invalid \\u escape at offset %zu", g->i);
	if (cp < 0xd800 || cp > 0xdfff) {
		g->i += 6;
		return 0;
	}
	/* A surrogate: a valid pair becomes UTF-8, anything else U+FFFD. */
	uint32_t out = 0xfffd;
	size_t used = 6;
	if (cp <= 0xdbff && left >= 12 && p[6] == '\\' && p[7] == 'u') {
		int lo = hex4(p + 8);
		if (lo >= 0xdc00 && lo <= 0xdfff) {
			out = 0x10000 + ((uint32_t)(cp - 0xd800) << 10) + (uint32_t)(lo - 0xdc00);
			used = 12;
		}
	}
	emit(g, g->in + *run, g->i - *run);
	emit_utf8(g, out);
	g->i += used;
	*run = g->i;
	g->changed = true;
	return 0;
}

/* Raw bytes at in[i] that libyaml refuses or folds: how many, and the escape to write. */
static size_t recode(const struct gate *g, char esc[7])
{
	const unsigned char *p = g->in + g->i;
	size_t left = g->len - g->i;

	if (p[0] == 0x7f) {
		memcpy(esc, "\\u007f", 7);
		return 1;
	}
	if (p[0] == 0xc2 && left >= 2 && p[1] >= 0x80 && p[1] <= 0x9f) {
		snprintf(esc, 7, "\\u00%02x", p[1]);
		return 2;
	}
	if (p[0] == 0xe2 && left >= 3 && p[1] == 0x80 && (p[2] == 0xa8 || p[2] == 0xa9)) {
		memcpy(esc, p[2] == 0xa8 ? "\\u2028" : "\\u2029", 7);
		return 3;
	}
	if (p[0] == 0xef && left >= 3 && p[1] == 0xbf && (p[2] == 0xbe || p[2] == 0xbf)) {
		memcpy(esc, p[2] == 0xbe ? "\\ufffe" : "\\uffff", 7);
		return 3;
	}
	return 0;
}

/* A string at in[i] == '"'. */
static int gate_string(struct gate *g)
{
	size_t run = g->i++;
	char esc[7];

	for (;;) {
		if (g->i >= g->len)
			return gate_fail(g, JSON_GATE_ERR_SYNTAX, "unterminated string");
		unsigned char c = g->in[g->i];
		if (c == '"') {
			g->i++;
			emit(g, g->in + run, g->i - run);
			return 0;
		}
		if (c < 0x20)
			return gate_fail(g, JSON_GATE_ERR_SYNTAX,
			                 "control character 0x%02x in a string at offset %zu", c,
			                 g->i);
		if (c == '\\') {
			int rc = gate_escape(g, &run);
			if (rc != 0)
				return rc;
			continue;
		}
		size_t k = recode(g, esc);
		if (k == 0) {
			g->i++;
			continue;
		}
		emit(g, g->in + run, g->i - run);
		emit(g, esc, 6);
		g->i += k;
		run = g->i;
		g->changed = true;
	}
}

static bool digit(char c)
{
	return c >= '0' && c <= '9';
}

/* RFC 8259 §3 literal names and §6 numbers. */
enum json_lit json_literal(const char *s, size_t n)
{
	size_t i = 0;

	if (n == 4 && memcmp(s, "null", 4) == 0)
		return JSON_LIT_NULL;
	if (n == 4 && memcmp(s, "true", 4) == 0)
		return JSON_LIT_TRUE;
	if (n == 5 && memcmp(s, "false", 5) == 0)
		return JSON_LIT_FALSE;
	if (i < n && s[i] == '-')
		i++;
	if (i < n && s[i] == '0')
		i++;
	else if (i < n && s[i] >= '1' && s[i] <= '9')
		while (i < n && digit(s[i]))
			i++;
	else
		return JSON_LIT_BAD;
	if (i < n && s[i] == '.') {
		if (++i >= n || !digit(s[i]))
			return JSON_LIT_BAD;
		while (i < n && digit(s[i]))
			i++;
	}
	if (i < n && (s[i] == 'e' || s[i] == 'E')) {
		if (++i < n && (s[i] == '+' || s[i] == '-'))
			i++;
		if (i >= n || !digit(s[i]))
			return JSON_LIT_BAD;
		while (i < n && digit(s[i]))
			i++;
	}
	return i == n ? JSON_LIT_NUMBER : JSON_LIT_BAD;
}

static bool lit_byte(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || digit((char)c) || c == '+' ||
	       c == '-' || c == '.';
}

/* After a value: what comes next depends on the container around it. */
static enum gate_want after_value(const struct gate *g)
{
	return g->depth == 0 ? WANT_NOTHING : WANT_NEXT;
}

/* One structural byte: '{' '}' '[' ']' ',' ':'. */
static int gate_punct(struct gate *g, unsigned char c)
{
	bool in_obj = g->depth > 0 && (g->objects >> (g->depth - 1) & 1);

	switch (c) {
	case '{':
	case '[':
		if (g->want != WANT_VALUE && g->want != WANT_VALUE_OR_CLOSE)
			break;
		if (g->depth >= g->max_depth)
			return gate_fail(g, JSON_GATE_ERR_DEPTH, "nesting deeper than %u levels",
			                 g->max_depth);
		if (c == '{')
			g->objects |= (uint64_t)1 << g->depth;
		else
			g->objects &= ~((uint64_t)1 << g->depth);
		g->depth++;
		g->want = c == '{' ? WANT_KEY_OR_CLOSE : WANT_VALUE_OR_CLOSE;
		return 0;
	case '}':
	case ']':
		if (in_obj != (c == '}'))
			break;
		if (g->want != WANT_NEXT &&
		    g->want != (in_obj ? WANT_KEY_OR_CLOSE : WANT_VALUE_OR_CLOSE))
			break;
		g->depth--;
		g->want = after_value(g);
		return 0;
	case ',':
		if (g->want != WANT_NEXT)
			break;
		g->want = in_obj ? WANT_KEY : WANT_VALUE;
		return 0;
	case ':':
		if (g->want != WANT_COLON)
			break;
		g->want = WANT_VALUE;
		return 0;
	default:
		break;
	}
	return gate_fail(g, JSON_GATE_ERR_SYNTAX, "unexpected '%c' at offset %zu", c, g->i);
}

static int gate_token(struct gate *g)
{
	unsigned char c = g->in[g->i];

	if (c == '"') {
		bool key = g->want == WANT_KEY || g->want == WANT_KEY_OR_CLOSE;
		if (!key && g->want != WANT_VALUE && g->want != WANT_VALUE_OR_CLOSE)
			return gate_fail(g, JSON_GATE_ERR_SYNTAX, "unexpected string at offset %zu",
			                 g->i);
		size_t n0 = g->n;
		int rc = gate_string(g);
		if (rc != 0)
			return rc;
		if (key && g->n - n0 > JSON_GATE_LONG_KEY) {
			/*
			 * libyaml refuses a mapping key over 1024 characters, and
			 * Kubernetes puts user text in keys (managedFields' "k:{...}"):
			 * one pod must not make a whole list unreadable.  No key a
			 * reader keeps is this long, so the key becomes a fixed one.
			 */
			static const char ph[] = "\"~portcullis-long-key~\"";
			g->n = n0;
			emit(g, ph, sizeof(ph) - 1);
			g->changed = true;
		}
		g->want = key ? WANT_COLON : after_value(g);
		return 0;
	}
	if (lit_byte(c)) {
		size_t start = g->i;
		while (g->i < g->len && lit_byte(g->in[g->i]))
			g->i++;
		if (g->want != WANT_VALUE && g->want != WANT_VALUE_OR_CLOSE)
			return gate_fail(g, JSON_GATE_ERR_SYNTAX,
			                 "unexpected literal at offset %zu", start);
		if (json_literal((const char *)g->in + start, g->i - start) == JSON_LIT_BAD)
			return gate_fail(g, JSON_GATE_ERR_SYNTAX, "invalid literal at offset %zu",
			                 start);
		emit(g, g->in + start, g->i - start);
		g->want = after_value(g);
		return 0;
	}
	if (strchr("{}[],:", c) == NULL || c == 0)
		return gate_fail(g, JSON_GATE_ERR_SYNTAX, "unexpected byte 0x%02x at offset %zu", c,
		                 g->i);
	int rc = gate_punct(g, c);
	if (rc != 0)
		return rc;
	emit(g, g->in + g->i, 1);
	g->i++;
	return 0;
}

static bool is_ws(unsigned char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static int gate_pass(struct gate *g)
{
	g->i = g->n = 0;
	g->depth = 0;
	g->objects = 0;
	g->want = WANT_VALUE;
	while (g->i < g->len) {
		unsigned char c = g->in[g->i];
		if (is_ws(c)) {
			/* Around the top-level value it is left out: libyaml refuses
			 * a tab that starts a line outside a flow collection. */
			if (g->depth > 0)
				emit(g, g->in + g->i, 1);
			g->i++;
			continue;
		}
		int rc = gate_token(g);
		if (rc != 0)
			return rc;
	}
	if (g->want != WANT_NOTHING)
		return gate_fail(g, JSON_GATE_ERR_SYNTAX, "truncated document");
	return 0;
}

int json_gate(const char *buf, size_t len, unsigned max_depth, const char **out, size_t *outlen,
              char **copy, char *err, size_t errlen)
{
	struct gate g = {.in = (const unsigned char *)buf,
	                 .len = len,
	                 .max_depth =
	                     max_depth < JSON_GATE_MAX_DEPTH ? max_depth : JSON_GATE_MAX_DEPTH,
	                 .err = err,
	                 .errlen = errlen};
	int rc = gate_pass(&g);

	*copy = NULL;
	*out = buf;
	*outlen = len;
	if (rc != 0)
		return rc;
	if (!g.changed) {
		/* the value without the whitespace around it */
		while (*outlen > 0 && is_ws((unsigned char)buf[*outlen - 1]))
			--*outlen;
		while (is_ws((unsigned char)**out)) {
			++*out;
			--*outlen;
		}
		return 0;
	}
	g.cap = g.n;
	g.out = malloc(g.n);
	if (g.out == NULL)
		return gate_fail(&g, JSON_GATE_ERR_NOMEM, "out of memory");
	rc = gate_pass(&g);
	if (rc != 0) {
		free(g.out);
		return rc;
	}
	*copy = g.out;
	*out = g.out;
	*outlen = g.n;
	return 0;
}
