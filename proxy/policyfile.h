/* The daemon's policy loading: the one loader (policy_load_file) with its problems reported. */
#ifndef PORTCULLIS_POLICYFILE_H
#define PORTCULLIS_POLICYFILE_H

#include <stdbool.h>
#include <stddef.h>

#include "policy.h"

/*
 * Load and validate a policy file (policy_load_file) and report every
 * problem: as "FILE:LINE:COL: message" lines on stderr (--check, start-up)
 * or as error lines of the operational log (as_log: reload).  sha256
 * receives the file's SHA-256 in hex.  NULL when unreadable or invalid.
 */
struct policy *policyfile_load(const char *path, bool as_log, char sha256[65]);

/*
 * A reload's load (errors as log lines).  When the file fails and holds the
 * very bytes of the last refused file (refused_sha, "" for none), nothing is
 * logged again and *repeated is set: one bad edit is one failure, however many
 * times it is reloaded (file change, then SIGHUP).
 */
struct policy *policyfile_reload(const char *path, const char *refused_sha, char sha256[65],
                                 bool *repeated);

/*
 * Report the warnings of a loaded policy (policy_warn): as
 * "FILE:LINE:COL: warning[CODE]: message" lines on stdout (--check) or as warn
 * lines of the operational log (as_log: start-up and reload; policyfile_load
 * does this itself when as_log).  Returns how many (a failure to check counts).
 */
size_t policyfile_warn(const char *path, const struct policy *p, bool as_log);

#endif
