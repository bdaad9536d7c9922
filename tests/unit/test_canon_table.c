/* Table-driven test: host strings -> canonical form and built-in blocked-range verdict. */
#include "host.h"
#include "ranges.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#define TABLE_FILE TEST_DATA_DIR "/canon_table.txt"
#define MIN_CASES  80

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Decode \xHH and \\ in place; returns the decoded length, or -1 on a bad escape. */
static long unescape(char *s)
{
	size_t o = 0;
	for (size_t i = 0; s[i] != '\0'; i++) {
		if (s[i] != '\\') {
			s[o++] = s[i];
			continue;
		}
		if (s[i + 1] == '\\') {
			s[o++] = '\\';
			i++;
		} else if (s[i + 1] == 'x' && hexval(s[i + 2]) >= 0 && hexval(s[i + 3]) >= 0) {
			s[o++] = (char)(hexval(s[i + 2]) * 16 + hexval(s[i + 3]));
			i += 3;
		} else {
			return -1;
		}
	}
	return (long)o;
}

/* Runs one line; returns 0 when it passes, 1 (after printing why) when it fails. */
static int run_case(const struct range_set *blocked, unsigned lineno, char *line)
{
	char *in = line, *want, *verdict, *tab;

	if ((tab = strchr(in, '\t')) == NULL)
		goto malformed;
	*tab = '\0';
	want = tab + 1;
	if ((tab = strchr(want, '\t')) == NULL)
		goto malformed;
	*tab = '\0';
	verdict = tab + 1;
	if (strchr(verdict, '\t') != NULL)
		goto malformed;
	long len = unescape(in);
	if (len < 0)
		goto malformed;

	struct pc_host h;
	int rc = host_canon(in, (size_t)len, &h);
	if (strncmp(want, "ERROR", 5) == 0) {
		const char *code = want[5] == ':' ? want + 6 : NULL;
		if (rc == HOST_OK) {
			printf("line %u: accepted as \"%s\", want %s\n", lineno, h.name, want);
			return 1;
		}
		if (code != NULL && strcmp(code, host_status_str(rc)) != 0) {
			printf("line %u: error %s, want %s\n", lineno, host_status_str(rc), code);
			return 1;
		}
		if (strcmp(verdict, "-") != 0)
			goto malformed;
		return 0;
	}
	if (rc != HOST_OK) {
		printf("line %u: error %s, want \"%s\"\n", lineno, host_status_str(rc), want);
		return 1;
	}
	if (strcmp(h.name, want) != 0 || h.len != strlen(want)) {
		printf("line %u: canonical \"%s\", want \"%s\"\n", lineno, h.name, want);
		return 1;
	}
	if (h.kind == HOST_NAME) {
		if (strcmp(verdict, "-") != 0)
			goto malformed;
		return 0;
	}
	bool want_blocked = strcmp(verdict, "blocked") == 0;
	if (!want_blocked && strcmp(verdict, "allowed") != 0)
		goto malformed;
	bool is_blocked = range_set_contains(blocked, &h.addr);
	if (is_blocked != want_blocked) {
		printf("line %u: %s is %s, want %s\n", lineno, h.name,
		       is_blocked ? "blocked" : "allowed", verdict);
		return 1;
	}
	return 0;
malformed:
	printf("line %u: malformed table line\n", lineno);
	return 1;
}

static void test_canon_table(void **state)
{
	(void)state;
	struct range_set *blocked = range_set_create();
	assert_non_null(blocked);
	assert_int_equal(range_set_add_builtin_blocked(blocked), RANGE_OK);

	FILE *f = fopen(TABLE_FILE, "r");
	if (f == NULL)
		fail_msg("cannot open %s", TABLE_FILE);
	char line[1024];
	unsigned lineno = 0, cases = 0, failures = 0;
	while (fgets(line, sizeof(line), f) != NULL) {
		lineno++;
		size_t n = strlen(line);
		if (n > 0 && line[n - 1] == '\n')
			line[--n] = '\0';
		else if (!feof(f))
			fail_msg("line %u: too long", lineno);
		if (n == 0 || line[0] == '#')
			continue;
		cases++;
		failures += (unsigned)run_case(blocked, lineno, line);
	}
	fclose(f);
	range_set_destroy(blocked);
	printf("%u cases, %u failed\n", cases, failures);
	if (cases < MIN_CASES)
		fail_msg("only %u cases in %s, want at least %d", cases, TABLE_FILE, MIN_CASES);
	if (failures > 0)
		fail_msg("%u of %u table cases failed", failures, cases);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_canon_table),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
