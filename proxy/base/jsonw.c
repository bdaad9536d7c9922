/* A bounded JSON writer for one-line records (the audit formats). */
#include "jsonw.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "ascii.h"

void jsonw_init(struct jsonw *w, char *buf, size_t n)
{
	memset(w, 0, sizeof(*w));
	w->p = buf;
	w->n = n;
	w->full = buf == NULL || n == 0;
	w->text_max = SIZE_MAX;
}

void jsonw_raw(struct jsonw *w, const char *s, size_t len)
{
	if (w->full || len >= w->n - w->len) {
		w->full = true;
		return;
	}
	memcpy(w->p + w->len, s, len);
	w->len += len;
}

/* Length of the well-formed UTF-8 sequence at s[0..n) (RFC 3629 §4), or 0. */
static size_t utf8_seq(const unsigned char *s, size_t n)
{
	unsigned char c = s[0];
	unsigned char lo = 0x80, hi = 0xbf;
	size_t need;
	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf) {
		need = 1;
	} else if (c >= 0xe0 && c <= 0xef) {
		need = 2;
		if (c == 0xe0)
			lo = 0xa0; /* overlong */
		if (c == 0xed)
			hi = 0x9f; /* UTF-16 surrogates */
	} else if (c >= 0xf0 && c <= 0xf4) {
		need = 3;
		if (c == 0xf0)
			lo = 0x90; /* overlong */
		if (c == 0xf4)
			hi = 0x8f; /* above U+10FFFF */
	} else {
		return 0;
	}
	if (n <= need || s[1] < lo || s[1] > hi)
		return 0;
	for (size_t i = 2; i <= need; i++)
		if (s[i] < 0x80 || s[i] > 0xbf)
			return 0;
	return need + 1;
}

/* NEL (U+0085), LINE SEPARATOR (U+2028), PARAGRAPH SEPARATOR (U+2029): the sequence at s. */
static bool line_break(const unsigned char *s, size_t k)
{
	return (k == 2 && s[0] == 0xc2 && s[1] == 0x85) ||
	       (k == 3 && s[0] == 0xe2 && s[1] == 0x80 && (s[2] == 0xa8 || s[2] == 0xa9));
}

/* The two-character escape of c (RFC 8259 §7), or 0. */
static char short_escape(unsigned char c)
{
	switch (c) {
	case '"':
		return '"';
	case '\\':
		return '\\';
	case '\b':
		return 'b';
	case '\f':
		return 'f';
	case '\n':
		return 'n';
	case '\r':
		return 'r';
	case '\t':
		return 't';
	default:
		return 0;
	}
}

/*
 * The string s[0..n) with at most max bytes between its quotes: a cut falls
 * between two characters, never inside an escape or a UTF-8 sequence.
 */
static void put_str(struct jsonw *w, const char *str, size_t n, size_t max)
{
	const unsigned char *s = (const unsigned char *)str, *end = s + n;
	size_t out = 0;
	jsonw_raw(w, "\"", 1);
	while (s < end && !w->full) {
		const unsigned char *run = s;
		while (s < end && *s >= 0x20 && *s < 0x7f && *s != '"' && *s != '\\')
			s++;
		size_t k = (size_t)(s - run);
		if (k > max - out) {
			jsonw_raw(w, (const char *)run, max - out);
			w->cut = true;
			break;
		}
		jsonw_raw(w, (const char *)run, k);
		out += k;
		if (s == end)
			break;
		char e[6] = {'\\', short_escape(*s), 0, 0, 0, 0};
		const char *piece = e;
		size_t in = 1;
		if (e[1] != 0) {
			k = 2;
		} else if (*s < 0x20 || *s == 0x7f) {
			memcpy(e + 1, "u00", 3);
			e[4] = ascii_hex_digit(*s >> 4, false);
			e[5] = ascii_hex_digit(*s, false);
			k = 6;
		} else if ((in = utf8_seq(s, (size_t)(end - s))) > 0) {
			piece = (const char *)s;
			k = in;
			if (line_break(s, in)) {
				/* U+0085, U+2028, U+2029: \u escapes (see jsonw.h) */
				memcpy(e + 1, in == 2 ? "u0085" : s[2] == 0xa8 ? "u2028" : "u2029", 5);
				piece = e;
				k = 6;
			}
		} else {
			piece = "\\ufffd";
			in = 1;
			k = 6;
		}
		if (k > max - out) {
			w->cut = true;
			break;
		}
		jsonw_raw(w, piece, k);
		out += k;
		s += in;
	}
	jsonw_raw(w, "\"", 1);
}

size_t jsonw_utf8_cut(const char *s, size_t n, size_t max)
{
	if (n <= max)
		return n;
	/* s[k] a continuation byte: the cut would split the sequence it continues. */
	for (size_t k = max; k > 0 && max - k <= 3; k--)
		if (((unsigned char)s[k] & 0xc0) != 0x80)
			return k;
	return max; /* no sequence: invalid bytes either way */
}

void jsonw_strn(struct jsonw *w, const char *s, size_t n)
{
	put_str(w, s, n, SIZE_MAX);
}

void jsonw_text(struct jsonw *w, const char *s)
{
	put_str(w, s, strlen(s), w->text_max);
}

void jsonw_kv_text(struct jsonw *w, const char *k, const char *v)
{
	jsonw_key(w, k);
	jsonw_text(w, v);
}

void jsonw_str(struct jsonw *w, const char *s)
{
	jsonw_strn(w, s, strlen(s));
}

void jsonw_u64(struct jsonw *w, uint64_t v)
{
	char t[24];
	if (v > INT64_MAX)
		v = INT64_MAX;
	size_t i = sizeof(t);
	do { /* a record has a dozen numbers: no format interpreter for each */
		t[--i] = (char)('0' + v % 10);
		v /= 10;
	} while (v != 0);
	jsonw_raw(w, t + i, sizeof(t) - i);
}

/* A separator before the next element at this depth. */
static void sep(struct jsonw *w)
{
	if (w->comma[w->depth])
		jsonw_raw(w, ",", 1);
	w->comma[w->depth] = true;
}

void jsonw_key(struct jsonw *w, const char *k)
{
	/* Keys are the formatters' own ASCII literals: copied, not escaped (a third of the
	 * formatting time of a record went into escaping them). */
	size_t n = strlen(k);
	sep(w);
	if (w->full || n + 3 >= w->n - w->len) {
		w->full = true;
		return;
	}
	char *p = w->p + w->len;
	p[0] = '"';
	memcpy(p + 1, k, n);
	p[n + 1] = '"';
	p[n + 2] = ':';
	w->len += n + 3;
}

void jsonw_elem(struct jsonw *w)
{
	sep(w);
}

static void nest_open(struct jsonw *w, const char *k, const char *c)
{
	if (k != NULL)
		jsonw_key(w, k);
	if (w->depth >= JSONW_MAX_DEPTH) {
		w->full = true;
		return;
	}
	jsonw_raw(w, c, 1);
	w->comma[++w->depth] = false;
}

static void nest_close(struct jsonw *w, const char *c)
{
	jsonw_raw(w, c, 1);
	if (w->depth > 0)
		w->depth--;
}

void jsonw_obj(struct jsonw *w, const char *k)
{
	nest_open(w, k, "{");
}

void jsonw_obj_end(struct jsonw *w)
{
	nest_close(w, "}");
}

void jsonw_arr(struct jsonw *w, const char *k)
{
	nest_open(w, k, "[");
}

void jsonw_arr_end(struct jsonw *w)
{
	nest_close(w, "]");
}

void jsonw_kv_str(struct jsonw *w, const char *k, const char *v)
{
	jsonw_key(w, k);
	jsonw_str(w, v);
}

void jsonw_kv_u64(struct jsonw *w, const char *k, uint64_t v)
{
	jsonw_key(w, k);
	jsonw_u64(w, v);
}

void jsonw_kv_bool(struct jsonw *w, const char *k, bool v)
{
	jsonw_key(w, k);
	jsonw_raw(w, v ? "true" : "false", v ? 4 : 5);
}

/* v in exactly width decimal digits, zero-padded (v < 10^width). */
static size_t put_dec(char *p, unsigned v, size_t width)
{
	for (size_t i = width; i > 0; i--) {
		p[i - 1] = (char)('0' + v % 10);
		v /= 10;
	}
	return width;
}

void jsonw_kv_time(struct jsonw *w, const char *k, uint64_t ts_ns)
{
	/* A record often repeats one time (@timestamp = event.end): formatted once. */
	if (w->time_len == 0 || w->time_ns != ts_ns / 1000u) {
		time_t sec = (time_t)(ts_ns / 1000000000u);
		unsigned usec = (unsigned)(ts_ns % 1000000000u / 1000u);
		struct tm tm;
		if (gmtime_r(&sec, &tm) == NULL) {
			w->full = true;
			return;
		}
		/* By hand: snprintf's format interpreter was most of a record's time formatting. */
		if (tm.tm_year < -1900 || tm.tm_year > 9999 - 1900) {
			w->full = true;
			return;
		}
		char *t = w->time;
		size_t n = 0;
		t[n++] = '"';
		n += put_dec(t + n, (unsigned)(tm.tm_year + 1900), 4);
		t[n++] = '-';
		n += put_dec(t + n, (unsigned)tm.tm_mon + 1, 2);
		t[n++] = '-';
		n += put_dec(t + n, (unsigned)tm.tm_mday, 2);
		t[n++] = 'T';
		n += put_dec(t + n, (unsigned)tm.tm_hour, 2);
		t[n++] = ':';
		n += put_dec(t + n, (unsigned)tm.tm_min, 2);
		t[n++] = ':';
		n += put_dec(t + n, (unsigned)tm.tm_sec, 2);
		t[n++] = '.';
		n += put_dec(t + n, usec, 6);
		t[n++] = 'Z';
		t[n++] = '"';
		w->time_len = (size_t)n;
		w->time_ns = ts_ns / 1000u;
	}
	jsonw_key(w, k);
	jsonw_raw(w, w->time, w->time_len);
}

size_t jsonw_end(struct jsonw *w)
{
	if (w->full)
		return 0;
	w->p[w->len] = '\0';
	return w->len;
}
