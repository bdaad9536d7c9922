/* Client-certificate identity: the verified leaf's names and the X.509-SVID leaf rules. */
#include "certid.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/x509v3.h>

#include "ascii.h"
#include "tls_listener.h"

/*
 * Printable ASCII only: every kept name reaches the audit record unescaped,
 * so a hostile certificate cannot grow a record past its line limit.
 */
static bool printable(const unsigned char *p, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (p[i] < 0x20 || p[i] > 0x7e)
			return false;
	return true;
}

/*
 * Where to cut the first k bytes of an RFC 2253 name (as X509_NAME_print_ex
 * writes it: "\\XX" for a control or non-ASCII byte, "\\," for a special) so
 * that it ends neither inside an escape nor inside the UTF-8 sequence that
 * "\\XX" escapes spell.
 */
static size_t dn_cut(const char *s, size_t k)
{
	size_t i = 0, lead = 0, need = 0;
	while (i < k) {
		unsigned char v = (unsigned char)s[i];
		size_t u = 1;
		if (v == '\\') {
			if (i + 1 >= k)
				break;
			int hi = ascii_hex_value((unsigned char)s[i + 1]), lo;
			if (hi >= 0 && (i + 2 >= k || (lo = ascii_hex_value((unsigned char)s[i + 2])) < 0))
				break;
			v = hi >= 0 ? (unsigned char)(hi << 4 | lo) : (unsigned char)s[i + 1];
			u = hi >= 0 ? 3 : 2;
		}
		if ((v & 0xc0) != 0x80) {
			lead = i; /* a character starts: how many continuation bytes it needs */
			need = v >= 0xf0 ? 3 : v >= 0xe0 ? 2 : v >= 0xc0 ? 1 : 0;
		} else if (need > 0) {
			need--;
		}
		i += u;
	}
	return need > 0 ? lead : i;
}

static void name_text(const X509_NAME *n, char *out, size_t cap)
{
	out[0] = '\0';
	BIO *b = BIO_new(BIO_s_mem());
	if (b == NULL)
		return;
	/* RFC 2253 with control and non-ASCII bytes escaped as \\XX: printable, bounded by cap. */
	if (X509_NAME_print_ex(b, n, 0, XN_FLAG_RFC2253) >= 0) {
		int k = BIO_read(b, out, (int)cap - 1);
		size_t len = k > 0 ? (size_t)k : 0;
		if (BIO_pending(b) > 0)
			len = dn_cut(out, len); /* cut: between two characters */
		out[len] = '\0';
	}
	BIO_free(b);
}

static int64_t asn1_time(const ASN1_TIME *t)
{
	struct tm tm;
	if (t == NULL || ASN1_TIME_to_tm(t, &tm) != 1)
		return 0;
	return (int64_t)timegm(&tm);
}

static void serial_text(const X509 *x, char *out, size_t cap)
{
	out[0] = '\0';
	BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), NULL);
	char *hex = bn != NULL ? BN_bn2hex(bn) : NULL;
	if (hex != NULL)
		snprintf(out, cap, "%s", hex);
	OPENSSL_free(hex);
	BN_free(bn);
}

static void common_name(const X509 *x, char *out, size_t cap)
{
	out[0] = '\0';
	const X509_NAME *n = X509_get_subject_name(x);
	int i = -1, last = -1;
	while ((i = X509_NAME_get_index_by_NID(n, NID_commonName, i)) >= 0)
		last = i;
	if (last < 0)
		return;
	const ASN1_STRING *s = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(n, last));
	int len = ASN1_STRING_length(s);
	/* A CN with a NUL, a control byte or longer than the field names nothing. */
	if (len <= 0 || (size_t)len >= cap || !printable(ASN1_STRING_get0_data(s), (size_t)len))
		return;
	memcpy(out, ASN1_STRING_get0_data(s), (size_t)len);
	out[len] = '\0';
}

/* A SAN's text, or false when it is not printable or does not fit (then it names nothing). */
static bool ia5_text(const ASN1_IA5STRING *s, char *out, size_t cap)
{
	int len = ASN1_STRING_length(s);
	const unsigned char *p = ASN1_STRING_get0_data(s);
	if (len <= 0 || (size_t)len >= cap || !printable(p, (size_t)len))
		return false;
	memcpy(out, p, (size_t)len);
	out[len] = '\0';
	return true;
}

/*
 * The alternative names: kept for the record and the rules; the SPIFFE ID if
 * there is exactly one URI SAN and it is spiffe://.  R_ALLOWED or why not.
 */
static enum reason read_sans(const X509 *x, struct cert_scratch *ci)
{
	GENERAL_NAMES *gens = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
	int n_uri = 0;
	bool bad_spiffe = false;
	size_t kept = 0;
	for (int i = 0; gens != NULL && i < sk_GENERAL_NAME_num(gens); i++) {
		const GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, i);
		char tmp[SPIFFE_ID_MAX + 1];
		bool ok = false;
		bool dns = g->type == GEN_DNS;
		if (dns) {
			ok = ia5_text(g->d.dNSName, tmp, 254); /* RFC 1035: a name is at most 253 */
		} else if (g->type == GEN_URI) {
			n_uri++;
			ok = ia5_text(g->d.uniformResourceIdentifier, tmp, sizeof(tmp));
			struct spiffe_id sid;
			if (ok && strncmp(tmp, "spiffe://", 9) == 0) {
				if (spiffe_id_parse(tmp, strlen(tmp), &sid) == SPIFFE_OK)
					memcpy(ci->spiffe, tmp, strlen(tmp) + 1);
				else
					bad_spiffe = true;
			} else if (!ok) {
				bad_spiffe = true; /* a URI SAN with a NUL, or over 2048 bytes */
			}
		} else if (g->type == GEN_IPADD) {
			int len = ASN1_STRING_length(g->d.iPAddress);
			const unsigned char *b = ASN1_STRING_get0_data(g->d.iPAddress);
			struct pc_addr a = {.family = len == 4 ? ADDR_V4 : ADDR_V6};
			if (len == 4 || len == 16) {
				memcpy(a.b, b, (size_t)len);
				ok = addr_format(&a, tmp, sizeof(tmp)) > 0;
			}
		}
		size_t len = ok ? strlen(tmp) : 0;
		if (ok && ci->n_sans < CERTID_MAX_SANS && kept + len <= CERTID_SANS_BYTES) {
			kept += len;
			ci->san_dns[ci->n_sans] = dns;
			memcpy(ci->sans[ci->n_sans++], tmp, len + 1);
		}
	}
	GENERAL_NAMES_free(gens);
	/* X.509-SVID §2: exactly one URI SAN; a certificate with several is refused. */
	if (n_uri > 1 || bad_spiffe) {
		ci->spiffe[0] = '\0';
		return R_CLIENT_CERT_INVALID;
	}
	return R_ALLOWED;
}

/* X.509-SVID §4.3: a leaf is no CA, signs (digitalSignature) and never certificates or CRLs. */
static bool svid_leaf_ok(X509 *x)
{
	if (X509_check_ca(x) != 0)
		return false;
	if (!(X509_get_extension_flags(x) & EXFLAG_KUSAGE))
		return false;
	uint32_t ku = X509_get_key_usage(x);
	return (ku & KU_DIGITAL_SIGNATURE) && !(ku & (KU_KEY_CERT_SIGN | KU_CRL_SIGN));
}

static enum reason verify_reason(long err)
{
	switch (err) {
	case X509_V_OK:
		return R_ALLOWED;
	case X509_V_ERR_CERT_HAS_EXPIRED:
	case X509_V_ERR_CERT_NOT_YET_VALID:
		return R_CLIENT_CERT_EXPIRED;
	case X509_V_ERR_CERT_REVOKED:
		return R_CLIENT_CERT_REVOKED;
	default:
		return R_CLIENT_CERT_UNTRUSTED;
	}
}

void certid_from_x509(X509 *x, long verify_err, struct cert_scratch *ci)
{
	memset(ci, 0, sizeof(*ci));
	ci->present = true;
	name_text(X509_get_subject_name(x), ci->subject, sizeof(ci->subject));
	name_text(X509_get_issuer_name(x), ci->issuer, sizeof(ci->issuer));
	serial_text(x, ci->serial, sizeof(ci->serial));
	common_name(x, ci->cn, sizeof(ci->cn));
	ci->not_before = asn1_time(X509_get0_notBefore(x));
	ci->not_after = asn1_time(X509_get0_notAfter(x));
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned mdlen = 0;
	if (X509_digest(x, EVP_sha256(), md, &mdlen) == 1)
		for (unsigned i = 0; i < mdlen && i < 32; i++)
			snprintf(ci->sha256 + 2 * i, 3, "%02x", md[i]);
	ci->refusal = verify_reason(verify_err);
	enum reason sans = read_sans(x, ci);
	if (ci->refusal == R_ALLOWED)
		ci->refusal = sans;
	if (ci->refusal == R_ALLOWED && ci->spiffe[0] != '\0' && !svid_leaf_ok(x))
		ci->refusal = R_CLIENT_CERT_INVALID;
	/* A refused certificate names no identity (source.user.id): anyone can claim one in it.
	 * Its alternative names still show what it claimed. */
	if (ci->refusal != R_ALLOWED)
		ci->spiffe[0] = '\0';
	ERR_clear_error();
}

/* Copy s to *at (advancing it); returns the copy. */
static const char *keep(char **at, const char *s)
{
	size_t n = strlen(s) + 1;
	memcpy(*at, s, n);
	const char *r = *at;
	*at += n;
	return r;
}

/* The connection's compact copy of what sc says.  NULL: out of memory. */
static struct cert_identity *compact(const struct cert_scratch *sc)
{
	const char *strs[] = {sc->subject, sc->issuer, sc->serial, sc->cn, sc->sha256, sc->spiffe};
	size_t need = 0;
	for (size_t i = 0; i < sizeof(strs) / sizeof(strs[0]); i++)
		need += strlen(strs[i]) + 1;
	for (size_t i = 0; i < sc->n_sans; i++)
		need += strlen(sc->sans[i]) + 1;
	struct cert_identity *ci = calloc(1, sizeof(*ci) + need);
	if (ci == NULL)
		return NULL;
	char *at = ci->text;
	ci->present = sc->present;
	ci->refusal = sc->refusal;
	ci->not_before = sc->not_before;
	ci->not_after = sc->not_after;
	ci->subject = keep(&at, sc->subject);
	ci->issuer = keep(&at, sc->issuer);
	ci->serial = keep(&at, sc->serial);
	ci->cn = keep(&at, sc->cn);
	ci->sha256 = keep(&at, sc->sha256);
	ci->spiffe = keep(&at, sc->spiffe);
	for (size_t i = 0; i < sc->n_sans; i++) {
		ci->sans[ci->n_sans++] = keep(&at, sc->sans[i]);
		if (sc->san_dns[i])
			ci->dns[ci->id.n_dns++] = ci->sans[i];
	}
	ci->id.dns = ci->dns;
	ci->id.spiffe = ci->spiffe[0] ? ci->spiffe : NULL;
	ci->id.cn = ci->cn[0] ? ci->cn : NULL;
	return ci;
}

struct cert_identity *certid_read(SSL *ssl, bool *nomem)
{
	*nomem = false;
	enum tls_client_certs mode = tls_listener_mode_of(ssl);
	if (mode == TLS_CLIENT_CERTS_OFF)
		return NULL;
	/* Worker threads have the default stack; this is read once per connection. */
	static _Thread_local struct cert_scratch sc;
	X509 *x = SSL_get1_peer_certificate(ssl);
	if (x == NULL) {
		memset(&sc, 0, sizeof(sc));
		sc.refusal = mode == TLS_CLIENT_CERTS_REQUIRE ? R_CLIENT_CERT_REQUIRED : R_ALLOWED;
	} else {
		certid_from_x509(x, tls_listener_verify_error(ssl), &sc);
		X509_free(x);
	}
	struct cert_identity *ci = compact(&sc);
	*nomem = ci == NULL;
	return ci;
}

void certid_free(struct cert_identity *ci)
{
	free(ci);
}
