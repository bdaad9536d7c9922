/* A strict JSON walker over libyaml events (after json_gate): pull one value at a time. */
#ifndef PORTCULLIS_JSON_WALK_H
#define PORTCULLIS_JSON_WALK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <yaml.h>

#include "json_gate.h"

/*
 * json_gate() has checked the bytes are one JSON text and given libyaml a
 * text it reads as the same JSON; the walker checks again, event by event,
 * what its callers rely on (flow style only, no anchors, tags or aliases,
 * strings double-quoted, other scalars JSON literals, one document, depth
 * <= max_depth), so neither layer depends on the other's corners.
 *
 * Every function returns 0 (or the count noted), or a negative status with
 * the walker's err filled ("items[N]: " first while item != SIZE_MAX).
 */
enum json_walk_status {
	JSON_WALK_OK = 0,
	JSON_WALK_ERR_SYNTAX = -1, /* not JSON as the walker takes it */
	JSON_WALK_ERR_SHAPE = -2,  /* a value of the wrong type, a duplicate kept key */
	JSON_WALK_ERR_LIMIT = -3,  /* a string or the depth over its limit */
	JSON_WALK_ERR_NOMEM = -5,
};

struct jp {
	yaml_parser_t ps;
	yaml_event_t ev;
	bool live; /* ev holds an event to delete */
	unsigned depth;
	unsigned max_depth;
	size_t item; /* index in items[] for messages, SIZE_MAX outside */
	char *err;
	size_t errlen;
};

int jw_open(struct jp *jp, const char *src, size_t len, unsigned max_depth, char *err,
            size_t errlen) __attribute__((warn_unused_result));
void jw_close(struct jp *jp);
/* Set err and return status. */
int jw_fail(struct jp *jp, int status, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

bool jw_is_plain(const yaml_event_t *e);
bool jw_is_string(const yaml_event_t *e);
enum json_lit jw_plain_lit(const yaml_event_t *e);

/* The next event, checked. */
int jw_next(struct jp *jp) __attribute__((warn_unused_result));
/* The next event, which must be of this type (SYNTAX with `what` otherwise). */
int jw_expect(struct jp *jp, yaml_event_type_t type, const char *what)
    __attribute__((warn_unused_result));
/* Stream and document start, then the top-level object (SHAPE if another value). */
int jw_begin(struct jp *jp) __attribute__((warn_unused_result));
/* After the top-level object: nothing but the end of the one document. */
int jw_end(struct jp *jp) __attribute__((warn_unused_result));
/* Skip the value whose first event is current, whatever its shape. */
int jw_skip(struct jp *jp) __attribute__((warn_unused_result));
/*
 * In an object: the next key, matched against names (bit i of *seen marks
 * names[i] as seen; a repeat is SHAPE).  1 with *which = the index or -1 and
 * the value's first event current; 0 at the end of the object; or a status.
 */
int jw_next_key(struct jp *jp, const char *const *names, size_t n, uint32_t *seen, int *which,
                const char *where) __attribute__((warn_unused_result));
/* 1 when the current value is an object / array (entered), 0 when null, else SHAPE. */
int jw_open_map(struct jp *jp, const char *what) __attribute__((warn_unused_result));
int jw_open_seq(struct jp *jp, const char *what) __attribute__((warn_unused_result));
/* A string value into dst[cap]: 1 when a string, 0 when null ("" stored); LIMIT when too long. */
int jw_take_str(struct jp *jp, char *dst, size_t cap, const char *what)
    __attribute__((warn_unused_result));
/* 1 when the value is the string s, 0 when another string or null, SHAPE for another type. */
int jw_str_is(struct jp *jp, const char *s, const char *what) __attribute__((warn_unused_result));

#endif
