/* libFuzzer target: the audit record reader of `portcullis learn`, with invariants that abort(). */
#include "audit_rec.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void require(bool ok, const char *what)
{
	if (!ok) {
		fprintf(stderr, "fuzz_audit_rec: invariant violated: %s\n", what);
		abort();
	}
}

static void terminated(const char *s, size_t cap, const char *what)
{
	size_t n = strnlen(s, cap);
	require(n < cap, what);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct audit_rec r;
	char err[200];
	int rc = audit_rec_parse((const char *)data, size, &r, err, sizeof(err));
	require(rc == AUDIT_REC_OK || rc == AUDIT_REC_ERR_SYNTAX || rc == AUDIT_REC_ERR_SHAPE ||
	            rc == AUDIT_REC_ERR_LIMIT || rc == AUDIT_REC_ERR_NOMEM,
	        "status");
	terminated(err, sizeof(err), "err terminated");
	terminated(r.timestamp, sizeof(r.timestamp), "timestamp");
	terminated(r.domain, sizeof(r.domain), "domain");
	terminated(r.tier, sizeof(r.tier), "tier");
	terminated(r.would_deny, sizeof(r.would_deny), "would_deny");
	terminated(r.pod_name, sizeof(r.pod_name), "pod_name");
	if (rc != AUDIT_REC_OK)
		require(r.domain[0] == '\0' && r.port == 0 && !r.allowed, "nothing kept on error");
	/* The same bytes give the same answer. */
	struct audit_rec again;
	require(audit_rec_parse((const char *)data, size, &again, NULL, 0) == rc, "deterministic");
	require(memcmp(&r, &again, sizeof(r)) == 0, "same record");
	return 0;
}
