/* The PROXY protocol header, v1 (text) and v2 (binary): bytes in, addresses and TLVs out. */
#include "proxy_proto.h"

#include <string.h>

/* §2.2: the v2 signature, chosen to be invalid as the start of any text protocol. */
static const uint8_t v2_sig[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                   0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};
/* §2.1: "PROXY" and one space. */
static const char v1_sig[] = "PROXY ";
#define V1_SIG_LEN 6

/* §2.2: the high nibble of ver_cmd, its commands (low nibble). */
#define V2_VERSION   0x2
#define V2_CMD_LOCAL 0x0
#define V2_CMD_PROXY 0x1
/* §2.2: fam = address family (high nibble) | transport (low nibble); we take TCP only. */
#define V2_TCP4   0x11
#define V2_TCP6   0x21
#define V2_ADDRS4 12 /* §2.2: src, dst (4 each), src port, dst port */
#define V2_ADDRS6 36 /* §2.2: src, dst (16 each), src port, dst port */
/* §2.2.1 / §2.2.5: TLV types we read; AWS documents 0xEA (PP2_TYPE_AWS). */
#define PP2_TYPE_CRC32C         0x03
#define PP2_TYPE_AWS            0xEA
#define PP2_SUBTYPE_AWS_VPCE_ID 0x01

static size_t min_size(size_t a, size_t b)
{
	return a < b ? a : b;
}

static uint32_t crc32c_update(uint32_t crc, const uint8_t *p, size_t n)
{
	/* Bitwise, reflected polynomial 0x82F63B78: at most PP_MAX_HEADER bytes per header. */
	for (size_t i = 0; i < n; i++) {
		crc ^= p[i];
		for (int k = 0; k < 8; k++)
			crc = (crc >> 1) ^ (0x82F63B78u & (0u - (crc & 1u)));
	}
	return crc;
}

uint32_t proxy_proto_crc32c(const uint8_t *buf, size_t len)
{
	return ~crc32c_update(0xFFFFFFFFu, buf, len);
}

/* ---- v1 (§2.1) ---- */

/* A decimal port 0..65535, no sign, no leading zero ("0" itself is fine). */
static bool v1_port(const char *s, size_t n, uint16_t *out)
{
	if (n == 0 || n > 5 || (n > 1 && s[0] == '0'))
		return false;
	uint32_t v = 0;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		v = v * 10 + (uint32_t)(s[i] - '0');
	}
	if (v > 65535)
		return false;
	*out = (uint16_t)v;
	return true;
}

/* Split line[0..n) at single spaces into at most max fields; -1 on an empty field or too many. */
static int v1_fields(const char *line, size_t n, const char **f, size_t *fl, int max)
{
	int k = 0;
	size_t start = 0;
	for (size_t i = 0; i <= n; i++) {
		if (i < n && line[i] != ' ')
			continue;
		if (i == start || k == max)
			return -1;
		f[k] = line + start;
		fl[k++] = i - start;
		start = i + 1;
	}
	return k;
}

/* The line after "PROXY " up to (not including) CRLF. */
static int v1_line(const char *line, size_t n, struct pp_header *h)
{
	static const char unknown[] = "UNKNOWN";
	/* UNKNOWN: the rest of the line, if any, is ignored (§2.1); the peer stands for itself. */
	if (n >= 7 && memcmp(line, unknown, 7) == 0 && (n == 7 || line[7] == ' ')) {
		h->local = true;
		return 0;
	}
	const char *f[5];
	size_t fl[5];
	if (v1_fields(line, n, f, fl, 5) != 5 || fl[0] != 4 || memcmp(f[0], "TCP", 3) != 0 ||
	    (f[0][3] != '4' && f[0][3] != '6'))
		return PP_ERR_V1_SYNTAX;
	bool v4 = f[0][3] == '4';
	for (int i = 1; i <= 2; i++) {
		struct pc_addr *a = i == 1 ? &h->src : &h->dst;
		int r =
		    v4 ? addr_parse_ipv4_strict(f[i], fl[i], a) : addr_parse_ipv6(f[i], fl[i], a);
		/* addr_parse_ipv6 never yields ADDR_V4, but say what the family must be. */
		if (r != ADDR_OK || a->family != (v4 ? ADDR_V4 : ADDR_V6))
			return PP_ERR_V1_ADDRESS;
	}
	if (!v1_port(f[3], fl[3], &h->src_port) || !v1_port(f[4], fl[4], &h->dst_port))
		return PP_ERR_V1_PORT;
	return 0;
}

static int parse_v1(const uint8_t *buf, size_t len, struct pp_header *out)
{
	size_t look = min_size(len, PP_V1_MAX);
	size_t lf = 0;
	/* Byte by byte, so that the first bad byte decides whatever follows it. */
	for (size_t i = V1_SIG_LEN; i < look && lf == 0; i++) {
		uint8_t c = buf[i];
		if (c == '\n') {
			if (buf[i - 1] != '\r')
				return PP_ERR_V1_SYNTAX;
			lf = i;
		} else if (c == '\r') {
			/* Within the 107 bytes only: a CR at the last one is TOO_LONG whatever
			 * follows. */
			if (i + 1 < look && buf[i + 1] != '\n')
				return PP_ERR_V1_SYNTAX;
		} else if (c < 0x20 || c > 0x7e) {
			return PP_ERR_V1_SYNTAX;
		}
	}
	if (lf == 0)
		return len >= PP_V1_MAX ? PP_ERR_V1_TOO_LONG : PP_NEED_MORE;
	struct pp_header h = {.version = 1};
	int r = v1_line((const char *)buf + V1_SIG_LEN, lf - 1 - V1_SIG_LEN, &h);
	if (r < 0)
		return r;
	*out = h;
	return (int)(lf + 1);
}

/* ---- v2 (§2.2) ---- */

static uint16_t be16(const uint8_t *p)
{
	return (uint16_t)((p[0] << 8) | p[1]);
}

static uint32_t be32(const uint8_t *p)
{
	return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

/* AWS's VPC endpoint ID: "vpce-" and hex today; letters, digits and '-' accepted. */
static bool vpce_ok(const uint8_t *p, size_t n)
{
	if (n == 0 || n > PP_VPCE_MAX)
		return false;
	for (size_t i = 0; i < n; i++) {
		uint8_t c = p[i];
		if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		      c == '-'))
			return false;
	}
	return true;
}

/* §2.2.1: TLVs fill buf[off..end) exactly.  crc_at: where the CRC32C value is (0: none). */
static int v2_tlvs(const uint8_t *buf, size_t off, size_t end, struct pp_header *h, size_t *crc_at)
{
	while (off < end) {
		if (end - off < 3)
			return PP_ERR_V2_TLV;
		uint8_t type = buf[off];
		size_t n = be16(buf + off + 1);
		const uint8_t *v = buf + off + 3;
		if (n > end - off - 3)
			return PP_ERR_V2_TLV;
		if (type == PP2_TYPE_CRC32C) {
			if (n != 4 || *crc_at != 0)
				return PP_ERR_V2_TLV;
			*crc_at = off + 3;
		} else if (type == PP2_TYPE_AWS) {
			if (n == 0)
				return PP_ERR_V2_TLV;
			if (v[0] == PP2_SUBTYPE_AWS_VPCE_ID) {
				if (h->vpce[0] != '\0' || !vpce_ok(v + 1, n - 1))
					return PP_ERR_V2_TLV;
				memcpy(h->vpce, v + 1, n - 1);
				h->vpce[n - 1] = '\0';
			}
		}
		/* §2.2: any other type (NOOP, ALPN, SSL, a vendor's) is skipped. */
		off += 3 + n;
	}
	return 0;
}

static int parse_v2(const uint8_t *buf, size_t len, struct pp_header *out)
{
	/* Checks in the order of the bytes they need: each prefix gets the first failing one. */
	if (len < 13)
		return PP_NEED_MORE;
	unsigned ver = buf[12] >> 4, cmd = buf[12] & 0x0f;
	if (ver != V2_VERSION)
		return PP_ERR_VERSION;
	if (cmd != V2_CMD_LOCAL && cmd != V2_CMD_PROXY)
		return PP_ERR_V2_COMMAND;
	if (len < 14)
		return PP_NEED_MORE;
	uint8_t fam = buf[13];
	/* LOCAL: the family is ignored (§2.2). */
	if (cmd == V2_CMD_PROXY && fam != V2_TCP4 && fam != V2_TCP6)
		return PP_ERR_V2_FAMILY;
	if (len < PP_V2_FIXED)
		return PP_NEED_MORE;
	size_t body = be16(buf + 14);
	if (body > PP_V2_MAX_LEN)
		return PP_ERR_V2_TOO_LARGE;
	size_t addrs = cmd == V2_CMD_LOCAL ? 0 : fam == V2_TCP4 ? V2_ADDRS4 : V2_ADDRS6;
	if (body < addrs)
		return PP_ERR_V2_LENGTH;
	size_t end = PP_V2_FIXED + body;
	if (len < end)
		return PP_NEED_MORE;
	struct pp_header h = {.version = 2};
	if (cmd == V2_CMD_LOCAL) {
		/* A health check of the balancer itself: skip the block, whatever it holds. */
		h.local = true;
		*out = h;
		return (int)end;
	}
	const uint8_t *a = buf + PP_V2_FIXED;
	size_t alen = fam == V2_TCP4 ? 4 : 16;
	h.src.family = h.dst.family = fam == V2_TCP4 ? ADDR_V4 : ADDR_V6;
	memcpy(h.src.b, a, alen);
	memcpy(h.dst.b, a + alen, alen);
	h.src_port = be16(a + 2 * alen);
	h.dst_port = be16(a + 2 * alen + 2);
	size_t crc_at = 0;
	int r = v2_tlvs(buf, PP_V2_FIXED + addrs, end, &h, &crc_at);
	if (r < 0)
		return r;
	if (crc_at != 0) {
		/* §2.2.5: the CRC32C of the whole header with the checksum field zeroed. */
		static const uint8_t zero[4];
		uint32_t crc = crc32c_update(0xFFFFFFFFu, buf, crc_at);
		crc = crc32c_update(crc, zero, 4);
		crc = ~crc32c_update(crc, buf + crc_at + 4, end - crc_at - 4);
		if (crc != be32(buf + crc_at))
			return PP_ERR_V2_CRC;
		h.crc_checked = true;
	}
	*out = h;
	return (int)end;
}

int proxy_proto_parse(const uint8_t *buf, size_t len, unsigned accept, struct pp_header *out)
{
	if (len == 0)
		return PP_NEED_MORE;
	/* Which header can this be?  v2 starts with CR, v1 with 'P': never both. */
	if (memcmp(buf, v1_sig, min_size(len, V1_SIG_LEN)) == 0) {
		if (len < V1_SIG_LEN)
			return PP_NEED_MORE;
		return (accept & PP_ACCEPT_V1) ? parse_v1(buf, len, out) : PP_ERR_VERSION;
	}
	if (memcmp(buf, v2_sig, min_size(len, sizeof(v2_sig))) == 0) {
		if (len < sizeof(v2_sig))
			return PP_NEED_MORE;
		return (accept & PP_ACCEPT_V2) ? parse_v2(buf, len, out) : PP_ERR_VERSION;
	}
	return PP_ERR_MISSING;
}

const char *proxy_proto_status_str(int status)
{
	if (status > 0)
		return "header";
	switch (status) {
	case PP_NEED_MORE:
		return "need_more";
	case PP_ERR_MISSING:
		return "missing";
	case PP_ERR_VERSION:
		return "version";
	case PP_ERR_V1_TOO_LONG:
		return "v1_too_long";
	case PP_ERR_V1_SYNTAX:
		return "v1_syntax";
	case PP_ERR_V1_ADDRESS:
		return "v1_address";
	case PP_ERR_V1_PORT:
		return "v1_port";
	case PP_ERR_V2_COMMAND:
		return "v2_command";
	case PP_ERR_V2_FAMILY:
		return "v2_family";
	case PP_ERR_V2_LENGTH:
		return "v2_length";
	case PP_ERR_V2_TOO_LARGE:
		return "v2_too_large";
	case PP_ERR_V2_TLV:
		return "v2_tlv";
	case PP_ERR_V2_CRC:
		return "v2_crc";
	default:
		return "unknown";
	}
}
