/* libFuzzer target: policy YAML loading, with invariants on the result that abort(). */
#include "policy.h"
#include "warn.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void require(bool ok, const char *what)
{
	if (!ok) {
		fprintf(stderr, "fuzz_policy: invariant violated: %s\n", what);
		abort();
	}
}

/* Queries a loaded snapshot the way the daemon does; nothing may crash or allow a blocked address.
 */
static void exercise(const struct policy *p)
{
	static const char *const hosts[] = {"example.com", "a.b.example.com", "169.254.169.254",
	                                    "10.0.0.1",    "2001:db8::1",     "github.com"};
	static const uint8_t meta[4] = {169, 254, 169, 254};
	const struct policy_settings *s = policy_settings(p);
	size_t nt = policy_tier_count(p);
	struct pc_addr a = {.family = ADDR_V4};
	struct verdict v;

	require(nt >= 1, "a loaded policy has a tier");
	require(s->n_resolvers >= 1 && s->n_resolvers <= POLICY_MAX_RESOLVERS, "resolver count");
	require(s->n_listen_proxy >= 1 && s->n_listen_proxy <= POLICY_MAX_LISTEN, "listen count");
	require(s->unknown_source_tier >= -1 && s->unknown_source_tier < (int)nt,
	        "unknown_source_tier in range");
	require(s->audit_output != NULL && s->audit_output[0] != '\0', "audit output");
	memcpy(a.b, meta, 4);
	int t = policy_identify(p, &a);
	require(t >= -1 && t < (int)nt, "identify in range");
	for (size_t i = 0; i < nt; i++) {
		const struct policy_tier *tier = policy_tier(p, i);
		require(tier != NULL && tier->name != NULL, "tier name");
		for (size_t j = 0; j < sizeof(hosts) / sizeof(hosts[0]); j++) {
			struct pc_host h;
			if (host_canon(hosts[j], strlen(hosts[j]), &h) != HOST_OK)
				continue;
			policy_decide_host(p, (int)i, &h, 443, &v);
			require(v.rule != NULL, "verdict rule never NULL");
			require(!v.would_deny || v.allow, "would_deny implies allow");
			require(v.reason != R_ALLOWED || v.allow, "allowed implies allow");
		}
		policy_decide_addrs(p, (int)i, &a, 1, &v);
		/* 169.254.169.254 may only pass when the tier's allow_ranges names it. */
		require(v.allow == !policy_addr_blocked(p, (int)i, &a),
		        "decide_addrs = addr_blocked");
	}
	/* Warnings: each placed, named, with a message, sorted by place. */
	static struct policy_warnings w;
	require(policy_warn(p, &w) == POLICY_OK, "warnings computed");
	require(w.n <= POLICY_MAX_WARNINGS, "warnings capped");
	for (size_t i = 0; i < w.n; i++) {
		require(w.v[i].line > 0 && w.v[i].col > 0, "warning placed");
		require(w.v[i].code < PW__COUNT, "warning code");
		require(w.v[i].msg[0] != '\0', "warning message");
		require(i == 0 || w.v[i - 1].line <= w.v[i].line, "warnings sorted");
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct policy *p = NULL;
	struct policy_diags d;

	policy_diags_init(&d);
	int rc = policy_load_buffer((const char *)data, size, &p, &d);
	require(rc == POLICY_OK || rc == POLICY_ERR_INVALID || rc == POLICY_ERR_NOMEM, "status");
	require((rc == POLICY_OK) == (p != NULL), "snapshot iff OK");
	require(rc != POLICY_OK || d.n == 0, "no diags on success");
	require(rc != POLICY_ERR_INVALID || d.n >= 1, "a reason for every refusal");
	require(d.n <= 100, "diags capped");
	for (size_t i = 0; i < d.n; i++) {
		size_t len = strnlen(d.v[i].msg, sizeof(d.v[i].msg));
		require(len > 0 && len < sizeof(d.v[i].msg), "message terminated and non-empty");
		/* Sorted by position; diags without one (line 0) come last. */
		unsigned prev = i > 0 && d.v[i - 1].line ? d.v[i - 1].line : (i > 0 ? ~0u : 0);
		require(prev <= (d.v[i].line ? d.v[i].line : ~0u), "diags sorted by line");
	}
	if (p != NULL) {
		exercise(p);
		require(policy_ref(p) == p, "ref");
		policy_unref(p);
	}
	policy_unref(p);
	policy_diags_fini(&d);
	return 0;
}
