/* libFuzzer target: client-certificate identity from a DER certificate, with invariants. */
#include "certid.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/x509.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void require(bool ok, const char *what)
{
	if (!ok) {
		fprintf(stderr, "fuzz_certid: invariant violated: %s\n", what);
		abort();
	}
}

/* Everything kept reaches an audit record unescaped: printable ASCII, NUL-terminated in size. */
static void printable(const char *s, size_t cap, const char *what)
{
	size_t n = strnlen(s, cap);
	require(n < cap, what);
	for (size_t i = 0; i < n; i++)
		require(s[i] >= 0x20 && s[i] <= 0x7e, what);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const unsigned char *p = data;
	X509 *x = d2i_X509(NULL, &p, (long)size);
	if (x == NULL) {
		/* The error queue holds copies of its strings: left there, every run would
		 * end with more memory held than it began with, and libFuzzer would stop to
		 * scan for leaks after each one. */
		ERR_clear_error();
		return 0;
	}
	static struct cert_scratch ci;
	certid_from_x509(x, X509_V_OK, &ci);
	X509_free(x);
	require(ci.present, "present");
	require(ci.refusal == R_ALLOWED || ci.refusal == R_CLIENT_CERT_INVALID, "refusal");
	printable(ci.cn, sizeof(ci.cn), "cn");
	printable(ci.subject, sizeof(ci.subject), "subject");
	printable(ci.issuer, sizeof(ci.issuer), "issuer");
	printable(ci.serial, sizeof(ci.serial), "serial");
	require(ci.n_sans <= CERTID_MAX_SANS, "san count");
	size_t kept = 0;
	for (size_t i = 0; i < ci.n_sans; i++) {
		kept += strlen(ci.sans[i]);
		printable(ci.sans[i], sizeof(ci.sans[i]), "san");
		require(!ci.san_dns[i] || strlen(ci.sans[i]) <= 253,
		        "a DNS name is at most 253 bytes");
	}
	require(kept <= CERTID_SANS_BYTES, "kept names within their budget");
	if (ci.spiffe[0] != '\0') {
		struct spiffe_id sid;
		require(spiffe_id_parse(ci.spiffe, strlen(ci.spiffe), &sid) == SPIFFE_OK,
		        "a kept SPIFFE ID is valid");
		require(ci.refusal == R_ALLOWED, "an SVID that broke a rule keeps no ID");
	}
	return 0;
}
