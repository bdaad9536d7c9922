/* Private layout of a policy snapshot, shared by policy.c (loading) and decide.c (queries). */
#ifndef PORTCULLIS_POLICY_INT_H
#define PORTCULLIS_POLICY_INT_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "host.h"
#include "policy.h"
#include "ranges.h"

/* Limits on the file itself and on lists in it ("too many of anything"). */
#define POLICY_MAX_FILE_BYTES (1u << 20)
#define POLICY_MAX_DEPTH      16
#define POLICY_MAX_SCALAR     4096
#define POLICY_MAX_NODES      100000
#define POLICY_MAX_DIAGS      100
#define POLICY_MAX_TIERS      256
#define POLICY_MAX_RULES      4096 /* per tier */
#define POLICY_MAX_PORTS      64   /* per rule, and require_tls_ports */
#define POLICY_MAX_CIDRS      1024 /* per list: blocked_ranges, sources, allow_ranges */
#define POLICY_MAX_SOURCES    4096 /* sources over all tiers */
#define POLICY_MAX_METHODS    32   /* http.methods entries */
#define POLICY_METHOD_MAX     32   /* characters of one method */
#define POLICY_MAX_JA4        1024 /* entries of tls.ja4_allow, and of tls.ja4_deny */
#define POLICY_TIER_NAME_MAX  63
#define POLICY_RULE_NAME_MAX  128
#define POLICY_MAX_INTERCEPT_REQS 256 /* requests: entries of one intercept: block */

/* Milliseconds per second, minute, hour. */
#define MS_S 1000u
#define MS_M (60u * MS_S)
#define MS_H (60u * MS_M)

/* One allow rule of a tier. */
struct policy_rule {
	struct pc_host pat; /* canonical pattern: name suffix for a wildcard, or an address */
	bool wildcard;      /* "*.suffix" */
	const char *name;   /* rule name; default the canonical pattern text */
	const char *pattern; /* the canonical pattern text ("*.suffix" for a wildcard) */
	const uint16_t *ports;
	size_t n_ports;
	unsigned line, col; /* the rule's place in the file (for explain and warnings) */
	const struct policy_intercept *intercept; /* intercept:, or NULL */
};

/* One intercept.requests entry (intercept.c). */
struct urlpath_glob;
struct policy_intercept_req {
	const char *name;           /* name:, or "<host pattern>[i]" */
	const char *const *methods; /* uppercase tokens; n_methods 0: any method */
	size_t n_methods;
	const char *path; /* the glob as written */
	const struct urlpath_glob *glob;
	bool allow; /* action: allow (else deny) */
	unsigned line, col;
};

/* One CIDR entry of a list in the file, kept with its place (for explain and warnings). */
struct policy_cidr {
	struct pc_addr a;
	unsigned plen;
	unsigned line, col;
};

/* A tier: the public part the proxy reads, plus what decisions need. */
struct policy_tier_int {
	struct policy_tier pub;
	const struct policy_rule *rules;
	size_t n_rules;
	struct range_set *allow_ranges; /* never NULL in a loaded snapshot */
	/* The file's own text of the lists above, in file order, with places. */
	const struct policy_cidr *sources_list, *allow_list;
	size_t n_sources_list, n_allow_list;
	unsigned mode_line, mode_col; /* of `mode:`'s value; 0 when not set */
	/* Places for tools that edit the file (learn's diff): the tier's key, its body
	 * (0 when the body is empty) and its allow: value (0 when absent). */
	unsigned key_line, key_col, body_line, body_col, allow_line, allow_col;
};

/* Bump allocator: everything a snapshot owns besides its range sets lives here. */
struct policy_arena_chunk;
struct policy_arena {
	struct policy_arena_chunk *head;
};

struct policy {
	atomic_size_t refs;
	struct policy_settings set;
	struct policy_tier_int *tiers;
	size_t n_tiers;
	size_t n_rules;            /* over all tiers */
	struct range_set *blocked; /* built-in + blocked_ranges */
	struct range_set *sources; /* every tier's sources, tag = tier index */
	struct range_set *pp_trusted[POLICY_MAX_LISTEN]; /* listen.proxy[i].proxy_protocol.trusted */
	const struct policy_cidr *pp_trusted_list[POLICY_MAX_LISTEN]; /* ... as written, for warn.c */
	size_t n_pp_trusted_list[POLICY_MAX_LISTEN];
	struct policy_arena arena; /* strings, tiers, rules, ports */
	/* Places and raw settings that only explain and the warnings read. */
	const struct policy_cidr *blocked_list; /* blocked_ranges entries, file order */
	size_t n_blocked_list;
	unsigned unknown_line, unknown_col; /* identity.unknown_source's value; 0 when unset */
	unsigned queue_line, queue_col;     /* audit.queue_size's value; 0 when unset */
	const uint16_t *default_tls_ports;  /* top-level tls.require_tls_ports (or built-in) */
	size_t n_default_tls_ports;
	void *ext; /* policy_set_ext */
	void (*ext_free)(void *);
	bool header_bytes_set; /* limits.max_header_bytes was given */
};

void *policy_arena_alloc(struct policy_arena *a, size_t size) __attribute__((warn_unused_result));
void policy_arena_fini(struct policy_arena *a);

/* Strict YAML integer: decimal digits only, no sign, no leading zero (policy_unit_status). */
int policy_parse_uint(const char *s, size_t len, uint64_t *out) __attribute__((warn_unused_result));

/* A new snapshot with refcount 1, the built-in blocked ranges and every default setting. */
int policy_create(struct policy **out) __attribute__((warn_unused_result));
/* The built-in defaults of a tier's tls:, caps:, http: and timeouts: (timeouts from s). */
void policy_tier_builtin(struct policy_tier *t, const struct policy_settings *s);
/* Free a snapshot whose refcount reached zero (or a half-built one). */
void policy_destroy(struct policy *p);

/* ---- loading internals: units.c (text layer) and policy.c (schema) ---- */

/* A YAML node with its place in the file. */
enum policy_node_kind { PN_SCALAR, PN_SEQ, PN_MAP };

struct policy_node {
	enum policy_node_kind kind;
	bool plain;  /* an unquoted scalar */
	bool bad;    /* already reported (alias, too deep, tag, duplicate key...): skip silently */
	bool is_key; /* a mapping key */
	unsigned line, col;
	size_t index; /* position among the parent's items / keys */
	const struct policy_node *parent;
	const struct policy_node *key;           /* for a mapping value: its key */
	struct policy_node *val;                 /* for a mapping key: its value */
	struct policy_node *first, *last, *next; /* items of a sequence, keys of a mapping */
	size_t n;
	const char *s; /* scalar bytes, NUL-terminated; may hold NUL itself: use len */
	size_t len;
};

/* A `sources` entry already seen, for the overlap check between tiers. */
struct policy_src_seen {
	struct pc_addr a;
	unsigned plen;
	int tier;
	unsigned line, col;
};

/* State of one load: diagnostics, the tree, the snapshot being built. */
struct policy_loader {
	struct policy_diags *d;
	size_t n_err, n_added;
	bool nomem;
	const char *buf;
	size_t len;
	struct policy_arena tree;
	size_t n_nodes;
	struct policy *p;
	struct policy_src_seen *srcs;
	size_t n_srcs;
	struct policy_tier tier_defaults; /* built-in, then top-level tls:, caps: and http: */
	bool interception_given;          /* the file has an interception: key */
};

/* Diagnostics: located, prefixed with the node's path ("tiers.a.allow[2].host: ..."). */
void policy_diag_at(struct policy_loader *L, unsigned line, unsigned col, const char *path,
                    const char *msg);
void policy_diag(struct policy_loader *L, const struct policy_node *n, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void policy_missing(struct policy_loader *L, const struct policy_node *m, const char *key);
/* Printable, bounded copy of user text for messages. */
const char *policy_clip(const char *s, size_t len, char *out, size_t cap);

/* Parse L->buf into a tree; false when it is incomplete (syntax error, limits, no memory). */
bool policy_tree_build(struct policy_loader *L, struct policy_node **root)
    __attribute__((warn_unused_result));

/*
 * Typed access.  Each want_* reports a located problem and returns false when
 * the node is not what is wanted; NULL nodes (absent keys) return false
 * silently where noted, and nodes already reported (bad) always do.
 */
bool policy_is_null(const struct policy_node *n);
bool policy_is_word(const struct policy_node *n, const char *w);
bool policy_want(struct policy_loader *L, const struct policy_node *n, enum policy_node_kind k);
/* A mapping or sequence; an empty value is silently false (an empty collection). */
bool policy_container(struct policy_loader *L, const struct policy_node *n,
                      enum policy_node_kind k);
/* Unknown keys of map, each with "did you mean" when one of keys is within edit distance 2. */
void policy_check_keys(struct policy_loader *L, const struct policy_node *map,
                       const char *const *keys);
/* "; did you mean 'x'?" or "" (out is the buffer). */
const char *policy_suggest(const char *s, size_t len, const char *const *cands, size_t n, char *out,
                           size_t cap);
/* Value of key in map (NULL when absent or map is not a mapping). */
const struct policy_node *policy_get(const struct policy_node *map, const char *key);
/* policy_get + policy_container(mapping) + policy_check_keys. */
const struct policy_node *policy_section(struct policy_loader *L, const struct policy_node *parent,
                                         const char *key, const char *const *keys);
bool policy_want_str(struct policy_loader *L, const struct policy_node *n, const char **s,
                     size_t *len);
bool policy_want_uint(struct policy_loader *L, const struct policy_node *n, uint64_t min,
                      uint64_t max, uint64_t *out);
bool policy_want_u32(struct policy_loader *L, const struct policy_node *n, uint32_t min,
                     uint32_t max, uint32_t *out); /* NULL: false */
bool policy_want_bool(struct policy_loader *L, const struct policy_node *n,
                      bool *out); /* NULL: false */
/* A size or a duration (ms) in [min, max]; lo and hi are the bounds as text.  NULL: false. */
bool policy_want_unit(struct policy_loader *L, const struct policy_node *n, bool duration,
                      uint64_t min, uint64_t max, const char *lo, const char *hi, uint64_t *out);
/* identity.c: the identity: section (after the tiers: it names them). */
void policy_load_identity(struct policy_loader *L, const struct policy_node *root);

/* identity.c: a copy of s in the snapshot's arena (NULL, nomem set, when out of memory). */
char *policy_arena_str(struct policy_loader *L, const char *s, size_t len);
/* identity.c: the index of the tier named by v, or -1 with a located "did you mean" problem. */
int policy_tier_by_name(struct policy_loader *L, const struct policy_node *v, const char *what);
/* oidc.c: identity.oidc (from policy_load_identity) and listen.proxy[i].auth checks. */
void policy_load_oidc(struct policy_loader *L, const struct policy_node *id);

bool policy_want_ms(struct policy_loader *L, const struct policy_node *n, uint32_t min,
                    uint32_t max, const char *lo, const char *hi, uint32_t *out);

/* policy.c: a file path (a non-empty string without NUL) copied into the snapshot, or NULL. */
const char *policy_want_path(struct policy_loader *L, const struct policy_node *v);
/* policy.c: one method token, as http.methods takes it (uppercase A-Z and '-', not CONNECT). */
bool policy_want_method(struct policy_loader *L, const struct policy_node *n, const char **s,
                        size_t *len);
/*
 * policy.c: a list of 1..POLICY_MAX_METHODS distinct methods into the snapshot, or `any`
 * (*n = 0).  False (and *out, *n untouched) when it is not valid; NULL v is false silently.
 */
bool policy_load_method_list(struct policy_loader *L, const struct policy_node *v,
                             const char *const **out, size_t *n);
/* intercept.c: the top-level interception: section (before the tiers). */
void policy_load_interception(struct policy_loader *L, const struct policy_node *root);
/* intercept.c: rule r's intercept: block v (r's pattern already parsed, or NULL on error). */
void policy_load_intercept(struct policy_loader *L, const struct policy_node *v,
                           struct policy_rule *r);

#endif
