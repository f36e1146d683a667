/* Example bridgehead sink plug-in (sinks/plugin_abi.h, ABI version 1).
 *
 * Stamps every message with one header field. The configured argument is the field,
 * "Name: value" (default "X-Stamp: bridgehead example plug-in").
 * A message whose data contains "PLUGIN-REJECT-ME" is refused with 550 5.7.1.
 *
 * Build: cc -shared -fPIC -I<bridgehead source> -o stamp_plugin.so stamp_plugin.c
 * Config:
 *   sinks:
 *     define:
 *       - {name: stamp, kind: plugin, library: /usr/lib/bridgehead/stamp_plugin.so,
 *          argument: "X-Stamp: yes"}
 *     on_arrival: [stamp]
 */
#include <stdlib.h>
#include <string.h>

#include "sinks/plugin_abi.h"

struct stamp {
  char name[128];
  char value[512];
};

static void* stamp_create(const char* argument, const char** error) {
  const char* arg =
      (argument != NULL && *argument != '\0') ? argument : "X-Stamp: bridgehead example plug-in";
  const char* colon = strchr(arg, ':');
  struct stamp* s;
  size_t n;
  if (colon == NULL || colon == arg || (size_t)(colon - arg) >= sizeof s->name) {
    *error = "argument must be \"Name: value\"";
    return NULL;
  }
  s = calloc(1, sizeof *s);
  if (s == NULL) {
    *error = "out of memory";
    return NULL;
  }
  n = (size_t)(colon - arg);
  memcpy(s->name, arg, n);
  colon++;
  while (*colon == ' ') {
    colon++;
  }
  strncpy(s->value, colon, sizeof s->value - 1);
  return s;
}

static void stamp_destroy(void* instance) { free(instance); }

static int contains(const char* data, size_t size, const char* needle) {
  size_t n = strlen(needle), i;
  for (i = 0; i + n <= size; i++) {
    if (memcmp(data + i, needle, n) == 0) {
      return 1;
    }
  }
  return 0;
}

static int stamp_on_message(void* instance, const struct bh_sink_message* m,
                            const struct bh_sink_api* api) {
  const struct stamp* s = instance;
  if (contains(m->data, m->size, "PLUGIN-REJECT-ME")) {
    api->set_reply(api->ctx, 550, "5.7.1", "Refused by the stamp plug-in");
    return BH_SINK_REJECT;
  }
  if (api->add_header(api->ctx, s->name, s->value) != 0) {
    return BH_SINK_FAIL;
  }
  return BH_SINK_CONTINUE;
}

static const struct bh_sink_plugin stamp_plugin = {
    BH_SINK_ABI_VERSION, "stamp", stamp_create, stamp_destroy, stamp_on_message,
};

const struct bh_sink_plugin* bh_sink_plugin_v1(void) { return &stamp_plugin; }
