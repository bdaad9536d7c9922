/* Client-certificate identity: what the verified leaf says of its holder, and whether it may. */
#ifndef PORTCULLIS_CERTID_H
#define PORTCULLIS_CERTID_H

#include <stdbool.h>
#include <stdint.h>

#include <openssl/ssl.h>

#include "policy.h"
#include "reason.h"
#include "spiffe.h"

/*
 * Alternative names kept for the record and the rules (more are not kept):
 * at most 16, of at most 4 KiB together, so that a record with every
 * certificate field (the SPIFFE ID twice, the names, two DNs) stays well
 * within the audit writer's 16 KiB line.
 */
#define CERTID_MAX_SANS   16
#define CERTID_SANS_BYTES 4096

/*
 * What the certificate says, in fixed buffers while it is read (about 7 KiB,
 * on the stack); certid_read keeps a compact copy for the connection.
 */
struct cert_scratch {
	bool present;        /* the client sent a certificate */
	enum reason refusal; /* R_ALLOWED, or client_cert_* */
	char subject[256];   /* RFC 2253 distinguished names (cut at 255 bytes) */
	char issuer[256];
	char serial[96];                               /* hex */
	char cn[72];                                   /* the subject's last CN, "" when none */
	char sha256[65];                               /* of the leaf's DER, hex */
	int64_t not_before, not_after;                 /* unix seconds */
	char spiffe[SPIFFE_ID_MAX + 1];                /* the one SPIFFE ID, "" when none */
	char sans[CERTID_MAX_SANS][SPIFFE_ID_MAX + 1]; /* every kept SAN as text (DNS, URI, IP) */
	size_t n_sans;
	bool san_dns[CERTID_MAX_SANS]; /* which of them are DNS names */
};

/*
 * One connection's client certificate (a TLS listener with client_certs on),
 * read once after the handshake and kept until the close (for the records):
 * the strings in one allocation, a few hundred bytes for a usual certificate.
 * refusal is R_ALLOWED when the certificate (or its absence, with
 * client_certs: request) lets identification go on.  Strings are never NULL.
 */
struct cert_identity {
	bool present;
	enum reason refusal;
	int64_t not_before, not_after;
	const char *subject, *issuer, *serial, *cn, *sha256;
	const char *spiffe; /* "" unless the certificate passed and holds one */
	const char *sans[CERTID_MAX_SANS];
	size_t n_sans;
	const char *dns[CERTID_MAX_SANS];
	struct policy_cert_id id; /* for policy_identify_cert (points into this) */
	char text[];
};

/*
 * Read the client certificate of a completed handshake on a TLS listener.
 * NULL when the listener asks for none (client_certs: off) or out of memory
 * (*nomem true).  Refusals, in order: required and absent; the chain did not
 * verify against client_ca (expired or not yet valid, revoked by the CRL,
 * anything else: untrusted); the leaf breaks the X.509-SVID rules (more
 * than one URI SAN, a spiffe:// URI that is no valid SPIFFE ID, a CA
 * certificate, key usage without digitalSignature or with keyCertSign or
 * cRLSign).
 */
struct cert_identity *certid_read(SSL *ssl, bool *nomem);
/* Read a certificate in hand whose chain verified with verify_err (X509_V_OK: it did). */
void certid_from_x509(X509 *x, long verify_err, struct cert_scratch *sc);
void certid_free(struct cert_identity *ci);

#endif
