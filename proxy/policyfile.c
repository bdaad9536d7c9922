/* The daemon's policy loading: the one loader with its problems reported. */
#include "policyfile.h"

#include <stdio.h>
#include <string.h>

#include "oplog.h"

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
	if (policy_load_file(path, &p, &d, sha256) != POLICY_OK) {
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
