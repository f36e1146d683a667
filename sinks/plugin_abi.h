/* bridgehead event-sink plug-in ABI, version 1 (docs/sinks.md "Shared-library plug-ins").
 *
 * A plug-in is a shared library exporting one C function:
 *
 *   const struct bh_sink_plugin* bh_sink_plugin_v1(void);
 *
 * returning a pointer to a static table whose abi_version is BH_SINK_ABI_VERSION. The node
 * loads it with dlopen(RTLD_NOW | RTLD_LOCAL) at start, calls create() once with the
 * configured argument string, on_message() for each message (possibly from several threads
 * at once: keep per-message state on the stack), and destroy() at exit.
 *
 * Stability: this header is C, uses only fixed-size or pointer types, and is only ever
 * extended by a new version number (a new entry point bh_sink_plugin_v2); a v1 plug-in keeps
 * working. Everything passed in is valid only during the call. on_message runs on a worker
 * thread of the node, never on an SMTP event loop, but it must still finish quickly: the
 * sink's deadline applies and a late answer counts as a failure.
 */
#ifndef BH_SINKS_PLUGIN_ABI_H
#define BH_SINKS_PLUGIN_ABI_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define BH_SINK_ABI_VERSION 1u

/* Verdicts returned by on_message. */
#define BH_SINK_CONTINUE 0 /* next sink */
#define BH_SINK_REJECT 1   /* refuse with the reply set by api->set_reply (else 550 5.7.1) */
#define BH_SINK_STOP 2     /* accept now; later sinks are not run */
#define BH_SINK_DISCARD 3  /* acknowledge, then drop */
#define BH_SINK_FAIL (-1)  /* the plug-in failed: the configured failure policy applies */

struct bh_sink_message {
  const char* queue_id;
  const char* sender; /* "" for the null sender */
  const char* const* recipients;
  size_t recipient_count;
  const char* client_address;
  const char* client_helo;
  const char* data; /* the whole message, CRLF line ends; not NUL-terminated */
  size_t size;
};

/* Calls back into the node; `ctx` is the one passed in this struct. Return 0 on success,
 * -1 when the arguments are refused (bad header name/value, code not 4xx/5xx). */
struct bh_sink_api {
  void* ctx;
  int (*add_header)(void* ctx, const char* name, const char* value);
  int (*set_reply)(void* ctx, int code, const char* enhanced, const char* text);
};

struct bh_sink_plugin {
  uint32_t abi_version; /* BH_SINK_ABI_VERSION */
  const char* name;
  /* Returns the plug-in's instance state (may be NULL); to refuse to start it sets *error
   * to a static message (the node checks *error, not the pointer). */
  void* (*create)(const char* argument, const char** error);
  void (*destroy)(void* instance);
  int (*on_message)(void* instance, const struct bh_sink_message* message,
                    const struct bh_sink_api* api);
};

typedef const struct bh_sink_plugin* (*bh_sink_plugin_entry_v1)(void);

#ifdef __cplusplus
}
#endif

#endif /* BH_SINKS_PLUGIN_ABI_H */
