/* TLS interception: the CA generation (leaves, contexts), swapped on reload and watched. */
#include "intercept.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "fileio.h"
#include "leafcache.h"
#include "oplog.h"
#include "tls_client.h"
#include "tls_files.h"
#include "tls_listener.h"

/* A leaf is valid from a little before it is minted: a client's clock may run behind ours. */
#define LEAF_BACKDATE_S 300
/* A subject CN holds at most 64 bytes (RFC 5280 ub-common-name); a longer host gets none. */
#define CN_MAX 64
#define NFILES 3

/*
 * One CA generation: everything built from one reading of the files.  A
 * reload builds a new one and swaps it in; a caller holds a reference while
 * it mints, and each SSL holds references of its own to what it uses.
 */
struct gen {
	atomic_int refs;
	X509 *ca_cert;
	EVP_PKEY *ca_key;
	EVP_PKEY *leaf_key;            /* P-256, shared by every leaf of the generation */
	struct stack_st_X509 *chain;   /* STACK_OF(X509): the CA certificate, sent after the leaf */
	ASN1_OCTET_STRING *leaf_keyid; /* subjectKeyIdentifier of every leaf */
	ASN1_OCTET_STRING *ca_keyid;   /* authorityKeyIdentifier of every leaf */
	int64_t ca_not_after;
	SSL_CTX *server_ctx, *client_ctx;
	struct leafcache *cache;
};

struct icpt_ca {
	char *files[NFILES]; /* the CA certificate, its key, the upstream bundle (or NULL) */
	uint32_t lifetime_s, cache_size;
	pthread_rwlock_t lock; /* guards gen and files_sha: a reload swaps them */
	struct gen *gen;
	char files_sha[65];
	atomic_ullong minted, cache_hits, reloads_ok, reloads_failed;
	struct tls_watch *watch;
};

/* What a server-side SSL needs in its callbacks, and what they found (ex_data, freed with it). */
struct srv {
	char host[256]; /* the name SNI must match, or the address's text */
	bool require_sni, is_ip;
	int sni;   /* enum icpt_sni */
	int alert; /* the first fatal alert the client sent, -1 none */
};

static int srv_idx = -1;
static pthread_once_t srv_once = PTHREAD_ONCE_INIT;

static void srv_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl, void *argp)
{
	free(ptr);
}

static void srv_init(void)
{
	srv_idx = SSL_get_ex_new_index(0, NULL, NULL, NULL, srv_free);
}

static const struct srv *srv_of(const SSL *ssl)
{
	return srv_idx >= 0 ? SSL_get_ex_data(ssl, srv_idx) : NULL;
}

/* ---- the generation ---- */

static void gen_unref(struct gen *g)
{
	if (g == NULL || atomic_fetch_sub(&g->refs, 1) != 1)
		return;
	leafcache_destroy(g->cache);
	SSL_CTX_free(g->server_ctx);
	SSL_CTX_free(g->client_ctx);
	ASN1_OCTET_STRING_free(g->leaf_keyid);
	ASN1_OCTET_STRING_free(g->ca_keyid);
	sk_X509_pop_free(g->chain, X509_free);
	EVP_PKEY_free(g->leaf_key);
	EVP_PKEY_free(g->ca_key);
	X509_free(g->ca_cert);
	free(g);
}

static struct gen *gen_current(struct icpt_ca *ca)
{
	pthread_rwlock_rdlock(&ca->lock);
	struct gen *g = ca->gen;
	atomic_fetch_add(&g->refs, 1);
	pthread_rwlock_unlock(&ca->lock);
	return g;
}

/* A key is never asked a passphrase for (no terminal): an encrypted one fails to load. */
static int no_passphrase(char *buf, int size, int rwflag, void *u)
{
	return 0;
}

/* The first PEM object of path: a certificate (key false) or a private key. */
static void *read_pem(const char *path, bool key, char *err, size_t errlen)
{
	char *buf;
	size_t len;
	if (file_read_all(path, TLS_FILE_MAX, &buf, &len) != FILEIO_OK) {
		snprintf(err, errlen, "%s: cannot read", path);
		return NULL;
	}
	void *obj = NULL;
	BIO *bio = BIO_new_mem_buf(buf, (int)len);
	if (bio != NULL)
		obj = key ? (void *)PEM_read_bio_PrivateKey(bio, NULL, no_passphrase, NULL)
		          : (void *)PEM_read_bio_X509(bio, NULL, no_passphrase, NULL);
	BIO_free(bio);
	OPENSSL_cleanse(buf, len);
	free(buf);
	if (obj == NULL) {
		char e[200];
		tls_err_text(e, sizeof(e));
		snprintf(err, errlen, "%s: no PEM %s (%s)", path,
		         key ? "private key" : "certificate", e);
	}
	return obj;
}

static int64_t time_of(const ASN1_TIME *t)
{
	struct tm tm;
	if (t == NULL || ASN1_TIME_to_tm(t, &tm) != 1)
		return 0;
	return (int64_t)timegm(&tm);
}

/* RFC 5280 §4.2.1.2 method 1: SHA-1 of the subjectPublicKey bits. */
static ASN1_OCTET_STRING *key_id(EVP_PKEY *pkey)
{
	X509_PUBKEY *xpk = NULL;
	const unsigned char *bits;
	int nbits;
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen;
	ASN1_OCTET_STRING *id = NULL;
	if (X509_PUBKEY_set(&xpk, pkey) == 1 &&
	    X509_PUBKEY_get0_param(NULL, &bits, &nbits, NULL, xpk) == 1 &&
	    EVP_Digest(bits, (size_t)nbits, md, &mdlen, EVP_sha1(), NULL) == 1 &&
	    (id = ASN1_OCTET_STRING_new()) != NULL &&
	    ASN1_OCTET_STRING_set(id, md, (int)mdlen) != 1) {
		ASN1_OCTET_STRING_free(id);
		id = NULL;
	}
	X509_PUBKEY_free(xpk);
	return id;
}

/* The CA must be able to sign our leaves, and clients must accept what it signs. */
static int check_ca(X509 *cert, EVP_PKEY *key, char *err, size_t errlen)
{
	uint32_t flags = X509_get_extension_flags(cert);
	if (!(flags & EXFLAG_BCONS) || !(flags & EXFLAG_CA)) {
		snprintf(err, errlen, "the certificate is not a CA (no basicConstraints CA:TRUE)");
		return -1;
	}
	/* RFC 5280 §4.2.1.3: without the extension every use is allowed (UINT32_MAX here). */
	if (!(X509_get_key_usage(cert) & KU_KEY_CERT_SIGN)) {
		snprintf(err, errlen, "the CA's keyUsage lacks keyCertSign");
		return -1;
	}
	int type = EVP_PKEY_get_base_id(key);
	if (type != EVP_PKEY_RSA && type != EVP_PKEY_EC) {
		snprintf(err, errlen, "the CA key is neither RSA nor EC");
		return -1;
	}
	if (X509_check_private_key(cert, key) != 1) {
		ERR_clear_error();
		snprintf(err, errlen, "the key does not match the CA certificate");
		return -1;
	}
	if (X509_cmp_current_time(X509_get0_notAfter(cert)) <= 0) {
		snprintf(err, errlen, "the CA certificate has expired");
		return -1;
	}
	return 0;
}

/* A and b name the same host: ASCII case-insensitive, one trailing dot of either ignored. */
static bool same_host(const char *a, const char *b)
{
	size_t al = strlen(a), bl = strlen(b);
	if (al > 0 && a[al - 1] == '.')
		al--;
	if (bl > 0 && b[bl - 1] == '.')
		bl--;
	return al == bl && strncasecmp(a, b, al) == 0;
}

/* RFC 6066 §3: the client's server_name against the CONNECT host.  Runs with or without SNI. */
static int servername_cb(SSL *ssl, int *al, void *arg)
{
	struct srv *s = srv_idx >= 0 ? SSL_get_ex_data(ssl, srv_idx) : NULL;
	if (s == NULL)
		return SSL_TLSEXT_ERR_ALERT_FATAL;
	const char *sni = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
	if (sni == NULL)
		s->sni = s->require_sni && !s->is_ip ? ICPT_SNI_MISSING : ICPT_SNI_OK;
	else
		s->sni = same_host(sni, s->host) ? ICPT_SNI_OK : ICPT_SNI_MISMATCH;
	if (s->sni == ICPT_SNI_OK)
		return SSL_TLSEXT_ERR_OK;
	*al = SSL_AD_UNRECOGNIZED_NAME;
	return SSL_TLSEXT_ERR_ALERT_FATAL;
}

/* Keeps the first fatal alert the client sends (icpt_server_client_rejected). */
static void info_cb(const SSL *ssl, int where, int ret)
{
	if (!(where & SSL_CB_READ_ALERT) || (ret >> 8) != SSL3_AL_FATAL || srv_idx < 0)
		return;
	struct srv *s = SSL_get_ex_data(ssl, srv_idx);
	if (s != NULL && s->alert < 0)
		s->alert = ret & 0xff;
}

static SSL_CTX *server_ctx(char *err, size_t errlen)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
	if (ctx == NULL) {
		tls_err_text(err, errlen);
		return NULL;
	}
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION);
	/* As the TLS listener: a FIN without close_notify ends the stream like one. */
	SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE |
	                             SSL_OP_NO_COMPRESSION | SSL_OP_IGNORE_UNEXPECTED_EOF);
	SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	SSL_CTX_set_alpn_select_cb(ctx, tls_alpn_http11_cb, NULL);
	SSL_CTX_set_tlsext_servername_callback(ctx, servername_cb);
	SSL_CTX_set_info_callback(ctx, info_cb);
	/* Every connection is a full handshake: its SNI is checked, its leaf is the current one. */
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
	SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
	SSL_CTX_set_num_tickets(ctx, 0);
	return ctx;
}

static SSL_CTX *client_ctx(const char *ca_file, char *err, size_t errlen)
{
	SSL_CTX *ctx = tls_client_ctx_new(ca_file, err, errlen);
	if (ctx == NULL)
		return NULL;
	static const unsigned char h11[] = "\x08http/1.1";
	SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
	SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	if (SSL_CTX_set_alpn_protos(ctx, h11, sizeof(h11) - 1) != 0) { /* 0 is success here */
		tls_err_text(err, errlen);
		SSL_CTX_free(ctx);
		return NULL;
	}
	return ctx;
}

/* The material of a generation once the CA pair is loaded and checked. */
static int gen_fill(struct gen *g, const struct icpt_ca *ca, char *err, size_t errlen)
{
	g->ca_not_after = time_of(X509_get0_notAfter(g->ca_cert));
	g->leaf_key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	g->chain = sk_X509_new_null();
	if (g->leaf_key == NULL || g->chain == NULL || X509_up_ref(g->ca_cert) != 1)
		goto nomem;
	if (sk_X509_push(g->chain, g->ca_cert) <= 0) {
		X509_free(g->ca_cert);
		goto nomem;
	}
	g->leaf_keyid = key_id(g->leaf_key);
	const ASN1_OCTET_STRING *skid = X509_get0_subject_key_id(g->ca_cert);
	/* The AKI names the CA's own SKI when it has one, which is what path building matches. */
	g->ca_keyid =
	    skid != NULL ? ASN1_OCTET_STRING_dup(skid) : key_id(X509_get0_pubkey(g->ca_cert));
	g->cache = leafcache_create(ca->cache_size);
	if (g->leaf_keyid == NULL || g->ca_keyid == NULL || g->cache == NULL)
		goto nomem;
	char e[300];
	if ((g->server_ctx = server_ctx(e, sizeof(e))) == NULL) {
		snprintf(err, errlen, "server context: %s", e);
		return -1;
	}
	if ((g->client_ctx = client_ctx(ca->files[2], e, sizeof(e))) == NULL) {
		snprintf(err, errlen, "upstream context: %s", e);
		return -1;
	}
	return 0;
nomem:
	ERR_clear_error();
	snprintf(err, errlen, "out of memory (or no P-256 key)");
	return -1;
}

static X509 *mint(const struct gen *g, const char *host, const struct pc_addr *ip,
                  uint32_t lifetime_s, int64_t now, int64_t *refresh_at);

/*
 * Sign a leaf and put it on an SSL as a connection would: a CA that TLS would
 * refuse (a key too small for the security level, say) fails here, at
 * start-up or reload, not on every connection after.
 */
static int gen_selftest(const struct gen *g, uint32_t lifetime_s, char *err, size_t errlen)
{
	int64_t refresh_at;
	X509 *x = mint(g, "selftest.portcullis.invalid", NULL, lifetime_s, (int64_t)time(NULL),
	               &refresh_at);
	SSL *ssl = x != NULL ? SSL_new(g->server_ctx) : NULL;
	int rc =
	    ssl != NULL && SSL_use_cert_and_key(ssl, x, g->leaf_key, g->chain, 1) == 1 ? 0 : -1;
	if (rc != 0) {
		char e[200];
		tls_err_text(e, sizeof(e));
		snprintf(err, errlen, "a leaf it signs cannot be served: %s", e);
	}
	SSL_free(ssl);
	X509_free(x);
	return rc;
}

static struct gen *gen_build(const struct icpt_ca *ca, char *err, size_t errlen)
{
	struct gen *g = calloc(1, sizeof(*g));
	if (g == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	atomic_init(&g->refs, 1);
	char e[300];
	if ((g->ca_cert = read_pem(ca->files[0], false, err, errlen)) == NULL ||
	    (g->ca_key = read_pem(ca->files[1], true, err, errlen)) == NULL)
		goto fail;
	if (check_ca(g->ca_cert, g->ca_key, e, sizeof(e)) != 0) {
		snprintf(err, errlen, "%s (with %s): %s", ca->files[0], ca->files[1], e);
		goto fail;
	}
	if (gen_fill(g, ca, err, errlen) != 0)
		goto fail;
	if (gen_selftest(g, ca->lifetime_s, e, sizeof(e)) != 0) {
		snprintf(err, errlen, "%s: %s", ca->files[0], e);
		goto fail;
	}
	return g;
fail:
	gen_unref(g);
	return NULL;
}

/* ---- minting ---- */

/* Add one extension from its structure (X509V3_EXT_conf would parse the host as syntax). */
static bool add_ext(X509 *x, int nid, void *value, bool critical)
{
	return value != NULL && X509_add1_ext_i2d(x, nid, value, critical, X509V3_ADD_DEFAULT) == 1;
}

static bool add_leaf_exts(X509 *x, const struct gen *g, const char *host, const struct pc_addr *ip,
                          bool no_cn)
{
	BASIC_CONSTRAINTS *bc = BASIC_CONSTRAINTS_new(); /* CA:FALSE, the default */
	ASN1_BIT_STRING *ku = ASN1_BIT_STRING_new();
	EXTENDED_KEY_USAGE *eku = sk_ASN1_OBJECT_new_null();
	AUTHORITY_KEYID *akid = AUTHORITY_KEYID_new();
	GENERAL_NAMES *san = sk_GENERAL_NAME_new_null();
	GENERAL_NAME *gn = GENERAL_NAME_new();
	/* iPAddress: an OCTET STRING of 4 or 16 bytes; dNSName: an IA5String (same structure). */
	ASN1_STRING *v = ip != NULL ? ASN1_OCTET_STRING_new() : ASN1_IA5STRING_new();
	bool ok = false;
	if (ku == NULL || eku == NULL || akid == NULL || san == NULL || gn == NULL || v == NULL)
		goto out;
	if (ASN1_BIT_STRING_set_bit(ku, 0, 1) != 1 || /* digitalSignature */
	    sk_ASN1_OBJECT_push(eku, OBJ_nid2obj(NID_server_auth)) <= 0 ||
	    (akid->keyid = ASN1_OCTET_STRING_dup(g->ca_keyid)) == NULL)
		goto out;
	if (ip != NULL) {
		if (ASN1_STRING_set(v, ip->b, ip->family == ADDR_V4 ? 4 : 16) != 1)
			goto out;
		GENERAL_NAME_set0_value(gn, GEN_IPADD, v);
	} else {
		if (ASN1_STRING_set(v, host, (int)strlen(host)) != 1)
			goto out;
		GENERAL_NAME_set0_value(gn, GEN_DNS, v);
	}
	v = NULL;
	if (sk_GENERAL_NAME_push(san, gn) <= 0)
		goto out;
	gn = NULL;
	/* RFC 5280 §4.2.1.6: with an empty subject the subjectAltName is critical. */
	ok = add_ext(x, NID_basic_constraints, bc, true) && add_ext(x, NID_key_usage, ku, true) &&
	     add_ext(x, NID_ext_key_usage, eku, false) &&
	     add_ext(x, NID_subject_key_identifier, g->leaf_keyid, false) &&
	     add_ext(x, NID_authority_key_identifier, akid, false) &&
	     add_ext(x, NID_subject_alt_name, san, no_cn);
out:
	BASIC_CONSTRAINTS_free(bc);
	ASN1_BIT_STRING_free(ku);
	sk_ASN1_OBJECT_pop_free(eku, ASN1_OBJECT_free);
	AUTHORITY_KEYID_free(akid);
	GENERAL_NAMES_free(san);
	GENERAL_NAME_free(gn);
	ASN1_STRING_free(v);
	return ok;
}

/* A positive serial of 16 random bytes (RFC 5280 §4.1.2.2: at most 20 octets, positive). */
static bool set_serial(X509 *x)
{
	unsigned char b[16];
	if (RAND_bytes(b, sizeof(b)) != 1)
		return false;
	b[0] &= 0x7f;
	if (b[0] == 0)
		b[0] = 1; /* sixteen bytes in the DER too */
	BIGNUM *bn = BN_bin2bn(b, sizeof(b), NULL);
	bool ok = bn != NULL && BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)) != NULL;
	BN_free(bn);
	return ok;
}

/*
 * A leaf for host (name, or ip's address, whose text host is) signed by the
 * generation's CA, valid from now - LEAF_BACKDATE_S to min(now + lifetime,
 * the CA's notAfter).  *refresh_at: when it should be minted anew (halfway).
 */
static X509 *mint(const struct gen *g, const char *host, const struct pc_addr *ip,
                  uint32_t lifetime_s, int64_t now, int64_t *refresh_at)
{
	X509 *x = X509_new();
	if (x == NULL)
		return NULL;
	size_t hl = strlen(host);
	int64_t na = now + (int64_t)lifetime_s;
	bool clamped = na >= g->ca_not_after;
	if (clamped)
		na = g->ca_not_after;
	X509_NAME *subj = X509_get_subject_name(x);
	if (X509_set_version(x, X509_VERSION_3) != 1 || !set_serial(x) ||
	    X509_set_issuer_name(x, X509_get_subject_name(g->ca_cert)) != 1 ||
	    (hl <= CN_MAX &&
	     X509_NAME_add_entry_by_txt(subj, "CN", MBSTRING_ASC, (const unsigned char *)host,
	                                (int)hl, -1, 0) != 1) ||
	    ASN1_TIME_set(X509_getm_notBefore(x), (time_t)(now - LEAF_BACKDATE_S)) == NULL ||
	    ASN1_TIME_set(X509_getm_notAfter(x), (time_t)na) == NULL ||
	    X509_set_pubkey(x, g->leaf_key) != 1 || !add_leaf_exts(x, g, host, ip, hl > CN_MAX) ||
	    X509_sign(x, g->ca_key, EVP_sha256()) <= 0) {
		X509_free(x); /* the error queue is the caller's */
		return NULL;
	}
	/* A leaf cut short by the CA's notAfter is not renewed early: a new one would end alike. */
	*refresh_at = clamped ? na : now + (na - now) / 2;
	return x;
}

/*
 * The host as leaves and SNI name it: a name of letters, digits, '-', '_' and
 * '.' (lowercased, no trailing dot), or ip's canonical text.  -1: neither.
 */
static int leaf_name(const char *host, const struct pc_addr *ip, char out[256])
{
	if (ip != NULL) {
		addr_format(ip, out, 256);
		return 0;
	}
	size_t n = strlen(host);
	if (n > 0 && host[n - 1] == '.')
		n--;
	if (n == 0 || n > 253)
		return -1;
	for (size_t i = 0; i < n; i++) {
		char c = host[i];
		if (c >= 'A' && c <= 'Z')
			c = (char)(c - 'A' + 'a');
		else if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
		           c == '_' || c == '.'))
			return -1;
		out[i] = c;
	}
	out[n] = '\0';
	return 0;
}

/* The generation's leaf for name: the cached one while fresh, else a new one, cached. */
static X509 *leaf_for(struct icpt_ca *ca, struct gen *g, const char *name, const struct pc_addr *ip)
{
	char key[260];
	snprintf(key, sizeof(key), "%c%s", ip != NULL ? 'i' : 'd', name);
	int64_t now = (int64_t)time(NULL);
	X509 *leaf = leafcache_get(g->cache, key, now);
	if (leaf != NULL) {
		atomic_fetch_add(&ca->cache_hits, 1);
		return leaf;
	}
	int64_t refresh_at;
	leaf = mint(g, name, ip, ca->lifetime_s, now, &refresh_at);
	if (leaf == NULL)
		return NULL;
	atomic_fetch_add(&ca->minted, 1);
	if (leafcache_put(g->cache, key, leaf, refresh_at) != 0)
		oplog("warn", "interception: out of memory caching the leaf for %s", name);
	return leaf;
}

/* ---- the API ---- */

static char *dup_or_null(const char *s)
{
	return s != NULL ? strdup(s) : NULL;
}

static void files_sha(const struct icpt_ca *ca, char out[65])
{
	tls_files_sha((const char *const *)ca->files, NFILES, out);
}

struct icpt_ca *icpt_ca_create(const struct icpt_ca_conf *conf, char *err, size_t errlen)
{
	if (conf->ca_cert_file == NULL || conf->ca_key_file == NULL || conf->leaf_lifetime_s == 0 ||
	    conf->cache_size == 0) {
		snprintf(err, errlen,
		         "interception: a CA certificate, key, lifetime and cache size");
		return NULL;
	}
	struct icpt_ca *ca = calloc(1, sizeof(*ca));
	if (ca == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	pthread_once(&srv_once, srv_init);
	pthread_rwlock_init(&ca->lock, NULL);
	ca->lifetime_s = conf->leaf_lifetime_s;
	ca->cache_size = conf->cache_size;
	ca->files[0] = strdup(conf->ca_cert_file);
	ca->files[1] = strdup(conf->ca_key_file);
	ca->files[2] = dup_or_null(conf->upstream_ca_file);
	if (ca->files[0] == NULL || ca->files[1] == NULL ||
	    (conf->upstream_ca_file != NULL && ca->files[2] == NULL) || srv_idx < 0) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	char e[600];
	files_sha(ca, ca->files_sha);
	ca->gen = gen_build(ca, e, sizeof(e));
	if (ca->gen == NULL) {
		snprintf(err, errlen, "interception CA: %s", e);
		goto fail;
	}
	return ca;
fail:
	icpt_ca_destroy(ca);
	return NULL;
}

void icpt_ca_destroy(struct icpt_ca *ca)
{
	if (ca == NULL)
		return;
	tls_watch_destroy(ca->watch);
	gen_unref(ca->gen);
	pthread_rwlock_destroy(&ca->lock);
	for (int i = 0; i < NFILES; i++)
		free(ca->files[i]);
	free(ca);
}

int icpt_ca_reload(struct icpt_ca *ca, const char *why)
{
	char err[600];
	char sha[65];
	files_sha(ca, sha);
	struct gen *g = gen_build(ca, err, sizeof(err));
	if (g == NULL) {
		atomic_fetch_add(&ca->reloads_failed, 1);
		oplog("error", "interception CA reload (%s) failed: %s; the previous CA stays", why,
		      err);
		return -1;
	}
	pthread_rwlock_wrlock(&ca->lock);
	struct gen *old = ca->gen;
	ca->gen = g;
	memcpy(ca->files_sha, sha, sizeof(sha));
	pthread_rwlock_unlock(&ca->lock);
	gen_unref(old); /* minting callers and open connections hold their own references */
	atomic_fetch_add(&ca->reloads_ok, 1);
	oplog("info", "interception CA reloaded (%s): %s, not after %lld", why, ca->files[0],
	      (long long)g->ca_not_after);
	return 0;
}

static void changed_cb(void *arg)
{
	struct icpt_ca *ca = arg;
	char sha[65];
	files_sha(ca, sha);
	pthread_rwlock_rdlock(&ca->lock);
	bool same = sha[0] != '\0' && strcmp(sha, ca->files_sha) == 0;
	pthread_rwlock_unlock(&ca->lock);
	if (!same)
		(void)icpt_ca_reload(ca, "file change");
}

void icpt_ca_watch(struct icpt_ca *ca, struct event_base *base)
{
	ca->watch = tls_watch_create(base, "interception CA", (const char *const *)ca->files,
	                             NFILES, changed_cb, ca);
}

SSL *icpt_server_ssl(struct icpt_ca *ca, const char *host, const struct pc_addr *ip,
                     bool require_sni, char *why, size_t whylen)
{
	struct srv *s = calloc(1, sizeof(*s));
	if (s == NULL) {
		snprintf(why, whylen, "out of memory");
		return NULL;
	}
	if (leaf_name(host, ip, s->host) != 0) {
		snprintf(why, whylen, "no certificate can name host %.64s", host);
		free(s);
		return NULL;
	}
	s->require_sni = require_sni;
	s->is_ip = ip != NULL;
	s->alert = -1;
	struct gen *g = gen_current(ca);
	SSL *ssl = NULL;
	X509 *leaf = leaf_for(ca, g, s->host, ip);
	if (leaf == NULL) {
		snprintf(why, whylen, "cannot mint a certificate for %s", s->host);
		goto fail;
	}
	ssl = SSL_new(g->server_ctx);
	if (ssl == NULL || SSL_use_cert_and_key(ssl, leaf, g->leaf_key, g->chain, 1) != 1 ||
	    SSL_set_ex_data(ssl, srv_idx, s) != 1) {
		snprintf(why, whylen, "TLS setup failed");
		goto fail;
	}
	s = NULL; /* the SSL's now */
	SSL_set_accept_state(ssl);
	X509_free(leaf);
	gen_unref(g);
	return ssl;
fail:
	ERR_clear_error();
	SSL_free(ssl);
	X509_free(leaf);
	gen_unref(g);
	free(s);
	return NULL;
}

int icpt_server_sni_result(const SSL *ssl)
{
	const struct srv *s = srv_of(ssl);
	return s != NULL ? s->sni : ICPT_SNI_OK;
}

bool icpt_server_client_rejected(const SSL *ssl, char *alert, size_t alertlen)
{
	const struct srv *s = srv_of(ssl);
	int a = s != NULL ? s->alert : -1;
	if (alertlen > 0)
		snprintf(alert, alertlen, "%s", a >= 0 ? SSL_alert_desc_string_long(a) : "");
	switch (a) {
	case SSL_AD_BAD_CERTIFICATE:
	case SSL_AD_UNSUPPORTED_CERTIFICATE:
	case SSL_AD_CERTIFICATE_REVOKED:
	case SSL_AD_CERTIFICATE_EXPIRED:
	case SSL_AD_CERTIFICATE_UNKNOWN:
	case SSL_AD_UNKNOWN_CA:
	case SSL_AD_ACCESS_DENIED:
	case SSL_AD_DECRYPT_ERROR: /* our signature refused: a pinned key, or a broken client */
		return true;
	default:
		return false;
	}
}

SSL *icpt_client_ssl(struct icpt_ca *ca, const char *host, const struct pc_addr *ip, char *why,
                     size_t whylen)
{
	struct gen *g = gen_current(ca);
	SSL *ssl = SSL_new(g->client_ctx);
	gen_unref(g); /* the SSL holds its own reference to the context */
	if (ssl == NULL || tls_client_expect_name(ssl, host, ip) != 0) {
		SSL_free(ssl);
		ERR_clear_error();
		snprintf(why, whylen, "TLS setup failed");
		return NULL;
	}
	SSL_set_connect_state(ssl);
	return ssl;
}

bool icpt_client_verify_failed(const SSL *ssl, char *why, size_t whylen)
{
	long v = SSL_get_verify_result(ssl);
	if (v == X509_V_OK)
		return false;
	if (whylen > 0)
		snprintf(why, whylen, "%s", X509_verify_cert_error_string(v));
	return true;
}

void icpt_ca_get_stats(struct icpt_ca *ca, struct icpt_stats *out)
{
	struct gen *g = gen_current(ca);
	out->minted = atomic_load(&ca->minted);
	out->cache_hits = atomic_load(&ca->cache_hits);
	out->reloads_ok = atomic_load(&ca->reloads_ok);
	out->reloads_failed = atomic_load(&ca->reloads_failed);
	out->ca_not_after = g->ca_not_after;
	out->cached = leafcache_count(g->cache);
	gen_unref(g);
}
