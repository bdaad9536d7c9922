/* portcullis: options, policy loading, start-up and shutdown. */
#include <getopt.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"

#include "audit.h"
#include "explain.h"
#include "learn.h"
#include "policy.h"
#include "ranges.h"
#include "oplog.h"
#include "policyfile.h"
#include "server.h"

/* Exit codes (documented in docs/operations.md and portcullis(8)). */
enum {
	EXIT_OK = 0,
	EXIT_POLICY = 1,  /* policy invalid or unreadable */
	EXIT_USAGE = 2,   /* bad command line */
	EXIT_STARTUP = 3, /* could not bind, resolver or audit output failed */
};

static void usage(FILE *f)
{
	fprintf(f,
	        "usage: portcullis -c FILE                 run the proxy with this policy\n"
	        "       portcullis --check FILE [--strict] validate a policy, print a summary\n"
	        "       portcullis explain -c FILE (--source IP | --pod NS/NAME [--label K=V]...)\n"
	        "                  [--resolve] [--json] METHOD TARGET\n"
	        "                                          would this job be allowed? (0 yes, 1 no)\n"
	        "       portcullis learn -c FILE [--diff] [--tier T] [--since TS] [--min-count N]\n"
	        "                  [--wildcard-threshold N] [--stable-runs N] [LOG...]\n"
	        "                                          an allowlist from audit records\n"
	        "       portcullis --version | --help\n"
	        "\n"
	        "options:\n"
	        "  -c, --config FILE   the policy file to run with (YAML, version 1); reloaded\n"
	        "                      on SIGHUP and when the file changes\n"
	        "  --check FILE        validate FILE and exit: errors as FILE:LINE:COL: message\n"
	        "  --strict            with --check: warnings fail too (for CI)\n"
	        "  -V, --version       print the version and exit\n"
	        "  -h, --help          print this help and exit\n"
	        "\n"
	        "signals: SIGHUP reload the policy, SIGUSR1 reopen the audit file,\n"
	        "         SIGTERM/SIGINT drain and exit\n"
	        "exit codes: 0 ok, 1 invalid policy, 2 usage, 3 start-up failure\n"
	        "docs: portcullis(8), portcullis-policy(5); docs/operations.md, docs/policy.md,\n"
	        "      docs/policy-tools.md (explain, learn, --check warnings)\n");
}

/* A usage error says what was wrong, then where the help is. */
__attribute__((format(printf, 1, 2))) static int usage_error(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "portcullis: ");
	vfprintf(stderr, fmt, ap);
	fprintf(stderr, "\ntry 'portcullis --help' for the options\n");
	va_end(ap);
	return EXIT_USAGE;
}

static int check(const char *path, bool strict)
{
	char sha[65];
	struct policy *p = policyfile_load(path, false, sha);
	if (p == NULL)
		return EXIT_POLICY;
	size_t warnings = policyfile_warn(path, p, false);
	const struct policy_settings *s = policy_settings(p);
	if (strict && warnings > 0) {
		fprintf(stderr, "%s: %zu warning%s (--strict)\n", path, warnings,
		        warnings == 1 ? "" : "s");
		policy_unref(p);
		return EXIT_POLICY;
	}
	printf("%s: OK%s: %zu tiers, %zu rules, %zu ranges (%zu built-in blocked), %zu listeners, "
	       "%zu resolvers\n",
	       path, warnings > 0 ? " with warnings" : "", policy_tier_count(p),
	       policy_rule_count(p), policy_range_count(p),
	       range_builtin_count(), s->n_listen_proxy, s->n_resolvers);
	/* What is intercepted is worth a line of its own: nothing else decrypts. */
	for (size_t t = 0; t < policy_tier_count(p); t++) {
		const char *pats[16];
		size_t n = policy_tier_intercepts(p, (int)t, pats, 16);
		if (n == 0)
			continue;
		printf("tier %s intercepts: ", policy_tier(p, t)->name);
		for (size_t i = 0; i < n && i < 16; i++)
			printf("%s%s", i ? ", " : "", pats[i]);
		if (n > 16)
			printf(" and %zu more", n - 16);
		printf("\n");
	}
	policy_unref(p);
	return EXIT_OK;
}

static int run(const char *path)
{
	char sha[65];
	/* The daemon's stderr is JSON lines from the first line on, policy errors included. */
	struct policy *p = policyfile_load(path, true, sha);
	if (p == NULL)
		return EXIT_POLICY;
	/* policyfile_load logged the policy's warnings (as_log). */
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
	if (argc >= 2 && strcmp(argv[1], "explain") == 0)
		return explain_main(argc - 1, argv + 1);
	if (argc >= 2 && strcmp(argv[1], "learn") == 0)
		return learn_main(argc - 1, argv + 1);
	opterr = 0; /* the errors below say what was wrong */
	while ((o = getopt_long(argc, argv, ":c:hV", opts, NULL)) != -1) {
		switch (o) {
		case 'c':
			if (config != NULL)
				return usage_error("-c/--config given twice (%s)", optarg);
			config = optarg;
			break;
		case 'k':
			if (checkfile != NULL)
				return usage_error("--check given twice (%s)", optarg);
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
		case ':':
		default: {
			/* A long option is its own word; a short one may sit in a group like -zV. */
			const char *w = argv[optind - 1];
			bool is_long = strncmp(w, "--", 2) == 0;
			if (o == ':' && is_long)
				return usage_error("%s needs a FILE argument", w);
			if (o == ':')
				return usage_error("-%c needs a FILE argument", optopt);
			if (is_long)
				return usage_error("unknown option %s", w);
			return usage_error("unknown option -%c", optopt);
		}
		}
	}
	if (optind != argc)
		return usage_error("unexpected argument '%s' (options take one FILE each)",
		                   argv[optind]);
	if (strict && checkfile == NULL)
		return usage_error("--strict goes with --check FILE");
	if (config != NULL && checkfile != NULL)
		return usage_error("-c and --check cannot be combined: run, or check");
	if (config == NULL && checkfile == NULL)
		return usage_error("nothing to do: give -c FILE to run, or --check FILE");
	if (checkfile != NULL)
		return check(checkfile, strict);
	return run(config);
}
