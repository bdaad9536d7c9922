/* libFuzzer target: SPIFFE IDs and ID patterns, with invariants that abort(). */
#include "spiffe.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void require(bool ok, const char *what)
{
	if (!ok) {
		fprintf(stderr, "fuzz_spiffe: invariant violated: %s\n", what);
		abort();
	}
}

static bool td_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '-' || c == '_';
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *s = (const char *)data;
	struct spiffe_id id;
	if (spiffe_id_parse(s, size, &id) == SPIFFE_OK) {
		/* Views lie inside the input, cover it after the scheme, and obey the spec. */
		require(size <= SPIFFE_ID_MAX, "length limit");
		require(id.td == s + 9 && id.td_len > 0 && id.td_len <= SPIFFE_TD_MAX,
		        "trust domain");
		require(id.path == id.td + id.td_len && id.td_len + id.path_len + 9 == size,
		        "path");
		for (size_t i = 0; i < id.td_len; i++)
			require(td_char(id.td[i]), "trust domain character");
		require(id.path_len == 0 || (id.path[0] == '/' && id.path[id.path_len - 1] != '/'),
		        "path shape");
		require(memchr(s, 0, size) == NULL && memchr(s, '?', size) == NULL &&
		            memchr(s, '%', size) == NULL,
		        "no NUL, query or escapes");
		/* An ID always matches itself as an exact pattern. */
		require(spiffe_pattern_check(s, size) == SPIFFE_OK, "an ID is a pattern");
		require(spiffe_pattern_match(s, size, s, size), "an ID matches itself");
	}
	/* A pattern that checks out matches only IDs that parse, given as data's second half. */
	size_t half = size / 2;
	if (spiffe_pattern_check(s, half) == SPIFFE_OK &&
	    spiffe_pattern_match(s, half, s + half, size - half)) {
		struct spiffe_id other;
		bool below = half >= 2 && s[half - 2] == '/' && s[half - 1] == '*';
		if (!below)
			require(half == size - half && memcmp(s, s + half, half) == 0,
			        "exact match");
		(void)other;
	}
	return 0;
}
