/* Hashing for in-memory tables and SHA-256 in hex. */
#include "hash.h"

#include <openssl/evp.h>

#include "ascii.h"

uint64_t hash_bytes(uint64_t seed, const void *p, size_t n)
{
	const unsigned char *s = p;
	uint64_t h = seed ^ 0xcbf29ce484222325ull;
	for (size_t i = 0; i < n; i++)
		h = (h ^ s[i]) * 0x100000001b3ull;
	return hash_mix64(h);
}

int sha256_hex(const void *p, size_t n, char out[65])
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned len = 0;
	out[0] = '\0';
	if (EVP_Digest(p, n, md, &len, EVP_sha256(), NULL) != 1 || len != 32)
		return -1;
	for (unsigned i = 0; i < 32; i++) {
		out[2 * i] = ascii_hex_digit(md[i] >> 4, false);
		out[2 * i + 1] = ascii_hex_digit(md[i], false);
	}
	out[64] = '\0';
	return 0;
}
