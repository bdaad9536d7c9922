/* Unit tests for proxy/proto/kube_stream.c: pages and watch streams cut into bounded units. */
#include "kube_stream.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "kube_json.h"

#define MAXU 200 /* a small bound, so that tests can cross it */

struct got {
	size_t n;
	char text[16][MAXU + 1]; /* "" when skipped */
	bool skipped[16];
	size_t bytes[16];
	char type[16][16], ns[16][KUBE_NS_MAX], name[16][KUBE_NAME_MAX], uid[16][KUBE_UID_MAX],
	    rv[16][KUBE_RV_MAX];
	int stop_at; /* return non-zero at this unit (-1: never) */
};

static int collect(void *arg, const struct kube_unit *u)
{
	struct got *g = arg;
	assert_true(g->n < 16);
	size_t i = g->n++;
	g->skipped[i] = u->p == NULL;
	if (u->p != NULL) {
		assert_true(u->len <= MAXU);
		assert_int_equal(u->len, u->bytes);
		memcpy(g->text[i], u->p, u->len);
		g->text[i][u->len] = '\0';
	}
	g->bytes[i] = u->bytes;
	strcpy(g->type[i], u->type);
	strcpy(g->ns[i], u->ns);
	strcpy(g->name[i], u->name);
	strcpy(g->uid[i], u->uid);
	strcpy(g->rv[i], u->resource_version);
	return g->stop_at == (int)i;
}

/* Feed text in pieces of `piece` bytes (0: whole); returns the status of the feed or the end. */
static int run(enum kube_stream_mode mode, const char *text, size_t piece, struct got *g,
               char *skel, size_t skelcap)
{
	struct kube_stream *s = kube_stream_new(mode, MAXU);
	char err[160];
	size_t len = strlen(text), units;
	int rc = 0;
	assert_non_null(s);
	memset(g, 0, sizeof(*g));
	g->stop_at = -1;
	for (size_t at = 0; at < len && rc == 0; at += piece ? piece : len) {
		size_t n = piece && piece < len - at ? piece : len - at;
		rc = kube_stream_feed(s, text + at, n, collect, g, err, sizeof(err));
	}
	if (rc == 0) {
		const char *sk;
		size_t sl;
		rc = kube_stream_end(s, &sk, &sl, &units, err, sizeof(err));
		if (rc == 0 && skel != NULL) {
			assert_non_null(sk);
			assert_true(sl < skelcap);
			memcpy(skel, sk, sl);
			skel[sl] = '\0';
		}
		if (rc == 0)
			assert_int_equal(units, g->n);
	}
	kube_stream_free(s);
	return rc;
}

static const char PAGE[] =
    "{\"kind\":\"PodList\",\"apiVersion\":\"v1\",\"metadata\":{\"resourceVersion\":\"42\","
    "\"continue\":\"tok\"},\"items\":[\n"
    " {\"metadata\":{\"name\":\"a\",\"namespace\":\"ci\",\"uid\":\"u-1\",\"resourceVersion\":\"7\"}"
    "},"
    " {\"metadata\":{\"name\":\"b\\\"]}\",\"namespace\":\"ci\",\"uid\":\"u-2\"},\"x\":[1,{\"y\":\"]"
    "\"}]},"
    " {\"metadata\":{\"items\":[{\"name\":\"no\"}],\"uid\":\"u-3\"}}\n"
    "],\"tail\":{\"items\":[1,2]}}";

static void check_page(const struct got *g, const char *skel)
{
	assert_int_equal(g->n, 3);
	assert_string_equal(g->text[0],
	                    "{\"metadata\":{\"name\":\"a\",\"namespace\":\"ci\",\"uid\":\"u-1\","
	                    "\"resourceVersion\":\"7\"}}");
	assert_string_equal(g->name[0], "a");
	assert_string_equal(g->ns[0], "ci");
	assert_string_equal(g->uid[0], "u-1");
	assert_string_equal(g->rv[0], "7");
	assert_string_equal(g->name[1], ""); /* escaped: never read on the way */
	assert_string_equal(g->uid[1], "u-2");
	assert_string_equal(g->name[2],
	                    ""); /* the name inside metadata.items is not metadata.name */
	assert_string_equal(g->uid[2], "u-3");
	assert_string_equal(skel, "{\"kind\":\"PodList\",\"apiVersion\":\"v1\",\"metadata\":{"
	                          "\"resourceVersion\":\"42\",\"continue\":\"tok\"},\"items\":[],"
	                          "\"tail\":{\"items\":[1,2]}}");
	struct kube_list_meta meta;
	assert_int_equal(kube_parse_list(skel, strlen(skel), NULL, NULL, &meta, NULL, 0),
	                 KUBE_JSON_OK);
	assert_string_equal(meta.resource_version, "42");
	assert_string_equal(meta.cont, "tok");
}

/* The same page cut at every size: the same units and skeleton. */
static void test_list_page_any_split(void **state)
{
	struct got g;
	char skel[512];
	for (size_t piece = 0; piece <= sizeof(PAGE); piece++) {
		assert_int_equal(run(KUBE_STREAM_LIST, PAGE, piece, &g, skel, sizeof(skel)), 0);
		check_page(&g, skel);
	}
}

/* An item over the bound is skipped, its small fields read on the way; the next goes on. */
static void test_list_item_over_bound(void **state)
{
	char page[4096];
	char big[1024];
	memset(big, 'x', 600);
	big[600] = '\0';
	snprintf(page, sizeof(page),
	         "{\"kind\":\"PodList\",\"metadata\":{\"resourceVersion\":\"1\"},\"items\":["
	         "{\"metadata\":{\"name\":\"fat\",\"namespace\":\"ns\",\"uid\":\"u-f\","
	         "\"annotations\":{\"a\":\"%s\"}}},{\"metadata\":{\"name\":\"thin\"}}]}",
	         big);
	struct got g;
	char skel[512];
	for (size_t piece = 1; piece < 40; piece += 7) {
		assert_int_equal(run(KUBE_STREAM_LIST, page, piece, &g, skel, sizeof(skel)), 0);
		assert_int_equal(g.n, 2);
		assert_true(g.skipped[0]);
		assert_true(g.bytes[0] > 600);
		assert_string_equal(g.name[0], "fat");
		assert_string_equal(g.ns[0], "ns");
		assert_string_equal(g.uid[0], "u-f");
		assert_false(g.skipped[1]);
		assert_string_equal(g.text[1], "{\"metadata\":{\"name\":\"thin\"}}");
	}
}

static void test_list_errors(void **state)
{
	struct got g;
	char skel[512];
	static const struct {
		const char *text;
		int rc;
	} cases[] = {
	    {"[1]", KUBE_STREAM_ERR_SHAPE},
	    {"{\"items\":[1]}", KUBE_STREAM_ERR_SHAPE},
	    {"{\"items\":[\"x\"]}", KUBE_STREAM_ERR_SHAPE},
	    {"{\"items\":[{]]}", KUBE_STREAM_ERR_SYNTAX},
	    {"{\"items\":[]}}", KUBE_STREAM_ERR_SYNTAX},
	    {"{\"items\":[]} x", KUBE_STREAM_ERR_SYNTAX},
	    {"{\"items\":[]", KUBE_STREAM_ERR_SYNTAX}, /* ends early */
	    {"}", KUBE_STREAM_ERR_SHAPE},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		assert_int_equal(run(KUBE_STREAM_LIST, cases[i].text, 0, &g, skel, sizeof(skel)),
		                 cases[i].rc);
	/* nesting past KUBE_MAX_DEPTH */
	char deep[400];
	memset(deep, '[', sizeof(deep) - 1);
	deep[0] = '{';
	deep[1] = '"';
	deep[2] = 'a';
	deep[3] = '"';
	deep[4] = ':';
	deep[sizeof(deep) - 1] = '\0';
	assert_int_equal(run(KUBE_STREAM_LIST, deep, 0, &g, skel, sizeof(skel)),
	                 KUBE_STREAM_ERR_LIMIT);
	/* a skeleton over its bound */
	size_t n = KUBE_STREAM_MAX_SKELETON + 100;
	char *fat = malloc(n + 32);
	assert_non_null(fat);
	strcpy(fat, "{\"x\":\"");
	memset(fat + 6, 'y', n);
	strcpy(fat + 6 + n, "\",\"items\":[]}");
	assert_int_equal(run(KUBE_STREAM_LIST, fat, 4096, &g, skel, sizeof(skel)),
	                 KUBE_STREAM_ERR_LIMIT);
	free(fat);
}

static const char WATCH[] =
    "{\"type\":\"ADDED\",\"object\":{\"kind\":\"Pod\",\"metadata\":{\"name\":\"a\",\"namespace\":"
    "\"ci\",\"uid\":\"u-1\",\"resourceVersion\":\"10\"}}}\n"
    "{\"object\":{\"metadata\":{\"uid\":\"u-2\"}},\"type\":\"DELETED\"}\r\n"
    "\n"
    "{\"type\":\"BOOKMARK\",\"object\":{\"metadata\":{\"resourceVersion\":\"12\"}}}\n";

static void test_watch_any_split(void **state)
{
	struct got g;
	for (size_t piece = 0; piece <= sizeof(WATCH); piece++) {
		assert_int_equal(run(KUBE_STREAM_WATCH, WATCH, piece, &g, NULL, 0), 0);
		assert_int_equal(g.n, 3);
		assert_string_equal(g.type[0], "ADDED");
		assert_string_equal(g.uid[0], "u-1");
		assert_string_equal(g.rv[0], "10");
		assert_string_equal(g.type[1], "DELETED");
		assert_string_equal(g.uid[1], "u-2");
		assert_string_equal(g.type[2], "BOOKMARK");
		assert_string_equal(g.rv[2], "12");
		/* each event is handed over as it came, parseable on its own */
		struct kube_event *ev = malloc(sizeof(*ev));
		assert_non_null(ev);
		assert_int_equal(kube_parse_event(g.text[0], strlen(g.text[0]), ev, NULL, 0),
		                 KUBE_JSON_OK);
		assert_int_equal(ev->type, KUBE_EV_ADDED);
		free(ev);
	}
}

static void test_watch_event_over_bound_and_errors(void **state)
{
	char text[2048];
	char big[700];
	memset(big, 'z', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	snprintf(
	    text, sizeof(text),
	    "{\"type\":\"MODIFIED\",\"object\":{\"metadata\":{\"name\":\"fat\",\"uid\":\"u-9\","
	    "\"resourceVersion\":\"99\",\"annotations\":{\"a\":\"%s\"}}}}\n"
	    "{\"type\":\"BOOKMARK\",\"object\":{\"metadata\":{\"resourceVersion\":\"100\"}}}\n",
	    big);
	struct got g;
	assert_int_equal(run(KUBE_STREAM_WATCH, text, 13, &g, NULL, 0), 0);
	assert_int_equal(g.n, 2);
	assert_true(g.skipped[0]);
	assert_string_equal(g.type[0], "MODIFIED");
	assert_string_equal(g.uid[0], "u-9");
	assert_string_equal(g.rv[0], "99");
	assert_false(g.skipped[1]);
	/* a stream ending inside an event, a non-object event, a stray bracket */
	assert_int_equal(run(KUBE_STREAM_WATCH, "{\"type\":\"ADDED\"", 0, &g, NULL, 0),
	                 KUBE_STREAM_ERR_SYNTAX);
	assert_int_equal(run(KUBE_STREAM_WATCH, "nope\n", 0, &g, NULL, 0), KUBE_STREAM_ERR_SHAPE);
	assert_int_equal(run(KUBE_STREAM_WATCH, "{}]", 0, &g, NULL, 0), KUBE_STREAM_ERR_SHAPE);
}

/* A callback that stops the stream: ABORT, and nothing after it is handed over. */
static void test_callback_stops(void **state)
{
	struct kube_stream *s = kube_stream_new(KUBE_STREAM_WATCH, MAXU);
	struct got g;
	memset(&g, 0, sizeof(g));
	g.stop_at = 0;
	assert_int_equal(kube_stream_feed(s, WATCH, strlen(WATCH), collect, &g, NULL, 0),
	                 KUBE_STREAM_ERR_ABORT);
	assert_int_equal(g.n, 1);
	/* reset: a new stream works */
	kube_stream_reset(s);
	g.n = 0;
	g.stop_at = -1;
	assert_int_equal(kube_stream_feed(s, WATCH, strlen(WATCH), collect, &g, NULL, 0), 0);
	assert_int_equal(g.n, 3);
	kube_stream_free(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_list_page_any_split),
	    cmocka_unit_test(test_list_item_over_bound),
	    cmocka_unit_test(test_list_errors),
	    cmocka_unit_test(test_watch_any_split),
	    cmocka_unit_test(test_watch_event_over_bound_and_errors),
	    cmocka_unit_test(test_callback_stops),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
