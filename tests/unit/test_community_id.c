/* Unit tests for Community ID v1 (proxy/proto/community_id.c) against the published baseline. */
#include "community_id.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "addr.h"

/*
 * The TCP, UDP and SCTP rows of corelight/community-id-spec
 * baseline/baseline_deflt.json (seed 0) and baseline_seed1.json (seed 1),
 * each flow in both directions.  (The ICMP rows map types to ports, which
 * the proxy never needs.)
 */
static const struct {
	uint8_t proto;
	const char *saddr, *daddr;
	uint16_t sport, dport, seed;
	const char *want;
} vectors[] = {
    /* baseline/baseline_deflt.json (seed 0) */
    {6, "2001:470:e5bf:dead:4957:2174:e82c:4887", "2607:f8b0:400c:c03::1a", 63943, 25, 0,
     "1:/qFaeAR+gFe1KYjMzVDsMv+wgU4="},
    {6, "2607:f8b0:400c:c03::1a", "2001:470:e5bf:dead:4957:2174:e82c:4887", 25, 63943, 0,
     "1:/qFaeAR+gFe1KYjMzVDsMv+wgU4="},
    {132, "192.168.170.8", "192.168.170.56", 7, 7, 0, "1:MP2EtRCAUIZvTw6MxJHLV7N7JDs="},
    {132, "192.168.170.56", "192.168.170.8", 7, 7, 0, "1:MP2EtRCAUIZvTw6MxJHLV7N7JDs="},
    {6, "128.232.110.120", "66.35.250.204", 34855, 80, 0, "1:LQU9qZlK+B5F3KDmev6m5PMibrg="},
    {6, "66.35.250.204", "128.232.110.120", 80, 34855, 0, "1:LQU9qZlK+B5F3KDmev6m5PMibrg="},
    {17, "192.168.1.52", "8.8.8.8", 54585, 53, 0, "1:d/FP5EW3wiY1vCndhwleRRKHowQ="},
    {17, "8.8.8.8", "192.168.1.52", 53, 54585, 0, "1:d/FP5EW3wiY1vCndhwleRRKHowQ="},
    /* baseline/baseline_seed1.json (seed 1) */
    {6, "2001:470:e5bf:dead:4957:2174:e82c:4887", "2607:f8b0:400c:c03::1a", 63943, 25, 1,
     "1:eJYTW6AOzFLlSUoESovMjnu7rMw="},
    {6, "2607:f8b0:400c:c03::1a", "2001:470:e5bf:dead:4957:2174:e82c:4887", 25, 63943, 1,
     "1:eJYTW6AOzFLlSUoESovMjnu7rMw="},
    {132, "192.168.170.8", "192.168.170.56", 7, 7, 1, "1:5w3ZRjeKBzqT3zsaEECDGjUbYeg="},
    {132, "192.168.170.56", "192.168.170.8", 7, 7, 1, "1:5w3ZRjeKBzqT3zsaEECDGjUbYeg="},
    {6, "128.232.110.120", "66.35.250.204", 34855, 80, 1, "1:3V71V58M3Ksw/yuFALMcW0LAHvc="},
    {6, "66.35.250.204", "128.232.110.120", 80, 34855, 1, "1:3V71V58M3Ksw/yuFALMcW0LAHvc="},
    {17, "192.168.1.52", "8.8.8.8", 54585, 53, 1, "1:Q9We8WO3piVF8yEQBNJF4uiSVrI="},
    {17, "8.8.8.8", "192.168.1.52", 53, 54585, 1, "1:Q9We8WO3piVF8yEQBNJF4uiSVrI="},
};

static void parse(const char *s, struct pc_addr *a)
{
	if (strchr(s, ':') != NULL)
		assert_int_equal(addr_parse_ipv6(s, strlen(s), a), ADDR_OK);
	else
		assert_int_equal(addr_parse_ipv4_strict(s, strlen(s), a), ADDR_OK);
}

static void test_baseline(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(vectors) / sizeof(vectors[0]); i++) {
		struct pc_addr s, d;
		char out[COMMUNITY_ID_LEN + 1];
		parse(vectors[i].saddr, &s);
		parse(vectors[i].daddr, &d);
		assert_int_equal(community_id_v1(&s, vectors[i].sport, &d, vectors[i].dport,
		                                 vectors[i].proto, vectors[i].seed, out),
		                 0);
		assert_string_equal(out, vectors[i].want);
	}
}

/* Equal addresses: the ports decide the order, so both directions still agree. */
static void test_same_address(void **state)
{
	(void)state;
	struct pc_addr a;
	char x[COMMUNITY_ID_LEN + 1], y[COMMUNITY_ID_LEN + 1];
	parse("127.0.0.1", &a);
	assert_int_equal(community_id_v1(&a, 40000, &a, 3128, COMMUNITY_ID_TCP, 0, x), 0);
	assert_int_equal(community_id_v1(&a, 3128, &a, 40000, COMMUNITY_ID_TCP, 0, y), 0);
	assert_string_equal(x, y);
	assert_int_equal(strlen(x), COMMUNITY_ID_LEN);
	assert_int_equal(community_id_v1(&a, 40001, &a, 3128, COMMUNITY_ID_TCP, 0, y), 0);
	assert_string_not_equal(x, y);
}

static void test_refused(void **state)
{
	(void)state;
	struct pc_addr v4, v6;
	char out[COMMUNITY_ID_LEN + 1];
	parse("192.0.2.1", &v4);
	parse("2001:db8::1", &v6);
	assert_int_equal(community_id_v1(&v4, 1, &v6, 2, COMMUNITY_ID_TCP, 0, out), -1);
	assert_string_equal(out, "");
	assert_int_equal(community_id_v1(NULL, 1, &v6, 2, COMMUNITY_ID_TCP, 0, out), -1);
	struct pc_addr bad = {0};
	assert_int_equal(community_id_v1(&bad, 1, &bad, 2, COMMUNITY_ID_TCP, 0, out), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_baseline),
	    cmocka_unit_test(test_same_address),
	    cmocka_unit_test(test_refused),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
