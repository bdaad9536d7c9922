/* Request paths of intercepted requests: strict checking, the matching form, and path globs. */
#include "urlpath.h"

#include <stdint.h>
#include <string.h>

#include "ascii.h"

#define GLOB_WORDS (URLPATH_PATTERN_MAX / 64 + 1)

/* Token kinds of a compiled glob, besides a literal byte. */
enum { TOK_STAR = 256, TOK_DSTAR = 257 };

struct urlpath_glob {
	uint32_t n;       /* tokens; state n accepts */
	uint32_t words;   /* 64-bit words of a state set (n + 1 bits) */
	uint8_t cls[256]; /* folded byte -> 1 + its literal class; 0: no token is that byte */
	uint64_t bits[];  /* star[words], dstar[words], then lit[class][words] */
};

const char *urlpath_status_str(int status)
{
	switch (status) {
	case URLPATH_OK:
		return "ok";
	case URLPATH_ERR_START:
		return "must start with '/'";
	case URLPATH_ERR_FRAGMENT:
		return "'#' is not allowed";
	case URLPATH_ERR_ESCAPE:
		return "'%' must be followed by two hex digits";
	case URLPATH_ERR_ENCODED:
		return "an encoded '/', '\\', NUL or control byte, or a double escape (%25XX)";
	case URLPATH_ERR_CHAR:
		return "a raw '\\', space, control byte or non-ASCII byte (escape it)";
	case URLPATH_ERR_DOT_SEGMENT:
		return "a \".\" or \"..\" segment (also as %2e)";
	case URLPATH_ERR_EMPTY_SEGMENT:
		return "an empty segment (\"//\")";
	case URLPATH_ERR_QUERY:
		return "'?' is not allowed (the query is never matched)";
	case URLPATH_ERR_TOO_LONG:
		return "longer than 1024 bytes";
	default:
		return "invalid path";
	}
}

/* RFC 3986 §2.3. */
static bool unreserved(unsigned char c)
{
	return ascii_is_alpha(c) || ascii_is_digit(c) || c == '-' || c == '.' || c == '_' ||
	       c == '~';
}

/* One segment's decoded text, as far as the checks need it. */
struct seg {
	size_t len;    /* decoded units (an escape that stays one counts as one) */
	bool all_dots; /* every unit is '.' */
};

static int end_segment(struct seg *g, bool last)
{
	if (g->all_dots && (g->len == 1 || g->len == 2))
		return URLPATH_ERR_DOT_SEGMENT;
	if (g->len == 0 && !last)
		return URLPATH_ERR_EMPTY_SEGMENT;
	*g = (struct seg){0, true};
	return URLPATH_OK;
}

/* The byte at u[*j] once decoded (a valid escape counts as its byte), or -1 at end or for a
 * bad escape; *j moves past it. */
static int unit_at(const unsigned char *u, size_t *j, size_t end)
{
	if (*j >= end)
		return -1;
	if (u[*j] != '%') {
		return u[(*j)++];
	}
	int hi = *j + 2 < end ? ascii_hex_value(u[*j + 1]) : -1;
	int lo = *j + 2 < end ? ascii_hex_value(u[*j + 2]) : -1;
	if (hi < 0 || lo < 0)
		return -1;
	*j += 3;
	return hi << 4 | lo;
}

/* Do the next two units from u[j] decode to hex digits (a '%' before them is an escape)? */
static bool escape_follows(const unsigned char *u, size_t j, size_t end)
{
	int a = unit_at(u, &j, end);
	int b = a >= 0 ? unit_at(u, &j, end) : -1;
	return a >= 0 && b >= 0 && ascii_hex_value((unsigned char)a) >= 0 &&
	       ascii_hex_value((unsigned char)b) >= 0;
}

int urlpath_check(const char *s, size_t len, bool pattern, size_t *path_len)
{
	const unsigned char *u = (const unsigned char *)s;
	struct seg g = {0, true};
	size_t i, end;
	int rc;

	if (s == NULL || len == 0 || u[0] != '/')
		return URLPATH_ERR_START;
	if (memchr(s, '#', len) != NULL)
		return URLPATH_ERR_FRAGMENT;
	if (pattern && len > URLPATH_PATTERN_MAX)
		return URLPATH_ERR_TOO_LONG;
	const char *q = memchr(s, '?', len);
	if (q != NULL && pattern)
		return URLPATH_ERR_QUERY;
	end = q != NULL ? (size_t)(q - s) : len;
	for (i = 1; i < end; i++) {
		unsigned char c = u[i];
		if (c == '/') {
			if ((rc = end_segment(&g, false)) != URLPATH_OK)
				return rc;
			continue;
		}
		if (c == '%') {
			int hi = i + 2 < end ? ascii_hex_value(u[i + 1]) : -1;
			int lo = i + 2 < end ? ascii_hex_value(u[i + 2]) : -1;
			if (hi < 0 || lo < 0)
				return URLPATH_ERR_ESCAPE;
			c = (unsigned char)(hi << 4 | lo);
			if (c == '/' || c == '\\' || c < 0x20 || c == 0x7f)
				return URLPATH_ERR_ENCODED;
			/* "%252e" (or "%25%32e"): a server, or two, that decodes twice reads "%2e",
			 * then '.': an escaped '%' before two hex digits, either escaped or not. */
			if (c == '%' && escape_follows(u, i + 3, end))
				return URLPATH_ERR_ENCODED;
			i += 2;
			g.all_dots = g.all_dots && c == '.';
			g.len++;
			continue;
		}
		if (c == '\\' || c <= 0x20 || c >= 0x7f)
			return URLPATH_ERR_CHAR;
		g.all_dots = g.all_dots && c == '.';
		g.len++;
	}
	if ((rc = end_segment(&g, true)) != URLPATH_OK)
		return rc;
	if (path_len != NULL)
		*path_len = end;
	return URLPATH_OK;
}

/*
 * The next unit of the normal form of a checked path from s[*i]: 1 byte, or 3
 * for an escape that stays one (uppercase hex, or lowercase when folding).
 */
static size_t next_unit(const unsigned char *s, size_t *i, unsigned char out[3], bool folded)
{
	unsigned char c = s[*i];

	if (c != '%') {
		out[0] = folded ? ascii_lower(c) : c;
		++*i;
		return 1;
	}
	c = (unsigned char)(ascii_hex_value(s[*i + 1]) << 4 | ascii_hex_value(s[*i + 2]));
	*i += 3;
	if (unreserved(c)) {
		out[0] = folded ? ascii_lower(c) : c;
		return 1;
	}
	out[0] = '%';
	out[1] = (unsigned char)ascii_hex_digit(c >> 4, true);
	out[2] = (unsigned char)ascii_hex_digit(c & 15, true);
	if (folded) {
		out[1] = ascii_lower(out[1]);
		out[2] = ascii_lower(out[2]);
	}
	return 3;
}

size_t urlpath_normalize(const char *s, size_t len, char *out)
{
	const unsigned char *u = (const unsigned char *)s;
	size_t i = 0, o = 0;

	while (i < len) {
		unsigned char b[3];
		size_t n = next_unit(u, &i, b, false);
		memcpy(out + o, b, n);
		o += n;
	}
	return o;
}

/*
 * The tokens of a checked pattern, one at a time: a folded literal byte, or
 * TOK_STAR / TOK_DSTAR for a run of raw stars (two or more are "**").
 */
struct tokens {
	const unsigned char *s;
	size_t len, i;
	unsigned char pend[3];
	size_t n_pend, at;
};

static int next_token(struct tokens *t)
{
	if (t->at < t->n_pend)
		return t->pend[t->at++];
	if (t->i >= t->len)
		return -1;
	if (t->s[t->i] == '*') {
		size_t run = 0;
		while (t->i < t->len && t->s[t->i] == '*') {
			t->i++;
			run++;
		}
		return run == 1 ? TOK_STAR : TOK_DSTAR;
	}
	t->n_pend = next_unit(t->s, &t->i, t->pend, true);
	t->at = 1;
	return t->pend[0];
}

static void count_tokens(const char *p, size_t len, uint32_t *n, uint32_t *classes)
{
	struct tokens t = {(const unsigned char *)p, len, 0, {0}, 0, 0};
	bool seen[256] = {false};
	int k;

	*n = *classes = 0;
	while ((k = next_token(&t)) >= 0) {
		++*n;
		if (k < 256 && !seen[k]) {
			seen[k] = true;
			++*classes;
		}
	}
}

size_t urlpath_glob_size(const char *p, size_t len)
{
	uint32_t n, classes;
	count_tokens(p, len, &n, &classes);
	return sizeof(struct urlpath_glob) +
	       (2 + (size_t)classes) * (n / 64 + 1) * sizeof(uint64_t);
}

const struct urlpath_glob *urlpath_glob_compile(const char *p, size_t len, void *mem)
{
	struct urlpath_glob *g = mem;
	struct tokens t = {(const unsigned char *)p, len, 0, {0}, 0, 0};
	uint32_t n, classes, next_class = 0;
	int k;

	count_tokens(p, len, &n, &classes);
	g->n = n;
	g->words = n / 64 + 1;
	memset(g->cls, 0, sizeof(g->cls));
	memset(g->bits, 0, (2 + (size_t)classes) * g->words * sizeof(uint64_t));
	for (uint32_t pos = 0; (k = next_token(&t)) >= 0; pos++) {
		uint64_t bit = 1ull << (pos % 64);
		size_t w = pos / 64;
		if (k == TOK_STAR) {
			g->bits[w] |= bit;
		} else if (k == TOK_DSTAR) {
			g->bits[g->words + w] |= bit;
		} else {
			if (g->cls[k] == 0)
				g->cls[k] = (uint8_t)++next_class;
			g->bits[(size_t)(1 + g->cls[k]) * g->words + w] |= bit;
		}
	}
	return g;
}

/*
 * After a step, a star state also means the state after it (a star may match
 * nothing).  Stars are never adjacent (a run is one token), so one step does.
 */
static void closure(const struct urlpath_glob *g, uint64_t *d)
{
	const uint64_t *star = g->bits, *dstar = g->bits + g->words;
	uint64_t carry = 0;
	for (uint32_t w = 0; w < g->words; w++) {
		uint64_t s = d[w] & (star[w] | dstar[w]);
		d[w] |= (s << 1) | carry;
		carry = s >> 63;
	}
}

/* One byte of the (folded) normal form: the states after it; false when none is left. */
static bool step(const struct urlpath_glob *g, uint64_t *d, unsigned char c)
{
	const uint64_t *star = g->bits, *dstar = g->bits + g->words;
	const uint64_t *lit = g->cls[c] ? g->bits + (size_t)(1 + g->cls[c]) * g->words : NULL;
	uint64_t carry = 0, any = 0;

	for (uint32_t w = 0; w < g->words; w++) {
		uint64_t m = lit != NULL ? d[w] & lit[w] : 0;
		uint64_t nw = (m << 1) | carry;
		carry = m >> 63;
		nw |= d[w] & dstar[w];
		if (c != '/')
			nw |= d[w] & star[w];
		d[w] = nw;
		any |= nw;
	}
	closure(g, d);
	return any != 0;
}

bool urlpath_glob_match(const struct urlpath_glob *g, const char *path, size_t len)
{
	const unsigned char *u = (const unsigned char *)path;
	uint64_t d[GLOB_WORDS] = {1};
	size_t i = 0;

	if (g == NULL || g->words > GLOB_WORDS)
		return false;
	closure(g, d);
	while (i < len) {
		unsigned char b[3];
		size_t n = next_unit(u, &i, b, true);
		for (size_t k = 0; k < n; k++)
			if (!step(g, d, b[k]))
				return false;
	}
	return (d[g->n / 64] >> (g->n % 64)) & 1;
}
