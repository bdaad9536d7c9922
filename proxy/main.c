/* portcullis: options, policy loading, start-up and shutdown. */
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"

#include "audit.h"
#include "policy.h"
#include "ranges.h"
#include "oplog.h"
#include "policyfile.h"
#include "server.h"

/* Exit codes (documented in the README). */
enum {
	EXIT_OK = 0,
	EXIT_POLICY = 1,  /* policy invalid or unreadable */
	EXIT_USAGE = 2,   /* bad command line */
	EXIT_STARTUP = 3, /* could not bind, resolver or audit output failed */
};

/* Bound on audit records waiting for the writer thread. */

static void usage(FILE *f)
{
	fprintf(f, "usage: portcullis -c FILE       run the proxy with this policy\n"
	           "       portcullis --check FILE [--strict]\n"
	           "                                validate a policy and print a summary;\n"
	           "                                --strict also fails on warnings\n"
	           "       portcullis --version\n"
	           "       portcullis --help\n"
	           "\n"
	           "exit codes: 0 ok, 1 invalid policy, 2 usage, 3 start-up failure\n");
}

static int check(const char *path, bool strict)
{
	(void)strict; /* no warnings yet: every policy that loads passes --strict */
	char sha[65];
	struct policy *p = policyfile_load(path, false, sha);
	if (p == NULL)
		return EXIT_POLICY;
	const struct policy_settings *s = policy_settings(p);
	printf("%s: OK: %zu tiers, %zu rules, %zu ranges (%zu built-in blocked), %zu listeners, "
	       "%zu resolvers\n",
	       path, policy_tier_count(p), policy_rule_count(p), policy_range_count(p),
	       range_builtin_count(), s->n_listen_proxy, s->n_resolvers);
	policy_unref(p);
	return EXIT_OK;
}

static int run(const char *path)
{
	char sha[65];
	struct policy *p = policyfile_load(path, false, sha);
	if (p == NULL)
		return EXIT_POLICY;
	char err[512] = "";
	const struct policy_settings *s = policy_settings(p);
	struct audit_log *audit =
	    audit_log_create(s->audit_output, (size_t)s->audit_queue_bytes, err, sizeof(err));
	if (audit == NULL) {
		oplog("error", "audit output %s: %s", s->audit_output, err);
		policy_unref(p);
		return EXIT_STARTUP;
	}
	audit_log_set_format(audit, s->audit_format == POLICY_AUDIT_OCSF ? AUDIT_FMT_OCSF
	                                                                  : AUDIT_FMT_ECS);
	int rc = EXIT_STARTUP;
	struct server *srv = server_create(p, path, sha, audit, err, sizeof(err));
	if (srv == NULL) {
		oplog("error", "start-up failed: %s", err);
	} else {
		oplog("info", "policy %s loaded: %zu tiers, %zu rules", path, policy_tier_count(p),
		      policy_rule_count(p));
		rc = server_run(srv);
	}
	server_destroy(srv);
	audit_log_destroy(audit);
	policy_unref(p);
	return rc;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"config", required_argument, NULL, 'c'},
	    {"check", required_argument, NULL, 'k'},
	    {"strict", no_argument, NULL, 's'},
	    {"version", no_argument, NULL, 'V'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	const char *config = NULL, *checkfile = NULL;
	bool strict = false;
	int o;
	while ((o = getopt_long(argc, argv, "c:hV", opts, NULL)) != -1) {
		switch (o) {
		case 'c':
			config = optarg;
			break;
		case 'k':
			checkfile = optarg;
			break;
		case 's':
			strict = true;
			break;
		case 'V':
			printf("portcullis %s\n", PORTCULLIS_VERSION);
			return EXIT_OK;
		case 'h':
			usage(stdout);
			return EXIT_OK;
		default:
			usage(stderr);
			return EXIT_USAGE;
		}
	}
	if (optind != argc || (config == NULL) == (checkfile == NULL) ||
	    (strict && checkfile == NULL)) {
		usage(stderr);
		return EXIT_USAGE;
	}
	if (checkfile != NULL)
		return check(checkfile, strict);
	return run(config);
}
