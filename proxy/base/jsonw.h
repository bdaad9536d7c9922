/* A bounded JSON writer for one-line records: appends into a caller's buffer, no allocation. */
#ifndef PORTCULLIS_JSONW_H
#define PORTCULLIS_JSONW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define JSONW_MAX_DEPTH 6

/*
 * Output cursor over buf[0..n): everything is appended or nothing is, and
 * the first append that does not fit latches `full` (the record is then
 * dropped whole by its caller).  Objects and arrays nest up to
 * JSONW_MAX_DEPTH; deeper opens latch `full` too.
 */
struct jsonw {
	char *p;
	size_t n;   /* capacity, the terminating NUL included */
	size_t len; /* bytes written, NUL excluded */
	bool full;
	/* jsonw_text's limit: bytes between a client string's quotes (SIZE_MAX: none). */
	size_t text_max;
	bool cut; /* jsonw_text cut a string */
	int depth;
	bool comma[JSONW_MAX_DEPTH + 1]; /* an element was already written at this depth */
	/* jsonw_kv_time's last value, formatted (time_len 0: none yet). */
	uint64_t time_ns;
	size_t time_len;
	char time[48];
};

void jsonw_init(struct jsonw *w, char *buf, size_t n);
/* Raw bytes (already JSON). */
void jsonw_raw(struct jsonw *w, const char *s, size_t len);
/*
 * A JSON string (RFC 8259 §7): quotes and backslashes escaped, every control
 * byte and DEL as \u00XX, well-formed UTF-8 (RFC 3629 §4) copied but for
 * U+0085, U+2028 and U+2029 (\u escapes: line breaks to Unicode line readers,
 * so a record stays one line for them too), any other byte as U+FFFD.  Each
 * input byte takes at most 6 output bytes.
 */
void jsonw_str(struct jsonw *w, const char *s);
/* The same for n bytes that may hold NUL (escaped as \u0000). */
void jsonw_strn(struct jsonw *w, const char *s, size_t n);
/*
 * A string the client chose (a host, a path, a header, a certificate name):
 * as jsonw_str, but cut to w->text_max bytes between its quotes, between two
 * characters (never inside an escape or a UTF-8 sequence); a cut latches
 * `cut`.  A formatter whose record did not fit tries again with a lower
 * text_max, so that what a client sends can make its record shorter, never
 * lost.
 */
void jsonw_text(struct jsonw *w, const char *s);
void jsonw_kv_text(struct jsonw *w, const char *k, const char *v);
/*
 * Where to cut s[0..n) to keep at most max bytes without ending inside a
 * UTF-8 sequence (a value cut where it is captured, before it is escaped):
 * n when it fits, else max or up to 3 bytes less.
 */
size_t jsonw_utf8_cut(const char *s, size_t n, size_t max);
/* An unsigned integer, clamped to INT64_MAX (ECS and OCSF longs are signed). */
void jsonw_u64(struct jsonw *w, uint64_t v);
/* The key of the next member ("," before it when needed): plain ASCII, copied unescaped. */
void jsonw_key(struct jsonw *w, const char *k);
/* Open an object as the value of key k (k NULL: an array element or the top level). */
void jsonw_obj(struct jsonw *w, const char *k);
void jsonw_obj_end(struct jsonw *w);
/* Open an array as the value of key k; jsonw_elem before each element. */
void jsonw_arr(struct jsonw *w, const char *k);
void jsonw_arr_end(struct jsonw *w);
void jsonw_elem(struct jsonw *w);
/* Members. */
void jsonw_kv_str(struct jsonw *w, const char *k, const char *v);
void jsonw_kv_u64(struct jsonw *w, const char *k, uint64_t v);
void jsonw_kv_bool(struct jsonw *w, const char *k, bool v);
/* An RFC 3339 UTC time with microseconds ("2024-01-02T03:04:05.678901Z"). */
void jsonw_kv_time(struct jsonw *w, const char *k, uint64_t ns_since_epoch);
/* NUL-terminate: the length, or 0 when something did not fit. */
size_t jsonw_end(struct jsonw *w);

#endif
