/* Cache-Control max-age and Age into a freshness lifetime (see cachectl.h). */
#include "cachectl.h"

#include <stdbool.h>
#include <string.h>

#define DELTA_MAX 2147483648LL /* RFC 9111 §1.2.2 */

/* delta-seconds: 1*DIGIT, clamped to DELTA_MAX; -1 when not digits. */
static int64_t delta(const char *p, size_t n)
{
	if (n == 0)
		return -1;
	int64_t v = 0;
	for (size_t i = 0; i < n; i++) {
		if (p[i] < '0' || p[i] > '9')
			return -1;
		if (v < DELTA_MAX)
			v = v * 10 + (p[i] - '0');
	}
	return v < DELTA_MAX ? v : DELTA_MAX;
}

/* One Cache-Control field value: its directives into *max_age (-2: conflicting) and *no. */
static void directives(const char *p, size_t n, int64_t *max_age, bool *no)
{
	size_t i = 0;
	while (i < n) {
		while (i < n && (p[i] == ',' || p[i] == ' ' || p[i] == '\t'))
			i++;
		size_t s = i;
		while (i < n && p[i] != ',' && p[i] != '=' && p[i] != ' ' && p[i] != '\t')
			i++;
		struct http_view name = {.p = p + s, .len = i - s};
		while (i < n && (p[i] == ' ' || p[i] == '\t'))
			i++;
		const char *val = NULL;
		size_t vlen = 0;
		if (i < n && p[i] == '=') {
			i++;
			while (i < n && (p[i] == ' ' || p[i] == '\t'))
				i++;
			bool quoted = i < n && p[i] == '"';
			if (quoted)
				i++;
			val = p + i;
			/* RFC 9110 §5.6.4: a quoted-string ends at an unescaped '"'; a backslash
			 * escapes the next byte, so nothing inside one is read as a directive. */
			bool closed = !quoted;
			while (i < n) {
				if (quoted && p[i] == '\\' && i + 1 < n) {
					i += 2;
					continue;
				}
				if (quoted ? p[i] == '"'
				           : (p[i] == ',' || p[i] == ' ' || p[i] == '\t'))
					break;
				i++;
			}
			vlen = (size_t)(p + i - val);
			if (quoted && i < n) {
				closed = true;
				i++;
			}
			if (!closed) {
				val = NULL; /* an unterminated string: no value (invalid) */
				vlen = 0;
			}
			while (i < n && p[i] != ',')
				i++; /* anything after a value up to the next comma */
		}
		if (http_token_ieq(name, "no-store") || http_token_ieq(name, "no-cache")) {
			*no = true;
		} else if (http_token_ieq(name, "max-age")) {
			int64_t d = val != NULL ? delta(val, vlen) : -1;
			if (d < 0 || (*max_age >= 0 && *max_age != d))
				*max_age = -2; /* §4.2.1: invalid or conflicting: not fresh by it */
			else if (*max_age != -2)
				*max_age = d;
		}
	}
}

int64_t cachectl_freshness(const struct http_resp *r)
{
	int64_t max_age = -1, age = 0;
	bool no = false;
	for (size_t i = 0; i < r->n_headers; i++) {
		const struct http_header *h = &r->headers[i];
		if (http_token_ieq(h->name, "cache-control"))
			directives(h->value.p, h->value.len, &max_age, &no);
		else if (http_token_ieq(h->name, "age")) {
			int64_t a = delta(h->value.p, h->value.len);
			if (a > age)
				age = a;
		}
	}
	if (no)
		return 0;
	if (max_age == -2)
		return 0;
	if (max_age < 0)
		return -1;
	return max_age > age ? max_age - age : 0;
}
