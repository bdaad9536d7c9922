/* The text of a refusal: an HTTP response with the reason in Proxy-Status. */
#include "refusal.h"

#include <stdio.h>

static const char *status_text(int status)
{
	switch (status) {
	case 400:
		return "Bad Request";
	case 403:
		return "Forbidden";
	case 407:
		return "Proxy Authentication Required";
	case 408:
		return "Request Timeout";
	case 414:
		return "URI Too Long";
	case 429:
		return "Too Many Requests";
	case 431:
		return "Request Header Fields Too Large";
	case 500:
		return "Internal Server Error";
	case 501:
		return "Not Implemented";
	case 502:
		return "Bad Gateway";
	case 503:
		return "Service Unavailable";
	case 504:
		return "Gateway Timeout";
	case 505:
		return "HTTP Version Not Supported";
	default:
		return "Error";
	}
}

size_t refusal_format(enum reason why, int status, uint32_t retry_after, bool head, char *buf,
                      size_t n)
{
	char retry[40] = "";
	if (retry_after > 0)
		snprintf(retry, sizeof(retry), "Retry-After: %u\r\n", retry_after);
	/* RFC 9110 §11.7.1: a 407 carries the challenge (git, Java and .NET clients send
	 * credentials only after one). */
	const char *challenge =
	    status == 407 ? "Proxy-Authenticate: Basic realm=\"portcullis\"\r\n" : "";
	char body[96];
	int blen =
	    snprintf(body, sizeof(body), "portcullis refused the request: %s\n", reason_name(why));
	int len = snprintf(buf, n,
	                   "HTTP/1.1 %d %s\r\n"
	                   "Proxy-Status: portcullis; error=%s; details=\"%s\"\r\n"
	                   "%s%s"
	                   "Content-Type: text/plain\r\n"
	                   "Content-Length: %d\r\n"
	                   "Connection: close\r\n"
	                   "\r\n%s",
	                   status, status_text(status), reason_proxy_status(why), reason_name(why),
	                   retry, challenge, blen, head ? "" : body);
	return len > 0 && (size_t)len < n ? (size_t)len : 0;
}
