/* TLS client contexts the proxy dials with: verified against a CA file, bound to an IP SAN. */
#include "tls_client.h"

#include <stdio.h>

#include <openssl/err.h>
#include <openssl/x509v3.h>

SSL *tls_client_for_ip(const char *ca_file, const struct pc_addr *ip, char *why, size_t whylen)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	SSL *ssl = NULL;
	if (ctx == NULL)
		goto fail;
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	if (SSL_CTX_load_verify_locations(ctx, ca_file, NULL) != 1) {
		snprintf(why, whylen, "cannot load CA %s", ca_file);
		ERR_clear_error();
		SSL_CTX_free(ctx);
		return NULL;
	}
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	ssl = SSL_new(ctx);
	SSL_CTX_free(ctx); /* the SSL holds its own reference */
	if (ssl == NULL)
		goto fail;
	if (X509_VERIFY_PARAM_set1_ip(SSL_get0_param(ssl), ip->b, ip->family == ADDR_V4 ? 4 : 16) !=
	    1) {
		SSL_free(ssl);
		goto fail;
	}
	return ssl;
fail:
	snprintf(why, whylen, "TLS setup failed");
	ERR_clear_error();
	return NULL;
}

SSL_CTX *tls_client_ctx_new(const char *ca_file, char *why, size_t whylen)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	if (ctx == NULL) {
		snprintf(why, whylen, "TLS setup failed");
		ERR_clear_error();
		return NULL;
	}
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	int ok = ca_file != NULL ? SSL_CTX_load_verify_locations(ctx, ca_file, NULL)
	                         : SSL_CTX_set_default_verify_paths(ctx);
	if (ok != 1) {
		snprintf(why, whylen, "cannot load CA %s", ca_file != NULL ? ca_file : "(system)");
		ERR_clear_error();
		SSL_CTX_free(ctx);
		return NULL;
	}
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	return ctx;
}

int tls_client_expect_name(SSL *ssl, const char *host, const struct pc_addr *ip)
{
	X509_VERIFY_PARAM *vp = SSL_get0_param(ssl);
	if (ip != NULL) {
		int ok = X509_VERIFY_PARAM_set1_ip(vp, ip->b, ip->family == ADDR_V4 ? 4 : 16);
		return ok == 1 ? 0 : -1;
	}
	/* RFC 9525 §6.3: a DNS-ID from the SAN, never the subject's CN. */
	X509_VERIFY_PARAM_set_hostflags(vp, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS |
	                                        X509_CHECK_FLAG_NEVER_CHECK_SUBJECT);
	/* SSL_set_tlsext_host_name casts its argument to void * (a const-dropping cast
	 * -Wcast-qual refuses): a copy of our own, which OpenSSL copies again. */
	char sni[256];
	if (snprintf(sni, sizeof(sni), "%s", host) >= (int)sizeof(sni) ||
	    X509_VERIFY_PARAM_set1_host(vp, host, 0) != 1 ||
	    SSL_set_tlsext_host_name(ssl, sni) != 1)
		return -1;
	return 0;
}

SSL *tls_client_for_host(const char *ca_file, const char *host, const struct pc_addr *ip, char *why,
                         size_t whylen)
{
	SSL_CTX *ctx = tls_client_ctx_new(ca_file, why, whylen);
	if (ctx == NULL)
		return NULL;
	SSL *ssl = SSL_new(ctx);
	SSL_CTX_free(ctx); /* the SSL holds its own reference */
	if (ssl == NULL)
		goto fail;
	if (tls_client_expect_name(ssl, host, ip) != 0)
		goto fail_ssl;
	return ssl;
fail_ssl:
	SSL_free(ssl);
fail:
	snprintf(why, whylen, "TLS setup failed");
	ERR_clear_error();
	return NULL;
}
