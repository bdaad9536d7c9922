/* TLS ClientHello parser: resumable, I/O-free, strict, with limits (RFC 8446, 6066, 7301). */
#ifndef PORTCULLIS_TLS_HELLO_H
#define PORTCULLIS_TLS_HELLO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A non-owning view; in struct tls_hello it points into the caller's scratch. */
struct tls_view {
	const uint8_t *p;
	size_t len;
};

#define TLS_MAX_ALPN     16
#define TLS_MAX_VERSIONS 16

/* Default and hard ceiling of tls_limits.max_hello_bytes. */
#define TLS_HELLO_DEFAULT_MAX 16384
#define TLS_HELLO_HARD_MAX    (1u << 20)

struct tls_limits {
	/*
	 * Most bytes of the stream the caller has to hold: the TLS records
	 * (5-byte headers included) that carry the ClientHello.  Default
	 * 16384; clamped to TLS_HELLO_HARD_MAX.  Also an upper bound on the
	 * handshake message, which needs 4 + body <= max_hello_bytes - 5.
	 */
	size_t max_hello_bytes;
};

struct tls_hello {
	uint16_t record_version; /* TLSPlaintext.legacy_record_version of the first record */
	uint16_t legacy_version; /* ClientHello.legacy_version */
	bool has_sni;            /* a server_name extension was present (then it is valid) */
	struct tls_view sni;     /* its one host_name, raw bytes (0x21..0x7e), 1..255 long;
	                          * trailing dot / case / IP literal are the caller's to judge */
	size_t n_alpn;           /* protocols stored in alpn[]: the first TLS_MAX_ALPN */
	struct tls_view alpn[TLS_MAX_ALPN]; /* each 1..255 bytes, raw (GREASE included) */
	size_t n_alpn_total; /* protocols in the ALPN list; > n_alpn when truncated */
	size_t n_versions;   /* entries stored in versions[]: the first TLS_MAX_VERSIONS */
	uint16_t versions[TLS_MAX_VERSIONS]; /* supported_versions in wire order, GREASE
	                                      * values kept (test with tls_is_grease) */
	size_t n_versions_total;             /* entries in supported_versions; 0 when absent */
	bool has_alpn;                       /* an ALPN extension was present */
	bool has_versions;                   /* a supported_versions extension was present */
	bool has_early_data; /* early_data (RFC 8446 §4.2.10): 0-RTT data may follow the hello */
	bool has_ech;        /* encrypted_client_hello 0xfe0d (draft-ietf-tls-esni) */
	bool has_esni;       /* legacy draft ESNI 0xffce */
	size_t n_extensions; /* extensions in the hello, GREASE included */
	/* Raw views for fingerprinting (ja4.h); each list is already validated. */
	struct tls_view ciphers;    /* cipher_suites: 2 bytes each, wire order, GREASE kept */
	struct tls_view extensions; /* the extensions block: (type, length, data)..., wire order */
	bool has_sig_algs;          /* a signature_algorithms extension was present */
	struct tls_view sig_algs;   /* its SignatureScheme list: 2 bytes each, wire order */
	size_t msg_len;      /* handshake message bytes in scratch (4-byte header included) */
	size_t consumed;     /* bytes of the records that carried the hello == return value */
};

enum tls_status {
	TLS_NEED_MORE = 0,      /* a prefix of a possibly valid hello; call again with more */
	TLS_ERR_NOT_TLS = -1,   /* first record header is not TLS handshake (decided per byte) */
	TLS_ERR_MALFORMED = -2, /* violates the record layer or ClientHello grammar */
	TLS_ERR_TOO_LARGE = -3, /* the records would exceed max_hello_bytes (or scratch) */
	TLS_ERR_NOT_HELLO = -4, /* TLS, but the first handshake message is not client_hello */
	TLS_ERR_BAD_SNI = -5,   /* server_name is not exactly one acceptable host_name */
};

void tls_limits_default(struct tls_limits *l);

/*
 * Parse the ClientHello at the start of the byte stream buf[0..len).
 *
 * Returns the number of stream bytes taken by the complete records that
 * carried the hello (> 0, also in out->consumed), TLS_NEED_MORE when buf is
 * a proper prefix of something that could still be accepted within the
 * limits, or a negative tls_status.  Stateless: call again with the longer
 * buffer as bytes arrive (each call rescans from the start, O(len)).
 *
 * The handshake message is reassembled into scratch[0..scratch_len), which
 * the caller provides (max_hello_bytes is always enough) and which must not
 * overlap buf; every view in out points into scratch and stays valid while
 * scratch is left alone.  A
 * message that does not fit scratch gives TLS_ERR_TOO_LARGE; a NULL scratch
 * counts as scratch_len 0.
 *
 * Consistency: once a prefix of a stream gets an answer other than
 * TLS_NEED_MORE, every longer prefix gets the same answer.  Bytes after the
 * hello's last record are never read, nor bytes past max_hello_bytes.  out
 * is zeroed at the start of each call and left zeroed unless the result is
 * > 0.  lim == NULL means tls_limits_default.  A NULL out, or a NULL buf
 * with len > 0, gives TLS_ERR_MALFORMED.
 *
 * Refused, among others: an SSLv2-compatible hello (first byte has bit 7
 * set, RFC 8446 Appendix D.5 lets servers refuse it), records that are not
 * handshake between the first byte and the end of the hello, bytes after
 * the hello inside its last record, duplicate extensions, and more than one
 * server_name entry.  GREASE values (RFC 8701) are legal everywhere.
 */
int tls_hello_parse(const uint8_t *buf, size_t len, const struct tls_limits *lim, uint8_t *scratch,
                    size_t scratch_len, struct tls_hello *out) __attribute__((warn_unused_result));

/*
 * What a TLS 1.3 client may send between its first ClientHello and the
 * second one a HelloRetryRequest asks for (RFC 8446 Appendix D.4): at most
 * one change_cipher_spec record, exactly the byte 0x01 (§5), and, when the
 * first hello offered early data (early_data), application_data records
 * (0-RTT data the server skips after a retry, §4.2.10).  Walks those records
 * at the start of buf[0..len); returns 1 with *off at the first byte of the
 * first other record (at least that byte present), TLS_NEED_MORE, or
 * TLS_ERR_MALFORMED (a second or bad change_cipher_spec, early data not
 * offered) / TLS_ERR_TOO_LARGE (more than max bytes before the next record).
 * Stateless and split-invariant like tls_hello_parse.
 */
int tls_skip_interlude(const uint8_t *buf, size_t len, bool early_data, size_t max, size_t *off)
	__attribute__((warn_unused_result));

/*
 * When is a growing ClientHello worth (re)parsing?  tls_hello_parse rescans
 * from the start, so a hello dripped one byte per read (or cut into
 * one-byte records) would cost a parse per byte.  The records are walked
 * once instead, and the answer is "parse" when the hello can be complete
 * (its complete records carry the whole handshake message), while the first
 * record header is incomplete (NOT_TLS is decided at the first bytes), past
 * the limit (len > max), at a record that is not a handshake one, or when
 * the bytes doubled since the last parse (a malformed hello is refused
 * early).  Over a hello's whole arrival the walk is linear (work counts its
 * steps) and "parse" comes O(log len) times.  Zero the watch per hello.
 */
struct tls_hello_watch {
	size_t rec_end; /* end of the last complete record */
	size_t payload; /* handshake bytes in the complete records */
	uint8_t hs[4];  /* the handshake header: type and 24-bit length */
	size_t parsed;  /* len at the last "parse" answer */
	size_t work;    /* walk steps so far (for tests) */
};

bool tls_hello_worth_parsing(struct tls_hello_watch *w, const uint8_t *buf, size_t len, size_t max);

/*
 * Stable snake_case name of a return value of tls_hello_parse, e.g.
 * "bad_sni"; "complete" for any value > 0, "unknown" for anything else.
 */
const char *tls_status_str(int status);

/* Is v a GREASE value 0x?A?A with equal bytes (RFC 8701 §2)? */
bool tls_is_grease(uint16_t v);

#endif
