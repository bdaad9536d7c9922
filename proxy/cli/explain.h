/* portcullis explain: what the daemon would decide for one identity and one request. */
#ifndef PORTCULLIS_EXPLAIN_H
#define PORTCULLIS_EXPLAIN_H

/*
 * argv[0] is "explain".  Exit status: 0 allowed (audit-mode would-deny
 * included: the daemon lets it through), 1 denied, 2 usage error or a
 * policy that does not load.
 */
int explain_main(int argc, char **argv);

#endif
