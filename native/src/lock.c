/*
 * OFD record locks and flock. The blocking forms run on a detached thread of their own (never a
 * libuv pool thread, which a long lock wait would starve) and settle their Promise through an
 * unref'd napi_threadsafe_function, so a pending wait does not keep the process alive.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>

#include "bindings.h"
#include "errors.h"

static bool flock_args(napi_env env, napi_value *argv, struct flock *fl) {
  int32_t type, whence;
  int64_t start, len;
  if (!arg_i32(env, argv[1], 1, &type) || !arg_i32(env, argv[2], 2, &whence) || !arg_safe(env, argv[3], 3, &start) ||
      !arg_safe(env, argv[4], 4, &len))
    return false;
  memset(fl, 0, sizeof *fl); /* l_pid must be 0 for OFD locks */
  fl->l_type = (short)type;
  fl->l_whence = (short)whence;
  fl->l_start = (off_t)start;
  fl->l_len = (off_t)len;
  return true;
}

BINDING(ofdGetlk) {
  GET_ARGS(env, info, 5);
  int32_t fd;
  struct flock fl;
  ARG_I32(0, &fd);
  if (!flock_args(env, argv, &fl)) return NULL;
  if (fcntl(fd, F_OFD_GETLK, &fl) < 0) return throw_errno(env, errno, "fcntl");
  napi_value result, type, whence, start, len, pid;
  NAPI_CALL(env, napi_create_object(env, &result));
  NAPI_CALL(env, napi_create_int32(env, fl.l_type, &type));
  NAPI_CALL(env, napi_create_int32(env, fl.l_whence, &whence));
  NAPI_CALL(env, napi_create_int64(env, fl.l_start, &start));
  NAPI_CALL(env, napi_create_int64(env, fl.l_len, &len));
  NAPI_CALL(env, napi_create_int32(env, fl.l_pid, &pid));
  NAPI_CALL(env, napi_set_named_property(env, result, "type", type));
  NAPI_CALL(env, napi_set_named_property(env, result, "whence", whence));
  NAPI_CALL(env, napi_set_named_property(env, result, "start", start));
  NAPI_CALL(env, napi_set_named_property(env, result, "len", len));
  NAPI_CALL(env, napi_set_named_property(env, result, "pid", pid));
  return result;
}

BINDING(ofdSetlk) {
  GET_ARGS(env, info, 5);
  int32_t fd;
  struct flock fl;
  ARG_I32(0, &fd);
  if (!flock_args(env, argv, &fl)) return NULL;
  if (fcntl(fd, F_OFD_SETLK, &fl) < 0) return throw_errno(env, errno, "fcntl");
  return js_undefined(env);
}

BINDING(flock) {
  GET_ARGS(env, info, 2);
  int32_t fd, op;
  ARG_I32(0, &fd);
  ARG_I32(1, &op);
  if (flock(fd, op) < 0) return throw_errno(env, errno, "flock");
  return js_undefined(env);
}

/* ---- blocking waits on a dedicated thread */

typedef struct {
  napi_threadsafe_function tsfn;
  napi_deferred deferred;
  bool is_flock;
  int fd;
  int op;            /* flock operation */
  struct flock fl;   /* F_OFD_SETLKW argument */
  int err;
} wait_req;

/* Runs on the JS thread; env is NULL when the environment is being torn down. */
static void wait_settle(napi_env env, napi_value js_cb, void *context, void *data) {
  (void)js_cb;
  (void)context;
  wait_req *r = data;
  if (env != NULL) {
    napi_value value = NULL;
    if (r->err == 0) {
      if (napi_get_undefined(env, &value) == napi_ok) napi_resolve_deferred(env, r->deferred, value);
    } else {
      if (make_errno_error(env, r->err, r->is_flock ? "flock" : "fcntl", &value) != napi_ok) napi_get_undefined(env, &value);
      napi_reject_deferred(env, r->deferred, value);
    }
  }
  free(r);
}

static void *wait_thread(void *arg) {
  wait_req *r = arg;
  int rc;
  do {
    rc = r->is_flock ? flock(r->fd, r->op) : fcntl(r->fd, F_OFD_SETLKW, &r->fl);
  } while (rc < 0 && errno == EINTR);
  r->err = rc < 0 ? errno : 0;
  /* r may be freed by wait_settle as soon as it is queued: read tsfn first. */
  napi_threadsafe_function tsfn = r->tsfn;
  if (napi_call_threadsafe_function(tsfn, r, napi_tsfn_blocking) != napi_ok) free(r); /* closing: nobody will settle */
  napi_release_threadsafe_function(tsfn, napi_tsfn_release);
  return NULL;
}

static napi_value start_wait(napi_env env, wait_req *r) {
  napi_value promise, name;
  napi_status s = napi_create_promise(env, &r->deferred, &promise);
  if (s != napi_ok) {
    free(r);
    return throw_napi_failure(env, s, "napi_create_promise");
  }
  const char *what = "napi_create_threadsafe_function";
  if ((s = napi_create_string_utf8(env, r->is_flock ? "flockWait" : "ofdSetlkw", NAPI_AUTO_LENGTH, &name)) != napi_ok)
    goto fail;
  if ((s = napi_create_threadsafe_function(env, NULL, NULL, name, 0, 1, NULL, NULL, NULL, wait_settle, &r->tsfn)) != napi_ok)
    goto fail;
  what = "napi_unref_threadsafe_function";
  if ((s = napi_unref_threadsafe_function(env, r->tsfn)) != napi_ok) goto fail_tsfn;

  /* Block all signals in the waiter so signal delivery stays with Node's threads. */
  sigset_t all, old;
  sigfillset(&all);
  pthread_attr_t attr;
  int err = pthread_attr_init(&attr);
  if (err == 0) {
    err = pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    if (err == 0) err = pthread_attr_setstacksize(&attr, 64 * 1024);
    if (err == 0) {
      pthread_t tid;
      pthread_sigmask(SIG_SETMASK, &all, &old);
      err = pthread_create(&tid, &attr, wait_thread, r);
      pthread_sigmask(SIG_SETMASK, &old, NULL);
    }
    pthread_attr_destroy(&attr);
  }
  if (err != 0) {
    napi_value e;
    napi_release_threadsafe_function(r->tsfn, napi_tsfn_abort);
    if (make_errno_error(env, err, "pthread_create", &e) != napi_ok) napi_get_undefined(env, &e);
    napi_reject_deferred(env, r->deferred, e);
    free(r);
  }
  return promise;

fail_tsfn:
  napi_release_threadsafe_function(r->tsfn, napi_tsfn_abort);
fail: {
    napi_value e = NULL, msg;
    bool pending = false;
    if (napi_is_exception_pending(env, &pending) == napi_ok && pending) napi_get_and_clear_last_exception(env, &e);
    if (e == NULL && napi_create_string_utf8(env, what, NAPI_AUTO_LENGTH, &msg) == napi_ok) napi_create_error(env, NULL, msg, &e);
    if (e == NULL) napi_get_undefined(env, &e);
    napi_reject_deferred(env, r->deferred, e);
    free(r);
    return promise;
  }
}

BINDING(ofdSetlkw) {
  GET_ARGS(env, info, 5);
  int32_t fd;
  struct flock fl;
  ARG_I32(0, &fd);
  if (!flock_args(env, argv, &fl)) return NULL;
  wait_req *r = calloc(1, sizeof *r);
  if (r == NULL) return throw_errno(env, ENOMEM, "fcntl");
  r->fd = fd;
  r->fl = fl;
  return start_wait(env, r);
}

BINDING(flockWait) {
  GET_ARGS(env, info, 2);
  int32_t fd, op;
  ARG_I32(0, &fd);
  ARG_I32(1, &op);
  wait_req *r = calloc(1, sizeof *r);
  if (r == NULL) return throw_errno(env, ENOMEM, "flock");
  r->is_flock = true;
  r->fd = fd;
  r->op = op;
  return start_wait(env, r);
}
