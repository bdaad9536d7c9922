/* portcullis learn: an allowlist from what jobs really did, read from the audit records. */
#ifndef PORTCULLIS_LEARN_H
#define PORTCULLIS_LEARN_H

/*
 * argv[0] is "learn".  Prints a policy fragment (default) or a unified diff
 * against the policy file (--diff) on stdout, a summary with one stability
 * line per tier on stderr.  Exit status: 0 done, 1 an input could not be
 * read or the diff could not be made for a tier, 2 usage error or a policy
 * that does not load.
 */
int learn_main(int argc, char **argv);

#endif
