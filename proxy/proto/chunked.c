/* Chunked transfer coding (RFC 9112 §7.1): a validating, resumable decoder. */
#include "chunked.h"

#include <string.h>

#include "ascii.h"
#include "http_parse.h"

/* CTL other than HTAB, and DEL: never in a field value (RFC 9110 §5.5). */
static bool is_bad_ctl(unsigned char c)
{
	return (c < 0x20 && c != '\t') || c == 0x7f;
}

/*
 * chunked-body = *chunk last-chunk trailer-section CRLF
 * chunk        = chunk-size [ chunk-ext ] CRLF chunk-data CRLF
 * chunk-ext    = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] )
 * One state per position in that grammar, so any split of the input is the
 * same walk.  BWS is taken as empty (see the header).
 */
enum chunk_pos {
	CP_SIZE0 = 0,  /* first HEXDIG of chunk-size */
	CP_SIZE,       /* more HEXDIG, ';' or CR */
	CP_EXT_NAME0,  /* first tchar of chunk-ext-name */
	CP_EXT_NAME,   /* tchar, '=', ';' or CR */
	CP_EXT_VAL0,   /* token or quoted-string */
	CP_EXT_TOKEN,  /* tchar, ';' or CR */
	CP_EXT_QS,     /* inside a quoted-string (RFC 9110 §5.6.4) */
	CP_EXT_QS_ESC, /* after '\' */
	CP_EXT_QS_END, /* after the closing '"': ';' or CR */
	CP_LINE_LF,    /* LF ending the chunk line */
	CP_DATA,       /* chunk-data; size bytes left */
	CP_DATA_CR,    /* CR after chunk-data */
	CP_DATA_LF,    /* LF after chunk-data */
	CP_TR0,        /* start of a trailer field line, or CR of the final CRLF */
	CP_TR_NAME,    /* field-name */
	CP_TR_VALUE,   /* after ':' */
	CP_TR_LF,      /* LF ending a trailer field line */
	CP_FINAL_LF,   /* LF of the final CRLF */
};

void chunked_init(struct chunked_state *s)
{
	memset(s, 0, sizeof(*s));
}

/* qdtext = HTAB / SP / %x21 / %x23-5B / %x5D-7E (obs-text refused) */
static bool is_qdtext(unsigned char c)
{
	return c == '\t' || c == ' ' || c == 0x21 || (c >= 0x23 && c <= 0x5b) ||
	       (c >= 0x5d && c <= 0x7e);
}

/* After a whole chunk-ext-name or chunk-ext-val: another ';' or the CR. */
static int ext_next(struct chunked_state *s, unsigned char c)
{
	if (c == ';')
		s->state = CP_EXT_NAME0;
	else if (c == '\r')
		s->state = CP_LINE_LF;
	else
		return CHUNKED_ERR_EXT;
	return 0;
}

/* One byte of a chunk line (chunk-size and chunk-ext). */
static int chunk_line_byte(struct chunked_state *s, unsigned char c)
{
	if (c == '\n')
		return CHUNKED_ERR_BARE_LF; /* RFC 9112 §2.2: we never take a bare LF */
	if (c != '\r' && ++s->line > CHUNKED_MAX_LINE)
		return CHUNKED_ERR_LINE_TOO_LONG;
	bool t = http_is_tchar(c);
	switch (s->state) {
	case CP_SIZE0:
	case CP_SIZE: {
		int h = ascii_hex_value(c);
		if (h >= 0) {
			/* keep size <= 2^62 (CHUNKED_SIZE_MAX) */
			if (s->size > (CHUNKED_SIZE_MAX - (uint64_t)h) / 16)
				return CHUNKED_ERR_SIZE_OVERFLOW;
			s->size = s->size * 16 + (uint64_t)h;
			s->state = CP_SIZE;
			return 0;
		}
		if (s->state == CP_SIZE0)
			return CHUNKED_ERR_SIZE; /* chunk-size = 1*HEXDIG */
		if (c == ';')
			s->state = CP_EXT_NAME0;
		else if (c == '\r')
			s->state = CP_LINE_LF;
		else
			return CHUNKED_ERR_SIZE; /* "0x5", "5 ;", "-1", "5 " */
		return 0;
	}
	case CP_EXT_NAME0:
		if (!t)
			return CHUNKED_ERR_EXT;
		s->state = CP_EXT_NAME;
		return 0;
	case CP_EXT_NAME:
		if (t)
			return 0;
		if (c != '=')
			return ext_next(s, c);
		s->state = CP_EXT_VAL0;
		return 0;
	case CP_EXT_TOKEN:
		return t ? 0 : ext_next(s, c);
	case CP_EXT_QS_END:
		return ext_next(s, c);
	case CP_EXT_VAL0:
		if (t)
			s->state = CP_EXT_TOKEN;
		else if (c == '"')
			s->state = CP_EXT_QS;
		else
			return CHUNKED_ERR_EXT;
		return 0;
	case CP_EXT_QS:
		if (c == '"')
			s->state = CP_EXT_QS_END;
		else if (c == '\\')
			s->state = CP_EXT_QS_ESC;
		else if (!is_qdtext(c))
			return CHUNKED_ERR_EXT;
		return 0;
	case CP_EXT_QS_ESC:
		/* quoted-pair = "\" ( HTAB / SP / VCHAR / obs-text ); obs-text refused */
		if (c != '\t' && (c < 0x20 || c > 0x7e))
			return CHUNKED_ERR_EXT;
		s->state = CP_EXT_QS;
		return 0;
	default:
		return CHUNKED_ERR_SIZE; /* unreachable: callers pass line states only */
	}
}

/* One byte of the trailer section (RFC 9112 §7.1.2: field lines, then CRLF). */
static int chunk_trailer_byte(struct chunked_state *s, unsigned char c)
{
	if (++s->trailer > CHUNKED_MAX_TRAILER)
		return CHUNKED_ERR_TRAILER_TOO_LARGE;
	switch (s->state) {
	case CP_TR_LF:
	case CP_FINAL_LF:
		if (c != '\n')
			return CHUNKED_ERR_BARE_CR;
		if (s->state == CP_FINAL_LF)
			return CHUNKED_DONE;
		s->state = CP_TR0;
		return 0;
	default:
		break;
	}
	if (c == '\n')
		return CHUNKED_ERR_BARE_LF;
	switch (s->state) {
	case CP_TR0:
		/* A line starting with SP/HTAB is obs-fold (RFC 9112 §5.2). */
		if (c == '\r')
			s->state = CP_FINAL_LF;
		else if (http_is_tchar(c))
			s->state = CP_TR_NAME;
		else
			return CHUNKED_ERR_TRAILER;
		return 0;
	case CP_TR_NAME:
		/* field-name ":" with nothing between (RFC 9112 §5.1) */
		if (c == ':')
			s->state = CP_TR_VALUE;
		else if (!http_is_tchar(c))
			return CHUNKED_ERR_TRAILER;
		return 0;
	default: /* CP_TR_VALUE: SP / HTAB / VCHAR / obs-text (RFC 9110 §5.5) */
		if (c == '\r')
			s->state = CP_TR_LF;
		else if (is_bad_ctl(c))
			return CHUNKED_ERR_TRAILER;
		return 0;
	}
}

/* One byte outside chunk-data. */
static int chunk_byte(struct chunked_state *s, unsigned char c)
{
	switch (s->state) {
	case CP_LINE_LF:
		if (c != '\n')
			return CHUNKED_ERR_BARE_CR;
		s->line = 0;
		/* last-chunk = 1*("0") [ chunk-ext ] CRLF */
		s->state = s->size > 0 ? CP_DATA : CP_TR0;
		return 0;
	case CP_DATA_CR:
	case CP_DATA_LF:
		/* chunk = ... chunk-data CRLF: exactly CRLF, nothing else */
		if (c != (s->state == CP_DATA_CR ? '\r' : '\n'))
			return CHUNKED_ERR_DATA_CRLF;
		s->state = s->state == CP_DATA_CR ? CP_DATA_LF : CP_SIZE0;
		return 0;
	case CP_TR0:
	case CP_TR_NAME:
	case CP_TR_VALUE:
	case CP_TR_LF:
	case CP_FINAL_LF:
		return chunk_trailer_byte(s, c);
	default:
		return chunk_line_byte(s, c);
	}
}

int chunked_decode(struct chunked_state *s, const char *buf, size_t len, size_t *consumed,
                   struct http_view *data)
{
	size_t i = 0;

	*consumed = 0;
	data->p = NULL;
	data->len = 0;
	if (s->result != CHUNKED_MORE)
		return s->result;
	while (i < len) {
		if (s->state == CP_DATA) {
			size_t take = s->size < len - i ? (size_t)s->size : len - i;
			data->p = buf + i;
			data->len = take;
			i += take;
			s->size -= take;
			if (s->size == 0)
				s->state = CP_DATA_CR;
			*consumed = i;
			return CHUNKED_MORE;
		}
		int rc = chunk_byte(s, (unsigned char)buf[i]);
		if (rc < 0) {
			s->result = rc;
			*consumed = i;
			return rc;
		}
		i++;
		if (rc == CHUNKED_DONE) {
			s->result = CHUNKED_DONE;
			*consumed = i;
			return CHUNKED_DONE;
		}
	}
	*consumed = len;
	return CHUNKED_MORE;
}

int chunked_feed(struct chunked_state *s, const char *buf, size_t len, size_t *consumed)
{
	size_t done = 0;
	int rc = s->result;

	*consumed = 0;
	if (rc != CHUNKED_MORE)
		return rc;
	while (done < len) {
		struct http_view data;
		size_t used;
		rc = chunked_decode(s, buf + done, len - done, &used, &data);
		done += used;
		if (rc != CHUNKED_MORE)
			break;
	}
	*consumed = done;
	return rc;
}

static const struct {
	int status;
	const char *name;
} status_names[] = {
    {CHUNKED_ERR_SIZE, "bad_chunk_size"},
    {CHUNKED_ERR_SIZE_OVERFLOW, "chunk_size_overflow"},
    {CHUNKED_ERR_DATA_CRLF, "chunk_data_crlf"},
    {CHUNKED_ERR_BARE_LF, "chunk_bare_lf"},
    {CHUNKED_ERR_BARE_CR, "chunk_bare_cr"},
    {CHUNKED_ERR_EXT, "bad_chunk_ext"},
    {CHUNKED_ERR_LINE_TOO_LONG, "chunk_line_too_long"},
    {CHUNKED_ERR_TRAILER, "bad_trailer"},
    {CHUNKED_ERR_TRAILER_TOO_LARGE, "trailer_too_large"},
};

const char *chunked_status_str(int status)
{
	for (size_t i = 0; i < sizeof(status_names) / sizeof(status_names[0]); i++) {
		if (status_names[i].status == status)
			return status_names[i].name;
	}
	return "unknown";
}
