/* libFuzzer target: request paths and path globs of intercepted requests, with invariants that
 * abort().  Input: "pattern\ntarget" (no newline: the whole input is the target, against the
 * fixed patterns below). */
#include "policy.h"
#include "policy_int.h"
#include "urlpath.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The reference matcher's table is (pattern + 1) x (path + 1) cells. */
#define REF_MAX_PATTERN 64
#define REF_MAX_PATH    512

static void require(bool ok, const char *what)
{
	if (!ok) {
		fprintf(stderr, "fuzz_intercept_path: invariant violated: %s\n", what);
		abort();
	}
}

static int hexval(unsigned char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1; /* the normal form's hex is uppercase */
}

static bool unreserved(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '-' || c == '.' || c == '_' || c == '~';
}

/*
 * What the normal form of an accepted path must look like, checked without the
 * checker's code: every byte printable ASCII but '\\', '#', '?' and space; escapes of
 * uppercase hex, never of an unreserved byte, '/', '\\', NUL or a control byte; no
 * ".", ".." or empty segment but a trailing one.
 */
static void check_normal(const char *n, size_t len)
{
	size_t seg = 1;
	require(len >= 1 && n[0] == '/', "normal form starts with '/'");
	for (size_t i = 1; i <= len; i++) {
		if (i == len || n[i] == '/') {
			size_t sl = i - seg;
			require(!(sl == 1 && n[seg] == '.'), "no \".\" segment");
			require(!(sl == 2 && n[seg] == '.' && n[seg + 1] == '.'),
			        "no \"..\" segment");
			require(sl > 0 || i == len, "no empty segment but the last");
			seg = i + 1;
			continue;
		}
		unsigned char c = (unsigned char)n[i];
		require(c > 0x20 && c < 0x7f && c != '\\' && c != '#' && c != '?',
		        "only printable ASCII, no '\\\\', '#', '?'");
		if (c != '%')
			continue;
		require(i + 2 < len, "an escape is whole");
		int hi = hexval((unsigned char)n[i + 1]), lo = hexval((unsigned char)n[i + 2]);
		require(hi >= 0 && lo >= 0, "escape hex uppercase");
		unsigned char b = (unsigned char)(hi << 4 | lo);
		require(!unreserved(b), "unreserved bytes are decoded");
		require(b != '/' && b != '\\' && b >= 0x20 && b != 0x7f,
		        "no escaped '/', '\\\\', NUL or control byte");
		i += 2;
	}
}

static void fold(char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (s[i] >= 'A' && s[i] <= 'Z')
			s[i] = (char)(s[i] - 'A' + 'a');
}

/* Glob by dynamic programming over the folded normal forms, '*' in p being a wildcard. */
static bool ref_match(const char *p, size_t pl, const char *s, size_t sl)
{
	static bool row[REF_MAX_PATTERN + 2][REF_MAX_PATH + 1];
	/* row[i][j]: p[i..] matches s[j..]; tokens: "**" (a run of 2+ stars), '*', a byte. */
	for (size_t i = pl + 1; i-- > 0;) {
		for (size_t j = sl + 1; j-- > 0;) {
			bool m;
			if (i == pl) {
				m = j == sl;
			} else if (p[i] == '*') {
				size_t k = i;
				while (k < pl && p[k] == '*')
					k++;
				bool dstar = k - i >= 2;
				/* skip: the star matches nothing; eat: one more byte */
				m = row[k][j] ||
				    (j < sl && (dstar || s[j] != '/') && row[i][j + 1]);
			} else {
				m = j < sl && p[i] == s[j] && row[i + 1][j + 1];
			}
			row[i][j] = m;
		}
	}
	return row[0][0];
}

/* A one-entry intercept block: pattern allow (or deny), default the other way round. */
static void decide_invariants(const struct urlpath_glob *g, const char *pat, const char *t,
                              size_t tl, bool t_ok, bool matched)
{
	struct policy_intercept_req e = {.name = "e", .path = pat, .glob = g, .allow = true};
	struct policy_intercept ic = {.default_allow = false, .requests = &e, .n_requests = 1};
	const char *rule = NULL;

	/* Other readings of the path (without ";params", without a trailing '/') exist only when
	 * its path part has a ';' or ends with '/'; without them the path as sent decides alone. */
	const char *q = memchr(t, '?', tl);
	size_t pl = q != NULL ? (size_t)(q - t) : tl;
	bool single = memchr(t, ';', pl) == NULL && !(pl > 1 && t[pl - 1] == '/');
	for (int round = 0; round < 2; round++) {
		enum reason r = policy_intercept_decide(&ic, "GET", 3, t, tl, &rule);
		require(rule != NULL, "a rule name always");
		require(r == R_ALLOWED || r == R_INTERCEPT_DENIED || r == R_INTERCEPT_BAD_PATH,
		        "one of three answers");
		require(t_ok || r == R_INTERCEPT_BAD_PATH,
		        "a path the check refuses is a bad path");
		if (single)
			require((r == R_INTERCEPT_BAD_PATH) == !t_ok,
			        "bad path exactly when check refuses");
		if (r == R_INTERCEPT_BAD_PATH)
			require(rule[0] == '\0', "no rule for a bad path");
		else if (matched && e.allow)
			require((r == R_ALLOWED && strcmp(rule, "e") == 0) ||
			            (!single && r == R_INTERCEPT_DENIED &&
			             strcmp(rule, "default") == 0),
			        "the matching allow entry decides (unless the ;-less reading is "
			        "not allowed)");
		else if (matched)
			require(r == R_INTERCEPT_DENIED && strcmp(rule, "e") == 0,
			        "the matching deny entry decides");
		else if (e.allow)
			require(r == R_INTERCEPT_DENIED && strcmp(rule, "default") == 0,
			        "default deny decides when no allow entry matched");
		else if (single)
			require(r == R_ALLOWED && strcmp(rule, "default") == 0,
			        "default decides when nothing matched");
		else
			require(r == R_ALLOWED ? strcmp(rule, "default") == 0
			                       : strcmp(rule, "e") == 0,
			        "another reading meeting the deny entry refuses, naming it");
		/* ALLOWED means the path passed the checks (its normal form was checked above). */
		if (r == R_ALLOWED)
			require(t_ok, "allowed only a checked path");
		e.allow = false;
		ic.default_allow = true;
	}
	/* A method list without GET: the entry never matches. */
	static const char *const post[] = {"POST"};
	e.methods = post;
	e.n_methods = 1;
	enum reason r = policy_intercept_decide(&ic, "GET", 3, t, tl, &rule);
	require(r == (t_ok ? R_ALLOWED : R_INTERCEPT_BAD_PATH) ||
	            (!single && r == R_INTERCEPT_BAD_PATH),
	        "an entry for other methods is skipped");
}

static void one(const char *pat, size_t pl, const char *t, size_t tl)
{
	size_t plen = 0, tpl = 0;
	int prc = urlpath_check(pat, pl, true, &plen);
	int trc = urlpath_check(t, tl, false, &tpl);
	char *pn = malloc(pl + 1), *tn = malloc(tl + 1), *tu = malloc(tl + 1);
	require(pn != NULL && tn != NULL && tu != NULL, "memory");

	require(prc <= 0 && prc >= URLPATH_ERR_TOO_LONG, "status in range");
	require(trc <= 0 && trc >= URLPATH_ERR_QUERY, "a path is never too long");
	size_t tnl = 0;
	if (trc == URLPATH_OK) {
		require(tpl <= tl && (tpl == tl || t[tpl] == '?'), "path part ends at '?'");
		require(memchr(t, '#', tl) == NULL, "no '#' anywhere");
		tnl = urlpath_normalize(t, tpl, tn);
		require(tnl <= tpl, "the normal form is no longer");
		check_normal(tn, tnl);
		/* The normal form is a fixed point. */
		size_t again = 0;
		require(urlpath_check(tn, tnl, false, &again) == URLPATH_OK && again == tnl,
		        "the normal form passes the checks");
		require(urlpath_normalize(tn, tnl, tu) == tnl && memcmp(tu, tn, tnl) == 0,
		        "normalising twice changes nothing");
	}
	if (prc == URLPATH_OK) {
		require(plen == pl && pl <= URLPATH_PATTERN_MAX, "a pattern is all path");
		size_t pnl = urlpath_normalize(pat, pl, pn);
		check_normal(pn, pnl);
		void *mem = malloc(urlpath_glob_size(pat, pl));
		require(mem != NULL, "memory");
		const struct urlpath_glob *g = urlpath_glob_compile(pat, pl, mem);
		bool m = trc == URLPATH_OK && urlpath_glob_match(g, t, tpl);
		if (trc == URLPATH_OK) {
			/* Case never matters: the same target in upper case matches the same. */
			for (size_t i = 0; i < tl; i++)
				tu[i] =
				    (char)(t[i] >= 'a' && t[i] <= 'z' ? t[i] - 'a' + 'A' : t[i]);
			require(urlpath_glob_match(g, tu, tpl) == m, "case-insensitive");
			/* Its normal form matches the same. */
			require(urlpath_glob_match(g, tn, tnl) == m,
			        "normal form matches the same");
			/* Against the reference, on small inputs; escaped '*' is "%2a" in both. */
			if (pnl <= REF_MAX_PATTERN && tnl <= REF_MAX_PATH &&
			    memchr(tn, '*', tnl) == NULL) {
				fold(pn, pnl);
				fold(tn, tnl);
				require(ref_match(pn, pnl, tn, tnl) == m,
				        "agrees with the reference");
			}
		}
		decide_invariants(g, pat, t, tl, trc == URLPATH_OK, m);
		free(mem);
	}
	free(pn);
	free(tn);
	free(tu);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const fixed[] = {"/**", "/org/*/git-receive-pack", "/a/**/b*c", "/%2A*"};
	const char *s = (const char *)data;
	const char *nl = memchr(s, '\n', size);

	if (nl != NULL) {
		one(s, (size_t)(nl - s), nl + 1, size - (size_t)(nl - s) - 1);
		return 0;
	}
	for (size_t i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++)
		one(fixed[i], strlen(fixed[i]), s, size);
	return 0;
}
