/* libFuzzer target: a response head through http_parse_response, then its cache lifetime. */
#include "cachectl.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > 16384)
		return 0;
	/* An exact-size copy, so ASan sees a read past the end. */
	char *buf = malloc(size ? size : 1);
	if (buf == NULL)
		return 0;
	memcpy(buf, data, size);
	struct http_limits lim;
	http_limits_default(&lim);
	lim.max_head_bytes = 16384;
	lim.max_line_bytes = 16384;
	struct http_resp *r = malloc(sizeof(*r));
	if (r != NULL && http_parse_response(buf, size, &lim, r) > 0) {
		int64_t f = cachectl_freshness(r);
		if (f < -1 || f > 2147483648LL) {
			fprintf(stderr, "cachectl: freshness %lld out of range\n", (long long)f);
			abort();
		}
		/* Without a Cache-Control field there is nothing to say. */
		size_t cc = 0;
		for (size_t i = 0; i < r->n_headers; i++)
			cc += r->headers[i].name.len == 13 &&
			      strncasecmp(r->headers[i].name.p, "cache-control", 13) == 0;
		if (cc == 0 && f != -1) {
			fprintf(stderr, "cachectl: freshness %lld with no Cache-Control\n",
			        (long long)f);
			abort();
		}
	}
	free(r);
	free(buf);
	return 0;
}
