/* Streaming a pod list page or a watch stream: a structure tracker that cuts it into bounded units.
 */
#include "kube_stream.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define KEY_MAX     24 /* keys we match are at most "resourceVersion" */
#define STR_MAX     KUBE_NAME_MAX
#define KEEP_BUFFER (256u << 10) /* a unit buffer grown past this is freed after its unit */

struct kube_stream {
	enum kube_stream_mode mode;
	size_t max_unit;
	int status;                            /* sticky: the first error */
	unsigned depth;                        /* containers open */
	char open[KUBE_MAX_DEPTH + 1];         /* '{' or '[' at each depth (1-based) */
	bool want_key[KUBE_MAX_DEPTH + 1];     /* an object whose next string is a key */
	char key[KUBE_MAX_DEPTH + 1][KEY_MAX]; /* its current member's key ("" unknown) */
	/* the string being read */
	bool in_str, esc, str_key, str_bad;
	char str[STR_MAX];
	size_t str_len;
	/* LIST: the page object */
	bool root_started, root_done, in_items;
	char *skel;
	size_t skel_len;
	/* the unit being read */
	bool in_unit, skipped;
	unsigned unit_depth; /* where its value sits: LIST 2 (in "items"), WATCH 0 */
	char *buf;
	size_t len, cap;
	struct kube_unit u;
	size_t units;
	kube_unit_fn fn;
	void *arg;
	char *err;
	size_t errlen;
};

static int fail(struct kube_stream *s, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int fail(struct kube_stream *s, int status, const char *fmt, ...)
{
	if (s->status == 0) {
		s->status = status;
		if (s->err != NULL && s->errlen > 0) {
			va_list ap;
			va_start(ap, fmt);
			vsnprintf(s->err, s->errlen, fmt, ap);
			va_end(ap);
		}
	}
	return s->status;
}

struct kube_stream *kube_stream_new(enum kube_stream_mode mode, size_t max_unit)
{
	struct kube_stream *s = calloc(1, sizeof(*s));
	if (s == NULL)
		return NULL;
	s->mode = mode;
	s->max_unit = max_unit;
	if (mode == KUBE_STREAM_LIST && (s->skel = malloc(KUBE_STREAM_MAX_SKELETON)) == NULL) {
		free(s);
		return NULL;
	}
	return s;
}

void kube_stream_free(struct kube_stream *s)
{
	if (s == NULL)
		return;
	free(s->buf);
	free(s->skel);
	free(s);
}

void kube_stream_reset(struct kube_stream *s)
{
	char *skel = s->skel, *buf = s->buf;
	size_t cap = s->cap, max = s->max_unit;
	enum kube_stream_mode mode = s->mode;
	if (cap > KEEP_BUFFER) {
		free(buf);
		buf = NULL;
		cap = 0;
	}
	memset(s, 0, sizeof(*s));
	s->mode = mode;
	s->max_unit = max;
	s->skel = skel;
	s->buf = buf;
	s->cap = cap;
}

/* ---- output: the unit, or (LIST) the skeleton ---- */

static int unit_put(struct kube_stream *s, const char *p, size_t n)
{
	s->u.bytes += n;
	if (s->skipped)
		return 0;
	if (n > s->max_unit - s->len) {
		s->skipped = true; /* over the bound: read to its end, keep nothing more */
		return 0;
	}
	if (s->len + n > s->cap) {
		size_t cap = s->cap ? s->cap : 4096;
		while (cap < s->len + n)
			cap *= 2;
		if (cap > s->max_unit)
			cap = s->max_unit;
		char *b = realloc(s->buf, cap);
		if (b == NULL)
			return fail(s, KUBE_STREAM_ERR_NOMEM, "out of memory");
		s->buf = b;
		s->cap = cap;
	}
	memcpy(s->buf + s->len, p, n);
	s->len += n;
	return 0;
}

static int put(struct kube_stream *s, const char *p, size_t n)
{
	if (s->in_unit)
		return unit_put(s, p, n);
	if (s->mode != KUBE_STREAM_LIST)
		return 0;
	if (n > KUBE_STREAM_MAX_SKELETON - s->skel_len)
		return fail(s, KUBE_STREAM_ERR_LIMIT, "list page over %u bytes besides its items",
		            KUBE_STREAM_MAX_SKELETON);
	memcpy(s->skel + s->skel_len, p, n);
	s->skel_len += n;
	return 0;
}

/* ---- units ---- */

static bool at_unit_level(const struct kube_stream *s)
{
	return s->mode == KUBE_STREAM_LIST ? s->in_items && s->depth == 2 : s->depth == 0;
}

static void unit_start(struct kube_stream *s)
{
	s->in_unit = true;
	s->skipped = false;
	s->unit_depth = s->depth;
	s->len = 0;
	memset(&s->u, 0, sizeof(s->u));
}

static int unit_end(struct kube_stream *s)
{
	s->in_unit = false;
	s->units++;
	s->u.p = s->skipped ? NULL : s->buf;
	s->u.len = s->skipped ? 0 : s->len;
	int rc = s->fn != NULL ? s->fn(s->arg, &s->u) : 0;
	if (s->cap > KEEP_BUFFER) {
		free(s->buf);
		s->buf = NULL;
		s->cap = 0;
	}
	if (rc != 0)
		return fail(s, KUBE_STREAM_ERR_ABORT, "stopped by the caller");
	return 0;
}

/* ---- strings: keys, and the few values read on the way ---- */

static void copy_str(const struct kube_stream *s, char *dst, size_t cap)
{
	if (dst[0] == '\0' && s->str_len < cap) { /* the first one counts */
		memcpy(dst, s->str, s->str_len);
		dst[s->str_len] = '\0';
	}
}

static void string_end(struct kube_stream *s)
{
	unsigned d = s->depth;
	bool fits = !s->str_bad && s->str_len < STR_MAX;
	if (s->str_key) {
		s->want_key[d] = false;
		if (fits && s->str_len < KEY_MAX) {
			memcpy(s->key[d], s->str, s->str_len);
			s->key[d][s->str_len] = '\0';
		} else {
			strcpy(s->key[d], "\x01"); /* matches nothing we look for */
		}
		return;
	}
	if (!s->in_unit || !fits)
		return;
	/* The pod: the LIST item itself (depth 3), or the WATCH event's "object" (depth 2). */
	unsigned pod = s->mode == KUBE_STREAM_LIST ? 3 : 2;
	if (s->mode == KUBE_STREAM_WATCH) {
		if (d == 1 && strcmp(s->key[1], "type") == 0)
			copy_str(s, s->u.type, sizeof(s->u.type));
		if (d < 2 || strcmp(s->key[1], "object") != 0)
			return;
	}
	if (d != pod + 1 || strcmp(s->key[pod], "metadata") != 0)
		return;
	const char *k = s->key[d];
	if (strcmp(k, "namespace") == 0)
		copy_str(s, s->u.ns, sizeof(s->u.ns));
	else if (strcmp(k, "name") == 0)
		copy_str(s, s->u.name, sizeof(s->u.name));
	else if (strcmp(k, "uid") == 0)
		copy_str(s, s->u.uid, sizeof(s->u.uid));
	else if (strcmp(k, "resourceVersion") == 0)
		copy_str(s, s->u.resource_version, sizeof(s->u.resource_version));
}

static void str_add(struct kube_stream *s, const char *p, size_t n)
{
	if (n > STR_MAX - s->str_len) {
		s->str_bad = true;
		return;
	}
	memcpy(s->str + s->str_len, p, n);
	s->str_len += n;
}

/* ---- one byte outside the fast path ---- */

static int step(struct kube_stream *s, char c)
{
	if (s->in_str) {
		int rc = put(s, &c, 1);
		if (s->esc) {
			s->esc = false;
		} else if (c == '\\') {
			s->esc = true;
			s->str_bad = true; /* escaped text is never one we read on the way */
		} else if (c == '"') {
			s->in_str = false;
			string_end(s);
		}
		return rc;
	}
	if (c == ' ' || c == '\t' || c == '\n' || c == '\r')
		return s->in_unit ? unit_put(s, &c, 1) : 0;
	if (s->depth == 0 && s->mode == KUBE_STREAM_LIST) {
		if (s->root_done)
			return fail(s, KUBE_STREAM_ERR_SYNTAX, "bytes after the list page");
		if (c != '{')
			return fail(s, KUBE_STREAM_ERR_SHAPE, "the list page is not a JSON object");
		s->root_started = true;
	}
	if (!s->in_unit && at_unit_level(s) &&
	    !(s->mode == KUBE_STREAM_LIST && (c == ',' || c == ']'))) {
		if (c != '{')
			return fail(s, KUBE_STREAM_ERR_SHAPE, "%s is not a JSON object",
			            s->mode == KUBE_STREAM_LIST ? "a list item" : "a watch event");
		unit_start(s);
	}
	/* Separators between items stay out of the skeleton: "items":[] is left. */
	int rc = s->in_items && s->depth == 2 && !s->in_unit && c == ',' ? 0 : put(s, &c, 1);
	if (rc != 0)
		return rc;
	unsigned d = s->depth;
	switch (c) {
	case '"':
		s->in_str = true;
		s->esc = false;
		s->str_bad = false;
		s->str_len = 0;
		s->str_key = d > 0 && s->open[d] == '{' && s->want_key[d];
		return 0;
	case '{':
	case '[':
		if (d == KUBE_MAX_DEPTH)
			return fail(s, KUBE_STREAM_ERR_LIMIT, "nested deeper than %d",
			            KUBE_MAX_DEPTH);
		d = ++s->depth;
		s->open[d] = c;
		s->want_key[d] = c == '{';
		s->key[d][0] = '\0';
		if (s->mode == KUBE_STREAM_LIST && d == 2 && c == '[' && s->open[1] == '{' &&
		    strcmp(s->key[1], "items") == 0)
			s->in_items = true;
		return 0;
	case '}':
	case ']':
		if (d == 0 || s->open[d] != (c == '}' ? '{' : '['))
			return fail(s, KUBE_STREAM_ERR_SYNTAX, "'%c' closes nothing open", c);
		if (s->in_items && d == 2)
			s->in_items = false;
		s->depth--;
		if (s->mode == KUBE_STREAM_LIST && s->depth == 0)
			s->root_done = true;
		if (s->in_unit && s->depth == s->unit_depth)
			return unit_end(s);
		return 0;
	case ',':
		if (d > 0 && s->open[d] == '{') {
			s->want_key[d] = true;
			s->key[d][0] = '\0';
		}
		return 0;
	default: /* ':' and the bytes of numbers and literals */
		return 0;
	}
}

int kube_stream_feed(struct kube_stream *s, const char *p, size_t n, kube_unit_fn fn, void *arg,
                     char *err, size_t errlen)
{
	s->fn = fn;
	s->arg = arg;
	s->err = err;
	s->errlen = errlen;
	if (err != NULL && errlen > 0)
		err[0] = '\0';
	size_t i = 0;
	while (i < n && s->status == 0) {
		if (s->in_str && !s->esc) {
			/* Fast path: the run of plain string bytes up to the next quote or
			 * backslash. */
			size_t j = i;
			while (j < n && p[j] != '"' && p[j] != '\\')
				j++;
			if (j > i) {
				str_add(s, p + i, j - i);
				put(s, p + i, j - i);
				i = j;
				continue;
			}
		}
		step(s, p[i++]);
	}
	return s->status;
}

int kube_stream_end(struct kube_stream *s, const char **skel, size_t *skel_len, size_t *units,
                    char *err, size_t errlen)
{
	s->err = err;
	s->errlen = errlen;
	*skel = NULL;
	*skel_len = 0;
	*units = s->units;
	if (s->status != 0)
		return s->status;
	if (s->mode == KUBE_STREAM_LIST) {
		if (!s->root_done)
			return fail(s, KUBE_STREAM_ERR_SYNTAX, "the list page ends early");
		*skel = s->skel;
		*skel_len = s->skel_len;
		return 0;
	}
	if (s->in_unit || s->in_str || s->depth != 0)
		return fail(s, KUBE_STREAM_ERR_SYNTAX, "the watch stream ends inside an event");
	return 0;
}
