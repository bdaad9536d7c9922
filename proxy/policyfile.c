/* The daemon's policy loading: the one loader with its problems reported. */
#include "policyfile.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "oidc.h"
#include "oplog.h"
#include "warn.h"

static void report(const char *path, bool as_log, const struct policy_diag *dg)
{
	if (as_log && dg->line > 0)
		oplog("error", "%s:%u:%u: %s", path, dg->line, dg->col, dg->msg);
	else if (as_log)
		oplog("error", "%s: %s", path, dg->msg);
	else if (dg->line > 0)
		fprintf(stderr, "%s:%u:%u: %s\n", path, dg->line, dg->col, dg->msg);
	else
		fprintf(stderr, "%s: %s\n", path, dg->msg);
}

static struct policy *load(const char *path, bool as_log, const char *refused_sha, char sha256[65],
                           bool *repeated)
{
	struct policy *p = NULL;
	struct policy_diags d;
	policy_diags_init(&d);
	if (repeated != NULL)
		*repeated = false;
	int rc = policy_load_file(path, &p, &d, sha256);
	if (rc != POLICY_OK && rc != POLICY_ERR_INVALID)
		sha256[0] = '\0'; /* not the file's fault (memory, I/O): never "refused before" */
	if (rc != POLICY_OK) {
		p = NULL;
		if (refused_sha != NULL && refused_sha[0] != '\0' &&
		    strcmp(sha256, refused_sha) == 0) {
			/* The same bytes were refused already, their errors logged: not again. */
			*repeated = true;
		} else {
			for (size_t i = 0; i < d.n; i++)
				report(path, as_log, &d.v[i]);
			if (d.n == 0 && as_log)
				oplog("error", "%s: cannot load policy", path);
			else if (d.n == 0)
				fprintf(stderr, "%s: cannot load policy\n", path);
		}
	}
	policy_diags_fini(&d);
	/* The OIDC providers' keys belong to the snapshot: a JWKS that cannot be read refuses it. */
	struct policy_diag dg = {0};
	if (p != NULL && oidc_keys_attach(p, dg.msg, sizeof(dg.msg), &dg.line, &dg.col) != 0) {
		report(path, as_log, &dg);
		policy_unref(p);
		p = NULL;
	}
	if (p != NULL && as_log)
		(void)policyfile_warn(path, p, true);
	return p;
}

struct policy *policyfile_load(const char *path, bool as_log, char sha256[65])
{
	return load(path, as_log, NULL, sha256, NULL);
}

struct policy *policyfile_reload(const char *path, const char *refused_sha, char sha256[65],
                                 bool *repeated)
{
	return load(path, true, refused_sha, sha256, repeated);
}

size_t policyfile_warn(const char *path, const struct policy *p, bool as_log)
{
	struct policy_warnings *w = calloc(1, sizeof(*w)); /* 64 KiB: not on a thread's stack */
	if (w == NULL || policy_warn(p, w) != POLICY_OK) {
		if (as_log)
			oplog("error", "%s: out of memory while checking for warnings", path);
		else
			fprintf(stderr, "%s: out of memory while checking for warnings\n", path);
		free(w);
		return 1; /* counts as a warning: --strict fails closed */
	}
	for (size_t i = 0; i < w->n; i++) {
		const struct policy_warning *x = &w->v[i];
		if (as_log)
			oplog("warn", "%s:%u:%u: warning[%s]: %s", path, x->line, x->col,
			      policy_warn_name(x->code), x->msg);
		else
			printf("%s:%u:%u: warning[%s]: %s\n", path, x->line, x->col,
			       policy_warn_name(x->code), x->msg);
	}
	if (w->truncated && as_log)
		oplog("warn", "%s: more than %d warnings, the rest not shown", path,
		      POLICY_MAX_WARNINGS);
	else if (w->truncated)
		printf("%s: more than %d warnings, the rest not shown\n", path, POLICY_MAX_WARNINGS);
	size_t n = w->n + (w->truncated ? 1 : 0);
	free(w);
	return n;
}
