/* ASCII character classes and hex digits, for every parser and formatter (locale-free). */
#ifndef PORTCULLIS_ASCII_H
#define PORTCULLIS_ASCII_H

#include <stdbool.h>

static inline bool ascii_is_digit(unsigned char c)
{
	return c >= '0' && c <= '9';
}

static inline bool ascii_is_alpha(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static inline unsigned char ascii_lower(unsigned char c)
{
	return c >= 'A' && c <= 'Z' ? (unsigned char)(c + 32) : c;
}

/* HEXDIG (RFC 5234 B.1, case-insensitive): the value, or -1. */
static inline int ascii_hex_value(unsigned char c)
{
	if (ascii_is_digit(c))
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* The hex digit of v & 15: lowercase, or uppercase (RFC 3986 §2.1 percent-encoding). */
static inline char ascii_hex_digit(unsigned v, bool upper)
{
	return (upper ? "0123456789ABCDEF" : "0123456789abcdef")[v & 15];
}

#endif
