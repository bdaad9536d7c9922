/* The TLS listener's server context: built off to the side, swapped in, watched for rotation. */
#include "tls_listener.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "oplog.h"
#include "tls_files.h"

struct tls_listener {
	char *cert_file, *key_file, *client_ca_file, *crl_file;
	enum tls_client_certs client_certs;
	pthread_rwlock_t lock; /* guards ctx: new SSLs read it, a reload swaps it */
	SSL_CTX *ctx;
	char files_sha[65]; /* of the files the current ctx was built from */
	atomic_ullong reloads_ok, reloads_failed;
	atomic_llong not_after;
	struct tls_watch *watch;
};

/* ALPN: http/1.1 only (RFC 7301 §3.2: no overlap is a no_application_protocol alert). */
int tls_alpn_http11_cb(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                       const unsigned char *in, unsigned inlen, void *arg)
{
	static const unsigned char h11[] = "\x08http/1.1";
	unsigned char *sel = NULL;
	if (SSL_select_next_proto(&sel, outlen, h11, sizeof(h11) - 1, in, inlen) !=
	    OPENSSL_NPN_NEGOTIATED)
		return SSL_TLSEXT_ERR_ALERT_FATAL;
	*out = sel;
	return SSL_TLSEXT_ERR_OK;
}

/* The SSL ex_data slot holding the first verification error of a connection (+1; 0: none). */
static int verr_idx = -1;
static pthread_once_t verr_once = PTHREAD_ONCE_INIT;

static void verr_init(void)
{
	verr_idx = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
}

/*
 * Client certificates are verified during the handshake, but the verdict is
 * the connection core's: the handshake completes whatever the chain, and
 * every request of a connection whose certificate failed is refused with an
 * HTTP status and a reason code the client can read (conn.c, identify).  The
 * first error is kept (an expired and revoked certificate says "expired").
 */
static int verify_cb(int ok, X509_STORE_CTX *x)
{
	if (ok)
		return 1;
	SSL *ssl = X509_STORE_CTX_get_ex_data(x, SSL_get_ex_data_X509_STORE_CTX_idx());
	if (ssl != NULL && verr_idx >= 0 && SSL_get_ex_data(ssl, verr_idx) == NULL)
		SSL_set_ex_data(ssl, verr_idx, (void *)(intptr_t)(X509_STORE_CTX_get_error(x) + 1));
	return 1;
}

long tls_listener_verify_error(const SSL *ssl)
{
	void *v = verr_idx >= 0 ? SSL_get_ex_data(ssl, verr_idx) : NULL;
	if (v != NULL)
		return (long)(intptr_t)v - 1;
	long r = SSL_get_verify_result(ssl);
	return r;
}

enum tls_client_certs tls_listener_mode_of(const SSL *ssl)
{
	const struct tls_listener *ts = SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl));
	return ts != NULL ? ts->client_certs : TLS_CLIENT_CERTS_OFF;
}

static int load_client_ca(SSL_CTX *ctx, const struct tls_listener *ts, char *err, size_t errlen)
{
	if (SSL_CTX_load_verify_locations(ctx, ts->client_ca_file, NULL) != 1) {
		tls_err_text(err, errlen);
		return -1;
	}
	STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(ts->client_ca_file);
	if (names != NULL)
		SSL_CTX_set_client_CA_list(ctx, names);
	if (ts->crl_file != NULL) {
		X509_STORE *store = SSL_CTX_get_cert_store(ctx);
		X509_LOOKUP *lk = X509_STORE_add_lookup(store, X509_LOOKUP_file());
		if (lk == NULL || X509_load_crl_file(lk, ts->crl_file, X509_FILETYPE_PEM) <= 0) {
			tls_err_text(err, errlen);
			return -1;
		}
		/* The leaf's revocation is checked against the CRL of its issuer: no CRL, no pass.
		 */
		X509_STORE_set_flags(store, X509_V_FLAG_CRL_CHECK);
	}
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, verify_cb);
	SSL_CTX_set_verify_depth(ctx, 8);
	/* Every connection verifies its chain (and the CRL as it is now): no resumption. */
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
	SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
	SSL_CTX_set_num_tickets(ctx, 0);
	return 0;
}

static SSL_CTX *build(const struct tls_listener *ts, char *err, size_t errlen)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
	if (ctx == NULL) {
		tls_err_text(err, errlen);
		return NULL;
	}
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION);
	/* A FIN without close_notify ends the stream like one (the relay passes the EOF on). */
	SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE |
	                             SSL_OP_NO_COMPRESSION | SSL_OP_IGNORE_UNEXPECTED_EOF);
	/* The relay retries a send with the same bytes from another buffer, and takes part of one.
	 */
	SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	SSL_CTX_set_alpn_select_cb(ctx, tls_alpn_http11_cb, NULL);
	SSL_CTX_set_app_data(ctx, (void *)(uintptr_t)ts); /* tls_listener_mode_of */
	if (SSL_CTX_use_certificate_chain_file(ctx, ts->cert_file) != 1) {
		char e[200];
		tls_err_text(e, sizeof(e));
		snprintf(err, errlen, "certificate %s: %s", ts->cert_file, e);
		goto fail;
	}
	if (SSL_CTX_use_PrivateKey_file(ctx, ts->key_file, SSL_FILETYPE_PEM) != 1 ||
	    SSL_CTX_check_private_key(ctx) != 1) {
		char e[200];
		tls_err_text(e, sizeof(e));
		snprintf(err, errlen, "key %s (with %s): %s", ts->key_file, ts->cert_file, e);
		goto fail;
	}
	if (ts->client_certs != TLS_CLIENT_CERTS_OFF) {
		char e[200];
		if (load_client_ca(ctx, ts, e, sizeof(e)) != 0) {
			snprintf(err, errlen, "client CA %s / CRL %s: %s", ts->client_ca_file,
			         ts->crl_file ? ts->crl_file : "-", e);
			goto fail;
		}
	}
	return ctx;
fail:
	SSL_CTX_free(ctx);
	return NULL;
}

static int64_t leaf_not_after(SSL_CTX *ctx)
{
	X509 *leaf = SSL_CTX_get0_certificate(ctx);
	struct tm tm;
	if (leaf == NULL || ASN1_TIME_to_tm(X509_get0_notAfter(leaf), &tm) != 1)
		return 0;
	return (int64_t)timegm(&tm);
}

/* SHA-256 over every file's SHA-256: what a change detector compares. "" when one is unreadable. */
static void files_sha(const struct tls_listener *ts, char out[65])
{
	const char *files[TLS_FILES_MAX] = {ts->cert_file, ts->key_file, ts->client_ca_file,
	                                    ts->crl_file};
	tls_files_sha(files, TLS_FILES_MAX, out);
}

static char *dup_or_null(const char *s)
{
	return s != NULL ? strdup(s) : NULL;
}

struct tls_listener *tls_listener_create(const struct tls_listener_conf *conf, char *errmsg,
                                         size_t errlen)
{
	struct tls_listener *ts = calloc(1, sizeof(*ts));
	if (ts == NULL) {
		snprintf(errmsg, errlen, "out of memory");
		return NULL;
	}
	pthread_once(&verr_once, verr_init);
	pthread_rwlock_init(&ts->lock, NULL);
	ts->client_certs = conf->client_certs;
	ts->cert_file = dup_or_null(conf->cert_file);
	ts->key_file = dup_or_null(conf->key_file);
	ts->client_ca_file = dup_or_null(conf->client_ca_file);
	ts->crl_file = dup_or_null(conf->crl_file);
	if (ts->cert_file == NULL || ts->key_file == NULL ||
	    (conf->client_ca_file != NULL && ts->client_ca_file == NULL) ||
	    (conf->crl_file != NULL && ts->crl_file == NULL)) {
		snprintf(errmsg, errlen, "out of memory");
		goto fail;
	}
	char err[400];
	files_sha(ts, ts->files_sha);
	ts->ctx = build(ts, err, sizeof(err));
	if (ts->ctx == NULL) {
		snprintf(errmsg, errlen, "TLS listener: %s", err);
		goto fail;
	}
	atomic_store(&ts->not_after, leaf_not_after(ts->ctx));
	return ts;
fail:
	tls_listener_destroy(ts);
	return NULL;
}

void tls_listener_destroy(struct tls_listener *ts)
{
	if (ts == NULL)
		return;
	tls_watch_destroy(ts->watch);
	SSL_CTX_free(ts->ctx);
	pthread_rwlock_destroy(&ts->lock);
	free(ts->cert_file);
	free(ts->key_file);
	free(ts->client_ca_file);
	free(ts->crl_file);
	free(ts);
}

int tls_listener_reload(struct tls_listener *ts, const char *why)
{
	char err[400];
	char sha[65];
	files_sha(ts, sha);
	SSL_CTX *ctx = build(ts, err, sizeof(err));
	if (ctx == NULL) {
		atomic_fetch_add(&ts->reloads_failed, 1);
		oplog("error",
		      "TLS listener reload (%s) failed: %s; the previous certificate stays", why,
		      err);
		return -1;
	}
	int64_t na = leaf_not_after(ctx);
	pthread_rwlock_wrlock(&ts->lock);
	SSL_CTX *old = ts->ctx;
	ts->ctx = ctx;
	memcpy(ts->files_sha, sha, sizeof(sha));
	pthread_rwlock_unlock(&ts->lock);
	SSL_CTX_free(old); /* open connections hold their own references */
	atomic_store(&ts->not_after, na);
	atomic_fetch_add(&ts->reloads_ok, 1);
	oplog("info", "TLS listener reloaded (%s): %s, not after %lld", why, ts->cert_file,
	      (long long)na);
	return 0;
}

SSL *tls_listener_new_ssl(struct tls_listener *ts)
{
	pthread_rwlock_rdlock(&ts->lock);
	SSL *ssl = SSL_new(ts->ctx);
	pthread_rwlock_unlock(&ts->lock);
	if (ssl == NULL)
		ERR_clear_error();
	return ssl;
}

void tls_listener_get_stats(struct tls_listener *ts, struct tls_listener_stats *out)
{
	out->reloads_ok = atomic_load(&ts->reloads_ok);
	out->reloads_failed = atomic_load(&ts->reloads_failed);
	out->not_after = atomic_load(&ts->not_after);
}

/* ---- watching the files (main loop) ---- */

static void changed_cb(void *arg)
{
	struct tls_listener *ts = arg;
	char sha[65];
	files_sha(ts, sha);
	pthread_rwlock_rdlock(&ts->lock);
	bool same = sha[0] != '\0' && strcmp(sha, ts->files_sha) == 0;
	pthread_rwlock_unlock(&ts->lock);
	if (!same)
		(void)tls_listener_reload(ts, "file change");
}

void tls_listener_watch(struct tls_listener *ts, struct event_base *base)
{
	const char *files[TLS_FILES_MAX] = {ts->cert_file, ts->key_file, ts->client_ca_file,
	                                    ts->crl_file};
	ts->watch = tls_watch_create(base, "TLS listener", files, TLS_FILES_MAX, changed_cb, ts);
}
