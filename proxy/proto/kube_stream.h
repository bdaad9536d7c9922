/*
 * Streaming a pod list page or a watch stream in bounded pieces.  A list page
 * can hold any number of objects of any size, and a watch stream any number
 * of events; neither is ever held whole.  The stream is cut into units: the
 * items of a PodList page's top-level "items" array, or the top-level values
 * (events) of a watch stream.  A unit up to max_unit bytes is handed over
 * whole, to be parsed by kube_json; a bigger one is skipped, and only a few
 * small fields read on the way (type, metadata.namespace, name, uid,
 * resourceVersion) are handed over, so the caller can count it and fail
 * closed for that pod alone.
 *
 * Only the structure is tracked here (strings, escapes, brackets, keys):
 * every unit handed over whole and the page's remainder (its "skeleton", with
 * "items":[] emptied) are still checked by the full parser.  Not checked: the
 * separators between items (a page with "[,{...},]" loses nothing: each item
 * is still whole), and the inside of a skipped unit, of which only the few
 * fields above are read, at their exact paths.  Pure: bytes in, callbacks
 * out, no I/O.
 */
#ifndef PORTCULLIS_KUBE_STREAM_H
#define PORTCULLIS_KUBE_STREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kube_json.h"

#define KUBE_STREAM_MAX_SKELETON 65536 /* a page without its items: kind, metadata, continue */

enum kube_stream_mode {
	KUBE_STREAM_LIST,  /* one PodList page: units are the items */
	KUBE_STREAM_WATCH, /* a watch stream: units are the events */
};

enum kube_stream_status {
	KUBE_STREAM_OK = 0,
	KUBE_STREAM_ERR_SYNTAX = -1, /* brackets that do not match, bytes after the page, ... */
	KUBE_STREAM_ERR_SHAPE = -2,  /* a page that is not an object, a unit that is not one */
	KUBE_STREAM_ERR_LIMIT = -3,  /* nesting over KUBE_MAX_DEPTH, skeleton over its bound */
	KUBE_STREAM_ERR_ABORT = -4,  /* the callback returned non-zero */
	KUBE_STREAM_ERR_NOMEM = -5,
};

/* One unit, valid during the callback. */
struct kube_unit {
	const char *p; /* the unit's bytes; NULL when it was over max_unit (skipped) */
	size_t len;    /* of p */
	size_t bytes;  /* the unit's whole size */
	/* Read on the way; "" when absent, too long, or escaped. WATCH: of the event's
	 * "object"; LIST: of the item. */
	char type[16]; /* WATCH: the event's "type" */
	char ns[KUBE_NS_MAX];
	char name[KUBE_NAME_MAX];
	char uid[KUBE_UID_MAX];
	char resource_version[KUBE_RV_MAX];
};

typedef int (*kube_unit_fn)(void *arg, const struct kube_unit *u);

struct kube_stream;

/* NULL when out of memory. max_unit: the largest unit handed over whole. */
struct kube_stream *kube_stream_new(enum kube_stream_mode mode, size_t max_unit);
void kube_stream_free(struct kube_stream *s); /* NULL ok */
/* Start over (a new page or stream); the buffers are kept. */
void kube_stream_reset(struct kube_stream *s);

/*
 * Feed the next bytes; fn is called for every unit that ends in them.  A
 * negative status is final: reset before feeding again.  err (may be NULL)
 * receives a short reason.
 */
int kube_stream_feed(struct kube_stream *s, const char *p, size_t n, kube_unit_fn fn, void *arg,
                     char *err, size_t errlen) __attribute__((warn_unused_result));

/*
 * The input ended.  LIST: the page must be complete; *skel / *skel_len is the
 * page without its items, for kube_parse_list.  WATCH: no event may be left
 * half-read (*skel is NULL).  Units handed over (both modes) in *units.
 */
int kube_stream_end(struct kube_stream *s, const char **skel, size_t *skel_len, size_t *units,
                    char *err, size_t errlen) __attribute__((warn_unused_result));

#endif
