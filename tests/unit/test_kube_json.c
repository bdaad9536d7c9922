/* Unit tests for the Kubernetes JSON parser (proxy/kube_json.c) and its JSON gate (json_gate.c). */
#include "kube_json.h"
#include "json_gate.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#define KUBE_DIR TEST_DATA_DIR "/kube"

static struct kube_event EV;
static struct kube_list_meta META;
static char ERR[256];

/* ---- helpers ---------------------------------------------------------------- */

/* An exact-size copy without a NUL, so ASan catches any read past len. */
static char *exact(const char *s, size_t n)
{
	char *p = malloc(n ? n : 1);
	assert_non_null(p);
	memcpy(p, s, n);
	return p;
}

static char *vfmt(const char *f, va_list ap) __attribute__((format(printf, 1, 0)));
static char *vfmt(const char *f, va_list ap)
{
	char *s = NULL;
	assert_true(vasprintf(&s, f, ap) >= 0);
	return s;
}

static char *load(const char *name, size_t *len)
{
	char path[512];
	snprintf(path, sizeof(path), "%s/%s", KUBE_DIR, name);
	FILE *f = fopen(path, "rb");
	assert_non_null(f);
	assert_int_equal(fseek(f, 0, SEEK_END), 0);
	long n = ftell(f);
	assert_true(n > 0);
	rewind(f);
	char *b = malloc((size_t)n);
	assert_non_null(b);
	assert_int_equal(fread(b, 1, (size_t)n, f), (size_t)n);
	fclose(f);
	*len = (size_t)n;
	return b;
}

static int ev_n(const char *s, size_t n)
{
	char *c = exact(s, n);
	int rc = kube_parse_event(c, n, &EV, ERR, sizeof(ERR));
	free(c);
	return rc;
}

/* Parse a watch event built from a printf format. */
static int ev_rc(const char *f, ...) __attribute__((format(printf, 1, 2)));
static int ev_rc(const char *f, ...)
{
	va_list ap;
	va_start(ap, f);
	char *s = vfmt(f, ap);
	va_end(ap);
	int rc = ev_n(s, strlen(s));
	free(s);
	return rc;
}

/* An ADDED event for a pod with these metadata extras, spec and status. */
#define POD_EV(meta, spec, status)                                                                 \
	"{\"type\":\"ADDED\",\"object\":{\"kind\":\"Pod\",\"apiVersion\":\"v1\",\"metadata\":{"    \
	"\"name\":\"p\",\"namespace\":\"ns\",\"uid\":\"u-1\"" meta "},\"spec\":" spec              \
	",\"status\":" status "}}"

/* Pods the list callback saw, copied (labels rebased into the copy). */
struct seen {
	size_t n;
	int stop_at; /* return non-zero at this call (1-based), 0 never */
	struct kube_pod pods[8];
};

static int collect(void *arg, const struct kube_pod *pod)
{
	struct seen *s = arg;
	assert_true(s->n < 8);
	struct kube_pod *d = &s->pods[s->n++];
	memcpy(d, pod, sizeof(*d));
	for (size_t i = 0; i < pod->n_labels; i++) {
		d->labels[i].key = d->label_blob + (pod->labels[i].key - pod->label_blob);
		d->labels[i].value = d->label_blob + (pod->labels[i].value - pod->label_blob);
	}
	return s->stop_at != 0 && (size_t)s->stop_at == s->n;
}

static struct seen SEEN;

static int list_n(const char *s, size_t n)
{
	char *c = exact(s, n);
	memset(&SEEN, 0, sizeof(SEEN));
	int rc = kube_parse_list(c, n, collect, &SEEN, &META, ERR, sizeof(ERR));
	free(c);
	return rc;
}

static int list_rc(const char *f, ...) __attribute__((format(printf, 1, 2)));
static int list_rc(const char *f, ...)
{
	va_list ap;
	va_start(ap, f);
	char *s = vfmt(f, ap);
	va_end(ap);
	int rc = list_n(s, strlen(s));
	free(s);
	return rc;
}

#define LIST(items)                                                                                \
	"{\"kind\":\"PodList\",\"apiVersion\":\"v1\",\"metadata\":{\"resourceVersion\":\"7\"},"    \
	"\"items\":[" items "]}"
#define ITEM(uid) "{\"metadata\":{\"name\":\"n\",\"namespace\":\"ns\",\"uid\":\"" uid "\"}}"

static char *repeat(char c, size_t n)
{
	char *s = malloc(n + 1);
	assert_non_null(s);
	memset(s, c, n);
	s[n] = '\0';
	return s;
}

static void assert_ip(const struct pc_addr *a, const char *text)
{
	char buf[ADDR_STRLEN];
	addr_format(a, buf, sizeof(buf));
	assert_string_equal(buf, text);
}

/* ---- the fixtures ------------------------------------------------------------- */

static void test_list_page1(void **state)
{
	size_t n;
	char *b = load("podlist_page1.json", &n);
	assert_int_equal(list_n(b, n), KUBE_JSON_OK);
	free(b);
	assert_string_equal(META.resource_version, "183735");
	assert_string_equal(
	    META.cont,
	    "eyJ2IjoibWV0YS5rOHMuaW8vdjEiLCJydiI6MTgzNzM1LCJzdGFydCI6InJ1bm5lci1uZXcifQ");
	assert_int_equal(META.n_items, 5);
	assert_int_equal(SEEN.n, 5);

	const struct kube_pod *p = &SEEN.pods[0];
	assert_string_equal(p->uid, "5f1c6f3e-8a53-4b8e-9b3c-2f9d7c1e0a11");
	assert_string_equal(p->ns, "gitlab-runners");
	assert_string_equal(p->name, "runner-t2sk1ymx-project-42-concurrent-0-8vq2lm1k");
	assert_string_equal(p->resource_version, "183724");
	assert_string_equal(p->created, "2026-01-15T09:12:44Z");
	assert_false(p->terminating);
	assert_false(p->host_network);
	assert_int_equal(p->phase, KUBE_PHASE_RUNNING);
	/* podIP first, podIPs deduplicated, hostIP(s) never */
	assert_int_equal(p->n_ips, 2);
	assert_ip(&p->ips[0], "10.42.3.17");
	assert_ip(&p->ips[1], "fd00:10:42:3::11");
	assert_int_equal(p->n_labels, 5);
	assert_false(p->labels_overflow);
	assert_string_equal(kube_pod_label(p, "portcullis.io/tier"), "ci-default");
	assert_string_equal(kube_pod_label(p, "pod"), "runner-t2sk1ymx-project-42-concurrent-0");
	assert_null(kube_pod_label(p, "job.runner.gitlab.com/id")); /* an annotation */
	assert_null(kube_pod_label(p, "portcullis.io/tie"));

	p = &SEEN.pods[1];
	assert_string_equal(p->created, "2026-01-15T09:13:02.512Z");
	assert_string_equal(kube_pod_label(p, "portcullis.io/tier"), "ci-trusted");
	assert_int_equal(p->n_ips, 1);
	assert_ip(&p->ips[0], "10.42.1.9");

	assert_true(SEEN.pods[2].host_network);
	assert_int_equal(SEEN.pods[3].phase, KUBE_PHASE_SUCCEEDED);
	assert_int_equal(SEEN.pods[4].phase, KUBE_PHASE_PENDING);
	assert_int_equal(SEEN.pods[4].n_ips, 0);
}

static void test_list_page2(void **state)
{
	size_t n;
	char *b = load("podlist_page2.json", &n);
	assert_int_equal(list_n(b, n), KUBE_JSON_OK);
	free(b);
	assert_string_equal(META.cont, "");
	assert_int_equal(SEEN.n, 3);
	assert_true(SEEN.pods[0].terminating);
	/* 65 labels: none kept */
	assert_true(SEEN.pods[1].labels_overflow);
	assert_int_equal(SEEN.pods[1].n_labels, 0);
	assert_null(kube_pod_label(&SEEN.pods[1], "l00.example.com/k"));
	assert_int_equal(SEEN.pods[2].n_ips, 1);
	assert_ip(&SEEN.pods[2].ips[0], "fd00:10:42:9::3");
}

static void test_list_pretty_and_empty(void **state)
{
	size_t n;
	char *b = load("podlist_pretty.json", &n); /* 4-space indented, kind after items */
	assert_int_equal(list_n(b, n), KUBE_JSON_OK);
	free(b);
	assert_int_equal(SEEN.n, 1);
	assert_string_equal(META.resource_version, "183736");
	assert_string_equal(kube_pod_label(&SEEN.pods[0], "app.kubernetes.io/component"), "runner");

	b = load("podlist_empty.json", &n);
	assert_int_equal(list_n(b, n), KUBE_JSON_OK);
	free(b);
	assert_int_equal(META.n_items, 0);
	assert_int_equal(SEEN.n, 0);
	assert_string_equal(META.resource_version, "200001");
}

static void test_watch_stream(void **state)
{
	static const struct {
		enum kube_event_type type;
		const char *rv;
	} want[] = {{KUBE_EV_ADDED, "183724"},
	            {KUBE_EV_MODIFIED, "183800"},
	            {KUBE_EV_DELETED, "183812"},
	            {KUBE_EV_BOOKMARK, "183900"},
	            {KUBE_EV_ERROR, ""}};
	size_t n, k = 0;
	char *b = load("watch.jsonl", &n);
	for (char *s = b, *e = b + n; s < e; k++) {
		char *nl = memchr(s, '\n', (size_t)(e - s));
		assert_non_null(nl);
		assert_true(k < 5);
		assert_int_equal(ev_n(s, (size_t)(nl - s)), KUBE_JSON_OK);
		assert_int_equal(EV.type, want[k].type);
		assert_string_equal(EV.resource_version, want[k].rv);
		if (EV.type <= KUBE_EV_DELETED) {
			assert_string_equal(EV.pod.uid, "5f1c6f3e-8a53-4b8e-9b3c-2f9d7c1e0a11");
			assert_int_equal(EV.pod.n_ips, 2);
		}
		if (EV.type == KUBE_EV_MODIFIED)
			assert_true(EV.pod.terminating);
		if (EV.type == KUBE_EV_DELETED)
			assert_int_equal(EV.pod.phase, KUBE_PHASE_SUCCEEDED);
		if (EV.type == KUBE_EV_ERROR) {
			assert_int_equal(EV.code, 410);
			assert_string_equal(EV.reason, "Expired");
		}
		s = nl + 1;
	}
	assert_int_equal(k, 5);
	free(b);
}

/* Every strict prefix of a document is refused, the whole one accepted; no callback for a prefix.
 */
static void check_prefixes(const char *name, bool list)
{
	size_t n;
	char *b = load(name, &n);
	size_t end = n;
	while (end > 0 && strchr(" \t\r\n", b[end - 1]) != NULL)
		end--;
	for (size_t k = 0; k <= n; k++) {
		int rc = list ? list_n(b, k) : ev_n(b, k);
		if (k < end) {
			assert_int_not_equal(rc, KUBE_JSON_OK);
			assert_true(rc == KUBE_JSON_ERR_SYNTAX);
			if (list)
				assert_int_equal(SEEN.n, 0);
		} else {
			assert_int_equal(rc, KUBE_JSON_OK);
		}
	}
	free(b);
}

static void test_truncated_prefixes(void **state)
{
	check_prefixes("podlist_page1.json", true);
	check_prefixes("podlist_page2.json", true);
	check_prefixes("podlist_pretty.json", true);
	check_prefixes("podlist_empty.json", true);

	/* the first watch line, as a file of its own */
	size_t n;
	char *b = load("watch.jsonl", &n);
	char *nl = memchr(b, '\n', n);
	assert_non_null(nl);
	for (size_t k = 0; k < (size_t)(nl - b); k++)
		assert_int_equal(ev_n(b, k), KUBE_JSON_ERR_SYNTAX);
	assert_int_equal(ev_n(b, (size_t)(nl - b)), KUBE_JSON_OK);
	assert_int_equal(ev_n(b, (size_t)(nl - b) + 1), KUBE_JSON_OK); /* with its newline */
	free(b);
}

/* ---- lists -------------------------------------------------------------------- */

static void test_list_checked_before_callback(void **state)
{
	/* a bad third item: the first two never reach the callback */
	assert_int_equal(list_rc(LIST(ITEM("a") "," ITEM("b") ",{\"metadata\":{\"name\":\"x\"}}")),
	                 KUBE_JSON_ERR_SHAPE);
	assert_int_equal(SEEN.n, 0);
	assert_non_null(strstr(ERR, "items[2]"));
	assert_int_equal(META.n_items, 0);
	/* kind after items, and wrong */
	assert_int_equal(list_rc("{\"metadata\":{\"resourceVersion\":\"1\"},\"items\":[" ITEM(
	                     "a") "],\"kind\":\"EventList\"}"),
	                 KUBE_JSON_ERR_SHAPE);
	assert_int_equal(SEEN.n, 0);
	/* kind after items, and right */
	assert_int_equal(list_rc("{\"metadata\":{\"resourceVersion\":\"1\"},\"items\":[" ITEM(
	                     "a") "],\"kind\":\"PodList\"}"),
	                 KUBE_JSON_OK);
	assert_int_equal(SEEN.n, 1);
	assert_int_equal(META.n_items, 1);
	/* trailing garbage after a valid page */
	assert_int_equal(list_rc(LIST(ITEM("a")) "x"), KUBE_JSON_ERR_SYNTAX);
	assert_int_equal(SEEN.n, 0);
}

static void test_list_abort(void **state)
{
	char *s = strdup(LIST(ITEM("a") "," ITEM("b") "," ITEM("c")));
	memset(&SEEN, 0, sizeof(SEEN));
	SEEN.stop_at = 2;
	int rc = kube_parse_list(s, strlen(s), collect, &SEEN, &META, ERR, sizeof(ERR));
	assert_int_equal(rc, KUBE_JSON_ERR_ABORT);
	assert_int_equal(SEEN.n, 2);
	assert_string_equal(META.resource_version, "");
	/* no callback: check only */
	assert_int_equal(kube_parse_list(s, strlen(s), NULL, NULL, &META, NULL, 0), KUBE_JSON_OK);
	assert_int_equal(META.n_items, 3);
	free(s);
}

static void test_list_required(void **state)
{
	const char *items = "[" ITEM("a") "]";
	assert_int_equal(list_rc("{\"metadata\":{\"resourceVersion\":\"1\"},\"items\":%s}", items),
	                 KUBE_JSON_ERR_SHAPE); /* no kind */
	assert_int_equal(list_rc("{\"kind\":null,\"metadata\":{\"resourceVersion\":\"1\"}}"),
	                 KUBE_JSON_ERR_SHAPE);
	assert_int_equal(list_rc("{\"kind\":\"Status\",\"metadata\":{\"resourceVersion\":\"1\"}}"),
	                 KUBE_JSON_ERR_SHAPE);
	assert_int_equal(list_rc("{\"kind\":\"PodList\",\"items\":%s}", items),
	                 KUBE_JSON_ERR_SHAPE);
	assert_int_equal(list_rc("{\"kind\":\"PodList\",\"metadata\":{},\"items\":%s}", items),
	                 KUBE_JSON_ERR_SHAPE);
	assert_int_equal(list_rc("{\"kind\":\"PodList\",\"metadata\":null}"), KUBE_JSON_ERR_SHAPE);
	assert_int_equal(list_rc("{\"kind\":\"PodList\",\"metadata\":[]}"), KUBE_JSON_ERR_SHAPE);
	assert_int_equal(
	    list_rc("{\"kind\":\"PodList\",\"metadata\":{\"resourceVersion\":\"\"},\"items\":[]}"),
	    KUBE_JSON_ERR_SHAPE);
	assert_int_equal(list_rc("{\"kind\":\"PodList\",\"metadata\":{\"resourceVersion\":7}}"),
	                 KUBE_JSON_ERR_SHAPE);
	/* items absent or null: an empty page */
	assert_int_equal(list_rc("{\"kind\":\"PodList\",\"metadata\":{\"resourceVersion\":\"1\"}}"),
	                 KUBE_JSON_OK);
	assert_int_equal(list_rc("{\"kind\":\"PodList\",\"metadata\":{\"resourceVersion\":\"1\","
	                         "\"continue\":null},\"items\":null}"),
	                 KUBE_JSON_OK);
	assert_int_equal(list_rc("{\"kind\":\"PodList\",\"metadata\":{\"resourceVersion\":\"1\"},"
	                         "\"items\":{}}"),
	                 KUBE_JSON_ERR_SHAPE);
	/* items that are not Pods */
	assert_int_equal(list_rc(LIST("1")), KUBE_JSON_ERR_SHAPE);
	assert_int_equal(list_rc(LIST("null")), KUBE_JSON_ERR_SHAPE);
	assert_int_equal(list_rc(LIST("[]")), KUBE_JSON_ERR_SHAPE);
	assert_int_equal(list_rc(LIST("{}")), KUBE_JSON_ERR_SHAPE);
	assert_int_equal(list_rc(LIST("{\"metadata\":{\"namespace\":\"ns\",\"uid\":\"u\"}}")),
	                 KUBE_JSON_ERR_SHAPE);
	assert_int_equal(list_rc(LIST("{\"metadata\":{\"name\":\"n\",\"uid\":\"u\"}}")),
	                 KUBE_JSON_ERR_SHAPE);
	assert_int_equal(list_rc(LIST("{\"metadata\":{\"name\":\"n\",\"namespace\":\"ns\"}}")),
	                 KUBE_JSON_ERR_SHAPE);
	assert_int_equal(
	    list_rc(LIST("{\"metadata\":{\"name\":\"n\",\"namespace\":\"ns\",\"uid\":\"\"}}")),
	    KUBE_JSON_ERR_SHAPE);
	assert_int_equal(list_rc(LIST("{\"kind\":\"Service\",\"metadata\":{\"name\":\"n\","
	                              "\"namespace\":\"ns\",\"uid\":\"u\"}}")),
	                 KUBE_JSON_ERR_SHAPE);
	assert_int_equal(list_rc(LIST("{\"kind\":\"Pod\",\"metadata\":{\"name\":\"n\","
	                              "\"namespace\":\"ns\",\"uid\":\"u\"}}")),
	                 KUBE_JSON_OK);
	assert_int_equal(list_rc(LIST("{\"kind\":null,\"metadata\":{\"name\":\"n\","
	                              "\"namespace\":\"ns\",\"uid\":\"u\"}}")),
	                 KUBE_JSON_OK);
	/* top-level JSON that is not an object */
	assert_int_equal(list_rc("[]"), KUBE_JSON_ERR_SHAPE);
	assert_int_equal(list_rc("\"PodList\""), KUBE_JSON_ERR_SHAPE);
	assert_int_equal(list_rc("null"), KUBE_JSON_ERR_SHAPE);
	assert_int_equal(list_rc("17"), KUBE_JSON_ERR_SHAPE);
}

/* ---- limits ------------------------------------------------------------------- */

/* tmpl with its one '@' replaced by v. */
static char *subst(const char *tmpl, const char *v)
{
	const char *at = strchr(tmpl, '@');
	assert_non_null(at);
	size_t a = (size_t)(at - tmpl), b = strlen(at + 1), n = strlen(v);
	char *s = malloc(a + n + b + 1);
	assert_non_null(s);
	memcpy(s, tmpl, a);
	memcpy(s + a, v, n);
	memcpy(s + a + n, at + 1, b + 1);
	return s;
}

/* A field of length max-1 is kept, max is LIMIT. */
static void check_field_limit(const char *tmpl, size_t max, bool list, const char *(*get)(void))
{
	for (size_t len = max - 2; len <= max; len++) {
		char *v = repeat('a', len);
		char *doc = subst(tmpl, v);
		int rc = list ? list_n(doc, strlen(doc)) : ev_n(doc, strlen(doc));
		if (len < max) {
			assert_int_equal(rc, KUBE_JSON_OK);
			assert_string_equal(get(), v);
		} else {
			assert_int_equal(rc, KUBE_JSON_ERR_LIMIT);
			assert_non_null(strstr(ERR, "longer than"));
		}
		free(doc);
		free(v);
	}
}

static const char *get_uid(void)
{
	return EV.pod.uid;
}
static const char *get_ns(void)
{
	return EV.pod.ns;
}
static const char *get_name(void)
{
	return EV.pod.name;
}
static const char *get_rv(void)
{
	return EV.resource_version;
}
static const char *get_created(void)
{
	return EV.pod.created;
}
static const char *get_list_rv(void)
{
	return META.resource_version;
}
static const char *get_cont(void)
{
	return META.cont;
}

#define META_EV(fields) "{\"type\":\"ADDED\",\"object\":{\"metadata\":{" fields "}}}"

static void test_string_limits(void **state)
{
	check_field_limit(META_EV("\"name\":\"n\",\"namespace\":\"ns\",\"uid\":\"@\""),
	                  KUBE_UID_MAX, false, get_uid);
	check_field_limit(META_EV("\"name\":\"n\",\"namespace\":\"@\",\"uid\":\"u\""), KUBE_NS_MAX,
	                  false, get_ns);
	check_field_limit(META_EV("\"name\":\"@\",\"namespace\":\"ns\",\"uid\":\"u\""),
	                  KUBE_NAME_MAX, false, get_name);
	check_field_limit(META_EV("\"name\":\"n\",\"namespace\":\"ns\",\"uid\":\"u\","
	                          "\"resourceVersion\":\"@\""),
	                  KUBE_RV_MAX, false, get_rv);
	check_field_limit(META_EV("\"name\":\"n\",\"namespace\":\"ns\",\"uid\":\"u\","
	                          "\"creationTimestamp\":\"@\""),
	                  KUBE_TIME_MAX, false, get_created);
	check_field_limit(
	    "{\"type\":\"BOOKMARK\",\"object\":{\"metadata\":{\"resourceVersion\":\"@\"}}}",
	    KUBE_RV_MAX, false, get_rv);
	check_field_limit("{\"kind\":\"PodList\",\"metadata\":{\"resourceVersion\":\"@\"}}",
	                  KUBE_RV_MAX, true, get_list_rv);
	check_field_limit(
	    "{\"kind\":\"PodList\",\"metadata\":{\"resourceVersion\":\"1\",\"continue\":\"@\"}}",
	    KUBE_CONTINUE_MAX, true, get_cont);
	/* the limit is on decoded bytes: 31 two-byte characters fit a resourceVersion, 32 do not */
	char rv[64 * 6 + 1] = "";
	for (int i = 0; i < 31; i++)
		strcat(rv, "\\u00e9");
	assert_int_equal(ev_rc(POD_EV(",\"resourceVersion\":\"%s\"", "{}", "{}"), rv),
	                 KUBE_JSON_OK);
	assert_int_equal(strlen(EV.resource_version), 62);
	strcat(rv, "\\u00e9");
	assert_int_equal(ev_rc(POD_EV(",\"resourceVersion\":\"%s\"", "{}", "{}"), rv),
	                 KUBE_JSON_ERR_LIMIT);
}

/* A pod with n labels of key "kNN" and values padded so the key+value bytes total `bytes`. */
static char *labels_doc(size_t n, size_t bytes)
{
	size_t cap = 64 + n * 32 + bytes + 1024;
	char *s = malloc(cap), *p = s;
	assert_non_null(s);
	size_t pad = bytes - 4 * n; /* keys are 3 bytes, values 1 but the first */
	p +=
	    sprintf(p, "{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"name\":\"n\",\"namespace\":"
	               "\"ns\",\"uid\":\"u\",\"labels\":{");
	for (size_t i = 0; i < n; i++) {
		size_t v = i == 0 ? 1 + pad : 1;
		p += sprintf(p, "%s\"k%02zu\":\"", i ? "," : "", i);
		memset(p, 'v', v);
		p += v;
		*p++ = '"';
	}
	strcpy(p, "}}}}");
	return s;
}

static void test_label_limits(void **state)
{
	struct {
		size_t n, bytes;
		bool overflow;
	} cases[] = {
	    {KUBE_MAX_LABELS, KUBE_MAX_LABELS * 4, false},
	    {KUBE_MAX_LABELS + 1, (KUBE_MAX_LABELS + 1) * 4, true},
	    {1, KUBE_MAX_LABEL_BYTES, false},
	    {1, KUBE_MAX_LABEL_BYTES + 1, true},
	    {KUBE_MAX_LABELS, KUBE_MAX_LABEL_BYTES, false},
	    {KUBE_MAX_LABELS, KUBE_MAX_LABEL_BYTES + 1, true},
	    {2, 100000, true},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *s = labels_doc(cases[i].n, cases[i].bytes);
		assert_int_equal(ev_n(s, strlen(s)), KUBE_JSON_OK);
		free(s);
		assert_int_equal(EV.pod.labels_overflow, cases[i].overflow);
		assert_int_equal(EV.pod.n_labels, cases[i].overflow ? 0 : cases[i].n);
		if (cases[i].overflow) {
			assert_null(kube_pod_label(&EV.pod, "k00"));
			continue;
		}
		size_t sum = 0;
		for (size_t k = 0; k < EV.pod.n_labels; k++) {
			const struct kube_label *l = &EV.pod.labels[k];
			assert_true(l->key >= EV.pod.label_blob &&
			            l->value + strlen(l->value) <
			                EV.pod.label_blob + sizeof(EV.pod.label_blob));
			sum += strlen(l->key) + strlen(l->value);
		}
		assert_int_equal(sum, cases[i].bytes);
		if (cases[i].n > 1)
			assert_string_equal(kube_pod_label(&EV.pod, "k01"), "v");
		else
			assert_null(kube_pod_label(&EV.pod, "k01"));
	}
	/* overflowing labels must still be well-typed */
	char *s = labels_doc(KUBE_MAX_LABELS + 1, (KUBE_MAX_LABELS + 1) * 4);
	char *end = strstr(s, "}}}}");
	strcpy(end, ",\"z\":1}}}}");
	assert_int_equal(ev_n(s, strlen(s)), KUBE_JSON_ERR_SHAPE);
	free(s);
}

static void test_label_types(void **state)
{
	assert_int_equal(ev_rc(POD_EV(",\"labels\":{}", "{}", "{}")), KUBE_JSON_OK);
	assert_int_equal(EV.pod.n_labels, 0);
	assert_int_equal(ev_rc(POD_EV(",\"labels\":null", "{}", "{}")), KUBE_JSON_OK);
	assert_int_equal(ev_rc(POD_EV(",\"labels\":{\"a\":\"\",\"\":\"b\"}", "{}", "{}")),
	                 KUBE_JSON_OK);
	assert_string_equal(kube_pod_label(&EV.pod, "a"), "");
	assert_string_equal(kube_pod_label(&EV.pod, ""), "b");
	assert_int_equal(ev_rc(POD_EV(",\"labels\":{\"a\":1}", "{}", "{}")), KUBE_JSON_ERR_SHAPE);
	assert_int_equal(ev_rc(POD_EV(",\"labels\":{\"a\":null}", "{}", "{}")),
	                 KUBE_JSON_ERR_SHAPE);
	assert_int_equal(ev_rc(POD_EV(",\"labels\":{\"a\":true}", "{}", "{}")),
	                 KUBE_JSON_ERR_SHAPE);
	assert_int_equal(ev_rc(POD_EV(",\"labels\":{\"a\":{}}", "{}", "{}")), KUBE_JSON_ERR_SHAPE);
	assert_int_equal(ev_rc(POD_EV(",\"labels\":{\"a\":[\"b\"]}", "{}", "{}")),
	                 KUBE_JSON_ERR_SHAPE);
	assert_int_equal(ev_rc(POD_EV(",\"labels\":[]", "{}", "{}")), KUBE_JSON_ERR_SHAPE);
	assert_int_equal(ev_rc(POD_EV(",\"labels\":\"a=b\"", "{}", "{}")), KUBE_JSON_ERR_SHAPE);
	assert_int_equal(ev_rc(POD_EV(",\"labels\":{\"a\":\"1\",\"a\":\"2\"}", "{}", "{}")),
	                 KUBE_JSON_ERR_SHAPE);
	assert_int_equal(ev_rc(POD_EV(",\"labels\":{\"a\":\"x\\u0000y\"}", "{}", "{}")),
	                 KUBE_JSON_ERR_SHAPE);
	assert_int_equal(ev_rc(POD_EV(",\"labels\":{\"a\\u0000\":\"x\"}", "{}", "{}")),
	                 KUBE_JSON_ERR_SHAPE);
	/* a label that merely looks like another after decoding is the same key */
	assert_int_equal(ev_rc(POD_EV(",\"labels\":{\"a\":\"1\",\"\\u0061\":\"2\"}", "{}", "{}")),
	                 KUBE_JSON_ERR_SHAPE);
}

static void test_depth(void **state)
{
	/* The event object sits at depth 2; its unknown field adds the rest. */
	for (int total = KUBE_MAX_DEPTH - 1; total <= KUBE_MAX_DEPTH + 1; total++) {
		int extra = total - 2;
		size_t cap = (size_t)extra * 2 + 256;
		char *s = malloc(cap), *p = s;
		assert_non_null(s);
		p += sprintf(p,
		             "{\"type\":\"BOOKMARK\",\"object\":{\"metadata\":{\"resourceVersion\":"
		             "\"1\"},\"x\":");
		memset(p, '[', (size_t)extra);
		p += extra;
		memset(p, ']', (size_t)extra);
		p += extra;
		strcpy(p, "}}");
		int rc = ev_n(s, strlen(s));
		assert_int_equal(rc, total <= KUBE_MAX_DEPTH ? KUBE_JSON_OK : KUBE_JSON_ERR_LIMIT);
		free(s);
	}
	/* a million open brackets: refused early, no stack or memory blow-up */
	size_t n = 1 << 20;
	char *s = repeat('[', n);
	memcpy(s, "{\"a\":", 5);
	assert_int_equal(ev_n(s, n), KUBE_JSON_ERR_LIMIT);
	memset(s, '{', 5);
	assert_int_equal(list_n(s, n), KUBE_JSON_ERR_SYNTAX); /* '{{': a key must come first */
	free(s);
}

/* ---- fields ------------------------------------------------------------------- */

static void test_pod_ips(void **state)
{
	assert_int_equal(ev_rc(POD_EV("", "{}", "{\"podIP\":\"10.42.0.5\"}")), KUBE_JSON_OK);
	assert_int_equal(EV.pod.n_ips, 1);
	assert_ip(&EV.pod.ips[0], "10.42.0.5");
	assert_int_equal(ev_rc(POD_EV("", "{}", "{\"podIPs\":[{\"ip\":\"fd00::5\"}]}")),
	                 KUBE_JSON_OK);
	assert_int_equal(EV.pod.n_ips, 1);
	assert_ip(&EV.pod.ips[0], "fd00::5");
	/* podIPs before podIP: podIP still first; duplicates (also IPv4-mapped) dropped */
	assert_int_equal(ev_rc(POD_EV("", "{}",
	                              "{\"podIPs\":[{\"ip\":\"fd00::5\"},{\"ip\":\"10.42.0.5\"},"
	                              "{\"ip\":\"::ffff:10.42.0.5\"},{\"ip\":\"FD00:0::5\"}],"
	                              "\"podIP\":\"10.42.0.5\"}")),
	                 KUBE_JSON_OK);
	assert_int_equal(EV.pod.n_ips, 2);
	assert_ip(&EV.pod.ips[0], "10.42.0.5");
	assert_ip(&EV.pod.ips[1], "fd00::5");
	assert_int_equal(ev_rc(POD_EV("", "{}", "{\"podIP\":\"::ffff:10.1.2.3\"}")), KUBE_JSON_OK);
	assert_int_equal(EV.pod.ips[0].family, ADDR_V4);
	/* KUBE_MAX_POD_IPS distinct is fine, one more is LIMIT */
	assert_int_equal(
	    ev_rc(POD_EV("", "{}",
	                 "{\"podIP\":\"10.0.0.1\",\"podIPs\":[{\"ip\":\"10.0.0.1\"},"
	                 "{\"ip\":\"10.0.0.2\"},{\"ip\":\"10.0.0.3\"},{\"ip\":\"::4\"}]}")),
	    KUBE_JSON_OK);
	assert_int_equal(EV.pod.n_ips, KUBE_MAX_POD_IPS);
	assert_int_equal(
	    ev_rc(POD_EV("", "{}",
	                 "{\"podIP\":\"10.0.0.9\",\"podIPs\":[{\"ip\":\"10.0.0.1\"},"
	                 "{\"ip\":\"10.0.0.2\"},{\"ip\":\"10.0.0.3\"},{\"ip\":\"::4\"}]}")),
	    KUBE_JSON_ERR_LIMIT);
	assert_int_equal(
	    ev_rc(POD_EV("", "{}",
	                 "{\"podIPs\":[{\"ip\":\"::1\"},{\"ip\":\"::2\"},{\"ip\":\"::3\"},"
	                 "{\"ip\":\"::4\"},{\"ip\":\"::5\"}]}")),
	    KUBE_JSON_ERR_LIMIT);
	/* absent */
	assert_int_equal(ev_rc(POD_EV("", "{}", "{\"podIP\":\"\",\"podIPs\":[]}")), KUBE_JSON_OK);
	assert_int_equal(EV.pod.n_ips, 0);
	assert_int_equal(ev_rc(POD_EV("", "{}", "{\"podIP\":null,\"podIPs\":null}")), KUBE_JSON_OK);
	assert_int_equal(EV.pod.n_ips, 0);
	assert_int_equal(ev_rc(POD_EV("", "{}", "null")), KUBE_JSON_OK);
	/* hostIP and hostIPs are never pod IPs */
	assert_int_equal(
	    ev_rc(POD_EV("", "{}",
	                 "{\"hostIP\":\"192.168.1.1\",\"hostIPs\":[{\"ip\":\"192.168.1.1\"}]}")),
	    KUBE_JSON_OK);
	assert_int_equal(EV.pod.n_ips, 0);
	/* extra fields in an entry are skipped */
	assert_int_equal(
	    ev_rc(POD_EV("", "{}", "{\"podIPs\":[{\"x\":[{}],\"ip\":\"10.0.0.1\",\"y\":1}]}")),
	    KUBE_JSON_OK);
	assert_int_equal(EV.pod.n_ips, 1);

	static const char *const bad_ips[] = {
	    "\"10.0.0.256\"",      "\"010.0.0.1\"",
	    "\"10.0.0\"",          "\"0x0a.0.0.1\"",
	    "\"fe80::1%eth0\"",    "\"10.0.0.1/32\"",
	    "\"10.0.0.1 \"",       "\"host.example\"",
	    "\"10.0.0.1\\u0000\"", "\"1::2::3\"",
	    "167772161",           "true",
	    "[\"10.0.0.1\"]",      "{}",
	};
	for (size_t i = 0; i < sizeof(bad_ips) / sizeof(bad_ips[0]); i++) {
		assert_int_equal(ev_rc(POD_EV("", "{}", "{\"podIP\":%s}"), bad_ips[i]),
		                 KUBE_JSON_ERR_SHAPE);
		assert_int_equal(ev_rc(POD_EV("", "{}", "{\"podIPs\":[{\"ip\":%s}]}"), bad_ips[i]),
		                 KUBE_JSON_ERR_SHAPE);
	}
	assert_int_equal(ev_rc(POD_EV("", "{}", "{\"podIPs\":[{}]}")), KUBE_JSON_ERR_SHAPE);
	assert_int_equal(ev_rc(POD_EV("", "{}", "{\"podIPs\":[{\"ip\":null}]}")),
	                 KUBE_JSON_ERR_SHAPE);
	assert_int_equal(ev_rc(POD_EV("", "{}", "{\"podIPs\":[\"10.0.0.1\"]}")),
	                 KUBE_JSON_ERR_SHAPE);
	assert_int_equal(ev_rc(POD_EV("", "{}", "{\"podIPs\":[null]}")), KUBE_JSON_ERR_SHAPE);
	assert_int_equal(ev_rc(POD_EV("", "{}", "{\"podIPs\":{\"ip\":\"10.0.0.1\"}}")),
	                 KUBE_JSON_ERR_SHAPE);
	assert_int_equal(
	    ev_rc(POD_EV("", "{}", "{\"podIPs\":[{\"ip\":\"10.0.0.1\",\"ip\":\"10.0.0.2\"}]}")),
	    KUBE_JSON_ERR_SHAPE);
}

static void test_host_network(void **state)
{
	assert_int_equal(ev_rc(POD_EV("", "{\"hostNetwork\":true}", "{}")), KUBE_JSON_OK);
	assert_true(EV.pod.host_network);
	assert_int_equal(ev_rc(POD_EV("", "{\"hostNetwork\":false}", "{}")), KUBE_JSON_OK);
	assert_false(EV.pod.host_network);
	assert_int_equal(ev_rc(POD_EV("", "{\"hostNetwork\":null}", "{}")), KUBE_JSON_OK);
	assert_false(EV.pod.host_network);
	assert_int_equal(ev_rc(POD_EV("", "{}", "{}")), KUBE_JSON_OK);
	assert_false(EV.pod.host_network);
	/* Kubernetes always writes a bare boolean; a quoted one is refused */
	static const char *const bad[] = {"\"true\"", "\"false\"", "1", "0", "\"\"", "[]", "{}"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(ev_rc(POD_EV("", "{\"hostNetwork\":%s}", "{}"), bad[i]),
		                 KUBE_JSON_ERR_SHAPE);
	assert_int_equal(ev_rc(POD_EV("", "{\"hostNetwork\":true,\"hostNetwork\":false}", "{}")),
	                 KUBE_JSON_ERR_SHAPE);
	assert_int_equal(ev_rc(POD_EV("", "[]", "{}")), KUBE_JSON_ERR_SHAPE);
	assert_int_equal(ev_rc(POD_EV("", "\"x\"", "{}")), KUBE_JSON_ERR_SHAPE);
	assert_int_equal(ev_rc(POD_EV("", "null", "{}")), KUBE_JSON_OK);
}

static void test_terminating_and_phase(void **state)
{
	assert_int_equal(ev_rc(POD_EV(",\"deletionTimestamp\":null", "{}", "{}")), KUBE_JSON_OK);
	assert_false(EV.pod.terminating);
	assert_int_equal(
	    ev_rc(POD_EV(",\"deletionTimestamp\":\"2026-01-01T00:00:00Z\"", "{}", "{}")),
	    KUBE_JSON_OK);
	assert_true(EV.pod.terminating);
	assert_int_equal(ev_rc(POD_EV(",\"deletionTimestamp\":5", "{}", "{}")),
	                 KUBE_JSON_ERR_SHAPE);
	assert_int_equal(ev_rc(POD_EV(",\"deletionTimestamp\":{}", "{}", "{}")),
	                 KUBE_JSON_ERR_SHAPE);

	static const struct {
		const char *json;
		enum kube_phase phase;
	} phases[] = {
	    {"\"Pending\"", KUBE_PHASE_PENDING},
	    {"\"Running\"", KUBE_PHASE_RUNNING},
	    {"\"Succeeded\"", KUBE_PHASE_SUCCEEDED},
	    {"\"Failed\"", KUBE_PHASE_FAILED},
	    {"\"Unknown\"", KUBE_PHASE_UNKNOWN},
	    {"\"running\"", KUBE_PHASE_OTHER},
	    {"\"\"", KUBE_PHASE_OTHER},
	    {"\"Running \"", KUBE_PHASE_OTHER},
	    {"null", KUBE_PHASE_UNSET},
	};
	for (size_t i = 0; i < sizeof(phases) / sizeof(phases[0]); i++) {
		assert_int_equal(ev_rc(POD_EV("", "{}", "{\"phase\":%s}"), phases[i].json),
		                 KUBE_JSON_OK);
		assert_int_equal(EV.pod.phase, phases[i].phase);
	}
	assert_int_equal(ev_rc(POD_EV("", "{}", "{}")), KUBE_JSON_OK);
	assert_int_equal(EV.pod.phase, KUBE_PHASE_UNSET);
	assert_int_equal(ev_rc(POD_EV("", "{}", "{\"phase\":2}")), KUBE_JSON_ERR_SHAPE);
	assert_int_equal(ev_rc(POD_EV("", "{}", "{\"phase\":\"Running\",\"phase\":\"Failed\"}")),
	                 KUBE_JSON_ERR_SHAPE);
	/* a Status-shaped "status" in a Pod is a shape error */
	assert_int_equal(ev_rc(POD_EV("", "{}", "\"Failure\"")), KUBE_JSON_ERR_SHAPE);
}

static void test_wrong_types(void **state)
{
	static const char *const meta_bad[] = {
	    "\"uid\":5,\"name\":\"n\",\"namespace\":\"ns\"",
	    "\"uid\":true,\"name\":\"n\",\"namespace\":\"ns\"",
	    "\"uid\":{},\"name\":\"n\",\"namespace\":\"ns\"",
	    "\"uid\":[\"u\"],\"name\":\"n\",\"namespace\":\"ns\"",
	    "\"uid\":\"a\\u0000b\",\"name\":\"n\",\"namespace\":\"ns\"",
	    "\"uid\":\"u\",\"name\":1,\"namespace\":\"ns\"",
	    "\"uid\":\"u\",\"name\":\"n\",\"namespace\":[]",
	    "\"uid\":\"u\",\"name\":\"n\",\"namespace\":\"ns\",\"resourceVersion\":12",
	    "\"uid\":\"u\",\"name\":\"n\",\"namespace\":\"ns\",\"creationTimestamp\":0",
	    "\"uid\":\"u\",\"name\":\"n\",\"namespace\":\"ns\",\"labels\":true",
	};
	for (size_t i = 0; i < sizeof(meta_bad) / sizeof(meta_bad[0]); i++)
		assert_int_equal(
		    ev_rc("{\"type\":\"ADDED\",\"object\":{\"metadata\":{%s}}}", meta_bad[i]),
		    KUBE_JSON_ERR_SHAPE);
	assert_int_equal(ev_rc(POD_EV("", "{}", "5")), KUBE_JSON_ERR_SHAPE);
	assert_int_equal(ev_rc(POD_EV("", "{}", "[]")), KUBE_JSON_ERR_SHAPE);
	assert_int_equal(ev_rc(POD_EV("", "true", "{}")), KUBE_JSON_ERR_SHAPE);
	assert_int_equal(ev_rc("{\"type\":\"ADDED\",\"object\":{\"metadata\":[]}}"),
	                 KUBE_JSON_ERR_SHAPE);
	assert_int_equal(ev_rc("{\"type\":\"ADDED\",\"object\":{\"metadata\":null}}"),
	                 KUBE_JSON_ERR_SHAPE);
	assert_int_equal(ev_rc("{\"type\":\"ADDED\",\"object\":{\"metadata\":\"m\"}}"),
	                 KUBE_JSON_ERR_SHAPE);
	/* null uid is a missing uid */
	assert_int_equal(ev_rc("{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"uid\":null,"
	                       "\"name\":\"n\",\"namespace\":\"ns\"}}}"),
	                 KUBE_JSON_ERR_SHAPE);
	assert_non_null(strstr(ERR, "uid"));
	/* NUL in a field that is not kept is fine */
	assert_int_equal(ev_rc(POD_EV(",\"generateName\":\"a\\u0000b\"", "{}", "{}")),
	                 KUBE_JSON_OK);
}

static void test_duplicate_keys(void **state)
{
	assert_int_equal(ev_rc(POD_EV(",\"uid\":\"u-2\"", "{}", "{}")), KUBE_JSON_ERR_SHAPE);
	assert_non_null(strstr(ERR, "metadata.uid"));
	assert_int_equal(ev_rc(POD_EV(",\"namespace\":\"ns\"", "{}", "{}")), KUBE_JSON_ERR_SHAPE);
	assert_int_equal(
	    ev_rc(POD_EV(",\"creationTimestamp\":\"a\",\"creationTimestamp\":\"a\"", "{}", "{}")),
	    KUBE_JSON_ERR_SHAPE);
	assert_int_equal(ev_rc(POD_EV(",\"labels\":{},\"labels\":{}", "{}", "{}")),
	                 KUBE_JSON_ERR_SHAPE);
	assert_int_equal(
	    ev_rc(POD_EV(",\"deletionTimestamp\":null,\"deletionTimestamp\":\"t\"", "{}", "{}")),
	    KUBE_JSON_ERR_SHAPE);
	assert_int_equal(
	    ev_rc("{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"uid\":\"u\",\"name\":"
	          "\"n\",\"namespace\":\"ns\"},\"metadata\":{\"uid\":\"v\",\"name\":\"n\","
	          "\"namespace\":\"ns\"}}}"),
	    KUBE_JSON_ERR_SHAPE);
	assert_int_equal(ev_rc(POD_EV("", "{}", "{},\"status\":{\"podIP\":\"10.0.0.1\"}")),
	                 KUBE_JSON_ERR_SHAPE);
	assert_int_equal(ev_rc(POD_EV("", "{},\"spec\":{\"hostNetwork\":true}", "{}")),
	                 KUBE_JSON_ERR_SHAPE);
	assert_int_equal(ev_rc(POD_EV("", "{}", "{\"podIP\":\"10.0.0.1\",\"podIP\":\"10.0.0.2\"}")),
	                 KUBE_JSON_ERR_SHAPE);
	assert_int_equal(ev_rc(POD_EV("", "{}", "{\"podIPs\":[],\"podIPs\":[]}")),
	                 KUBE_JSON_ERR_SHAPE);
	assert_int_equal(ev_rc("{\"type\":\"ADDED\",\"type\":\"DELETED\",\"object\":{}}"),
	                 KUBE_JSON_ERR_SHAPE);
	assert_int_equal(
	    ev_rc("{\"type\":\"BOOKMARK\",\"object\":{\"metadata\":{\"resourceVersion\":"
	          "\"1\"}},\"object\":{\"metadata\":{\"resourceVersion\":\"2\"}}}"),
	    KUBE_JSON_ERR_SHAPE);
	assert_int_equal(
	    ev_rc("{\"type\":\"BOOKMARK\",\"object\":{\"metadata\":{\"resourceVersion\":"
	          "\"1\",\"resourceVersion\":\"2\"}}}"),
	    KUBE_JSON_ERR_SHAPE);
	assert_int_equal(ev_rc("{\"type\":\"ERROR\",\"object\":{\"code\":410,\"code\":200}}"),
	                 KUBE_JSON_ERR_SHAPE);
	assert_int_equal(ev_rc(POD_EV("", "{}", "{}") "x"), KUBE_JSON_ERR_SYNTAX);
	assert_int_equal(list_rc("{\"kind\":\"PodList\",\"kind\":\"PodList\",\"metadata\":"
	                         "{\"resourceVersion\":\"1\"}}"),
	                 KUBE_JSON_ERR_SHAPE);
	assert_int_equal(list_rc("{\"kind\":\"PodList\",\"metadata\":{\"resourceVersion\":\"1\"},"
	                         "\"items\":[],\"items\":[]}"),
	                 KUBE_JSON_ERR_SHAPE);
	assert_int_equal(list_rc("{\"kind\":\"PodList\",\"metadata\":{\"resourceVersion\":\"1\","
	                         "\"continue\":\"a\",\"continue\":\"\"}}"),
	                 KUBE_JSON_ERR_SHAPE);
	/* repeats of fields that are not kept are not looked for */
	assert_int_equal(
	    ev_rc(POD_EV(",\"annotations\":{\"a\":\"1\",\"a\":\"2\"},\"annotations\":{}",
	                 "{\"containers\":[],\"containers\":[]}",
	                 "{\"hostIP\":\"x\","
	                 "\"hostIP\":\"y\"}")),
	    KUBE_JSON_OK);
}

/* Unknown fields of every shape, at every level. */
#define JUNK                                                                                       \
	"\"j1\":{},\"j2\":[],\"j3\":[[],[{}],[[[{\"a\":[1,{\"b\":null}]}]]]],\"j4\":-0,\"j5\":"    \
	"1e5,"                                                                                     \
	"\"j6\":-1.5E-3,\"j7\":true,\"j8\":false,\"j9\":null,\"j10\":\"s\\\"\\\\\\u00e9\","        \
	"\"j11\":[{\"ip\":\"not-an-ip\"},{\"uid\":7}],\"metadataX\":{\"uid\":5},\"\":\"\","        \
	"\"j12\":{\"kind\":\"Status\",\"type\":\"ERROR\",\"items\":{}}"

static void test_unknown_fields(void **state)
{
	assert_int_equal(ev_rc("{" JUNK ",\"type\":\"ADDED\"," JUNK ",\"object\":{" JUNK
	                       ",\"metadata\":{" JUNK
	                       ",\"name\":\"n\",\"namespace\":\"ns\",\"uid\":"
	                       "\"u\",\"labels\":{\"a\":\"b\"}," JUNK "},\"spec\":{" JUNK
	                       ",\"hostNetwork\":false},\"status\":{" JUNK ",\"podIPs\":[{" JUNK
	                       ",\"ip\":\"10.0.0.1\"}]," JUNK "}}," JUNK "}"),
	                 KUBE_JSON_OK);
	assert_string_equal(EV.pod.uid, "u");
	assert_int_equal(EV.pod.n_ips, 1);
	assert_int_equal(EV.pod.n_labels, 1);
	assert_int_equal(
	    list_rc("{" JUNK ",\"kind\":\"PodList\",\"metadata\":{" JUNK
	            ",\"resourceVersion\":\"5\"},\"items\":[{" JUNK
	            ",\"metadata\":{\"name\":\"n\",\"namespace\":\"ns\",\"uid\":\"u\"}}]," JUNK
	            "}"),
	    KUBE_JSON_OK);
	assert_int_equal(SEEN.n, 1);
	assert_int_equal(ev_rc("{\"type\":\"ERROR\",\"object\":{" JUNK ",\"code\":500," JUNK "}}"),
	                 KUBE_JSON_OK);
	assert_int_equal(EV.code, 500);
	assert_int_equal(ev_rc("{\"type\":\"BOOKMARK\",\"object\":{" JUNK ",\"metadata\":{" JUNK
	                       ",\"resourceVersion\":\"9\"}}}"),
	                 KUBE_JSON_OK);
	assert_string_equal(EV.resource_version, "9");
}

static void test_key_order(void **state)
{
	assert_int_equal(
	    ev_rc("{\"object\":{\"status\":{\"podIP\":\"10.0.0.1\",\"phase\":\"Running\"},"
	          "\"metadata\":{\"labels\":{\"t\":\"x\"},\"uid\":\"u\",\"namespace\":"
	          "\"ns\",\"name\":\"n\",\"resourceVersion\":\"3\"},\"kind\":\"Pod\"},"
	          "\"type\":\"MODIFIED\"}"),
	    KUBE_JSON_OK);
	assert_int_equal(EV.type, KUBE_EV_MODIFIED);
	assert_string_equal(EV.resource_version, "3");
	assert_string_equal(kube_pod_label(&EV.pod, "t"), "x");
	assert_int_equal(EV.pod.phase, KUBE_PHASE_RUNNING);
	assert_int_equal(ev_rc("{\"object\":{\"metadata\":{\"resourceVersion\":\"77\"}},\"type\":"
	                       "\"BOOKMARK\"}"),
	                 KUBE_JSON_OK);
	assert_int_equal(EV.type, KUBE_EV_BOOKMARK);
	assert_string_equal(EV.resource_version, "77");
	assert_int_equal(
	    ev_rc("{\"object\":{\"code\":410,\"reason\":\"Gone\",\"status\":\"Failure\"},"
	          "\"type\":\"ERROR\"}"),
	    KUBE_JSON_OK);
	assert_int_equal(EV.code, 410);
	assert_string_equal(EV.reason, "Gone");
	/* object first, and only checked on the first walk: still refused when it is bad */
	assert_int_equal(ev_rc("{\"object\":{\"metadata\":{}},\"type\":\"DELETED\"}"),
	                 KUBE_JSON_ERR_SHAPE);
	assert_int_equal(ev_rc("{\"object\":{\"metadata\":{}},\"type\":\"NOPE\"}"),
	                 KUBE_JSON_ERR_SHAPE);
}

static void test_event_types(void **state)
{
	static const char *const bad[] = {
	    "{\"type\":\"UPSERT\",\"object\":{}}",
	    "{\"type\":\"added\",\"object\":{}}",
	    "{\"type\":\"ADDED \",\"object\":{}}",
	    "{\"type\":1,\"object\":{}}",
	    "{\"type\":null,\"object\":{}}",
	    "{\"type\":[\"ADDED\"],\"object\":{}}",
	    "{\"object\":{}}",
	    "{\"type\":\"ERROR\"}",
	    "{\"type\":\"ERROR\",\"object\":null}",
	    "{\"type\":\"ERROR\",\"object\":[]}",
	    "{\"type\":\"ERROR\",\"object\":\"x\"}",
	    "{}",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(ev_rc("%s", bad[i]), KUBE_JSON_ERR_SHAPE);
		assert_int_equal(EV.type, 0);
		assert_true(ERR[0] != '\0');
	}
	assert_int_equal(
	    ev_rc("{\"type\":\"DELETED\",\"object\":{\"metadata\":{\"name\":\"n\","
	          "\"namespace\":\"ns\",\"uid\":\"gone\",\"resourceVersion\":\"8\"}}}"),
	    KUBE_JSON_OK);
	assert_int_equal(EV.type, KUBE_EV_DELETED);
	assert_string_equal(EV.pod.uid, "gone");
	assert_string_equal(EV.resource_version, "8");
	assert_int_equal(ev_rc("{\"type\":\"ADDED\",\"object\":{\"kind\":\"Node\",\"metadata\":"
	                       "{\"name\":\"n\",\"namespace\":\"ns\",\"uid\":\"u\"}}}"),
	                 KUBE_JSON_ERR_SHAPE);
}

static void test_error_and_bookmark(void **state)
{
	assert_int_equal(
	    ev_rc("{\"type\":\"ERROR\",\"object\":{\"kind\":\"Status\",\"apiVersion\":"
	          "\"v1\",\"metadata\":{},\"status\":\"Failure\",\"message\":\"too old "
	          "resource version: 1 (2)\",\"reason\":\"Expired\",\"code\":410}}"),
	    KUBE_JSON_OK);
	assert_int_equal(EV.type, KUBE_EV_ERROR);
	assert_int_equal(EV.code, 410);
	assert_string_equal(EV.reason, "Expired");
	assert_int_equal(ev_rc("{\"type\":\"ERROR\",\"object\":{}}"), KUBE_JSON_OK);
	assert_int_equal(EV.code, 0);
	assert_string_equal(EV.reason, "");
	assert_int_equal(ev_rc("{\"type\":\"ERROR\",\"object\":{\"code\":null,\"reason\":null}}"),
	                 KUBE_JSON_OK);
	assert_int_equal(ev_rc("{\"type\":\"ERROR\",\"object\":{\"code\":-1}}"), KUBE_JSON_OK);
	assert_int_equal(EV.code, -1);
	assert_int_equal(ev_rc("{\"type\":\"ERROR\",\"object\":{\"code\":2147483647}}"),
	                 KUBE_JSON_OK);
	static const char *const bad_codes[] = {
	    "\"410\"", "410.0", "4.1e2", "2147483648", "99999999999999999999", "true", "[]", "{}"};
	for (size_t i = 0; i < sizeof(bad_codes) / sizeof(bad_codes[0]); i++)
		assert_int_equal(
		    ev_rc("{\"type\":\"ERROR\",\"object\":{\"code\":%s}}", bad_codes[i]),
		    KUBE_JSON_ERR_SHAPE);
	assert_int_equal(ev_rc("{\"type\":\"ERROR\",\"object\":{\"reason\":7}}"),
	                 KUBE_JSON_ERR_SHAPE);

	/* reason truncates at 63 bytes, on a character boundary */
	char *r = repeat('r', 300);
	assert_int_equal(ev_rc("{\"type\":\"ERROR\",\"object\":{\"reason\":\"%s\"}}", r),
	                 KUBE_JSON_OK);
	assert_int_equal(strlen(EV.reason), 63);
	r[62] = '\0';
	assert_int_equal(ev_rc("{\"type\":\"ERROR\",\"object\":{\"reason\":\"%s\\u00e9x\"}}", r),
	                 KUBE_JSON_OK);
	assert_int_equal(strlen(EV.reason), 62); /* é would straddle byte 63: dropped whole */
	r[61] = '\0';
	assert_int_equal(ev_rc("{\"type\":\"ERROR\",\"object\":{\"reason\":\"%s\\u00e9x\"}}", r),
	                 KUBE_JSON_OK);
	assert_int_equal(strlen(EV.reason), 63);
	free(r);

	/* BOOKMARK: metadata.resourceVersion required, the rest of the object ignored */
	assert_int_equal(
	    ev_rc("{\"type\":\"BOOKMARK\",\"object\":{\"kind\":\"Pod\",\"apiVersion\":"
	          "\"v1\",\"metadata\":{\"resourceVersion\":\"12345\",\"creationTimestamp\""
	          ":null,\"annotations\":{\"k8s.io/initial-events-end\":\"true\"}},\"spec\":"
	          "{\"containers\":null},\"status\":{}}}"),
	    KUBE_JSON_OK);
	assert_int_equal(EV.type, KUBE_EV_BOOKMARK);
	assert_string_equal(EV.resource_version, "12345");
	assert_int_equal(ev_rc("{\"type\":\"BOOKMARK\",\"object\":{\"metadata\":{}}}"),
	                 KUBE_JSON_ERR_SHAPE);
	assert_int_equal(ev_rc("{\"type\":\"BOOKMARK\",\"object\":{}}"), KUBE_JSON_ERR_SHAPE);
	assert_int_equal(
	    ev_rc("{\"type\":\"BOOKMARK\",\"object\":{\"metadata\":{\"resourceVersion\":"
	          "1}}}"),
	    KUBE_JSON_ERR_SHAPE);
	/* a bookmark's uid-less metadata is not a pod: no pod checks */
	assert_int_equal(
	    ev_rc("{\"type\":\"BOOKMARK\",\"object\":{\"metadata\":{\"resourceVersion\":"
	          "\"1\",\"uid\":5}}}"),
	    KUBE_JSON_OK);
}

/* ---- text: escapes, Unicode, whitespace, what is not JSON --------------------- */

static void test_escapes_and_unicode(void **state)
{
	static const struct {
		const char *json, *want;
	} cases[] = {
	    {"\\\"\\\\\\/\\b\\f\\n\\r\\t", "\"\\/\b\f\n\r\t"},
	    {"\\u0041\\u00e9\\u00E9\\u65e5", "A\xc3\xa9\xc3\xa9\xe6\x97\xa5"},
	    {"\\ud83d\\ude00", "\xf0\x9f\x98\x80"},   /* surrogate pair */
	    {"\\uD83D\\uDE00x", "\xf0\x9f\x98\x80x"}, /* upper-case hex */
	    {"\\udbff\\udfff", "\xf4\x8f\xbf\xbf"},   /* U+10FFFF */
	    {"a\\ud83db", "a\xef\xbf\xbd"
	                  "b"}, /* lone high */
	    {"a\\ude00b", "a\xef\xbf\xbd"
	                  "b"}, /* lone low */
	    {"\\ud83d\\u0041", "\xef\xbf\xbd"
	                       "A"}, /* high, then not a low */
	    {"\\ud83d\\ud83d\\ude00", "\xef\xbf\xbd\xf0\x9f\x98\x80"},
	    {"\\ude00\\ud83d", "\xef\xbf\xbd\xef\xbf\xbd"},
	    {"\\u0085\\u2028\\u2029\\ufffe\\uffff\\u007f",
	     "\xc2\x85\xe2\x80\xa8\xe2\x80\xa9\xef\xbf\xbe\xef\xbf\xbf\x7f"},
	    /* raw characters libyaml would refuse or fold: kept exactly */
	    {"\x7f|\xc2\x80|\xc2\x85|\xc2\x9f|\xe2\x80\xa8|\xe2\x80\xa9|\xef\xbf\xbe|\xef\xbf\xbf",
	     "\x7f|\xc2\x80|\xc2\x85|\xc2\x9f|\xe2\x80\xa8|\xe2\x80\xa9|\xef\xbf\xbe|\xef\xbf\xbf"},
	    {"caf\xc3\xa9 \xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\x9a\x80",
	     "caf\xc3\xa9 \xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\x9a\x80"},
	    {"\xc2\xa0\xef\xbb\xbf", "\xc2\xa0\xef\xbb\xbf"}, /* NBSP, a BOM inside a string */
	    {"  lead and trail  ", "  lead and trail  "},
	    {"", ""},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		assert_int_equal(
		    ev_rc(POD_EV(",\"labels\":{\"k\":\"%s\"}", "{}", "{}"), cases[i].json),
		    KUBE_JSON_OK);
		assert_string_equal(kube_pod_label(&EV.pod, "k"), cases[i].want);
		/* the same as a key */
		if (cases[i].want[0] != '\0') {
			assert_int_equal(
			    ev_rc(POD_EV(",\"labels\":{\"%s\":\"v\"}", "{}", "{}"), cases[i].json),
			    KUBE_JSON_OK);
			assert_string_equal(kube_pod_label(&EV.pod, cases[i].want), "v");
		}
	}
	/* a raw DEL in a field nobody reads no longer sinks the whole document */
	assert_int_equal(ev_rc(POD_EV(",\"annotations\":{\"a\":\"x\x7fy\xc2\x85z\"}", "{}",
	                              "{\"podIP\":\"10.0.0.1\"}")),
	                 KUBE_JSON_OK);
	assert_int_equal(EV.pod.n_ips, 1);

	static const char *const bad[] = {
	    "\\x41",   "\\a",      "\\0",  "\\e",      "\\U00000041",  "\\'",
	    "\\ ",     "\\N",      "\\_",  "\\L",      "\\P",          "\\u12",
	    "\\u12g4", "\\uXYZW",  "\\u",  "\t",       "\n",           "\r",
	    "\x01",    "\x1f",     "\xff", "\xc0\x80", "\xed\xa0\x80", "\xf8\x88\x80\x80\x80",
	    "\xc3",    "\xe6\x97",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(ev_rc(POD_EV(",\"labels\":{\"k\":\"%s\"}", "{}", "{}"), bad[i]),
		                 KUBE_JSON_ERR_SYNTAX);
}

static void test_whitespace(void **state)
{
	const char *doc = " \t\r\n{ \"type\" :\t\"ADDED\" ,\r\n \"object\"\t:\n{\"metadata\" : "
	                  "{ \"name\" : \"n\" ,\"namespace\":\"ns\",\t\"uid\":\"u\" , \"labels\" :"
	                  " { } } , \"status\" : { \"podIPs\" : [ { \"ip\" : \"10.0.0.1\" } , ] } }"
	                  " } \r\n";
	/* (that one has a trailing comma: refused) */
	assert_int_equal(ev_rc("%s", doc), KUBE_JSON_ERR_SYNTAX);
	doc = " \t\r\n{ \"type\" :\t\"ADDED\" ,\r\n \"object\"\t:\n{\"metadata\" : "
	      "{ \"name\" : \"n\" ,\"namespace\":\"ns\",\t\"uid\":\"u\" , \"labels\" :"
	      " { } } , \"status\" : { \"podIPs\" : [ { \"ip\" : \"10.0.0.1\" } \r\n] } }"
	      " } \r\n\r\n";
	assert_int_equal(ev_rc("%s", doc), KUBE_JSON_OK);
	assert_int_equal(EV.pod.n_ips, 1);
	/* CR alone as a line break, tabs before keys at the start of a line */
	assert_int_equal(ev_rc("{\r\t\"type\":\"BOOKMARK\",\r\t\"object\":{\r\t\t\"metadata\":{\r"
	                       "\t\t\t\"resourceVersion\":\"1\"}}}\r"),
	                 KUBE_JSON_OK);
	/* tabs around the value, where libyaml would see a tab starting a line */
	assert_int_equal(ev_rc("\t\n\t{\"type\":\"ERROR\",\"object\":{}}\n\t\n\t"), KUBE_JSON_OK);
	assert_int_equal(ev_rc("\t\n\t{\"type\":\"ERROR\",\"object\":{\"a\":\"\x7f\"}}\n\t\n\t"),
	                 KUBE_JSON_OK);
	/* not JSON whitespace */
	assert_int_equal(ev_rc("{\"type\":\"BOOKMARK\",\f\"object\":{\"metadata\":{"
	                       "\"resourceVersion\":\"1\"}}}"),
	                 KUBE_JSON_ERR_SYNTAX);
	assert_int_equal(ev_rc("{\"type\":\"BOOKMARK\",\xc2\xa0\"object\":{\"metadata\":{"
	                       "\"resourceVersion\":\"1\"}}}"),
	                 KUBE_JSON_ERR_SYNTAX);
	/* JSON, but a line break between a key and its colon is beyond libyaml */
	assert_int_equal(ev_rc("{\"type\"\n:\"BOOKMARK\",\"object\":{\"metadata\":{"
	                       "\"resourceVersion\":\"1\"}}}"),
	                 KUBE_JSON_ERR_SYNTAX);
}

static void test_not_json(void **state)
{
	static const char *const docs[] = {
	    "",
	    " \n",
	    "\xef\xbb\xbf{\"type\":\"ERROR\",\"object\":{}}", /* BOM */
	    "{'type':'ERROR','object':{}}",
	    "{\"type\":'ERROR',\"object\":{}}",
	    "{\"type\":ERROR,\"object\":{}}",
	    "{type: \"ERROR\", object: {}}",
	    "{\"type\":\"ERROR\",\"object\":{},}",
	    "{\"type\":\"ERROR\",\"object\":{\"a\":[1,]}}",
	    "{\"type\":\"ERROR\",\"object\":{\"a\":[1,,2]}}",
	    "{\"type\":\"ERROR\",\"object\":{\"a\":[,1]}}",
	    "{,\"type\":\"ERROR\",\"object\":{}}",
	    "{\"type\":\"ERROR\" \"object\":{}}",
	    "{\"type\":\"ERROR\",\"object\":{}}}",
	    "{\"type\":\"ERROR\",\"object\":{]}",
	    "{\"type\":\"ERROR\",\"object\":{\"a\":[1}}}",
	    "{\"type\":\"ERROR\",\"object\":{\"a\":1 2}}",
	    "{\"type\":\"ERROR\",\"object\":{\"a\"}}",
	    "{\"type\":\"ERROR\",\"object\":{\"a\":}}",
	    "{\"type\":\"ERROR\",\"object\":{\"a\"::1}}",
	    "{\"type\":\"ERROR\",\"object\":{1:2}}",
	    "{\"type\":\"ERROR\",\"object\":{[1]:2}}",
	    "{\"type\":\"ERROR\",\"object\":{\"a\":[\"b\":1]}}", /* YAML single-pair mapping */
	    "{\"type\":\"ERROR\",\"object\":{? \"a\" : 1}}",
	    "{\"type\":\"ERROR\",\"object\":{\"a\": &x 1, \"b\": *x}}",
	    "{\"type\":\"ERROR\",\"object\":{\"a\": *x}}",
	    "{\"type\":\"ERROR\",\"object\":{\"code\": !!int \"410\"}}",
	    "{\"type\":\"ERROR\",\"object\":!!map {}}",
	    "{\"type\":\"ERROR\",\"object\":{}} # comment",
	    "{\"type\":\"ERROR\",\"object\":{\"a\":|\n  x\n}}",
	    "type: ERROR\nobject: {}\n",
	    "---\n{\"type\":\"ERROR\",\"object\":{}}",
	    "%YAML 1.1\n---\n{\"type\":\"ERROR\",\"object\":{}}",
	    "{\"type\":\"ERROR\",\"object\":{}}\n---\n{\"type\":\"ERROR\",\"object\":{}}",
	    "{\"type\":\"ERROR\",\"object\":{}}\n...\n",
	    "{\"type\":\"ERROR\",\"object\":{}} {\"type\":\"ERROR\",\"object\":{}}",
	    "{\"type\":\"ERROR\",\"object\":{}}\n{\"type\":\"ERROR\",\"object\":{}}",
	    "{\"type\":\"ERROR\",\"object\":{\"a\":NaN}}",
	    "{\"type\":\"ERROR\",\"object\":{\"a\":Infinity}}",
	    "{\"type\":\"ERROR\",\"object\":{\"a\":-Infinity}}",
	    "{\"type\":\"ERROR\",\"object\":{\"a\":01}}",
	    "{\"type\":\"ERROR\",\"object\":{\"a\":+1}}",
	    "{\"type\":\"ERROR\",\"object\":{\"a\":.5}}",
	    "{\"type\":\"ERROR\",\"object\":{\"a\":1.}}",
	    "{\"type\":\"ERROR\",\"object\":{\"a\":1e}}",
	    "{\"type\":\"ERROR\",\"object\":{\"a\":0x10}}",
	    "{\"type\":\"ERROR\",\"object\":{\"a\":-}}",
	    "{\"type\":\"ERROR\",\"object\":{\"a\":- 1}}",
	    "{\"type\":\"ERROR\",\"object\":{\"a\":True}}",
	    "{\"type\":\"ERROR\",\"object\":{\"a\":NULL}}",
	    "{\"type\":\"ERROR\",\"object\":{\"a\":~}}",
	    "{\"type\":\"ERROR\",\"object\":{\"a\":yes}}",
	    "{\"type\":\"ERROR\",\"object\":{\"a\":nul}}",
	    "{\"type\":\"ERROR\",\"object\":{\"a\":truefalse}}",
	    "{\"type\":\"ERROR\",\"object\":{\"a\":1\"x\"}}",
	    "{\"type\":\"ERROR\",\"object\":{\"a\":\"x\"1}}",
	    "{\"type\":\"ERROR\",\"object\":{\"a\":\"x\"\"y\"}}",
	    "{\"type\":\"ERROR\",\"object\":{\"a\":b:c}}",
	    "{\"type\":\"ERROR\",\"object\":{\"a\":@x}}",
	    "{\"type\":\"ERROR\",\"object\":{\"a\":`x`}}",
	    "{\"type\":\"ERROR\",\"object\":{\"a\":%x}}",
	    "{\"type\":\"ERROR\",\"object\":{\"a\":>x}}",
	    "{\"type\":\"ERROR\",\"object\":{\"a\":\"unterminated}}",
	    "{\"type\":\"ERROR\",\"object\":{\"a\":\"x\\",
	    "{\"type\":\"ERROR\",\"object\":{}",
	    "{",
	    "}",
	    "\"",
	};
	for (size_t i = 0; i < sizeof(docs) / sizeof(docs[0]); i++) {
		int rc = ev_n(docs[i], strlen(docs[i]));
		if (rc != KUBE_JSON_ERR_SYNTAX)
			fail_msg("doc %zu (%s): %d", i, docs[i], rc);
		assert_true(ERR[0] != '\0');
	}
	/* a NUL byte outside strings (strlen would hide it) */
	static const char nul[] = "{\"type\":\"ERROR\",\"object\":{}}\0";
	assert_int_equal(ev_n(nul, sizeof(nul) - 1), KUBE_JSON_ERR_SYNTAX);
	static const char nul2[] = "{\"type\":\"ERROR\",\"object\":{\"a\":\"\0\"}}";
	assert_int_equal(ev_n(nul2, sizeof(nul2) - 1), KUBE_JSON_ERR_SYNTAX);
}

static void test_long_values(void **state)
{
	/* a 256 KiB annotation and a 1 MiB unknown string: skipped, fine */
	char *big = repeat('x', 256 * 1024);
	char *huge = repeat('y', 1024 * 1024);
	assert_int_equal(ev_rc(POD_EV(",\"annotations\":{\"big\":\"%s\"},\"x\":[\"%s\"]", "{}",
	                              "{\"podIP\":\"10.0.0.1\"}"),
	                       big, huge),
	                 KUBE_JSON_OK);
	assert_int_equal(EV.pod.n_ips, 1);
	/* as a label value: over the label budget, so none kept, not an error */
	assert_int_equal(ev_rc(POD_EV(",\"labels\":{\"a\":\"b\",\"big\":\"%s\"}", "{}", "{}"), big),
	                 KUBE_JSON_OK);
	assert_true(EV.pod.labels_overflow);
	/* a kept string: LIMIT */
	assert_int_equal(ev_rc(POD_EV(",\"resourceVersion\":\"%s\"", "{}", "{}"), big),
	                 KUBE_JSON_ERR_LIMIT);
	free(huge);
	/* keys: a 317-byte label key (253 prefix + '/' + 63 name) is fine, so is 1000 bytes;
	 * past libyaml's 1024-character implicit key limit the document is refused */
	char *k = repeat('k', 317);
	k[253] = '/';
	assert_int_equal(ev_rc(POD_EV(",\"labels\":{\"%s\":\"v\"}", "{}", "{}"), k), KUBE_JSON_OK);
	assert_string_equal(kube_pod_label(&EV.pod, k), "v");
	free(k);
	k = repeat('k', 1000);
	assert_int_equal(ev_rc(POD_EV(",\"annotations\":{\"%s\":\"v\"}", "{}", "{}"), k),
	                 KUBE_JSON_OK);
	free(k);
	/* past libyaml's 1024-character key limit the gate renames the key: user text in
	 * managedFields keys ("k:{\"name\":...}") must not make a pod, or its page, unreadable */
	k = repeat('k', 1100);
	assert_int_equal(ev_rc(POD_EV(",\"annotations\":{\"%s\":\"v\",\"%s\":\"w\"}", "{}",
	                              "{\"podIP\":\"10.0.0.9\"}"),
	                       k, k),
	                 KUBE_JSON_OK);
	assert_int_equal(EV.pod.n_ips, 1);
	assert_int_equal(list_rc(LIST("{\"metadata\":{\"name\":\"a\",\"namespace\":\"ns\","
	                              "\"uid\":\"u-a\",\"managedFields\":[{\"fieldsV1\":{\"%s\":{}}}]}},"
	                              "{\"metadata\":{\"name\":\"b\",\"namespace\":\"ns\","
	                              "\"uid\":\"u-b\"}}"),
	                         k),
	                 KUBE_JSON_OK);
	assert_int_equal(SEEN.n, 2);
	assert_string_equal(SEEN.pods[1].uid, "u-b");
	free(k);
	/* a page of many pods */
	size_t n = 2000, cap = n * 128 + 256;
	char *s = malloc(cap), *p = s;
	assert_non_null(s);
	p += sprintf(p,
	             "{\"kind\":\"PodList\",\"metadata\":{\"resourceVersion\":\"1\"},\"items\":[");
	for (size_t i = 0; i < n; i++)
		p += sprintf(
		    p,
		    "%s{\"metadata\":{\"name\":\"p%zu\",\"namespace\":\"ns\",\"uid\":\"u%zu\"},"
		    "\"status\":{\"podIP\":\"10.%zu.%zu.1\"}}",
		    i ? "," : "", i, i, i / 256, i % 256);
	strcpy(p, "]}");
	assert_int_equal(kube_parse_list(s, strlen(s), NULL, NULL, &META, ERR, sizeof(ERR)),
	                 KUBE_JSON_OK);
	assert_int_equal(META.n_items, n);
	free(s);
	free(big);
}

static void test_errors_and_outputs(void **state)
{
	/* out is zeroed on failure */
	assert_int_equal(ev_rc(POD_EV("", "{}", "{\"podIP\":\"10.0.0.1\"}")), KUBE_JSON_OK);
	assert_int_equal(ev_rc(POD_EV("", "{}", "{\"podIP\":\"10.0.0.x\"}")), KUBE_JSON_ERR_SHAPE);
	static const struct kube_event zero_ev;
	assert_memory_equal(&EV, &zero_ev, sizeof(EV));
	assert_non_null(strstr(ERR, "status.podIP"));
	assert_int_equal(list_rc(LIST(ITEM("a"))), KUBE_JSON_OK);
	assert_int_equal(list_rc(LIST(ITEM("a") ",{}")), KUBE_JSON_ERR_SHAPE);
	static const struct kube_list_meta zero_meta;
	assert_memory_equal(&META, &zero_meta, sizeof(META));
	assert_non_null(strstr(ERR, "items[1]"));
	/* err may be NULL, tiny, and is cleared on success */
	const char *doc = "{\"type\":\"NOPE\",\"object\":{}}";
	assert_int_equal(kube_parse_event(doc, strlen(doc), &EV, NULL, 0), KUBE_JSON_ERR_SHAPE);
	char tiny[4] = "zzz";
	assert_int_equal(kube_parse_event(doc, strlen(doc), &EV, tiny, sizeof(tiny)),
	                 KUBE_JSON_ERR_SHAPE);
	assert_int_equal(strlen(tiny), 3);
	assert_int_equal(kube_parse_event(doc, strlen(doc), &EV, tiny, 1), KUBE_JSON_ERR_SHAPE);
	assert_int_equal(tiny[0], '\0');
	doc = "{\"type\":\"ERROR\",\"object\":{}}";
	strcpy(ERR, "stale");
	assert_int_equal(kube_parse_event(doc, strlen(doc), &EV, ERR, sizeof(ERR)), KUBE_JSON_OK);
	assert_string_equal(ERR, "");
	/* the same parser object can be used again and again: no state */
	for (int i = 0; i < 3; i++) {
		assert_int_equal(ev_rc("{\"object\":{},\"type\":\"ERROR\"}"), KUBE_JSON_OK);
		assert_int_equal(ev_rc("{\"object\":{},\"type\":\"BOOKMARK\"}"),
		                 KUBE_JSON_ERR_SHAPE);
	}
}

static void test_json_literal(void **state)
{
	static const struct {
		const char *s;
		enum json_lit want;
	} cases[] = {
	    {"null", JSON_LIT_NULL},     {"true", JSON_LIT_TRUE},  {"false", JSON_LIT_FALSE},
	    {"0", JSON_LIT_NUMBER},      {"-0", JSON_LIT_NUMBER},  {"10", JSON_LIT_NUMBER},
	    {"-1.5", JSON_LIT_NUMBER},   {"1e5", JSON_LIT_NUMBER}, {"1E+5", JSON_LIT_NUMBER},
	    {"0.0e-0", JSON_LIT_NUMBER}, {"", JSON_LIT_BAD},       {"-", JSON_LIT_BAD},
	    {"01", JSON_LIT_BAD},        {"1.", JSON_LIT_BAD},     {".1", JSON_LIT_BAD},
	    {"1e", JSON_LIT_BAD},        {"1e+", JSON_LIT_BAD},    {"+1", JSON_LIT_BAD},
	    {"--1", JSON_LIT_BAD},       {"Null", JSON_LIT_BAD},   {"nulll", JSON_LIT_BAD},
	    {"1.5.5", JSON_LIT_BAD},     {"0x1", JSON_LIT_BAD},    {"1_000", JSON_LIT_BAD},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		assert_int_equal(json_literal(cases[i].s, strlen(cases[i].s)), cases[i].want);
}

static void test_gate_copy(void **state)
{
	const char *out;
	size_t outlen;
	char *copy;
	char err[64];
	/* nothing to rewrite: the input itself, without the whitespace around the value */
	const char *doc = " \t\r\n{\"a\":\"\\u00e9\",\"b\":[1,2]}\n\t";
	assert_int_equal(json_gate(doc, strlen(doc), 64, &out, &outlen, &copy, err, sizeof(err)),
	                 JSON_GATE_OK);
	assert_ptr_equal(out, doc + 4);
	assert_int_equal(outlen, strlen(doc) - 6);
	assert_null(copy);
	/* something to rewrite: a copy, outside strings untouched */
	doc = " {\"a\x7f\":\"\\ud83d\\ude00\\udc00\xe2\x80\xa8\"} ";
	assert_int_equal(json_gate(doc, strlen(doc), 64, &out, &outlen, &copy, err, sizeof(err)),
	                 JSON_GATE_OK);
	assert_non_null(copy);
	const char *want = "{\"a\\u007f\":\"\xf0\x9f\x98\x80\xef\xbf\xbd\\u2028\"}";
	assert_int_equal(outlen, strlen(want));
	assert_memory_equal(out, want, outlen);
	free(copy);
	/* depth: exactly max is fine */
	assert_int_equal(json_gate("[[[]]]", 6, 3, &out, &outlen, &copy, err, sizeof(err)),
	                 JSON_GATE_OK);
	assert_int_equal(json_gate("[[[]]]", 6, 2, &out, &outlen, &copy, err, sizeof(err)),
	                 JSON_GATE_ERR_DEPTH);
	/* the grammar, on its own (libyaml would catch some of these too) */
	static const char *const bad[] = {
	    "[1,,2]",    "[,1]",        "[1,]",
	    "{,}",       "{\"a\":1,}",  "{\"a\":1,,\"b\":2}",
	    "{\"a\",1}", "{\"a\":1:2}", "[\"a\":1]",
	    "{\"a\":1]", "[1}",         "{\"a\" 1}",
	    "[1 2]",     "{1:2}",       "{{}:1}",
	    "{[]:1}",    "[]]",         "[[]",
	    "{}{}",      "{}[]",        ":",
	    ",",         "]",           "\"a\":1",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (json_gate(bad[i], strlen(bad[i]), 64, &out, &outlen, &copy, err, sizeof(err)) !=
		    JSON_GATE_ERR_SYNTAX)
			fail_msg("gate accepted %s", bad[i]);
	static const char *const good[] = {
	    "[]",   "{}",      "[[],{}]",      "{\"a\":[1,{\"b\":null}],\"c\":{}}",
	    "\"\"", "-0.5e+3", "[true,false]",
	};
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
		assert_int_equal(
		    json_gate(good[i], strlen(good[i]), 64, &out, &outlen, &copy, err, sizeof(err)),
		    JSON_GATE_OK);
	assert_int_equal(json_gate("\"x\"", 3, 0, &out, &outlen, &copy, NULL, 0), JSON_GATE_OK);
	assert_int_equal(json_gate("1 ", 2, 0, &out, &outlen, &copy, NULL, 0), JSON_GATE_OK);
	assert_int_equal(json_gate("1 2", 3, 0, &out, &outlen, &copy, NULL, 0),
	                 JSON_GATE_ERR_SYNTAX);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_list_page1),
	    cmocka_unit_test(test_list_page2),
	    cmocka_unit_test(test_list_pretty_and_empty),
	    cmocka_unit_test(test_watch_stream),
	    cmocka_unit_test(test_truncated_prefixes),
	    cmocka_unit_test(test_list_checked_before_callback),
	    cmocka_unit_test(test_list_abort),
	    cmocka_unit_test(test_list_required),
	    cmocka_unit_test(test_string_limits),
	    cmocka_unit_test(test_label_limits),
	    cmocka_unit_test(test_label_types),
	    cmocka_unit_test(test_depth),
	    cmocka_unit_test(test_pod_ips),
	    cmocka_unit_test(test_host_network),
	    cmocka_unit_test(test_terminating_and_phase),
	    cmocka_unit_test(test_wrong_types),
	    cmocka_unit_test(test_duplicate_keys),
	    cmocka_unit_test(test_unknown_fields),
	    cmocka_unit_test(test_key_order),
	    cmocka_unit_test(test_event_types),
	    cmocka_unit_test(test_error_and_bookmark),
	    cmocka_unit_test(test_escapes_and_unicode),
	    cmocka_unit_test(test_whitespace),
	    cmocka_unit_test(test_not_json),
	    cmocka_unit_test(test_long_values),
	    cmocka_unit_test(test_errors_and_outputs),
	    cmocka_unit_test(test_json_literal),
	    cmocka_unit_test(test_gate_copy),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
