/* The policy file's text layer: YAML into a located tree, diagnostics, typed scalars, units. */
#include "policy.h"
#include "policy_int.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

/* Leading decimal digits of s into *out; returns how many bytes were digits, or a status. */
static int parse_digits(const char *s, size_t len, uint64_t *out, size_t *used)
{
	uint64_t v = 0;
	size_t i = 0;

	while (i < len && s[i] >= '0' && s[i] <= '9') {
		uint64_t dig = (uint64_t)(s[i] - '0');
		if (v > (UINT64_MAX - dig) / 10)
			return POLICY_UNIT_ERR_OVERFLOW;
		v = v * 10 + dig;
		i++;
	}
	if (i == 0)
		return POLICY_UNIT_ERR_SYNTAX;
	/* "010" is octal to some YAML readers and decimal to others: refuse the doubt. */
	if (i > 1 && s[0] == '0')
		return POLICY_UNIT_ERR_LEADING_ZERO;
	*out = v;
	*used = i;
	return POLICY_UNIT_OK;
}

int policy_parse_uint(const char *s, size_t len, uint64_t *out)
{
	uint64_t v;
	size_t used;
	int rc;

	if (s == NULL || len == 0)
		return POLICY_UNIT_ERR_EMPTY;
	rc = parse_digits(s, len, &v, &used);
	if (rc != POLICY_UNIT_OK)
		return rc;
	if (used != len)
		return POLICY_UNIT_ERR_SYNTAX;
	*out = v;
	return POLICY_UNIT_OK;
}

struct unit {
	const char *name;
	uint64_t mult;
};

/* Case-sensitive.  SI units are powers of 1000, IEC units powers of 1024. */
static const struct unit size_units[] = {
    {"", 1},
    {"B", 1},
    {"KB", 1000ULL},
    {"MB", 1000ULL * 1000},
    {"GB", 1000ULL * 1000 * 1000},
    {"TB", 1000ULL * 1000 * 1000 * 1000},
    {"KiB", 1ULL << 10},
    {"MiB", 1ULL << 20},
    {"GiB", 1ULL << 30},
    {"TiB", 1ULL << 40},
};

static const struct unit duration_units[] = {
    {"ms", 1},
    {"s", 1000ULL},
    {"m", 60ULL * 1000},
    {"h", 3600ULL * 1000},
};

static int parse_with_units(const char *s, size_t len, const struct unit *units, size_t n_units,
                            uint64_t *out)
{
	uint64_t v;
	size_t used;
	int rc;

	if (s == NULL || len == 0)
		return POLICY_UNIT_ERR_EMPTY;
	rc = parse_digits(s, len, &v, &used);
	if (rc != POLICY_UNIT_OK)
		return rc;
	const char *u = s + used;
	size_t ulen = len - used;
	/* A fraction, a space or a sign after the number is a syntax error, not an unknown unit. */
	if (ulen > 0 && (u[0] == '.' || u[0] == ',' || u[0] == ' ' || u[0] == '\t' || u[0] == '-' ||
	                 u[0] == '+' || u[0] == '_'))
		return POLICY_UNIT_ERR_SYNTAX;
	for (size_t i = 0; i < n_units; i++) {
		if (strlen(units[i].name) != ulen || memcmp(units[i].name, u, ulen) != 0)
			continue;
		if (v != 0 && v > UINT64_MAX / units[i].mult)
			return POLICY_UNIT_ERR_OVERFLOW;
		*out = v * units[i].mult;
		return POLICY_UNIT_OK;
	}
	return POLICY_UNIT_ERR_UNIT;
}

int policy_parse_size(const char *s, size_t len, uint64_t *out)
{
	return parse_with_units(s, len, size_units, sizeof(size_units) / sizeof(size_units[0]),
	                        out);
}

int policy_parse_duration_ms(const char *s, size_t len, uint64_t *out)
{
	uint64_t v;
	size_t used;

	/* A bare number is ambiguous (seconds? milliseconds?) except 0. */
	if (s != NULL && len > 0 && parse_digits(s, len, &v, &used) == POLICY_UNIT_OK &&
	    used == len) {
		if (v != 0)
			return POLICY_UNIT_ERR_NO_UNIT;
		*out = 0;
		return POLICY_UNIT_OK;
	}
	return parse_with_units(s, len, duration_units,
	                        sizeof(duration_units) / sizeof(duration_units[0]), out);
}

const char *policy_unit_status_str(int status)
{
	static const char *const text[] = {
	    [-POLICY_UNIT_OK] = "ok",
	    [-POLICY_UNIT_ERR_EMPTY] = "empty value",
	    [-POLICY_UNIT_ERR_SYNTAX] = "expected a whole number (no sign, fraction or space)",
	    [-POLICY_UNIT_ERR_LEADING_ZERO] = "leading zeros are not allowed",
	    [-POLICY_UNIT_ERR_UNIT] = "unknown unit",
	    [-POLICY_UNIT_ERR_NO_UNIT] = "a unit is required (ms, s, m or h)",
	    [-POLICY_UNIT_ERR_OVERFLOW] = "number too large",
	};
	if (status > 0 || -status >= (int)(sizeof(text) / sizeof(text[0])))
		return "invalid value";
	return text[-status];
}

/* ---- arena ---- */

struct policy_arena_chunk {
	struct policy_arena_chunk *next;
	size_t used, cap;
	max_align_t mem[];
};

void *policy_arena_alloc(struct policy_arena *a, size_t size)
{
	const size_t al = _Alignof(max_align_t);
	struct policy_arena_chunk *c = a->head;

	if (size > SIZE_MAX / 2)
		return NULL;
	size = size == 0 ? al : (size + al - 1) / al * al;
	if (c == NULL || c->cap - c->used < size) {
		size_t cap = size > 16384 ? size : 16384;
		c = calloc(1, sizeof(*c) + cap);
		if (c == NULL)
			return NULL;
		c->cap = cap;
		c->next = a->head;
		a->head = c;
	}
	void *p = (unsigned char *)c->mem + c->used;
	c->used += size;
	return p;
}

void policy_arena_fini(struct policy_arena *a)
{
	while (a->head != NULL) {
		struct policy_arena_chunk *next = a->head->next;
		free(a->head);
		a->head = next;
	}
}

/* ---- diagnostics and the located tree ---- */

void policy_diags_init(struct policy_diags *d)
{
	d->v = NULL;
	d->n = d->cap = 0;
}

void policy_diags_fini(struct policy_diags *d)
{
	if (d == NULL)
		return;
	free(d->v);
	policy_diags_init(d);
}

void policy_diag_at(struct policy_loader *L, unsigned line, unsigned col, const char *path,
                    const char *msg)
{
	struct policy_diags *d = L->d;

	L->n_err++;
	if (d == NULL || L->n_added >= POLICY_MAX_DIAGS)
		return;
	if (d->n == d->cap) {
		size_t cap = d->cap ? d->cap * 2 : 16;
		struct policy_diag *v = realloc(d->v, cap * sizeof(*v));
		if (v == NULL) {
			L->nomem = true;
			return;
		}
		d->v = v;
		d->cap = cap;
	}
	struct policy_diag *g = &d->v[d->n++];
	L->n_added++;
	if (L->n_added == POLICY_MAX_DIAGS) {
		line = col = 0;
		path = "";
		msg = "too many problems; only the first 99 are listed";
	}
	g->line = line;
	g->col = col;
	snprintf(g->msg, sizeof(g->msg), "%s%s%s", path, *path ? ": " : "", msg);
}

/* Printable, bounded copy of user text for messages. */
const char *policy_clip(const char *s, size_t len, char *out, size_t cap)
{
	size_t o = 0;
	for (size_t i = 0; i < len && o + 4 < cap; i++)
		out[o++] = (s[i] >= 0x20 && s[i] < 0x7f) ? s[i] : '?';
	if (o + 4 >= cap && o < len) {
		memcpy(out + o, "...", 3);
		o += 3;
	}
	out[o] = '\0';
	return out;
}

static size_t node_path(const struct policy_node *n, char *buf, size_t cap)
{
	char tmp[52];
	int r;

	buf[0] = '\0';
	if (n == NULL || n->parent == NULL)
		return 0;
	size_t l = node_path(n->parent, buf, cap);
	if (n->parent->kind == PN_SEQ) {
		r = snprintf(buf + l, cap - l, "[%zu]", n->index);
	} else {
		const struct policy_node *k = n->is_key ? n : n->key;
		const char *name = (k && k->kind == PN_SCALAR)
		                       ? policy_clip(k->s, k->len, tmp, sizeof(tmp))
		                       : "<key>";
		r = snprintf(buf + l, cap - l, "%s%s", l ? "." : "", name);
	}
	l += r > 0 ? (size_t)r : 0;
	return l < cap ? l : cap - 1;
}

void policy_diag(struct policy_loader *L, const struct policy_node *n, const char *fmt, ...)
{
	char path[160], msg[240];
	va_list ap;

	node_path(n, path, sizeof(path));
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	policy_diag_at(L, n->line, n->col, path, msg);
}

/* A required key is absent from mapping (or empty value) m. */
void policy_missing(struct policy_loader *L, const struct policy_node *m, const char *key)
{
	char path[200];
	size_t l = node_path(m, path, 160);
	snprintf(path + l, sizeof(path) - l, "%s%s", l ? "." : "", key);
	policy_diag_at(L, m->line, m->col, path, "required key is missing");
}

static struct policy_node *new_node(struct policy_loader *L, enum policy_node_kind kind,
                                    const yaml_mark_t *mark)
{
	struct policy_node *n;

	if (++L->n_nodes > POLICY_MAX_NODES)
		return NULL;
	n = policy_arena_alloc(&L->tree, sizeof(*n));
	if (n == NULL) {
		L->nomem = true;
		return NULL;
	}
	n->kind = kind;
	n->line = (unsigned)mark->line + 1;
	n->col = (unsigned)mark->column + 1;
	return n;
}

struct frame {
	struct policy_node *node;
	struct policy_node *key; /* a mapping's key still waiting for its value */
};

static void attach(struct frame *stack, size_t depth, struct policy_node **root,
                   struct policy_node *n)
{
	if (depth == 0) {
		*root = n;
		return;
	}
	struct frame *f = &stack[depth - 1];
	struct policy_node *par = f->node;
	n->parent = par;
	if (par->kind == PN_MAP && f->key != NULL) {
		f->key->val = n;
		n->key = f->key;
		n->index = f->key->index;
		f->key = NULL;
		return;
	}
	n->index = par->n++;
	if (par->kind == PN_MAP) {
		n->is_key = true;
		f->key = n;
	}
	if (par->last != NULL)
		par->last->next = n;
	else
		par->first = n;
	par->last = n;
}

static int key_cmp(const void *a, const void *b)
{
	const struct policy_node *x = *(const struct policy_node *const *)a;
	const struct policy_node *y = *(const struct policy_node *const *)b;
	if (x->len != y->len)
		return x->len < y->len ? -1 : 1;
	int c = memcmp(x->s, y->s, x->len);
	if (c != 0)
		return c;
	return x->index < y->index ? -1 : (x->index > y->index);
}

/* Duplicate keys anywhere are errors: a later duplicate would silently override. */
static void check_dup_keys(struct policy_loader *L, struct policy_node *map)
{
	struct policy_node **keys;
	size_t n = 0;

	if (map->n < 2)
		return;
	keys = policy_arena_alloc(&L->tree, map->n * sizeof(*keys));
	if (keys == NULL) {
		L->nomem = true;
		return;
	}
	for (struct policy_node *k = map->first; k != NULL; k = k->next)
		if (k->kind == PN_SCALAR && !k->bad)
			keys[n++] = k;
	qsort(keys, n, sizeof(*keys), key_cmp);
	for (size_t i = 1, first = 0; i < n; i++) {
		if (keys[i]->len != keys[first]->len ||
		    memcmp(keys[i]->s, keys[first]->s, keys[i]->len) != 0) {
			first = i;
			continue;
		}
		policy_diag(L, keys[i], "duplicate key (first defined at line %u, column %u)",
		            keys[first]->line, keys[first]->col);
		keys[i]->bad = true;
	}
}

/* Anchors, aliases and explicit tags are refused: no alias bombs, no type games. */
static void check_props(struct policy_loader *L, struct policy_node *n, const yaml_char_t *anchor,
                        const yaml_char_t *tag)
{
	char t[40];
	if (anchor != NULL)
		policy_diag(
		    L, n, "YAML anchors (&%s) are not allowed",
		    policy_clip((const char *)anchor, strlen((const char *)anchor), t, sizeof(t)));
	if (tag != NULL) {
		policy_diag(
		    L, n, "explicit YAML tags (%s) are not allowed",
		    policy_clip((const char *)tag, strlen((const char *)tag), t, sizeof(t)));
		if (n->kind == PN_SCALAR)
			n->bad = true;
	}
}

static void offset_to_mark(const struct policy_loader *L, size_t off, unsigned *line, unsigned *col)
{
	*line = 1;
	*col = 1;
	for (size_t i = 0; i < off && i < L->len; i++) {
		if (L->buf[i] == '\n') {
			++*line;
			*col = 1;
		} else {
			++*col;
		}
	}
}

static void syntax_diag(struct policy_loader *L, const yaml_parser_t *ps)
{
	unsigned line, col;
	char msg[240];

	if (ps->error == YAML_MEMORY_ERROR) {
		L->nomem = true;
		return;
	}
	if (ps->error == YAML_READER_ERROR) {
		offset_to_mark(L, ps->problem_offset, &line, &col);
		snprintf(msg, sizeof(msg), "invalid text: %s",
		         ps->problem ? ps->problem : "unreadable input");
	} else {
		line = (unsigned)ps->problem_mark.line + 1;
		col = (unsigned)ps->problem_mark.column + 1;
		size_t at = ps->problem_mark.index;
		if (at < L->len && L->buf[at] == '\t')
			/* libyaml's words for it ("cannot start any token") hide the cause. */
			snprintf(msg, sizeof(msg),
			         "YAML syntax error: a tab character here; YAML forbids tabs for "
			         "indentation, indent with spaces");
		else if (ps->context != NULL)
			snprintf(msg, sizeof(msg), "YAML syntax error: %s (%s at line %u)",
			         ps->problem ? ps->problem : "?", ps->context,
			         (unsigned)ps->context_mark.line + 1);
		else
			snprintf(msg, sizeof(msg), "YAML syntax error: %s",
			         ps->problem ? ps->problem : "?");
	}
	policy_diag_at(L, line, col, "", msg);
}

/* Fill a scalar node from its event; the parser owns the text, so copy it into the tree. */
static bool scalar_node(struct policy_loader *L, struct policy_node *n, const yaml_event_t *ev)
{
	n->len = ev->data.scalar.length;
	n->plain = ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
	char *s = policy_arena_alloc(&L->tree, n->len + 1);
	if (s == NULL) {
		L->nomem = true;
		return false;
	}
	memcpy(s, ev->data.scalar.value, n->len);
	n->s = s;
	check_props(L, n, ev->data.scalar.anchor, ev->data.scalar.tag);
	if (n->len > POLICY_MAX_SCALAR) {
		policy_diag(L, n, "value longer than %u bytes", POLICY_MAX_SCALAR);
		n->bad = true;
	}
	return true;
}

/* One event into the tree.  Returns false to stop parsing. */
static bool tree_event(struct policy_loader *L, const yaml_event_t *ev, struct frame *stack,
                       size_t *depth, size_t *skip, struct policy_node **root)
{
	struct policy_node *n;

	if (*skip > 0) {
		if (ev->type == YAML_SEQUENCE_START_EVENT || ev->type == YAML_MAPPING_START_EVENT)
			++*skip;
		else if (ev->type == YAML_SEQUENCE_END_EVENT || ev->type == YAML_MAPPING_END_EVENT)
			--*skip;
		return true;
	}
	switch (ev->type) {
	case YAML_SCALAR_EVENT:
	case YAML_ALIAS_EVENT:
	case YAML_SEQUENCE_START_EVENT:
	case YAML_MAPPING_START_EVENT:
		break;
	case YAML_SEQUENCE_END_EVENT:
	case YAML_MAPPING_END_EVENT:
		n = stack[--*depth].node;
		if (n->kind == PN_MAP)
			check_dup_keys(L, n);
		return true;
	default:
		return true;
	}
	enum policy_node_kind kind = ev->type == YAML_SEQUENCE_START_EVENT  ? PN_SEQ
	                             : ev->type == YAML_MAPPING_START_EVENT ? PN_MAP
	                                                                    : PN_SCALAR;
	if (kind != PN_SCALAR && *depth >= POLICY_MAX_DEPTH)
		kind = PN_SCALAR; /* a placeholder for the refused subtree */
	n = new_node(L, kind, &ev->start_mark);
	if (n == NULL) {
		if (!L->nomem)
			policy_diag_at(L, (unsigned)ev->start_mark.line + 1,
			               (unsigned)ev->start_mark.column + 1, "",
			               "policy too large: more than 100000 YAML nodes");
		return false;
	}
	n->s = "";
	attach(stack, *depth, root, n);
	if (n->is_key && kind != PN_SCALAR) {
		policy_diag(L, n, "mapping keys must be plain strings");
		n->bad = true;
	}
	if (ev->type == YAML_ALIAS_EVENT) {
		char t[40];
		const char *a = (const char *)ev->data.alias.anchor;
		policy_diag(L, n, "YAML aliases (*%s) are not allowed",
		            policy_clip(a, strlen(a), t, sizeof(t)));
		n->bad = true;
	} else if (ev->type == YAML_SCALAR_EVENT) {
		if (!scalar_node(L, n, ev))
			return false;
	} else if (kind == PN_SCALAR) {
		/*
		 * Stop here: libyaml's work on deeply nested flow collections grows
		 * with the square of the depth, so reading on would let one file
		 * stall the loader (and a reload, the main thread) for seconds.
		 */
		policy_diag(L, n, "nesting deeper than %u levels; the rest of the file is not read",
		            POLICY_MAX_DEPTH);
		n->bad = true;
		return false;
	} else {
		bool seq = kind == PN_SEQ;
		check_props(L, n,
		            seq ? ev->data.sequence_start.anchor : ev->data.mapping_start.anchor,
		            seq ? ev->data.sequence_start.tag : ev->data.mapping_start.tag);
		stack[*depth].node = n;
		stack[*depth].key = NULL;
		++*depth;
	}
	return true;
}

/* Parse the whole buffer into a tree.  False when the tree is incomplete (syntax error...). */
bool policy_tree_build(struct policy_loader *L, struct policy_node **root)
{
	yaml_parser_t ps;
	yaml_event_t ev;
	struct frame stack[POLICY_MAX_DEPTH];
	size_t depth = 0, skip = 0;
	int docs = 0;
	bool ok = true;

	if (!yaml_parser_initialize(&ps)) {
		L->nomem = true;
		return false;
	}
	yaml_parser_set_input_string(&ps, (const unsigned char *)L->buf, L->len);
	for (;;) {
		if (!yaml_parser_parse(&ps, &ev)) {
			syntax_diag(L, &ps);
			ok = false;
			break;
		}
		bool more = ev.type != YAML_STREAM_END_EVENT;
		if (ev.type == YAML_DOCUMENT_START_EVENT && ++docs > 1) {
			policy_diag_at(L, (unsigned)ev.start_mark.line + 1,
			               (unsigned)ev.start_mark.column + 1, "",
			               "only one YAML document is allowed");
			more = false;
		} else if (!tree_event(L, &ev, stack, &depth, &skip, root)) {
			ok = false;
			more = false;
		}
		yaml_event_delete(&ev);
		if (!more)
			break;
	}
	yaml_parser_delete(&ps);
	return ok && !L->nomem;
}

/* ---- typed access with messages ---- */

bool policy_is_null(const struct policy_node *n)
{
	static const char *const nulls[] = {"", "~", "null", "Null", "NULL"};
	if (n->kind != PN_SCALAR || !n->plain)
		return false;
	for (size_t i = 0; i < sizeof(nulls) / sizeof(nulls[0]); i++)
		if (n->len == strlen(nulls[i]) && memcmp(n->s, nulls[i], n->len) == 0)
			return true;
	return false;
}

static const char *got(const struct policy_node *n)
{
	if (n->kind == PN_MAP)
		return "a mapping";
	if (n->kind == PN_SEQ)
		return "a sequence";
	return policy_is_null(n) ? "an empty value" : "a scalar";
}

bool policy_want(struct policy_loader *L, const struct policy_node *n, enum policy_node_kind k)
{
	static const char *const names[] = {"a scalar value", "a sequence", "a mapping"};
	if (n->bad)
		return false;
	if (n->kind == k && !(k == PN_SCALAR && policy_is_null(n)))
		return true;
	policy_diag(L, n, "expected %s, got %s", names[k], got(n));
	return false;
}

/* A mapping or sequence; an empty value is accepted silently as an empty one (returns false). */
bool policy_container(struct policy_loader *L, const struct policy_node *n, enum policy_node_kind k)
{
	if (n->kind == PN_SCALAR && policy_is_null(n) && !n->bad)
		return false;
	return policy_want(L, n, k);
}

static unsigned edit_distance(const char *a, size_t la, const char *b, size_t lb)
{
	unsigned row[33];

	if (la > 32 || lb > 32)
		return 99;
	for (size_t j = 0; j <= lb; j++)
		row[j] = (unsigned)j;
	for (size_t i = 1; i <= la; i++) {
		unsigned diag_prev = row[0];
		row[0] = (unsigned)i;
		for (size_t j = 1; j <= lb; j++) {
			unsigned up = row[j];
			unsigned best = diag_prev + (a[i - 1] != b[j - 1]);
			if (up + 1 < best)
				best = up + 1;
			if (row[j - 1] + 1 < best)
				best = row[j - 1] + 1;
			row[j] = best;
			diag_prev = up;
		}
	}
	return row[lb];
}

/* "; did you mean 'x'?" for the closest candidate within edit distance 2, else "". */
const char *policy_suggest(const char *s, size_t len, const char *const *cands, size_t n, char *out,
                           size_t cap)
{
	unsigned best = 3;
	const char *pick = NULL;
	for (size_t i = 0; i < n; i++) {
		if (cands[i] == NULL)
			continue;
		unsigned dist = edit_distance(s, len, cands[i], strlen(cands[i]));
		if (dist < best) {
			best = dist;
			pick = cands[i];
		}
	}
	if (pick == NULL)
		return "";
	snprintf(out, cap, "; did you mean '%s'?", pick);
	return out;
}

void policy_check_keys(struct policy_loader *L, const struct policy_node *map,
                       const char *const *keys)
{
	size_t nk = 0;
	while (keys[nk] != NULL)
		nk++;
	for (const struct policy_node *k = map->first; k != NULL; k = k->next) {
		size_t i;
		if (k->bad)
			continue;
		for (i = 0; i < nk; i++)
			if (k->len == strlen(keys[i]) && memcmp(k->s, keys[i], k->len) == 0)
				break;
		if (i < nk)
			continue;
		char hint[80];
		policy_diag(L, k, "unknown key%s",
		            policy_suggest(k->s, k->len, keys, nk, hint, sizeof(hint)));
	}
}

const struct policy_node *policy_get(const struct policy_node *map, const char *key)
{
	if (map == NULL || map->kind != PN_MAP)
		return NULL;
	for (const struct policy_node *k = map->first; k != NULL; k = k->next)
		if (!k->bad && k->kind == PN_SCALAR && k->len == strlen(key) &&
		    memcmp(k->s, key, k->len) == 0)
			return k->val;
	return NULL;
}

/* A mapping section with only the given keys; NULL when absent, empty or not a mapping. */
const struct policy_node *policy_section(struct policy_loader *L, const struct policy_node *parent,
                                         const char *key, const char *const *keys)
{
	const struct policy_node *n = policy_get(parent, key);
	if (n == NULL || !policy_container(L, n, PN_MAP))
		return NULL;
	policy_check_keys(L, n, keys);
	return n;
}

bool policy_want_str(struct policy_loader *L, const struct policy_node *n, const char **s,
                     size_t *len)
{
	if (!policy_want(L, n, PN_SCALAR))
		return false;
	for (size_t i = 0; i < n->len; i++) {
		unsigned char c = (unsigned char)n->s[i];
		if (c < 0x20 || c == 0x7f) {
			policy_diag(L, n, "control characters are not allowed");
			return false;
		}
	}
	*s = n->s;
	*len = n->len;
	return true;
}

bool policy_is_word(const struct policy_node *n, const char *w)
{
	return n->kind == PN_SCALAR && !n->bad && n->len == strlen(w) &&
	       memcmp(n->s, w, n->len) == 0;
}

bool policy_want_uint(struct policy_loader *L, const struct policy_node *n, uint64_t min,
                      uint64_t max, uint64_t *out)
{
	char t[40];
	uint64_t v;
	int rc;

	if (!policy_want(L, n, PN_SCALAR))
		return false;
	if (!n->plain) {
		policy_diag(L, n, "expected an integer, got a quoted string");
		return false;
	}
	rc = policy_parse_uint(n->s, n->len, &v);
	if (rc == POLICY_UNIT_ERR_OVERFLOW) {
		v = UINT64_MAX; /* reported as out of range below */
	} else if (rc != 0) {
		policy_diag(L, n, "expected an integer, got \"%s\"%s",
		            policy_clip(n->s, n->len, t, sizeof(t)),
		            rc == POLICY_UNIT_ERR_LEADING_ZERO ? ": leading zeros are not allowed"
		                                               : "");
		return false;
	}
	if (v < min || v > max || rc != 0) {
		policy_diag(L, n, "%s is out of range (%llu to %llu)",
		            policy_clip(n->s, n->len, t, sizeof(t)), (unsigned long long)min,
		            (unsigned long long)max);
		return false;
	}
	*out = v;
	return true;
}

bool policy_want_u32(struct policy_loader *L, const struct policy_node *n, uint32_t min,
                     uint32_t max, uint32_t *out)
{
	uint64_t v;
	if (n == NULL || !policy_want_uint(L, n, min, max, &v))
		return false;
	*out = (uint32_t)v;
	return true;
}

bool policy_want_bool(struct policy_loader *L, const struct policy_node *n, bool *out)
{
	char t[40];
	if (n == NULL || !policy_want(L, n, PN_SCALAR))
		return false;
	if (n->plain && (policy_is_word(n, "true") || policy_is_word(n, "false"))) {
		*out = n->s[0] == 't';
		return true;
	}
	policy_diag(L, n, "expected true or false, got \"%s\"%s",
	            policy_clip(n->s, n->len, t, sizeof(t)),
	            n->plain ? " (yes/no/on/off are not accepted)" : "");
	return false;
}

/* A size ("8KiB") or duration ("5m") in [min, max]; lo/hi are the bounds as text. */
bool policy_want_unit(struct policy_loader *L, const struct policy_node *n, bool duration,
                      uint64_t min, uint64_t max, const char *lo, const char *hi, uint64_t *out)
{
	char t[40];
	const char *s;
	size_t len;
	uint64_t v;

	if (n == NULL || !policy_want_str(L, n, &s, &len))
		return false;
	int rc = duration ? policy_parse_duration_ms(s, len, &v) : policy_parse_size(s, len, &v);
	if (rc != 0) {
		policy_diag(
		    L, n, "invalid %s \"%s\": %s; %s", duration ? "duration" : "size",
		    policy_clip(s, len, t, sizeof(t)), policy_unit_status_str(rc),
		    duration ? "e.g. 1500ms, 10s, 5m, 1h"
		             : "e.g. 512, 8KiB, 100MiB, 10GB; units B KB MB GB TB KiB MiB GiB TiB");
		return false;
	}
	if (v < min || v > max) {
		policy_diag(L, n, "%s is out of range (%s to %s)",
		            policy_clip(s, len, t, sizeof(t)), lo, hi);
		return false;
	}
	*out = v;
	return true;
}

bool policy_want_ms(struct policy_loader *L, const struct policy_node *n, uint32_t min,
                    uint32_t max, const char *lo, const char *hi, uint32_t *out)
{
	uint64_t v;
	if (!policy_want_unit(L, n, true, min, max, lo, hi, &v))
		return false;
	*out = (uint32_t)v;
	return true;
}
