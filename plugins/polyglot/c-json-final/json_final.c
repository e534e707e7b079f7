// c-json-final: a final action in C.
//
// After a successful verification it answers 200 with
//   content-type: application/json
//   cache-control: no-store
//   {"credential":"<id>","channel":"<channel>","verified":true}
// where <id> and <channel> are JSON strings: `"` and `\` are escaped, control characters
// become \n, \t, ... or \u00XX, and everything else (UTF-8 included) is copied unchanged.
// An empty credential id is refused with an error (the client sees 500 PLUGIN:FAILED).
//
// The bindings (finalizer.h / finalizer.c) are generated from wit/v0.2.0/plugin.wit by
// `wit-bindgen c --world finalizer`; see plugins/polyglot/README.md.
#include <stdlib.h>
#include <string.h>

#include "finalizer.h"

// A growable byte buffer. Allocation failures abort (a trap fails only this call).
typedef struct {
    uint8_t *ptr;
    size_t len, cap;
} buf_t;

static void reserve(buf_t *b, size_t extra) {
    if (b->len + extra <= b->cap) {
        return;
    }
    size_t cap = b->cap ? b->cap * 2 : 64;
    while (cap < b->len + extra) {
        cap *= 2;
    }
    b->ptr = realloc(b->ptr, cap);
    if (!b->ptr) {
        abort();
    }
    b->cap = cap;
}

static void push(buf_t *b, const void *bytes, size_t n) {
    reserve(b, n);
    memcpy(b->ptr + b->len, bytes, n);
    b->len += n;
}

static void push_str(buf_t *b, const char *s) { push(b, s, strlen(s)); }

// Appends `s` as a JSON string literal, quotes included (RFC 8259, section 7).
static void push_json_string(buf_t *b, const finalizer_string_t *s) {
    static const char hex[] = "0123456789abcdef";
    push_str(b, "\"");
    for (size_t i = 0; i < s->len; i++) {
        uint8_t c = s->ptr[i];
        switch (c) {
        case '"': push_str(b, "\\\""); break;
        case '\\': push_str(b, "\\\\"); break;
        case '\b': push_str(b, "\\b"); break;
        case '\f': push_str(b, "\\f"); break;
        case '\n': push_str(b, "\\n"); break;
        case '\r': push_str(b, "\\r"); break;
        case '\t': push_str(b, "\\t"); break;
        default:
            if (c < 0x20) {
                char u[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
                push(b, u, sizeof u);
            } else {
                push(b, &c, 1);
            }
        }
    }
    push_str(b, "\"");
}

static void header(finalizer_tuple2_string_string_t *h, const char *name, const char *value) {
    finalizer_string_dup(&h->f0, name);
    finalizer_string_dup(&h->f1, value);
}

bool exports_otp_plugin_final_action_complete(
    finalizer_string_t *credential_id, finalizer_string_t *channel,
    exports_otp_plugin_final_action_request_context_t *context,
    exports_otp_plugin_final_action_http_response_t *ret, finalizer_string_t *err) {
    bool ok = credential_id->len > 0;
    if (!ok) {
        finalizer_string_dup(err, "empty credential id");
    } else {
        buf_t body = {0};
        push_str(&body, "{\"credential\":");
        push_json_string(&body, credential_id);
        push_str(&body, ",\"channel\":");
        push_json_string(&body, channel);
        push_str(&body, ",\"verified\":true}");

        ret->status = 200;
        ret->headers.len = 2;
        ret->headers.ptr = calloc(2, sizeof(finalizer_tuple2_string_string_t));
        if (!ret->headers.ptr) {
            abort();
        }
        header(&ret->headers.ptr[0], "content-type", "application/json");
        header(&ret->headers.ptr[1], "cache-control", "no-store");
        ret->body.ptr = body.ptr;
        ret->body.len = body.len;

        finalizer_string_t line;
        finalizer_string_dup(&line, "verified; answering 200");
        otp_plugin_log_log(OTP_PLUGIN_LOG_LEVEL_DEBUG, &line);
        finalizer_string_free(&line);
    }
    // The arguments belong to the callee; the results are freed by the generated
    // post-return function once the host has read them.
    finalizer_string_free(credential_id);
    finalizer_string_free(channel);
    exports_otp_plugin_final_action_request_context_free(context);
    return ok;
}
