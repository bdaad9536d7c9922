/* A strict JSON walker over libyaml events: every event checked to be JSON, depth bounded. */
#include "json_walk.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* Set err ("items[N]: " first inside a list item) and return status. */
int jw_fail(struct jp *jp, int status, const char *fmt, ...)
{
	va_list ap;
	size_t off = 0;

	if (jp->err == NULL || jp->errlen == 0)
		return status;
	if (jp->item != SIZE_MAX) {
		int k = snprintf(jp->err, jp->errlen, "items[%zu]: ", jp->item);
		off = k < 0 ? 0 : (size_t)k < jp->errlen ? (size_t)k : jp->errlen - 1;
	}
	va_start(ap, fmt);
	vsnprintf(jp->err + off, jp->errlen - off, fmt, ap);
	va_end(ap);
	return status;
}

int jw_open(struct jp *jp, const char *src, size_t len, unsigned max_depth, char *err,
            size_t errlen)
{
	memset(jp, 0, sizeof(*jp));
	jp->max_depth = max_depth;
	jp->item = SIZE_MAX;
	jp->err = err;
	jp->errlen = errlen;
	if (!yaml_parser_initialize(&jp->ps))
		return jw_fail(jp, JSON_WALK_ERR_NOMEM, "out of memory");
	yaml_parser_set_encoding(&jp->ps, YAML_UTF8_ENCODING);
	yaml_parser_set_input_string(&jp->ps, (const unsigned char *)src, len);
	return 0;
}

void jw_close(struct jp *jp)
{
	if (jp->live)
		yaml_event_delete(&jp->ev);
	jp->live = false;
	yaml_parser_delete(&jp->ps);
}

bool jw_is_plain(const yaml_event_t *e)
{
	return e->type == YAML_SCALAR_EVENT && e->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
}

bool jw_is_string(const yaml_event_t *e)
{
	return e->type == YAML_SCALAR_EVENT &&
	       e->data.scalar.style == YAML_DOUBLE_QUOTED_SCALAR_STYLE;
}

enum json_lit jw_plain_lit(const yaml_event_t *e)
{
	if (!jw_is_plain(e))
		return JSON_LIT_BAD;
	return json_literal((const char *)e->data.scalar.value, e->data.scalar.length);
}

/* The JSON shape of one event, checked again here whatever the gate let through. */
static int check_event(struct jp *jp)
{
	const yaml_event_t *e = &jp->ev;

	switch (e->type) {
	case YAML_ALIAS_EVENT:
		return jw_fail(jp, JSON_WALK_ERR_SYNTAX, "YAML alias");
	case YAML_SCALAR_EVENT:
		if (e->data.scalar.anchor != NULL || e->data.scalar.tag != NULL)
			return jw_fail(jp, JSON_WALK_ERR_SYNTAX, "YAML anchor or tag");
		if (!jw_is_string(e) && jw_plain_lit(e) == JSON_LIT_BAD)
			return jw_fail(jp, JSON_WALK_ERR_SYNTAX, "not a JSON value");
		return 0;
	case YAML_SEQUENCE_START_EVENT:
	case YAML_MAPPING_START_EVENT: {
		bool seq = e->type == YAML_SEQUENCE_START_EVENT;
		if ((seq ? e->data.sequence_start.anchor : e->data.mapping_start.anchor) != NULL ||
		    (seq ? e->data.sequence_start.tag : e->data.mapping_start.tag) != NULL)
			return jw_fail(jp, JSON_WALK_ERR_SYNTAX, "YAML anchor or tag");
		if (seq ? e->data.sequence_start.style != YAML_FLOW_SEQUENCE_STYLE
		        : e->data.mapping_start.style != YAML_FLOW_MAPPING_STYLE)
			return jw_fail(jp, JSON_WALK_ERR_SYNTAX, "YAML block collection");
		if (++jp->depth > jp->max_depth)
			return jw_fail(jp, JSON_WALK_ERR_LIMIT, "nesting deeper than %u levels",
			               jp->max_depth);
		return 0;
	}
	case YAML_SEQUENCE_END_EVENT:
	case YAML_MAPPING_END_EVENT:
		jp->depth--;
		return 0;
	case YAML_DOCUMENT_START_EVENT:
		if (!e->data.document_start.implicit || e->data.document_start.version_directive ||
		    e->data.document_start.tag_directives.start !=
		        e->data.document_start.tag_directives.end)
			return jw_fail(jp, JSON_WALK_ERR_SYNTAX, "explicit YAML document");
		return 0;
	case YAML_DOCUMENT_END_EVENT:
		if (!e->data.document_end.implicit)
			return jw_fail(jp, JSON_WALK_ERR_SYNTAX, "explicit YAML document end");
		return 0;
	default:
		return 0;
	}
}

int jw_next(struct jp *jp)
{
	if (jp->live)
		yaml_event_delete(&jp->ev);
	jp->live = false;
	if (!yaml_parser_parse(&jp->ps, &jp->ev)) {
		if (jp->ps.error == YAML_MEMORY_ERROR)
			return jw_fail(jp, JSON_WALK_ERR_NOMEM, "out of memory");
		return jw_fail(jp, JSON_WALK_ERR_SYNTAX, "%s",
		               jp->ps.problem != NULL ? jp->ps.problem : "syntax error");
	}
	jp->live = true;
	return check_event(jp);
}

int jw_expect(struct jp *jp, yaml_event_type_t type, const char *what)
{
	int rc = jw_next(jp);
	if (rc == 0 && jp->ev.type != type)
		rc = jw_fail(jp, JSON_WALK_ERR_SYNTAX, "%s", what);
	return rc;
}

/* Stream and document start, then the top-level object (SHAPE if another value). */
int jw_begin(struct jp *jp)
{
	int rc = jw_expect(jp, YAML_STREAM_START_EVENT, "no stream");
	if (rc == 0)
		rc = jw_expect(jp, YAML_DOCUMENT_START_EVENT, "empty document");
	if (rc == 0)
		rc = jw_next(jp);
	if (rc == 0 && jp->ev.type != YAML_MAPPING_START_EVENT)
		rc = jw_fail(jp, JSON_WALK_ERR_SHAPE, "the document is not a JSON object");
	return rc;
}

/* After the top-level object: nothing but the end of the one document. */
int jw_end(struct jp *jp)
{
	int rc = jw_expect(jp, YAML_DOCUMENT_END_EVENT, "more than one document");
	if (rc == 0)
		rc = jw_expect(jp, YAML_STREAM_END_EVENT, "more than one document");
	return rc;
}

/* The value whose first event is current, whatever its shape. */
int jw_skip(struct jp *jp)
{
	if (jp->ev.type != YAML_SEQUENCE_START_EVENT && jp->ev.type != YAML_MAPPING_START_EVENT)
		return 0;
	unsigned base = jp->depth - 1;
	while (jp->depth > base) {
		int rc = jw_next(jp);
		if (rc != 0)
			return rc;
	}
	return 0;
}

/*
 * In an object: the next key, matched against names (bit i of *seen marks
 * names[i] as seen; a repeat is SHAPE).  1 with *which = the index or -1 and
 * the value's first event current; 0 at the end of the object; or a status.
 */
int jw_next_key(struct jp *jp, const char *const *names, size_t n, uint32_t *seen, int *which,
                const char *where)
{
	int rc = jw_next(jp);
	if (rc != 0)
		return rc;
	if (jp->ev.type == YAML_MAPPING_END_EVENT)
		return 0;
	if (!jw_is_string(&jp->ev))
		return jw_fail(jp, JSON_WALK_ERR_SYNTAX, "%s: a key is not a string", where);
	const char *k = (const char *)jp->ev.data.scalar.value;
	size_t klen = jp->ev.data.scalar.length;
	*which = -1;
	for (size_t i = 0; i < n; i++) {
		if (strlen(names[i]) != klen || memcmp(names[i], k, klen) != 0)
			continue;
		if (*seen & (1u << i))
			return jw_fail(jp, JSON_WALK_ERR_SHAPE, "%s%s%s: duplicate key", where,
			               *where ? "." : "", names[i]);
		*seen |= 1u << i;
		*which = (int)i;
		break;
	}
	rc = jw_next(jp);
	return rc != 0 ? rc : 1;
}

/* 1 when the current value is an object (entered), 0 when null, else SHAPE. */
int jw_open_map(struct jp *jp, const char *what)
{
	if (jp->ev.type == YAML_MAPPING_START_EVENT)
		return 1;
	if (jw_plain_lit(&jp->ev) == JSON_LIT_NULL)
		return 0;
	return jw_fail(jp, JSON_WALK_ERR_SHAPE, "%s: expected an object", what);
}

int jw_open_seq(struct jp *jp, const char *what)
{
	if (jp->ev.type == YAML_SEQUENCE_START_EVENT)
		return 1;
	if (jw_plain_lit(&jp->ev) == JSON_LIT_NULL)
		return 0;
	return jw_fail(jp, JSON_WALK_ERR_SHAPE, "%s: expected an array", what);
}

/* A string value into dst[cap]: 1 when a string, 0 when null ("" stored); LIMIT when too long. */
int jw_take_str(struct jp *jp, char *dst, size_t cap, const char *what)
{
	const yaml_event_t *e = &jp->ev;

	dst[0] = '\0';
	if (jw_plain_lit(e) == JSON_LIT_NULL)
		return 0;
	if (!jw_is_string(e))
		return jw_fail(jp, JSON_WALK_ERR_SHAPE, "%s: expected a string", what);
	size_t n = e->data.scalar.length;
	if (n >= cap)
		return jw_fail(jp, JSON_WALK_ERR_LIMIT, "%s: longer than %zu bytes", what, cap - 1);
	if (memchr(e->data.scalar.value, 0, n) != NULL)
		return jw_fail(jp, JSON_WALK_ERR_SHAPE, "%s: holds U+0000", what);
	memcpy(dst, e->data.scalar.value, n);
	dst[n] = '\0';
	return 1;
}

/* 1 when the value is the string s, 0 when another string or null, SHAPE for another type. */
int jw_str_is(struct jp *jp, const char *s, const char *what)
{
	const yaml_event_t *e = &jp->ev;
	if (jw_plain_lit(e) == JSON_LIT_NULL)
		return 0;
	if (!jw_is_string(e))
		return jw_fail(jp, JSON_WALK_ERR_SHAPE, "%s: expected a string", what);
	return e->data.scalar.length == strlen(s) &&
	       memcmp(e->data.scalar.value, s, strlen(s)) == 0;
}
