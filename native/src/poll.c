/*
 * Readiness of an fd on the event loop (uv_poll): the /dev/fuse session reads requests on the main
 * thread when the kernel has some, instead of a thread blocked in read(2) handing each request
 * over (two thread hops less per request). No policy: the callback is told "readable" and does
 * its own non-blocking reads.
 */
#include <stdlib.h>
#include <uv.h>

#include "bindings.h"
#include "errors.h"

typedef struct {
  uv_poll_t poll;
  napi_env env;
  napi_ref cb;
  napi_async_context ctx;
  int stopped;
} fd_poll_t;

static void on_close(uv_handle_t *h) {
  free(h->data);
}

static void stop_poll(fd_poll_t *p) {
  p->stopped = 1;
  uv_poll_stop(&p->poll);
  napi_delete_reference(p->env, p->cb);
  napi_async_destroy(p->env, p->ctx);
  uv_close((uv_handle_t *)&p->poll, on_close);
}

/*
 * The environment ends with the watch still on (a worker thread terminated, or ending while its
 * device is open): close the handle, or closing the thread's loop aborts the process.
 */
static void on_env_cleanup(void *arg) {
  fd_poll_t *p = arg;
  if (!p->stopped) stop_poll(p);
}

static void on_ready(uv_poll_t *h, int status, int events) {
  (void)events;
  fd_poll_t *p = h->data;
  if (p->stopped) return;
  napi_env env = p->env;
  napi_handle_scope scope;
  if (napi_open_handle_scope(env, &scope) != napi_ok) return;
  napi_value cb, recv, arg, result;
  if (napi_get_reference_value(env, p->cb, &cb) == napi_ok && napi_get_global(env, &recv) == napi_ok &&
      napi_create_int32(env, status, &arg) == napi_ok) {
    /* make_callback: microtasks (promise continuations) run when it returns, as for any callback */
    napi_status s = napi_make_callback(env, p->ctx, recv, cb, 1, &arg, &result);
    if (s == napi_pending_exception) {
      napi_value err;
      if (napi_get_and_clear_last_exception(env, &err) == napi_ok) napi_fatal_exception(env, err);
    }
  }
  napi_close_handle_scope(env, scope);
}

/* pollStart(fd, callback(status)) -> handle: callback runs on the event loop whenever fd is readable. */
BINDING(pollStart) {
  GET_ARGS(env, info, 2);
  int32_t fd;
  ARG_I32(0, &fd);
  napi_valuetype t;
  NAPI_CALL(env, napi_typeof(env, argv[1], &t));
  if (t != napi_function) {
    napi_throw_type_error(env, NULL, "Expected second argument to be a function");
    return NULL;
  }
  uv_loop_t *loop;
  NAPI_CALL(env, napi_get_uv_event_loop(env, &loop));
  fd_poll_t *p = calloc(1, sizeof(*p));
  if (!p) return throw_errno(env, ENOMEM, "uv_poll_init");
  p->env = env;
  int r = uv_poll_init(loop, &p->poll, fd);
  if (r < 0) {
    free(p);
    return throw_errno(env, -r, "uv_poll_init");
  }
  p->poll.data = p;
  napi_value name;
  NAPI_CALL(env, napi_create_string_utf8(env, "handlefs.poll", NAPI_AUTO_LENGTH, &name));
  NAPI_CALL(env, napi_create_reference(env, argv[1], 1, &p->cb));
  NAPI_CALL(env, napi_async_init(env, NULL, name, &p->ctx));
  r = uv_poll_start(&p->poll, UV_READABLE, on_ready);
  if (r < 0) {
    napi_delete_reference(env, p->cb);
    napi_async_destroy(env, p->ctx);
    uv_close((uv_handle_t *)&p->poll, on_close);
    return throw_errno(env, -r, "uv_poll_start");
  }
  NAPI_CALL(env, napi_add_env_cleanup_hook(env, on_env_cleanup, p));
  napi_value ext;
  NAPI_CALL(env, napi_create_external(env, p, NULL, NULL, &ext));
  return ext;
}

/* pollStop(handle): stop watching and release the callback; safe to call once per handle. */
BINDING(pollStop) {
  GET_ARGS(env, info, 1);
  napi_valuetype t;
  NAPI_CALL(env, napi_typeof(env, argv[0], &t));
  if (t != napi_external) {
    napi_throw_type_error(env, NULL, "Expected first argument to be a poll handle");
    return NULL;
  }
  fd_poll_t *p;
  NAPI_CALL(env, napi_get_value_external(env, argv[0], (void **)&p));
  if (!p || p->stopped) return js_undefined(env);
  napi_remove_env_cleanup_hook(env, on_env_cleanup, p);
  stop_poll(p);
  return js_undefined(env);
}

/*
 * A window during which this thread's event loop does not sleep (loopHot): an active uv_idle
 * handle makes each turn poll with a zero timeout, so an fd that becomes readable or a message
 * posted from another thread is taken on the next turn instead of after a wake-up, which costs
 * tens of microseconds across CPUs on a VM. No JS runs for it and nothing is allocated. One per
 * thread (each JS thread runs its own loop).
 */
typedef struct {
  uv_idle_t idle;
  uint64_t until;
  int active;
} hot_loop_t;

static __thread hot_loop_t *hot;

static void on_hot_idle(uv_idle_t *h) {
  hot_loop_t *l = h->data;
  if (uv_hrtime() >= l->until) {
    uv_idle_stop(h);
    l->active = 0;
  }
}

static void on_hot_cleanup(void *arg) {
  hot_loop_t *l = arg;
  if (l->active) uv_idle_stop(&l->idle);
  uv_close((uv_handle_t *)&l->idle, on_close);
  hot = NULL;
}

/* loopHot(ms): this thread's event loop does not sleep until ms milliseconds from now (a later call extends it). */
BINDING(loopHot) {
  GET_ARGS(env, info, 1);
  double ms;
  NAPI_CALL(env, napi_get_value_double(env, argv[0], &ms));
  if (!(ms >= 0 && ms <= 1000)) {
    napi_throw_range_error(env, NULL, "loopHot: ms must be 0..1000");
    return NULL;
  }
  if (hot == NULL) {
    uv_loop_t *loop;
    NAPI_CALL(env, napi_get_uv_event_loop(env, &loop));
    hot_loop_t *l = calloc(1, sizeof(*l));
    if (!l) return throw_errno(env, ENOMEM, "loopHot");
    int r = uv_idle_init(loop, &l->idle);
    if (r < 0) {
      free(l);
      return throw_errno(env, -r, "uv_idle_init");
    }
    l->idle.data = l;
    /* the window never keeps the process alive */
    uv_unref((uv_handle_t *)&l->idle);
    NAPI_CALL(env, napi_add_env_cleanup_hook(env, on_hot_cleanup, l));
    hot = l;
  }
  hot->until = uv_hrtime() + (uint64_t)(ms * 1e6);
  if (!hot->active) {
    int r = uv_idle_start(&hot->idle, on_hot_idle);
    if (r < 0) return throw_errno(env, -r, "uv_idle_start");
    hot->active = 1;
  }
  return js_undefined(env);
}
