/* SPIFFE IDs: strict parsing (SPIFFE-ID §2) and the policy's ID patterns. */
#include "spiffe.h"

#include <string.h>

static const char SCHEME[] = "spiffe://";
#define SCHEME_LEN (sizeof(SCHEME) - 1)

/* SPIFFE-ID §2.1: a trust domain is lowercase letters, digits, dots, dashes and underscores. */
static bool td_char(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '-' || c == '_';
}

/* SPIFFE-ID §2.2: a path segment is letters, digits, dots, dashes and underscores. */
static bool path_char(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '.' || c == '-' || c == '_';
}

static int check_path(const char *p, size_t len)
{
	size_t i = 0;
	while (i < len) {
		if (p[i] != '/')
			return SPIFFE_ERR_PATH;
		size_t start = ++i;
		while (i < len && p[i] != '/') {
			if (!path_char((unsigned char)p[i]))
				return SPIFFE_ERR_PATH;
			i++;
		}
		size_t seg = i - start;
		/* Empty segments (and so a trailing '/'), "." and ".." are not allowed. */
		if (seg == 0 || (seg == 1 && p[start] == '.') ||
		    (seg == 2 && p[start] == '.' && p[start + 1] == '.'))
			return SPIFFE_ERR_PATH;
	}
	return SPIFFE_OK;
}

int spiffe_id_parse(const char *s, size_t len, struct spiffe_id *out)
{
	if (len > SPIFFE_ID_MAX)
		return SPIFFE_ERR_TOO_LONG;
	if (len < SCHEME_LEN || memcmp(s, SCHEME, SCHEME_LEN) != 0)
		return SPIFFE_ERR_SCHEME;
	const char *td = s + SCHEME_LEN;
	size_t rest = len - SCHEME_LEN, td_len = 0;
	while (td_len < rest && td[td_len] != '/') {
		if (!td_char((unsigned char)td[td_len]))
			return SPIFFE_ERR_TRUST_DOMAIN;
		td_len++;
	}
	if (td_len == 0 || td_len > SPIFFE_TD_MAX)
		return SPIFFE_ERR_TRUST_DOMAIN;
	const char *path = td + td_len;
	size_t path_len = rest - td_len;
	int st = check_path(path, path_len);
	if (st != SPIFFE_OK)
		return st;
	out->td = td;
	out->td_len = td_len;
	out->path = path;
	out->path_len = path_len;
	return SPIFFE_OK;
}

/* A pattern's fixed part: all of it, or all but a trailing slash and asterisk. */
static size_t fixed_len(const char *pat, size_t len, bool *below)
{
	*below = len >= 2 && pat[len - 2] == '/' && pat[len - 1] == '*';
	return *below ? len - 2 : len;
}

int spiffe_pattern_check(const char *pat, size_t len)
{
	bool below;
	size_t n = fixed_len(pat, len, &below);
	struct spiffe_id id;
	return spiffe_id_parse(pat, n, &id);
}

bool spiffe_pattern_match(const char *pat, size_t pat_len, const char *id, size_t id_len)
{
	bool below;
	size_t n = fixed_len(pat, pat_len, &below);
	if (!below)
		return n == id_len && memcmp(pat, id, n) == 0;
	/* Strictly below: the fixed part, a '/', and at least one more (valid) segment. */
	return id_len > n + 1 && memcmp(pat, id, n) == 0 && id[n] == '/';
}

const char *spiffe_status_str(int st)
{
	switch (st) {
	case SPIFFE_OK:
		return "ok";
	case SPIFFE_ERR_SCHEME:
		return "not a spiffe:// ID";
	case SPIFFE_ERR_TRUST_DOMAIN:
		return "bad trust domain (lowercase letters, digits, '.', '-', '_'; at most 255)";
	case SPIFFE_ERR_PATH:
		return "bad path (segments of letters, digits, '.', '-', '_'; no empty, '.' or "
		       "'..' segment, no trailing '/')";
	case SPIFFE_ERR_TOO_LONG:
		return "longer than 2048 bytes";
	default:
		return "invalid";
	}
}
