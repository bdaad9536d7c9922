/* TLS ClientHello parser: resumable, I/O-free, strict, with limits (RFC 8446, 6066, 7301). */
#include "tls_hello.h"

#include <limits.h>
#include <string.h>

/*
 * How it works.  The stream is a sequence of TLSPlaintext records (RFC 8446
 * §5.1); the ClientHello is one handshake message (§4) that may be split
 * over several of them.  Each call walks the records from the start of buf,
 * copying handshake bytes into the caller's scratch, and decides at the
 * first byte that settles the question:
 *
 *   - bytes 0..2 (one at a time): content type and record version of the
 *     first record, else NOT_TLS;
 *   - each record header: type handshake (else MALFORMED: §5.1 forbids
 *     interleaving other types inside a handshake message), version, length
 *     1..2^14 (§5.1), and its end within max_hello_bytes (else TOO_LARGE);
 *   - handshake byte 0: msg_type client_hello (else NOT_HELLO);
 *   - handshake bytes 1..3: the length, then TOO_LARGE if the message cannot
 *     fit, and MALFORMED whenever the record in hand runs past the end of
 *     the message (nothing may hide behind the hello in its last record);
 *   - the complete message: the ClientHello grammar, strictly.
 *
 * Every decision depends only on bytes before the point where it is made,
 * and the walk stops there, so a longer buffer never changes an answer a
 * shorter one gave.  Nothing at or past min(len, max_hello_bytes) is read;
 * needing such a byte is TOO_LARGE when len has reached the limit, else
 * NEED_MORE.  Each call is O(min(len, max_hello_bytes)).
 */

#define REC_HDR  5     /* ContentType + ProtocolVersion + uint16 length (RFC 8446 §5.1) */
#define REC_MAX  16384 /* "The length MUST NOT exceed 2^14 bytes" (RFC 8446 §5.1) */
#define HS_HDR   4     /* HandshakeType + uint24 length (RFC 8446 §4) */
#define RANDOM   32    /* Random random (RFC 8446 §4.1.2) */
#define SID_MAX  32    /* opaque legacy_session_id<0..32> (RFC 8446 §4.1.2) */
#define NAME_MAX 255   /* longest server_name host_name accepted */

enum {
	CT_HANDSHAKE = 22,   /* ContentType handshake (RFC 8446 §5.1) */
	HS_CLIENT_HELLO = 1, /* HandshakeType client_hello (RFC 8446 §4) */
	SNI_HOST_NAME = 0,   /* NameType host_name (RFC 6066 §3) */
	EXT_SERVER_NAME = 0, /* RFC 6066 §3 */
	EXT_SIG_ALGS = 13,   /* signature_algorithms, RFC 8446 §4.2.3 */
	EXT_ALPN = 16,       /* RFC 7301 §3.1 */
	EXT_PSK = 41,        /* pre_shared_key, RFC 8446 §4.2.11 */
	EXT_EARLY_DATA = 42, /* early_data, RFC 8446 §4.2.10 */
	CT_CCS = 20,         /* ContentType change_cipher_spec (RFC 8446 §5.1) */
	CT_APP_DATA = 23,    /* ContentType application_data */
	EXT_VERSIONS = 43,   /* supported_versions, RFC 8446 §4.2.1 */
	EXT_ECH = 0xfe0d,    /* encrypted_client_hello, draft-ietf-tls-esni */
	EXT_ESNI = 0xffce,   /* encrypted_server_name, draft-ietf-tls-esni-02..06 */
};

void tls_limits_default(struct tls_limits *l)
{
	l->max_hello_bytes = TLS_HELLO_DEFAULT_MAX;
}

bool tls_is_grease(uint16_t v)
{
	return (v & 0x0f0f) == 0x0a0a && (v >> 8) == (v & 0xff);
}

/*
 * A TLS ProtocolVersion from TLS 1.0 (0x0301) to TLS 1.3 (0x0304).  RFC
 * 8446 §5.1 fixes legacy_record_version at 0x0303 (0x0301 allowed in an
 * initial ClientHello); older clients sent their own version.  SSL 3.0 and
 * anything else is refused.
 */
static bool version_ok(uint8_t major, uint8_t minor)
{
	return major == 3 && minor >= 1 && minor <= 4;
}

/* ---- record layer (RFC 8446 §5.1) ---------------------------------------- */

/*
 * The first bytes of the stream, one at a time, so that an SSH banner, an
 * HTTP request or an SSLv2-compatible hello (first byte >= 0x80, RFC 8446
 * Appendix D.5, which we decline to accept) is refused at its first byte.
 */
static int sniff(const uint8_t *buf, size_t len)
{
	if (len >= 1 && buf[0] != CT_HANDSHAKE)
		return TLS_ERR_NOT_TLS;
	if (len >= 2 && buf[1] != 3)
		return TLS_ERR_NOT_TLS;
	if (len >= 3 && !version_ok(buf[1], buf[2]))
		return TLS_ERR_NOT_TLS;
	return 0;
}

/* One complete record header h[0..5).  The first record was sniffed already. */
static int record_header(const uint8_t *h, size_t *rlen)
{
	/* §5.1: "Handshake messages MUST NOT be interleaved with other record
	 * types": until the hello is complete every record is a handshake one. */
	if (h[0] != CT_HANDSHAKE || !version_ok(h[1], h[2]))
		return TLS_ERR_MALFORMED;
	*rlen = (size_t)h[3] << 8 | h[4];
	/* §5.1: length MUST NOT exceed 2^14; "Implementations MUST NOT send
	 * zero-length fragments of Handshake types". */
	if (*rlen == 0 || *rlen > REC_MAX)
		return TLS_ERR_MALFORMED;
	return 0;
}

/* ---- reassembly of the handshake message (RFC 8446 §4, §5.1) -------------- */

struct reasm {
	uint8_t *buf;   /* scratch */
	size_t cap;     /* its size */
	size_t max;     /* max_hello_bytes: bound on the stream offset of the last record end */
	size_t have;    /* message bytes in buf */
	size_t msg_len; /* HS_HDR + body once the header is in, else 0 */
};

/* The 4-byte handshake header is complete: check what it announces. */
static int reasm_header_done(struct reasm *a)
{
	size_t body = (size_t)a->buf[1] << 16 | (size_t)a->buf[2] << 8 | a->buf[3];
	a->msg_len = HS_HDR + body;
	/* At least one record header goes with the message. */
	if (a->msg_len > a->cap || a->msg_len > a->max - REC_HDR)
		return TLS_ERR_TOO_LARGE;
	return 0;
}

/*
 * Copy the payload bytes src[0..n) of the record that ends at stream offset
 * rec_end, rec_left bytes after src (n <= rec_left; n may be 0 when only
 * the header has arrived).
 */
static int reasm_feed(struct reasm *a, const uint8_t *src, size_t n, size_t rec_left,
                      size_t rec_end)
{
	size_t i = 0;
	while (a->msg_len == 0 && i < n) {
		if (a->have >= a->cap)
			return TLS_ERR_TOO_LARGE;
		a->buf[a->have++] = src[i++];
		/* §4: the first message of a client is its ClientHello. */
		if (a->have == 1 && a->buf[0] != HS_CLIENT_HELLO)
			return TLS_ERR_NOT_HELLO;
		if (a->have == HS_HDR) {
			int rc = reasm_header_done(a);
			if (rc != 0)
				return rc;
		}
	}
	if (a->msg_len == 0)
		return 0;
	size_t msg_left = a->msg_len - a->have;
	size_t rec_rest = rec_left - i;
	/* Bytes after the hello in its last record: a second message or
	 * padding that a peer might read differently.  Refused. */
	if (rec_rest > msg_left)
		return TLS_ERR_MALFORMED;
	/* The rest of the message needs another record after this one. */
	if (rec_rest < msg_left && rec_end + REC_HDR + (msg_left - rec_rest) > a->max)
		return TLS_ERR_TOO_LARGE;
	size_t take = n - i;
	memcpy(a->buf + a->have, src + i, take);
	a->have += take;
	return 0;
}

/* ---- ClientHello grammar (RFC 8446 §4.1.2, §3.4 vectors) ------------------- */

/* A cursor over the bytes still to parse. */
struct rd {
	const uint8_t *p;
	size_t n;
};

static bool rd_u8(struct rd *r, unsigned *v)
{
	if (r->n < 1)
		return false;
	*v = r->p[0];
	r->p++;
	r->n--;
	return true;
}

static bool rd_u16(struct rd *r, unsigned *v)
{
	if (r->n < 2)
		return false;
	*v = (unsigned)r->p[0] << 8 | r->p[1];
	r->p += 2;
	r->n -= 2;
	return true;
}

static bool rd_take(struct rd *r, size_t n, struct rd *sub)
{
	if (r->n < n)
		return false;
	sub->p = r->p;
	sub->n = n;
	r->p += n;
	r->n -= n;
	return true;
}

/* A vector with a 1-byte length prefix (§3.4). */
static bool rd_vec8(struct rd *r, struct rd *sub)
{
	unsigned n;
	return rd_u8(r, &n) && rd_take(r, n, sub);
}

/* A vector with a 2-byte length prefix (§3.4). */
static bool rd_vec16(struct rd *r, struct rd *sub)
{
	unsigned n;
	return rd_u16(r, &n) && rd_take(r, n, sub);
}

/*
 * server_name (RFC 6066 §3):
 *   struct {
 *       NameType name_type;
 *       select (name_type) { case host_name: HostName; } name;
 *   } ServerName;
 *   opaque HostName<1..2^16-1>;
 *   struct { ServerName server_name_list<1..2^16-1> } ServerNameList;
 *
 * Framing that does not add up is MALFORMED; a list that is not exactly one
 * acceptable host_name is BAD_SNI.  §3: "The ServerNameList MUST NOT contain
 * more than one name of the same name_type"; no other name_type is defined
 * and one we cannot read could carry a second name, so any second entry or
 * other type is refused.  §3: HostName is the DNS name "represented as a byte
 * string using ASCII encoding": only printable ASCII without space passes.
 * Case, a trailing dot and IP literals are left to the caller.
 */
static int parse_sni(struct rd d, struct tls_hello *out)
{
	struct rd list, name;
	unsigned type;

	if (!rd_vec16(&d, &list) || d.n != 0)
		return TLS_ERR_MALFORMED;
	if (!rd_u8(&list, &type))
		return TLS_ERR_BAD_SNI; /* empty list: no name at all */
	if (type != SNI_HOST_NAME)
		return TLS_ERR_BAD_SNI;
	if (!rd_vec16(&list, &name))
		return TLS_ERR_MALFORMED;
	if (list.n != 0)
		return TLS_ERR_BAD_SNI; /* a second entry */
	if (name.n < 1 || name.n > NAME_MAX)
		return TLS_ERR_BAD_SNI;
	for (size_t i = 0; i < name.n; i++) {
		if (name.p[i] < 0x21 || name.p[i] > 0x7e)
			return TLS_ERR_BAD_SNI;
	}
	out->has_sni = true;
	out->sni.p = name.p;
	out->sni.len = name.n;
	return 0;
}

/*
 * application_layer_protocol_negotiation (RFC 7301 §3.1):
 *   opaque ProtocolName<1..2^8-1>;
 *   struct { ProtocolName protocol_name_list<2..2^16-1> } ProtocolNameList;
 */
static int parse_alpn(struct rd d, struct tls_hello *out)
{
	struct rd list, name;

	if (!rd_vec16(&d, &list) || d.n != 0 || list.n == 0)
		return TLS_ERR_MALFORMED;
	while (list.n > 0) {
		if (!rd_vec8(&list, &name) || name.n == 0)
			return TLS_ERR_MALFORMED;
		if (out->n_alpn < TLS_MAX_ALPN) {
			out->alpn[out->n_alpn].p = name.p;
			out->alpn[out->n_alpn].len = name.n;
			out->n_alpn++;
		}
		out->n_alpn_total++;
	}
	out->has_alpn = true;
	return 0;
}

/*
 * supported_versions in a ClientHello (RFC 8446 §4.2.1):
 *   ProtocolVersion versions<2..254>;
 * Values are not checked: GREASE (RFC 8701) and unknown versions are legal.
 */
static int parse_versions(struct rd d, struct tls_hello *out)
{
	struct rd list;
	unsigned v;

	if (!rd_vec8(&d, &list) || d.n != 0 || list.n < 2 || list.n % 2 != 0)
		return TLS_ERR_MALFORMED;
	while (rd_u16(&list, &v)) {
		if (out->n_versions < TLS_MAX_VERSIONS)
			out->versions[out->n_versions++] = (uint16_t)v;
		out->n_versions_total++;
	}
	out->has_versions = true;
	return 0;
}

/*
 * signature_algorithms (RFC 8446 §4.2.3):
 *   SignatureScheme supported_signature_algorithms<2..2^16-2>;
 * SignatureScheme is a uint16 (§4.2.3), so the list is even and not empty.
 */
static int parse_sig_algs(struct rd d, struct tls_hello *out)
{
	struct rd list;

	if (!rd_vec16(&d, &list) || d.n != 0 || list.n < 2 || list.n % 2 != 0)
		return TLS_ERR_MALFORMED;
	out->has_sig_algs = true;
	out->sig_algs.p = list.p;
	out->sig_algs.len = list.n;
	return 0;
}

static int parse_extension(unsigned type, struct rd data, struct tls_hello *out)
{
	switch (type) {
	case EXT_SIG_ALGS:
		return parse_sig_algs(data, out);
	case EXT_SERVER_NAME:
		return parse_sni(data, out);
	case EXT_ALPN:
		return parse_alpn(data, out);
	case EXT_VERSIONS:
		return parse_versions(data, out);
	case EXT_EARLY_DATA:
		out->has_early_data = true;
		return 0;
	case EXT_ECH:
		out->has_ech = true;
		return 0;
	case EXT_ESNI:
		out->has_esni = true;
		return 0;
	default:
		return 0; /* bounds checked by the caller; contents not ours */
	}
}

/*
 * Extension extensions<8..2^16-1> (RFC 8446 §4.1.2, §4.2); TLS 1.2 allows
 * <0..2^16-1> (RFC 5246 §7.4.1.2), so an empty block passes.
 *   struct { ExtensionType extension_type; opaque extension_data<0..2^16-1>; } Extension;
 */
static int parse_extensions(struct rd r, struct tls_hello *out)
{
	uint8_t seen[65536 / 8];
	bool after_psk = false;

	out->extensions.p = r.p;
	out->extensions.len = r.n;
	memset(seen, 0, sizeof(seen));
	while (r.n > 0) {
		unsigned type;
		struct rd data;
		if (!rd_u16(&r, &type) || !rd_vec16(&r, &data))
			return TLS_ERR_MALFORMED;
		/* §4.2: "There MUST NOT be more than one extension of the same
		 * type in a given extension block."  Two server_names would let
		 * the proxy and the server read different names. */
		if (seen[type >> 3] & (1u << (type & 7)))
			return TLS_ERR_MALFORMED;
		seen[type >> 3] |= (uint8_t)(1u << (type & 7));
		/* §4.2.11: pre_shared_key "MUST be the last extension". */
		if (after_psk)
			return TLS_ERR_MALFORMED;
		after_psk = type == EXT_PSK;
		out->n_extensions++;
		int rc = parse_extension(type, data, out);
		if (rc != 0)
			return rc;
	}
	return 0;
}

/*
 * struct {
 *     ProtocolVersion legacy_version;
 *     Random random;
 *     opaque legacy_session_id<0..32>;
 *     CipherSuite cipher_suites<2..2^16-2>;
 *     opaque legacy_compression_methods<1..2^8-1>;
 *     Extension extensions<8..2^16-1>;
 * } ClientHello;                                    (RFC 8446 §4.1.2)
 */
static int parse_client_hello(const uint8_t *msg, size_t msg_len, struct tls_hello *out)
{
	struct rd r = {msg + HS_HDR, msg_len - HS_HDR};
	struct rd sid, suites, comp, exts, random;
	unsigned v;

	if (!rd_u16(&r, &v) || !version_ok((uint8_t)(v >> 8), (uint8_t)v))
		return TLS_ERR_MALFORMED;
	out->legacy_version = (uint16_t)v;
	if (!rd_take(&r, RANDOM, &random))
		return TLS_ERR_MALFORMED;
	if (!rd_vec8(&r, &sid) || sid.n > SID_MAX)
		return TLS_ERR_MALFORMED;
	/* CipherSuite is uint8[2]: an even, non-empty list. */
	if (!rd_vec16(&r, &suites) || suites.n < 2 || suites.n % 2 != 0)
		return TLS_ERR_MALFORMED;
	out->ciphers.p = suites.p;
	out->ciphers.len = suites.n;
	/* RFC 5246 §7.4.1.2: the list "MUST contain" the null method (0);
	 * RFC 8446 §4.1.2 wants exactly that one byte for TLS 1.3. */
	if (!rd_vec8(&r, &comp) || comp.n < 1 || memchr(comp.p, 0, comp.n) == NULL)
		return TLS_ERR_MALFORMED;
	/* RFC 5246 §7.4.1.2: a TLS 1.2 hello may end here, without extensions. */
	if (r.n == 0)
		return 0;
	if (!rd_vec16(&r, &exts) || r.n != 0)
		return TLS_ERR_MALFORMED;
	return parse_extensions(exts, out);
}

/* ---- entry point --------------------------------------------------------- */

/* Out of bytes: more can only help while the limit has not been reached. */
static int need_more(size_t len, size_t max)
{
	return len >= max ? TLS_ERR_TOO_LARGE : TLS_NEED_MORE;
}

static int finish(const uint8_t *buf, struct reasm *a, size_t end, struct tls_hello *out)
{
	int rc = parse_client_hello(a->buf, a->msg_len, out);
	if (rc != 0) {
		memset(out, 0, sizeof(*out));
		return rc;
	}
	out->record_version = (uint16_t)(buf[1] << 8 | buf[2]);
	out->msg_len = a->msg_len;
	out->consumed = end;
	return (int)end;
}

int tls_hello_parse(const uint8_t *buf, size_t len, const struct tls_limits *lim, uint8_t *scratch,
                    size_t scratch_len, struct tls_hello *out)
{
	struct tls_limits def;

	if (out == NULL)
		return TLS_ERR_MALFORMED;
	memset(out, 0, sizeof(*out));
	if (buf == NULL && len > 0)
		return TLS_ERR_MALFORMED;
	if (lim == NULL) {
		tls_limits_default(&def);
		lim = &def;
	}
	if (len == 0)
		return TLS_NEED_MORE;
	int rc = sniff(buf, len);
	if (rc != 0)
		return rc;

	struct reasm a = {scratch, scratch != NULL ? scratch_len : 0, 0, 0, 0};
	a.max =
	    lim->max_hello_bytes < TLS_HELLO_HARD_MAX ? lim->max_hello_bytes : TLS_HELLO_HARD_MAX;
	if (a.max < REC_HDR + HS_HDR)
		return TLS_ERR_TOO_LARGE;
	size_t window = len < a.max ? len : a.max;
	size_t off = 0;
	for (;;) {
		size_t rlen;
		if (window - off < REC_HDR)
			return need_more(len, a.max);
		rc = record_header(buf + off, &rlen);
		if (rc != 0)
			return rc;
		size_t start = off + REC_HDR, end = start + rlen;
		if (end > a.max)
			return TLS_ERR_TOO_LARGE;
		size_t avail = (end < window ? end : window) - start;
		rc = reasm_feed(&a, buf + start, avail, rlen, end);
		if (rc != 0)
			return rc;
		if (a.msg_len != 0 && a.have == a.msg_len)
			return finish(buf, &a, end, out);
		if (end > window)
			return need_more(len, a.max);
		off = end;
	}
}

static bool hello_worth(struct tls_hello_watch *w, const uint8_t *buf, size_t len, size_t max)
{
	if (len < REC_HDR || len > max || len >= 2 * w->parsed)
		return true;
	while (w->rec_end + REC_HDR <= len) {
		const uint8_t *h = buf + w->rec_end;
		size_t rlen = (size_t)h[3] << 8 | h[4];
		w->work++;
		if (h[0] != CT_HANDSHAKE)
			return true;
		if (w->rec_end + REC_HDR + rlen > len)
			return false;
		for (size_t i = 0; i < rlen && w->payload + i < HS_HDR; i++)
			w->hs[w->payload + i] = h[REC_HDR + i];
		w->payload += rlen;
		w->rec_end += REC_HDR + rlen;
	}
	return w->payload >= HS_HDR &&
	       w->payload >= HS_HDR + ((size_t)w->hs[1] << 16 | (size_t)w->hs[2] << 8 | w->hs[3]);
}

bool tls_hello_worth_parsing(struct tls_hello_watch *w, const uint8_t *buf, size_t len, size_t max)
{
	bool now = hello_worth(w, buf, len, max);
	if (now)
		w->parsed = len ? len : 1;
	return now;
}

int tls_skip_interlude(const uint8_t *buf, size_t len, bool early_data, size_t max, size_t *off)
{
	size_t window = len < max ? len : max;
	bool ccs = false;

	*off = 0;
	if (buf == NULL && len > 0)
		return TLS_ERR_MALFORMED;
	for (;;) {
		size_t at = *off;
		if (window <= at)
			return need_more(len, max);
		uint8_t type = buf[at];
		if (type != CT_CCS && type != CT_APP_DATA)
			return 1; /* the next hello's first record (tls_hello_parse judges it) */
		if (type == CT_CCS && ccs)
			return TLS_ERR_MALFORMED; /* D.4: one compatibility record */
		if (type == CT_APP_DATA && !early_data)
			return TLS_ERR_MALFORMED;
		if (window - at >= 3 && !version_ok(buf[at + 1], buf[at + 2]))
			return TLS_ERR_MALFORMED;
		if (window - at < REC_HDR)
			return need_more(len, max);
		size_t rlen = (size_t)buf[at + 3] << 8 | buf[at + 4];
		/* §5: change_cipher_spec is the one byte 0x01; early data at most 2^14 + 256. */
		if ((type == CT_CCS && rlen != 1) || rlen == 0 || rlen > REC_MAX + 256)
			return TLS_ERR_MALFORMED;
		size_t end = at + REC_HDR + rlen;
		if (end > max)
			return TLS_ERR_TOO_LARGE;
		if (type == CT_CCS && window > at + REC_HDR && buf[at + REC_HDR] != 1)
			return TLS_ERR_MALFORMED;
		if (end > window)
			return need_more(len, max);
		ccs = ccs || type == CT_CCS;
		*off = end;
	}
}

const char *tls_status_str(int status)
{
	if (status > 0)
		return "complete";
	switch (status) {
	case TLS_NEED_MORE:
		return "need_more";
	case TLS_ERR_NOT_TLS:
		return "not_tls";
	case TLS_ERR_MALFORMED:
		return "malformed";
	case TLS_ERR_TOO_LARGE:
		return "too_large";
	case TLS_ERR_NOT_HELLO:
		return "not_hello";
	case TLS_ERR_BAD_SNI:
		return "bad_sni";
	default:
		return "unknown";
	}
}
