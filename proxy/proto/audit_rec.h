/* One ECS audit record (a line of portcullis' audit log), read for `portcullis learn`. */
#ifndef PORTCULLIS_AUDIT_REC_H
#define PORTCULLIS_AUDIT_REC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Limits: a longer line, string or deeper nesting is refused (AUDIT_REC_ERR_LIMIT). */
#define AUDIT_REC_MAX_LINE 65536
#define AUDIT_REC_MAX_DEPTH 8

enum audit_rec_status {
	AUDIT_REC_OK = 0,
	AUDIT_REC_ERR_SYNTAX = -1, /* not one JSON object */
	AUDIT_REC_ERR_SHAPE = -2,  /* a kept field of the wrong type, or a kept key repeated */
	AUDIT_REC_ERR_LIMIT = -3,  /* line, string or depth over its limit */
	AUDIT_REC_ERR_NOMEM = -5,
};

/*
 * The fields learn reads; "" / 0 / false when absent or null.  Strings are
 * copies, NUL-terminated, never holding U+0000.  Ports are 1..65535 (a JSON
 * number; anything else is SHAPE).  Other fields are skipped whatever their
 * shape.
 */
struct audit_rec {
	char timestamp[40];     /* @timestamp, as written */
	bool allowed, denied;   /* event.type holds "allowed" / "denied" */
	char action[32];        /* event.action */
	char reason[48];        /* event.reason */
	char would_deny[48];    /* labels.would_deny */
	char tier[64];          /* rule.ruleset */
	char source_ip[48];     /* source.ip */
	char domain[256];       /* destination.domain, else url.domain */
	char dest_ip[48];       /* destination.ip */
	uint16_t port;          /* destination.port, else url.port */
	char pod_ns[64];        /* orchestrator.namespace */
	char pod_name[256];     /* orchestrator.resource.name */
};

/*
 * Parse one record (line without its newline; not NUL-terminated).  The JSON
 * is checked by json_gate and walked strictly (json_walk.h): RFC 8259 only,
 * one object, kept keys not repeated.  err (may be NULL) gets a short reason.
 */
int audit_rec_parse(const char *line, size_t len, struct audit_rec *out, char *err, size_t errlen)
	__attribute__((warn_unused_result));

#endif
