/* Unit tests for certs/certid.c: what a client certificate's names become in the record. */
#include "certid.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/x509.h>

/* A certificate whose subject is one CN (UTF8String), as certid reads it. */
static void read_subject(const char *cn, struct cert_scratch *sc)
{
	X509 *x = X509_new();
	assert_non_null(x);
	X509_NAME *n = X509_get_subject_name(x);
	assert_int_equal(X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_UTF8, (const unsigned char *)cn,
	                                            -1, -1, 0),
	                 1);
	certid_from_x509(x, X509_V_OK, sc);
	X509_free(x);
}

/*
 * A subject longer than the 255 bytes kept is cut before an RFC 2253 escape ("\C3\A9" for
 * e-acute) the cut would split, and before the escapes of a UTF-8 sequence it would split.
 */
static void test_subject_cut(void **state)
{
	static const struct {
		const char *prefix;
		size_t want; /* the kept length */
	} cases[] = {
	    {"a", 250},   /* "CN=a" + 41 whole e-acutes; the cut fell in "\A9" */
	    {"abcd", 253}, /* the cut fell in "\C3" */
	    {"abc", 252},  /* the cut fell after "\C3": half a character */
	    {"ab", 251},   /* the cut fell after the backslash of "\A9" */
	    {"", 255},     /* the cut fell between two characters: nothing more is dropped */
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char cn[512];
		size_t n = (size_t)snprintf(cn, sizeof(cn), "%s", cases[i].prefix);
		for (int k = 0; k < 60; k++, n += 2)
			memcpy(cn + n, "\xc3\xa9", 3);
		static struct cert_scratch sc;
		read_subject(cn, &sc);
		size_t len = strlen(sc.subject);
		assert_memory_equal(sc.subject, "CN=", 3);
		if (len != cases[i].want)
			fail_msg("prefix %s: kept %zu bytes, want %zu: ...%s", cases[i].prefix, len,
			         cases[i].want, sc.subject + len - 8);
	}
	/* A short one is whole. */
	static struct cert_scratch sc;
	read_subject("runner \xc3\xa9,x", &sc);
	assert_string_equal(sc.subject, "CN=runner \\C3\\A9\\,x");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_subject_cut),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
