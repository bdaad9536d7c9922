/* Hashing for in-memory tables (seeded, not cryptographic) and SHA-256 in hex. */
#ifndef PORTCULLIS_HASH_H
#define PORTCULLIS_HASH_H

#include <stddef.h>
#include <stdint.h>

/* murmur3's fmix64: every input bit reaches the top and the bottom bits. */
static inline uint64_t hash_mix64(uint64_t h)
{
	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdull;
	h ^= h >> 33;
	h *= 0xc4ceb9fe1a85ec53ull;
	h ^= h >> 33;
	return h;
}

/*
 * FNV-1a 64 over n bytes, seeded, then hash_mix64 (FNV's low bits alone
 * bucket poorly).  For hash tables keyed by peer-controlled data: give each
 * table its own seed.
 */
uint64_t hash_bytes(uint64_t seed, const void *p, size_t n);

/* SHA-256 of n bytes as 64 lowercase hex digits and a NUL. 0, or -1 (out is ""). */
int sha256_hex(const void *p, size_t n, char out[65]);

#endif
