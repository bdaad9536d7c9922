/* Community ID v1: SHA-1 over seed, ordered endpoints, protocol and ports, in base64. */
#include "community_id.h"

#include <pthread.h>
#include <string.h>

#include <openssl/evp.h>

/*
 * SHA-1, fetched once: EVP_Digest with EVP_sha1() looks the implementation
 * up in the provider store on every call, which cost more than the hash.
 */
static EVP_MD *sha1_md;
static pthread_once_t sha1_once = PTHREAD_ONCE_INIT;

static void sha1_fetch(void)
{
	sha1_md = EVP_MD_fetch(NULL, "SHA1", NULL);
}

static int sha1(const uint8_t *in, size_t n, unsigned char md[EVP_MAX_MD_SIZE], unsigned *mdlen)
{
	pthread_once(&sha1_once, sha1_fetch);
	if (sha1_md == NULL)
		return EVP_Digest(in, n, md, mdlen, EVP_sha1(), NULL) == 1 ? 0 : -1;
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	int ok = ctx != NULL && EVP_DigestInit_ex2(ctx, sha1_md, NULL) == 1 &&
	         EVP_DigestUpdate(ctx, in, n) == 1 && EVP_DigestFinal_ex(ctx, md, mdlen) == 1;
	EVP_MD_CTX_free(ctx);
	return ok ? 0 : -1;
}

/*
 * The hashed input (spec, "Community ID v1"): seed (2 bytes), the smaller
 * endpoint's address then the other's (4 or 16 bytes each), the protocol
 * (1 byte), one zero byte of padding, then the smaller endpoint's port and
 * the other's (2 bytes each), all in network byte order.  "Smaller" compares
 * the addresses as bytes and, when they are equal, the ports.
 */
int community_id_v1(const struct pc_addr *a, uint16_t a_port, const struct pc_addr *b,
                    uint16_t b_port, uint8_t proto, uint16_t seed, char out[COMMUNITY_ID_LEN + 1])
{
	out[0] = '\0';
	if (a == NULL || b == NULL || a->family != b->family ||
	    (a->family != ADDR_V4 && a->family != ADDR_V6))
		return -1;
	size_t alen = a->family == ADDR_V4 ? 4 : 16;
	int cmp = memcmp(a->b, b->b, alen);
	if (cmp > 0 || (cmp == 0 && a_port > b_port)) {
		const struct pc_addr *t = a;
		a = b;
		b = t;
		uint16_t tp = a_port;
		a_port = b_port;
		b_port = tp;
	}
	uint8_t in[2 + 16 + 16 + 2 + 4];
	size_t n = 0;
	in[n++] = (uint8_t)(seed >> 8);
	in[n++] = (uint8_t)seed;
	memcpy(in + n, a->b, alen);
	n += alen;
	memcpy(in + n, b->b, alen);
	n += alen;
	in[n++] = proto;
	in[n++] = 0;
	in[n++] = (uint8_t)(a_port >> 8);
	in[n++] = (uint8_t)a_port;
	in[n++] = (uint8_t)(b_port >> 8);
	in[n++] = (uint8_t)b_port;
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned mdlen = 0;
	if (sha1(in, n, md, &mdlen) != 0 || mdlen != 20)
		return -1;
	memcpy(out, "1:", 2);
	/* 20 bytes: 28 base64 characters and a NUL. */
	if (EVP_EncodeBlock((unsigned char *)out + 2, md, 20) != 28) {
		out[0] = '\0';
		return -1;
	}
	return 0;
}
