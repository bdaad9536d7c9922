/* Unit tests for certs/intercept.c: minted leaves, the cache, reloads, both handshakes, threads. */
#include "intercept.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <event2/event.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

/* ---- certificates made here ---- */

static char dir[64];
static char ca_pem[128], ca_key[128], ca2_pem[128], ca2_key[128], up_pem[128];

static EVP_PKEY *ec_key(void)
{
	EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	assert_non_null(k);
	return k;
}

static void add_ext(X509 *x, X509 *issuer, int nid, const char *value)
{
	X509V3_CTX ctx;
	X509V3_set_ctx(&ctx, issuer, x, NULL, NULL, 0);
	X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
	assert_non_null(ext);
	assert_int_equal(X509_add_ext(x, ext, -1), 1);
	X509_EXTENSION_free(ext);
}

/*
 * A certificate for key, signed by issuer (self-signed when NULL), valid from
 * now + from_s to now + to_s, with the extensions given as "nid=value" pairs.
 */
static X509 *make_cert(EVP_PKEY *key, const char *cn, X509 *issuer, EVP_PKEY *issuer_key,
                       long from_s, long to_s, const char *bc, const char *ku, const char *san)
{
	X509 *x = X509_new();
	assert_non_null(x);
	assert_int_equal(X509_set_version(x, X509_VERSION_3), 1);
	assert_int_equal(ASN1_INTEGER_set(X509_get_serialNumber(x), (long)random() & 0xffffff), 1);
	X509_NAME *n = X509_get_subject_name(x);
	assert_int_equal(
	    X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0),
	    1);
	assert_int_equal(
	    X509_set_issuer_name(x, issuer != NULL ? X509_get_subject_name(issuer) : n), 1);
	assert_non_null(X509_gmtime_adj(X509_getm_notBefore(x), from_s));
	assert_non_null(X509_gmtime_adj(X509_getm_notAfter(x), to_s));
	assert_int_equal(X509_set_pubkey(x, key), 1);
	X509 *iss = issuer != NULL ? issuer : x;
	add_ext(x, iss, NID_subject_key_identifier, "hash");
	if (issuer != NULL)
		add_ext(x, iss, NID_authority_key_identifier, "keyid");
	if (bc != NULL)
		add_ext(x, iss, NID_basic_constraints, bc);
	if (ku != NULL)
		add_ext(x, iss, NID_key_usage, ku);
	if (san != NULL)
		add_ext(x, iss, NID_subject_alt_name, san);
	assert_true(X509_sign(x, issuer_key != NULL ? issuer_key : key, EVP_sha256()) > 0);
	return x;
}

static X509 *make_ca(EVP_PKEY *key, const char *cn, long to_s)
{
	return make_cert(key, cn, NULL, NULL, -3600, to_s, "critical,CA:TRUE",
	                 "critical,keyCertSign,cRLSign", NULL);
}

static void write_cert(const char *path, X509 *x)
{
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	assert_int_equal(PEM_write_X509(f, x), 1);
	fclose(f);
}

static void write_key(const char *path, EVP_PKEY *k)
{
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	assert_int_equal(PEM_write_PrivateKey(f, k, NULL, NULL, 0, NULL, NULL), 1);
	fclose(f);
}

/* The CA (and its key) the tests create their icpt_ca from, rewritten by some tests. */
static X509 *the_ca;
static EVP_PKEY *the_ca_key;

static void write_the_ca(long to_s)
{
	X509_free(the_ca);
	EVP_PKEY_free(the_ca_key);
	the_ca_key = ec_key();
	the_ca = make_ca(the_ca_key, "test interception CA", to_s);
	write_cert(ca_pem, the_ca);
	write_key(ca_key, the_ca_key);
}

static struct icpt_ca *new_ca(uint32_t lifetime_s, uint32_t cache_size, const char *upstream)
{
	struct icpt_ca_conf c = {ca_pem, ca_key, upstream, lifetime_s, cache_size};
	char err[512] = "";
	struct icpt_ca *ca = icpt_ca_create(&c, err, sizeof(err));
	if (ca == NULL)
		fail_msg("icpt_ca_create: %s", err);
	return ca;
}

/* ---- looking at a leaf ---- */

static SSL *server_for(struct icpt_ca *ca, const char *host, const struct pc_addr *ip)
{
	char why[256] = "";
	SSL *ssl = icpt_server_ssl(ca, host, ip, true, why, sizeof(why));
	if (ssl == NULL)
		fail_msg("icpt_server_ssl(%s): %s", host, why);
	return ssl;
}

/* Whether leaf chains to ca as a TLS server certificate for host (or ip text). */
static bool verifies(X509 *leaf, X509 *ca, const char *host, const char *ip)
{
	X509_STORE *st = X509_STORE_new();
	X509_STORE_CTX *ctx = X509_STORE_CTX_new();
	assert_int_equal(X509_STORE_add_cert(st, ca), 1);
	assert_int_equal(X509_STORE_CTX_init(ctx, st, leaf, NULL), 1);
	X509_VERIFY_PARAM *vp = X509_STORE_CTX_get0_param(ctx);
	X509_VERIFY_PARAM_set_purpose(vp, X509_PURPOSE_SSL_SERVER);
	X509_VERIFY_PARAM_set_hostflags(vp, X509_CHECK_FLAG_NEVER_CHECK_SUBJECT);
	if (host != NULL)
		X509_VERIFY_PARAM_set1_host(vp, host, 0);
	if (ip != NULL)
		X509_VERIFY_PARAM_set1_ip_asc(vp, ip);
	bool ok = X509_verify_cert(ctx) == 1;
	X509_STORE_CTX_free(ctx);
	X509_STORE_free(st);
	ERR_clear_error();
	return ok;
}

static int64_t asn1_time(const ASN1_TIME *t)
{
	struct tm tm;
	assert_int_equal(ASN1_TIME_to_tm(t, &tm), 1);
	return (int64_t)timegm(&tm);
}

static GENERAL_NAMES *sans_of(X509 *x, int *crit)
{
	GENERAL_NAMES *g = X509_get_ext_d2i(x, NID_subject_alt_name, crit, NULL);
	assert_non_null(g);
	return g;
}

static void test_leaf_shape(void **state)
{
	struct icpt_ca *ca = new_ca(86400, 100, NULL);
	SSL *ssl = server_for(ca, "build.example.org", NULL);
	X509 *leaf = SSL_get_certificate(ssl);
	assert_non_null(leaf);
	assert_true(verifies(leaf, the_ca, "build.example.org", NULL));
	assert_false(verifies(leaf, the_ca, "other.example.org", NULL));
	assert_int_equal(X509_check_host(leaf, "build.example.org", 0,
	                                 X509_CHECK_FLAG_NEVER_CHECK_SUBJECT, NULL),
	                 1);
	assert_int_not_equal(X509_check_host(leaf, "evil.example.org", 0, 0, NULL), 1);
	assert_int_not_equal(X509_check_host(leaf, "example.org", 0, 0, NULL), 1);
	/* v3, one DNS SAN (not critical: the subject has a CN), CN = host. */
	assert_int_equal(X509_get_version(leaf), X509_VERSION_3);
	int crit = -1;
	GENERAL_NAMES *g = sans_of(leaf, &crit);
	assert_int_equal(sk_GENERAL_NAME_num(g), 1);
	assert_int_equal(crit, 0);
	const GENERAL_NAME *gn = sk_GENERAL_NAME_value(g, 0);
	assert_int_equal(gn->type, GEN_DNS);
	assert_string_equal((const char *)ASN1_STRING_get0_data(gn->d.dNSName),
	                    "build.example.org");
	GENERAL_NAMES_free(g);
	char cn[128];
	assert_int_equal(
	    X509_NAME_get_text_by_NID(X509_get_subject_name(leaf), NID_commonName, cn, sizeof(cn)),
	    17);
	assert_string_equal(cn, "build.example.org");
	assert_int_equal(X509_NAME_cmp(X509_get_issuer_name(leaf), X509_get_subject_name(the_ca)),
	                 0);
	/* Extensions: CA:FALSE and digitalSignature (both critical), serverAuth, SKI, AKI. */
	uint32_t fl = X509_get_extension_flags(leaf);
	assert_true(fl & EXFLAG_BCONS);
	assert_false(fl & EXFLAG_CA);
	assert_int_equal(X509_get_key_usage(leaf), KU_DIGITAL_SIGNATURE);
	assert_int_equal(X509_get_extended_key_usage(leaf), XKU_SSL_SERVER);
	int bc_crit = -1, ku_crit = -1;
	BASIC_CONSTRAINTS_free(X509_get_ext_d2i(leaf, NID_basic_constraints, &bc_crit, NULL));
	ASN1_BIT_STRING_free(X509_get_ext_d2i(leaf, NID_key_usage, &ku_crit, NULL));
	assert_int_equal(bc_crit, 1);
	assert_int_equal(ku_crit, 1);
	assert_non_null(X509_get0_subject_key_id(leaf));
	const ASN1_OCTET_STRING *akid = X509_get0_authority_key_id(leaf);
	assert_non_null(akid);
	assert_int_equal(ASN1_OCTET_STRING_cmp(akid, X509_get0_subject_key_id(the_ca)), 0);
	assert_int_equal(X509_get_signature_nid(leaf), NID_ecdsa_with_SHA256);
	assert_int_equal(EVP_PKEY_get_base_id(X509_get0_pubkey(leaf)), EVP_PKEY_EC);
	/* A positive serial of 16 bytes. */
	const ASN1_INTEGER *ser = X509_get0_serialNumber(leaf);
	assert_int_equal(ASN1_STRING_length(ser), 16);
	assert_int_equal(ser->type, V_ASN1_INTEGER);
	/* The chain sent: the CA after the leaf. */
	STACK_OF(X509) *chain = NULL;
	assert_int_equal(SSL_get0_chain_certs(ssl, &chain), 1);
	assert_int_equal(sk_X509_num(chain), 1);
	assert_int_equal(X509_cmp(sk_X509_value(chain, 0), the_ca), 0);
	SSL_free(ssl);
	icpt_ca_destroy(ca);
}

/* A host too long for a CN: no CN, and then the SAN is critical (RFC 5280 §4.2.1.6). */
static void test_long_host(void **state)
{
	struct icpt_ca *ca = new_ca(86400, 100, NULL);
	const char *host = "a-rather-long-label-for-a-host-name-0123456789.builds.example.org";
	assert_true(strlen(host) > 64);
	SSL *ssl = server_for(ca, host, NULL);
	X509 *leaf = SSL_get_certificate(ssl);
	assert_int_equal(X509_NAME_entry_count(X509_get_subject_name(leaf)), 0);
	int crit = -1;
	GENERAL_NAMES_free(sans_of(leaf, &crit));
	assert_int_equal(crit, 1);
	assert_true(verifies(leaf, the_ca, host, NULL));
	SSL_free(ssl);
	/* Exactly 64 bytes still gets a CN. */
	char h64[65];
	memset(h64, 'b', 60);
	memcpy(h64 + 60, ".org", 5);
	ssl = server_for(ca, h64, NULL);
	assert_int_equal(X509_NAME_entry_count(X509_get_subject_name(SSL_get_certificate(ssl))), 1);
	SSL_free(ssl);
	/* Not a host name: nothing is minted. */
	char why[128] = "";
	assert_null(icpt_server_ssl(ca, "a b", NULL, true, why, sizeof(why)));
	assert_true(why[0] != '\0');
	assert_null(icpt_server_ssl(ca, "x,IP:1.2.3.4", NULL, true, why, sizeof(why)));
	assert_null(icpt_server_ssl(ca, "", NULL, true, why, sizeof(why)));
	icpt_ca_destroy(ca);
}

static void test_ip_host(void **state)
{
	struct icpt_ca *ca = new_ca(86400, 100, NULL);
	struct pc_addr v4 = {.family = ADDR_V4, .b = {192, 0, 2, 7}};
	SSL *ssl = server_for(ca, "192.0.2.7", &v4);
	X509 *leaf = SSL_get_certificate(ssl);
	GENERAL_NAMES *g = sans_of(leaf, NULL);
	assert_int_equal(sk_GENERAL_NAME_num(g), 1);
	assert_int_equal(sk_GENERAL_NAME_value(g, 0)->type, GEN_IPADD);
	assert_int_equal(ASN1_STRING_length(sk_GENERAL_NAME_value(g, 0)->d.iPAddress), 4);
	GENERAL_NAMES_free(g);
	assert_int_equal(X509_check_ip_asc(leaf, "192.0.2.7", 0), 1);
	assert_int_not_equal(X509_check_ip_asc(leaf, "192.0.2.8", 0), 1);
	assert_true(verifies(leaf, the_ca, NULL, "192.0.2.7"));
	SSL_free(ssl);
	struct pc_addr v6 = {.family = ADDR_V6, .b = {0x20, 0x01, 0x0d, 0xb8, [15] = 1}};
	ssl = server_for(ca, "2001:db8::1", &v6);
	leaf = SSL_get_certificate(ssl);
	assert_int_equal(X509_check_ip_asc(leaf, "2001:db8::1", 0), 1);
	assert_true(verifies(leaf, the_ca, NULL, "2001:db8::1"));
	SSL_free(ssl);
	/* The same text as a name (ip NULL) is another cache entry: a DNS SAN. */
	ssl = server_for(ca, "192.0.2.7", NULL);
	g = sans_of(SSL_get_certificate(ssl), NULL);
	assert_int_equal(sk_GENERAL_NAME_value(g, 0)->type, GEN_DNS);
	GENERAL_NAMES_free(g);
	SSL_free(ssl);
	struct icpt_stats st;
	icpt_ca_get_stats(ca, &st);
	assert_int_equal(st.minted, 3);
	icpt_ca_destroy(ca);
}

static void test_lifetime(void **state)
{
	struct icpt_ca *ca = new_ca(3600, 100, NULL);
	int64_t now = (int64_t)time(NULL);
	SSL *ssl = server_for(ca, "life.example.org", NULL);
	X509 *leaf = SSL_get_certificate(ssl);
	int64_t nb = asn1_time(X509_get0_notBefore(leaf)), na = asn1_time(X509_get0_notAfter(leaf));
	assert_true(nb >= now - 300 - 2 && nb <= now - 300 + 2);
	assert_true(na >= now + 3600 - 2 && na <= now + 3600 + 2);
	SSL_free(ssl);
	icpt_ca_destroy(ca);
	/* 30 days asked of a CA that ends in 2 hours: the CA's notAfter. */
	ca = new_ca(30 * 86400, 100, NULL);
	ssl = server_for(ca, "life.example.org", NULL);
	leaf = SSL_get_certificate(ssl);
	assert_int_equal(asn1_time(X509_get0_notAfter(leaf)),
	                 asn1_time(X509_get0_notAfter(the_ca)));
	assert_true(verifies(leaf, the_ca, "life.example.org", NULL));
	struct icpt_stats st;
	icpt_ca_get_stats(ca, &st);
	assert_int_equal(st.ca_not_after, asn1_time(X509_get0_notAfter(the_ca)));
	SSL_free(ssl);
	icpt_ca_destroy(ca);
}

static void test_cache_hit(void **state)
{
	struct icpt_ca *ca = new_ca(86400, 100, NULL);
	SSL *a = server_for(ca, "cache.example.org", NULL);
	SSL *b = server_for(ca, "cache.example.org", NULL);
	SSL *c = server_for(ca, "other.example.org", NULL);
	assert_ptr_equal(SSL_get_certificate(a), SSL_get_certificate(b));
	assert_int_not_equal(X509_cmp(SSL_get_certificate(a), SSL_get_certificate(c)), 0);
	struct icpt_stats st;
	icpt_ca_get_stats(ca, &st);
	assert_int_equal(st.minted, 2);
	assert_int_equal(st.cache_hits, 1);
	assert_int_equal(st.cached, 2);
	SSL_free(a);
	SSL_free(b);
	SSL_free(c);
	icpt_ca_destroy(ca);
}

static uint64_t minted(struct icpt_ca *ca)
{
	struct icpt_stats st;
	icpt_ca_get_stats(ca, &st);
	return st.minted;
}

static void touch(struct icpt_ca *ca, const char *host)
{
	SSL_free(server_for(ca, host, NULL));
}

static void test_lru(void **state)
{
	struct icpt_ca *ca = new_ca(86400, 3, NULL);
	touch(ca, "a.example");
	touch(ca, "b.example");
	touch(ca, "c.example");
	touch(ca, "a.example"); /* a is now the most recently used: b is the oldest */
	assert_int_equal(minted(ca), 3);
	touch(ca, "d.example"); /* b goes */
	assert_int_equal(minted(ca), 4);
	struct icpt_stats st;
	icpt_ca_get_stats(ca, &st);
	assert_int_equal(st.cached, 3);
	touch(ca, "a.example");
	touch(ca, "c.example");
	touch(ca, "d.example");
	assert_int_equal(minted(ca), 4);
	touch(ca, "b.example"); /* minted anew; a (the oldest now) goes */
	assert_int_equal(minted(ca), 5);
	touch(ca, "a.example");
	assert_int_equal(minted(ca), 6);
	icpt_ca_destroy(ca);
}

/* A leaf past half its lifetime is minted anew. */
static void test_refresh(void **state)
{
	struct icpt_ca *ca = new_ca(4, 10, NULL);
	SSL *a = server_for(ca, "fresh.example.org", NULL);
	SSL *b = server_for(ca, "fresh.example.org", NULL);
	assert_ptr_equal(SSL_get_certificate(a), SSL_get_certificate(b));
	usleep(2100 * 1000);
	SSL *c = server_for(ca, "fresh.example.org", NULL);
	assert_int_not_equal(X509_cmp(SSL_get_certificate(a), SSL_get_certificate(c)), 0);
	assert_int_equal(minted(ca), 2);
	SSL_free(a);
	SSL_free(b);
	SSL_free(c);
	icpt_ca_destroy(ca);
}

static void test_rsa_ca(void **state)
{
	EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
	assert_non_null(k);
	X509 *rsa_ca = make_ca(k, "RSA CA", 86400);
	write_cert(ca2_pem, rsa_ca);
	write_key(ca2_key, k);
	struct icpt_ca_conf c = {ca2_pem, ca2_key, NULL, 86400, 10};
	char err[512] = "";
	struct icpt_ca *ca = icpt_ca_create(&c, err, sizeof(err));
	if (ca == NULL)
		fail_msg("%s", err);
	SSL *ssl = server_for(ca, "rsa.example.org", NULL);
	X509 *leaf = SSL_get_certificate(ssl);
	assert_int_equal(X509_get_signature_nid(leaf), NID_sha256WithRSAEncryption);
	assert_true(verifies(leaf, rsa_ca, "rsa.example.org", NULL));
	SSL_free(ssl);
	icpt_ca_destroy(ca);
	X509_free(rsa_ca);
	EVP_PKEY_free(k);
}

/* What create (and reload) refuse. */
static void test_refused(void **state)
{
	EVP_PKEY *k = ec_key();
	static const struct {
		const char *what, *bc, *ku;
		long to_s;
		bool other_key;
	} cases[] = {
	    {"not a CA", "critical,CA:FALSE", "critical,keyCertSign", 86400, false},
	    {"no basicConstraints", NULL, "critical,keyCertSign", 86400, false},
	    {"no keyCertSign", "critical,CA:TRUE", "critical,digitalSignature,cRLSign", 86400,
	     false},
	    {"expired", "critical,CA:TRUE", "critical,keyCertSign", -60, false},
	    {"another key", "critical,CA:TRUE", "critical,keyCertSign", 86400, true},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		X509 *x = make_cert(k, "bad CA", NULL, NULL, -7200, cases[i].to_s, cases[i].bc,
		                    cases[i].ku, NULL);
		EVP_PKEY *other = cases[i].other_key ? ec_key() : NULL;
		write_cert(ca2_pem, x);
		write_key(ca2_key, other != NULL ? other : k);
		struct icpt_ca_conf c = {ca2_pem, ca2_key, NULL, 86400, 10};
		char err[512] = "";
		struct icpt_ca *ca = icpt_ca_create(&c, err, sizeof(err));
		if (ca != NULL)
			fail_msg("%s: accepted", cases[i].what);
		printf("# %s: %s\n", cases[i].what, err);
		X509_free(x);
		EVP_PKEY_free(other);
	}
	/* A CA without a keyUsage extension may sign certificates (RFC 5280 §4.2.1.3). */
	X509 *x = make_cert(k, "CA without keyUsage", NULL, NULL, -7200, 86400, "critical,CA:TRUE",
	                    NULL, NULL);
	write_cert(ca2_pem, x);
	write_key(ca2_key, k);
	struct icpt_ca_conf c = {ca2_pem, ca2_key, NULL, 86400, 10};
	char err[512] = "";
	struct icpt_ca *ca = icpt_ca_create(&c, err, sizeof(err));
	assert_non_null(ca);
	icpt_ca_destroy(ca);
	/* A CA key TLS refuses at the security level (Debian: 2): refused now, not per connection.
	 */
	EVP_PKEY *weak = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)1024);
	assert_non_null(weak);
	X509 *wx = make_ca(weak, "weak CA", 86400);
	write_cert(ca2_pem, wx);
	write_key(ca2_key, weak);
	SSL_CTX *probe = SSL_CTX_new(TLS_server_method());
	bool level_refuses = SSL_CTX_get_security_level(probe) >= 2;
	SSL_CTX_free(probe);
	if (level_refuses) {
		assert_null(icpt_ca_create(&c, err, sizeof(err)));
		printf("# weak key: %s\n", err);
	}
	X509_free(wx);
	EVP_PKEY_free(weak);
	/* Missing files, an upstream bundle that does not load. */
	struct icpt_ca_conf missing = {"/nonexistent/ca.pem", ca2_key, NULL, 86400, 10};
	assert_null(icpt_ca_create(&missing, err, sizeof(err)));
	struct icpt_ca_conf bad_up = {ca2_pem, ca2_key, "/nonexistent/bundle.pem", 86400, 10};
	assert_null(icpt_ca_create(&bad_up, err, sizeof(err)));
	X509_free(x);
	EVP_PKEY_free(k);
}

static void test_reload(void **state)
{
	struct icpt_ca *ca = new_ca(86400, 100, NULL);
	touch(ca, "one.example.org");
	touch(ca, "two.example.org");
	X509 *old_ca = the_ca;
	X509_up_ref(old_ca);
	write_the_ca(86400); /* a new CA in the same files */
	assert_int_equal(icpt_ca_reload(ca, "test"), 0);
	struct icpt_stats st;
	icpt_ca_get_stats(ca, &st);
	assert_int_equal(st.cached, 0);
	assert_int_equal(st.reloads_ok, 1);
	SSL *ssl = server_for(ca, "one.example.org", NULL);
	X509 *leaf = SSL_get_certificate(ssl);
	assert_true(verifies(leaf, the_ca, "one.example.org", NULL));
	assert_false(verifies(leaf, old_ca, "one.example.org", NULL));
	/* A key that does not match: the current CA stays, its cache too. */
	EVP_PKEY *other = ec_key();
	write_key(ca_key, other);
	assert_int_equal(icpt_ca_reload(ca, "test"), -1);
	icpt_ca_get_stats(ca, &st);
	assert_int_equal(st.reloads_failed, 1);
	assert_int_equal(st.cached, 1);
	SSL *again = server_for(ca, "one.example.org", NULL);
	assert_ptr_equal(SSL_get_certificate(again), leaf);
	SSL *fresh = server_for(ca, "three.example.org", NULL);
	assert_true(verifies(SSL_get_certificate(fresh), the_ca, "three.example.org", NULL));
	/* Not PEM at all. */
	FILE *f = fopen(ca_pem, "w");
	assert_non_null(f);
	fputs("not a certificate\n", f);
	fclose(f);
	assert_int_equal(icpt_ca_reload(ca, "test"), -1);
	icpt_ca_get_stats(ca, &st);
	assert_int_equal(st.reloads_failed, 2);
	/* The SSLs made before outlive their generation. */
	write_cert(ca_pem, the_ca);
	write_key(ca_key, the_ca_key);
	assert_int_equal(icpt_ca_reload(ca, "test"), 0);
	assert_true(verifies(SSL_get_certificate(ssl), the_ca, "one.example.org", NULL));
	SSL_free(ssl);
	SSL_free(again);
	SSL_free(fresh);
	EVP_PKEY_free(other);
	X509_free(old_ca);
	icpt_ca_destroy(ca);
}

static uint64_t reloads_ok(struct icpt_ca *ca)
{
	struct icpt_stats st;
	icpt_ca_get_stats(ca, &st);
	return st.reloads_ok;
}

/* Run base for up to ms, until reloads_ok reaches want. */
static void run_until(struct event_base *base, struct icpt_ca *ca, uint64_t want, int ms)
{
	for (int i = 0; i < ms / 10 && reloads_ok(ca) < want; i++) {
		event_base_loop(base, EVLOOP_NONBLOCK);
		usleep(10 * 1000);
	}
}

/* A file change reloads (after the debounce); rewriting the same bytes does not. */
static void test_watch(void **state)
{
	struct event_base *base = event_base_new();
	assert_non_null(base);
	struct icpt_ca *ca = new_ca(86400, 10, NULL);
	icpt_ca_watch(ca, base);
	touch(ca, "w.example.org");
	write_the_ca(7200);
	run_until(base, ca, 1, 3000);
	assert_int_equal(reloads_ok(ca), 1);
	SSL *ssl = server_for(ca, "w.example.org", NULL);
	assert_true(verifies(SSL_get_certificate(ssl), the_ca, "w.example.org", NULL));
	SSL_free(ssl);
	write_cert(ca_pem, the_ca);
	run_until(base, ca, 2, 600);
	assert_int_equal(reloads_ok(ca), 1);
	icpt_ca_destroy(ca); /* frees its events: before the base */
	event_base_free(base);
}

/* ---- handshakes in memory ---- */

struct hs {
	bool client_ok, server_ok;
	int client_err, server_err; /* SSL_get_error of the failing side */
};

static struct hs handshake(SSL *client, SSL *server)
{
	BIO *bc, *bs;
	assert_int_equal(BIO_new_bio_pair(&bc, 0, &bs, 0), 1);
	SSL_set_bio(client, bc, bc);
	SSL_set_bio(server, bs, bs);
	struct hs r = {false, false, 0, 0};
	bool cdone = false, sdone = false;
	for (int i = 0; i < 20 && !(cdone && sdone); i++) {
		if (!cdone) {
			int rc = SSL_do_handshake(client);
			int e = SSL_get_error(client, rc);
			if (rc == 1)
				cdone = r.client_ok = true;
			else if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE)
				cdone = true, r.client_err = e;
		}
		if (!sdone) {
			int rc = SSL_do_handshake(server);
			int e = SSL_get_error(server, rc);
			if (rc == 1)
				sdone = r.server_ok = true;
			else if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE)
				sdone = true, r.server_err = e;
		}
	}
	ERR_clear_error();
	return r;
}

/* A client trusting trust (NULL: nothing), sending sni (NULL: none), offering alpn. */
static SSL *client_of(X509 *trust, const char *sni, const unsigned char *alpn, size_t alpnlen,
                      int max_version)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	assert_non_null(ctx);
	SSL_CTX_set_max_proto_version(ctx, max_version);
	if (trust != NULL)
		assert_int_equal(X509_STORE_add_cert(SSL_CTX_get_cert_store(ctx), trust), 1);
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	if (alpn != NULL)
		assert_int_equal(SSL_CTX_set_alpn_protos(ctx, alpn, (unsigned)alpnlen), 0);
	SSL *ssl = SSL_new(ctx);
	SSL_CTX_free(ctx);
	if (sni != NULL) {
		char buf[256];
		snprintf(buf, sizeof(buf), "%s", sni);
		assert_int_equal(SSL_set_tlsext_host_name(ssl, buf), 1);
		assert_int_equal(X509_VERIFY_PARAM_set1_host(SSL_get0_param(ssl), sni, 0), 1);
	}
	SSL_set_connect_state(ssl);
	return ssl;
}

/* The last alert a client read (an info callback of the client's). */
static int client_alert = -1;

static void client_info(const SSL *ssl, int where, int ret)
{
	if (where & SSL_CB_READ_ALERT)
		client_alert = ret & 0xff;
}

static const unsigned char ALPN_BOTH[] = "\x02h2\x08http/1.1";
static const unsigned char ALPN_H2[] = "\x02h2";

static void test_handshake_ok(void **state)
{
	struct icpt_ca *ca = new_ca(86400, 100, NULL);
	const int versions[] = {TLS1_3_VERSION, TLS1_2_VERSION};
	for (int i = 0; i < 2; i++) {
		SSL *s = server_for(ca, "git.example.org", NULL);
		SSL *c = client_of(the_ca, "git.example.org", ALPN_BOTH, sizeof(ALPN_BOTH) - 1,
		                   versions[i]);
		struct hs r = handshake(c, s);
		assert_true(r.client_ok);
		assert_true(r.server_ok);
		assert_int_equal(SSL_version(c), versions[i]);
		const unsigned char *p;
		unsigned n;
		SSL_get0_alpn_selected(c, &p, &n);
		assert_int_equal(n, 8);
		assert_memory_equal(p, "http/1.1", 8);
		assert_int_equal(SSL_get_verify_result(c), X509_V_OK);
		assert_int_equal(icpt_server_sni_result(s), ICPT_SNI_OK);
		SSL_free(c);
		SSL_free(s);
	}
	/* An SNI in capitals with a trailing dot names the same host. */
	SSL *s = server_for(ca, "git.example.org", NULL);
	SSL *c =
	    client_of(the_ca, "GIT.Example.org.", ALPN_BOTH, sizeof(ALPN_BOTH) - 1, TLS1_3_VERSION);
	/* (OpenSSL's own name check wants the name without the dot, as curl strips it.) */
	assert_int_equal(X509_VERIFY_PARAM_set1_host(SSL_get0_param(c), "git.example.org", 0), 1);
	struct hs r = handshake(c, s);
	assert_true(r.server_ok && r.client_ok);
	assert_int_equal(icpt_server_sni_result(s), ICPT_SNI_OK);
	SSL_free(c);
	SSL_free(s);
	/* A client offering h2 only: no_application_protocol (RFC 7301 §3.2), not a rejection. */
	s = server_for(ca, "git.example.org", NULL);
	c = client_of(the_ca, "git.example.org", ALPN_H2, sizeof(ALPN_H2) - 1, TLS1_3_VERSION);
	client_alert = -1;
	SSL_set_info_callback(c, client_info);
	r = handshake(c, s);
	assert_false(r.client_ok || r.server_ok);
	assert_int_equal(client_alert, SSL_AD_NO_APPLICATION_PROTOCOL);
	assert_int_equal(icpt_server_sni_result(s), ICPT_SNI_OK);
	char alert[64];
	assert_false(icpt_server_client_rejected(s, alert, sizeof(alert)));
	SSL_free(c);
	SSL_free(s);
	/* A client offering no ALPN at all: served, no protocol named. */
	s = server_for(ca, "git.example.org", NULL);
	c = client_of(the_ca, "git.example.org", NULL, 0, TLS1_3_VERSION);
	r = handshake(c, s);
	assert_true(r.client_ok && r.server_ok);
	const unsigned char *p;
	unsigned n;
	SSL_get0_alpn_selected(c, &p, &n);
	assert_int_equal(n, 0);
	SSL_free(c);
	SSL_free(s);
	icpt_ca_destroy(ca);
}

static void test_handshake_sni(void **state)
{
	struct icpt_ca *ca = new_ca(86400, 100, NULL);
	char why[128];
	/* Another name in SNI: unrecognized_name, whatever the client would trust. */
	SSL *s = server_for(ca, "git.example.org", NULL);
	SSL *c =
	    client_of(the_ca, "evil.example.org", ALPN_BOTH, sizeof(ALPN_BOTH) - 1, TLS1_3_VERSION);
	client_alert = -1;
	SSL_set_info_callback(c, client_info);
	struct hs r = handshake(c, s);
	assert_false(r.server_ok);
	assert_false(r.client_ok);
	assert_int_equal(client_alert, SSL_AD_UNRECOGNIZED_NAME);
	assert_int_equal(icpt_server_sni_result(s), ICPT_SNI_MISMATCH);
	char alert[64];
	assert_false(icpt_server_client_rejected(s, alert, sizeof(alert)));
	SSL_free(c);
	SSL_free(s);
	/* No SNI: refused when required for a name ... */
	s = server_for(ca, "git.example.org", NULL);
	c = client_of(the_ca, NULL, NULL, 0, TLS1_3_VERSION);
	r = handshake(c, s);
	assert_false(r.server_ok);
	assert_int_equal(icpt_server_sni_result(s), ICPT_SNI_MISSING);
	SSL_free(c);
	SSL_free(s);
	/* ... passed when not required ... */
	s = icpt_server_ssl(ca, "git.example.org", NULL, false, why, sizeof(why));
	assert_non_null(s);
	c = client_of(the_ca, NULL, NULL, 0, TLS1_3_VERSION);
	r = handshake(c, s);
	assert_true(r.server_ok && r.client_ok);
	assert_int_equal(icpt_server_sni_result(s), ICPT_SNI_OK);
	SSL_free(c);
	SSL_free(s);
	/* ... and for an address. */
	struct pc_addr v4 = {.family = ADDR_V4, .b = {192, 0, 2, 7}};
	s = icpt_server_ssl(ca, "192.0.2.7", &v4, true, why, sizeof(why));
	assert_non_null(s);
	c = client_of(the_ca, NULL, NULL, 0, TLS1_3_VERSION);
	assert_int_equal(X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(c), "192.0.2.7"), 1);
	r = handshake(c, s);
	assert_true(r.server_ok && r.client_ok);
	SSL_free(c);
	SSL_free(s);
	icpt_ca_destroy(ca);
}

static void test_client_rejects(void **state)
{
	struct icpt_ca *ca = new_ca(86400, 100, NULL);
	const int versions[] = {TLS1_3_VERSION, TLS1_2_VERSION};
	for (int i = 0; i < 2; i++) {
		SSL *s = server_for(ca, "git.example.org", NULL);
		SSL *c = client_of(NULL, "git.example.org", ALPN_BOTH, sizeof(ALPN_BOTH) - 1,
		                   versions[i]);
		struct hs r = handshake(c, s);
		assert_false(r.client_ok);
		assert_false(r.server_ok);
		char alert[64] = "x";
		assert_true(icpt_server_client_rejected(s, alert, sizeof(alert)));
		assert_string_equal(alert, "unknown CA");
		assert_int_equal(icpt_server_sni_result(s), ICPT_SNI_OK);
		SSL_free(c);
		SSL_free(s);
	}
	/* A successful handshake has no alert. */
	SSL *s = server_for(ca, "git.example.org", NULL);
	SSL *c = client_of(the_ca, "git.example.org", NULL, 0, TLS1_3_VERSION);
	assert_true(handshake(c, s).server_ok);
	char alert[64] = "x";
	assert_false(icpt_server_client_rejected(s, alert, sizeof(alert)));
	assert_string_equal(alert, "");
	SSL_free(c);
	SSL_free(s);
	icpt_ca_destroy(ca);
}

/* ---- toward the upstream ---- */

static X509 *up_ca;
static EVP_PKEY *up_ca_key;

/* An upstream server presenting a certificate from issuer with CN cn and SAN san. */
static SSL *upstream_of(X509 *issuer, EVP_PKEY *issuer_key, const char *cn, const char *san)
{
	EVP_PKEY *k = ec_key();
	X509 *x = make_cert(k, cn, issuer, issuer_key, -60, 86400, "critical,CA:FALSE",
	                    "critical,digitalSignature", san);
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
	assert_non_null(ctx);
	assert_int_equal(SSL_CTX_use_certificate(ctx, x), 1);
	assert_int_equal(SSL_CTX_use_PrivateKey(ctx, k), 1);
	SSL *ssl = SSL_new(ctx);
	SSL_CTX_free(ctx);
	X509_free(x);
	EVP_PKEY_free(k);
	SSL_set_accept_state(ssl);
	return ssl;
}

static SSL *upstream_client(struct icpt_ca *ca, const char *host, const struct pc_addr *ip)
{
	char why[256] = "";
	SSL *c = icpt_client_ssl(ca, host, ip, why, sizeof(why));
	if (c == NULL)
		fail_msg("icpt_client_ssl: %s", why);
	return c;
}

static void test_upstream(void **state)
{
	write_cert(up_pem, up_ca);
	struct icpt_ca *ca = new_ca(86400, 100, up_pem);
	char why[256];
	/* The right name in a DNS SAN: verified, SNI sent, ALPN offered. */
	SSL *u = upstream_of(up_ca, up_ca_key, "api.example.org", "DNS:api.example.org");
	SSL *c = upstream_client(ca, "api.example.org", NULL);
	struct hs r = handshake(c, u);
	assert_true(r.client_ok && r.server_ok);
	assert_false(icpt_client_verify_failed(c, why, sizeof(why)));
	assert_string_equal(SSL_get_servername(u, TLSEXT_NAMETYPE_host_name), "api.example.org");
	SSL_free(c);
	SSL_free(u);
	static const struct {
		const char *what, *cn, *san;
		bool untrusted;
		const char *why;
	} bad[] = {
	    {"another name", "other.example.org", "DNS:other.example.org", false,
	     "hostname mismatch"},
	    {"the name only in the CN", "api.example.org", "DNS:other.example.org", false,
	     "hostname mismatch"},
	    {"an untrusted CA", "api.example.org", "DNS:api.example.org", true,
	     "unable to get local issuer certificate"},
	};
	EVP_PKEY *rogue_key = ec_key();
	X509 *rogue = make_ca(rogue_key, "rogue CA", 86400);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		u = upstream_of(bad[i].untrusted ? rogue : up_ca,
		                bad[i].untrusted ? rogue_key : up_ca_key, bad[i].cn, bad[i].san);
		c = upstream_client(ca, "api.example.org", NULL);
		r = handshake(c, u);
		if (r.client_ok)
			fail_msg("%s: verified", bad[i].what);
		why[0] = '\0';
		assert_true(icpt_client_verify_failed(c, why, sizeof(why)));
		if (strcmp(why, bad[i].why) != 0)
			fail_msg("%s: %s", bad[i].what, why);
		SSL_free(c);
		SSL_free(u);
	}
	/* An address: its IP SAN, no SNI. */
	struct pc_addr v4 = {.family = ADDR_V4, .b = {192, 0, 2, 9}};
	u = upstream_of(up_ca, up_ca_key, "x", "IP:192.0.2.9");
	c = upstream_client(ca, "192.0.2.9", &v4);
	r = handshake(c, u);
	assert_true(r.client_ok && r.server_ok);
	assert_null(SSL_get_servername(u, TLSEXT_NAMETYPE_host_name));
	SSL_free(c);
	SSL_free(u);
	u = upstream_of(up_ca, up_ca_key, "192.0.2.9", "DNS:192.0.2.9");
	c = upstream_client(ca, "192.0.2.9", &v4);
	r = handshake(c, u);
	assert_false(r.client_ok);
	assert_true(icpt_client_verify_failed(c, why, sizeof(why)));
	SSL_free(c);
	SSL_free(u);
	/* A handshake failing otherwise is not a verification failure. */
	c = upstream_client(ca, "api.example.org", NULL);
	SSL_CTX *plain = SSL_CTX_new(TLS_server_method()); /* no certificate at all */
	u = SSL_new(plain);
	SSL_CTX_free(plain);
	SSL_set_accept_state(u);
	r = handshake(c, u);
	assert_false(r.client_ok);
	assert_false(icpt_client_verify_failed(c, why, sizeof(why)));
	SSL_free(c);
	SSL_free(u);
	X509_free(rogue);
	EVP_PKEY_free(rogue_key);
	icpt_ca_destroy(ca);
}

/* ---- threads ---- */

#define THREADS 8
#define ROUNDS  150
#define HOSTS   40

struct worker {
	struct icpt_ca *ca;
	unsigned seed;
	int bad;
};

static void *mint_loop(void *arg)
{
	struct worker *w = arg;
	for (int i = 0; i < ROUNDS; i++) {
		char host[64], why[128];
		snprintf(host, sizeof(host), "h%d.example.org", rand_r(&w->seed) % HOSTS);
		SSL *ssl = icpt_server_ssl(w->ca, host, NULL, true, why, sizeof(why));
		if (ssl == NULL || X509_check_host(SSL_get_certificate(ssl), host, 0, 0, NULL) != 1)
			w->bad++;
		SSL_free(ssl);
		if (i % 25 == 0) {
			SSL *c = icpt_client_ssl(w->ca, host, NULL, why, sizeof(why));
			w->bad += c == NULL;
			SSL_free(c);
		}
	}
	return NULL;
}

static void *reload_loop(void *arg)
{
	struct worker *w = arg;
	for (int i = 0; i < 5; i++) {
		w->bad += icpt_ca_reload(w->ca, "test") != 0;
		struct icpt_stats st;
		icpt_ca_get_stats(w->ca, &st);
		usleep(5000);
	}
	return NULL;
}

/* Many threads minting, hitting and evicting at once, while reloads swap the generation. */
static void test_threads(void **state)
{
	struct icpt_ca *ca = new_ca(86400, 16, NULL);
	pthread_t t[THREADS + 1];
	struct worker w[THREADS + 1];
	for (int i = 0; i <= THREADS; i++) {
		w[i] = (struct worker){ca, (unsigned)i * 7919u + 1, 0};
		assert_int_equal(
		    pthread_create(&t[i], NULL, i < THREADS ? mint_loop : reload_loop, &w[i]), 0);
	}
	for (int i = 0; i <= THREADS; i++) {
		assert_int_equal(pthread_join(t[i], NULL), 0);
		assert_int_equal(w[i].bad, 0);
	}
	struct icpt_stats st;
	icpt_ca_get_stats(ca, &st);
	assert_int_equal(st.minted + st.cache_hits, THREADS * ROUNDS);
	assert_true(st.cached <= 16);
	assert_int_equal(st.reloads_ok, 5);
	icpt_ca_destroy(ca);
}

/* ---- setup ---- */

static int setup(void **state)
{
	snprintf(dir, sizeof(dir), "/tmp/test_intercept_ca.XXXXXX");
	if (mkdtemp(dir) == NULL)
		return -1;
	snprintf(ca_pem, sizeof(ca_pem), "%s/ca.pem", dir);
	snprintf(ca_key, sizeof(ca_key), "%s/ca.key", dir);
	snprintf(ca2_pem, sizeof(ca2_pem), "%s/ca2.pem", dir);
	snprintf(ca2_key, sizeof(ca2_key), "%s/ca2.key", dir);
	snprintf(up_pem, sizeof(up_pem), "%s/upstream-ca.pem", dir);
	up_ca_key = ec_key();
	up_ca = make_ca(up_ca_key, "upstream CA", 86400);
	return 0;
}

/* Each test starts from a fresh CA valid for 2 hours. */
static int fresh_ca(void **state)
{
	write_the_ca(7200);
	return 0;
}

static int teardown(void **state)
{
	const char *files[] = {ca_pem, ca_key, ca2_pem, ca2_key, up_pem};
	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++)
		unlink(files[i]);
	rmdir(dir);
	X509_free(the_ca);
	EVP_PKEY_free(the_ca_key);
	X509_free(up_ca);
	EVP_PKEY_free(up_ca_key);
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup(test_leaf_shape, fresh_ca),
	    cmocka_unit_test_setup(test_long_host, fresh_ca),
	    cmocka_unit_test_setup(test_ip_host, fresh_ca),
	    cmocka_unit_test_setup(test_lifetime, fresh_ca),
	    cmocka_unit_test_setup(test_cache_hit, fresh_ca),
	    cmocka_unit_test_setup(test_lru, fresh_ca),
	    cmocka_unit_test_setup(test_refresh, fresh_ca),
	    cmocka_unit_test_setup(test_rsa_ca, fresh_ca),
	    cmocka_unit_test_setup(test_refused, fresh_ca),
	    cmocka_unit_test_setup(test_reload, fresh_ca),
	    cmocka_unit_test_setup(test_watch, fresh_ca),
	    cmocka_unit_test_setup(test_handshake_ok, fresh_ca),
	    cmocka_unit_test_setup(test_handshake_sni, fresh_ca),
	    cmocka_unit_test_setup(test_client_rejects, fresh_ca),
	    cmocka_unit_test_setup(test_upstream, fresh_ca),
	    cmocka_unit_test_setup(test_threads, fresh_ca),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
