/* Data I/O: synchronous bindings and napi_async_work variants sharing one request runner. */
#define _FILE_OFFSET_BITS 64
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/types.h>
#include <unistd.h>

#include "bindings.h"
#include <sys/uio.h>

#include "errors.h"

enum io_op { OP_PREAD, OP_PWRITE, OP_FSYNC, OP_FDATASYNC, OP_COPY_FILE_RANGE, OP_FALLOCATE, OP_PREAD_NOWAIT, OP_PWRITE_NOWAIT };

static const char *const op_syscall[] = {
  [OP_PREAD] = "pread", [OP_PWRITE] = "pwrite", [OP_FSYNC] = "fsync", [OP_FDATASYNC] = "fdatasync",
  [OP_COPY_FILE_RANGE] = "copy_file_range", [OP_FALLOCATE] = "fallocate",
  [OP_PREAD_NOWAIT] = "preadv2", [OP_PWRITE_NOWAIT] = "pwritev2",
};

typedef struct {
  enum io_op op;
  int fd;
  int fd_out;
  int mode;            /* fallocate mode */
  unsigned flags;      /* copy_file_range flags */
  char *data;          /* pread/pwrite: start of the caller's Buffer slice */
  int64_t length;
  int64_t pos;         /* -1: use the file offset (read/write, or NULL for copy_file_range) */
  int64_t pos_out;
  int64_t result;
  int err;
  /* async only */
  napi_async_work work;
  napi_deferred deferred;
  napi_ref buf_ref;
} io_req;

/* Runs on the JS thread (sync bindings) or a libuv pool thread (async); touches no napi state. */
static void run_io(io_req *r) {
  ssize_t n = 0;
  switch (r->op) {
  case OP_PREAD:
    n = r->pos == -1 ? read(r->fd, r->data, (size_t)r->length) : pread(r->fd, r->data, (size_t)r->length, (off_t)r->pos);
    break;
  case OP_PWRITE:
    /* position -1 writes at the file offset, which is what O_APPEND needs (pwrite ignores it there anyway). */
    n = r->pos == -1 ? write(r->fd, r->data, (size_t)r->length) : pwrite(r->fd, r->data, (size_t)r->length, (off_t)r->pos);
    break;
  case OP_PREAD_NOWAIT:
  case OP_PWRITE_NOWAIT: {
    /* RWF_NOWAIT: only what can be done without blocking (page cache); EAGAIN otherwise */
    struct iovec iov = { .iov_base = r->data, .iov_len = (size_t)r->length };
    n = r->op == OP_PREAD_NOWAIT ? preadv2(r->fd, &iov, 1, (off_t)r->pos, RWF_NOWAIT)
                                 : pwritev2(r->fd, &iov, 1, (off_t)r->pos, RWF_NOWAIT);
    break;
  }
  case OP_FSYNC:
    n = fsync(r->fd);
    break;
  case OP_FDATASYNC:
    n = fdatasync(r->fd);
    break;
  case OP_COPY_FILE_RANGE: {
    off_t in = (off_t)r->pos, out = (off_t)r->pos_out;
    n = copy_file_range(r->fd, r->pos == -1 ? NULL : &in, r->fd_out, r->pos_out == -1 ? NULL : &out,
                        (size_t)r->length, r->flags);
    break;
  }
  case OP_FALLOCATE:
    n = fallocate(r->fd, r->mode, (off_t)r->pos, (off_t)r->length);
    break;
  }
  r->err = n < 0 ? errno : 0;
  r->result = n < 0 ? -1 : (int64_t)n;
}

static bool returns_count(enum io_op op) {
  return op == OP_PREAD || op == OP_PWRITE || op == OP_COPY_FILE_RANGE || op == OP_PREAD_NOWAIT || op == OP_PWRITE_NOWAIT;
}

/* pread/pwrite: the count, or throw. */
static napi_value finish_sync(napi_env env, io_req *r) {
  run_io(r);
  if (r->err != 0) return throw_errno(env, r->err, op_syscall[r->op]);
  return js_int(env, r->result);
}

static void io_execute(napi_env env, void *data) {
  (void)env;
  run_io(data);
}

static void io_complete(napi_env env, napi_status status, void *data) {
  io_req *r = data;
  if (r->buf_ref != NULL) napi_delete_reference(env, r->buf_ref);
  settle_async(env, r->deferred, status, r->err, op_syscall[r->op], returns_count(r->op), r->result);
  napi_delete_async_work(env, r->work);
  free(r);
}

/*
 * Queue r (heap-allocated, owned from here on). `buffer` (may be NULL) is kept alive by a reference
 * until completion so r->data stays valid. Failures after the promise exists reject it.
 */
static napi_value start_async(napi_env env, io_req *r, napi_value buffer) {
  napi_value promise, resource_name;
  napi_status s = napi_create_promise(env, &r->deferred, &promise);
  if (s != napi_ok) {
    free(r);
    return throw_napi_failure(env, s, "napi_create_promise");
  }
  const char *what = "napi_create_reference";
  if (buffer != NULL && (s = napi_create_reference(env, buffer, 1, &r->buf_ref)) != napi_ok) goto fail;
  what = "napi_create_async_work";
  if ((s = napi_create_string_utf8(env, op_syscall[r->op], NAPI_AUTO_LENGTH, &resource_name)) != napi_ok) goto fail;
  if ((s = napi_create_async_work(env, NULL, resource_name, io_execute, io_complete, r, &r->work)) != napi_ok) goto fail;
  what = "napi_queue_async_work";
  if ((s = napi_queue_async_work(env, r->work)) != napi_ok) goto fail;
  return promise;

fail: {
    napi_value err = NULL, msg;
    bool pending = false;
    if (napi_is_exception_pending(env, &pending) == napi_ok && pending) napi_get_and_clear_last_exception(env, &err);
    if (err == NULL && napi_create_string_utf8(env, what, NAPI_AUTO_LENGTH, &msg) == napi_ok)
      napi_create_error(env, NULL, msg, &err);
    if (err == NULL) napi_get_undefined(env, &err);
    napi_reject_deferred(env, r->deferred, err);
    if (r->work != NULL) napi_delete_async_work(env, r->work);
    if (r->buf_ref != NULL) napi_delete_reference(env, r->buf_ref);
    free(r);
    return promise;
  }
}

static io_req *alloc_req(napi_env env, const io_req *init) {
  io_req *r = malloc(sizeof *r);
  if (r == NULL) {
    throw_errno(env, ENOMEM, op_syscall[init->op]);
    return NULL;
  }
  *r = *init;
  return r;
}

/* (fd, buf, offset, length, position) shared by pread/pwrite and their async forms. */
static bool rw_args(napi_env env, napi_value *argv, enum io_op op, io_req *r) {
  int32_t fd;
  void *data;
  size_t buflen;
  int64_t off, len, pos;
  if (!arg_i32(env, argv[0], 0, &fd) || !arg_buffer(env, argv[1], 1, &data, &buflen) ||
      !arg_safe(env, argv[2], 2, &off) || !arg_safe(env, argv[3], 3, &len) || !arg_safe(env, argv[4], 4, &pos))
    return false;
  if (!check_range(env, off, len, buflen)) return false;
  if (pos < -1) return throw_arg_range(env, 4, "a position >= 0 or -1");
  *r = (io_req){ .op = op, .fd = fd, .data = (char *)data + off, .length = len, .pos = pos };
  return true;
}

BINDING(pread) {
  GET_ARGS(env, info, 5);
  io_req r;
  if (!rw_args(env, argv, OP_PREAD, &r)) return NULL;
  return finish_sync(env, &r);
}

BINDING(pwrite) {
  GET_ARGS(env, info, 5);
  io_req r;
  if (!rw_args(env, argv, OP_PWRITE, &r)) return NULL;
  return finish_sync(env, &r);
}

/*
 * Attempts that may not complete: run `r` on this thread and return the count, or -errno for the
 * conditions the caller expects and retries elsewhere (no Error object built on the hot path);
 * any other failure throws as usual.
 */
static napi_value finish_try(napi_env env, io_req *r, int soft1, int soft2, int soft3) {
  run_io(r);
  if (r->err == 0) return js_int(env, r->result);
  return fail_errno(env, r->err, op_syscall[r->op], r->err == soft1 || r->err == soft2 || r->err == soft3);
}

/* A pread-shaped attempt run as `op` (at_offset false: at the file offset), through finish_try. */
static napi_value rw_try(napi_env env, napi_callback_info info, enum io_op args_as, enum io_op op, bool at_offset,
                         int soft1, int soft2, int soft3) {
  GET_ARGS(env, info, 5);
  io_req r;
  if (!rw_args(env, argv, args_as, &r)) return NULL;
  r.op = op;
  if (!at_offset) r.pos = -1;
  return finish_try(env, &r, soft1, soft2, soft3);
}

/* preadv2/pwritev2 with RWF_NOWAIT (arguments as pread): -EAGAIN when it would block, -EOPNOTSUPP when unsupported. */
BINDING(preadNowait) { return rw_try(env, info, OP_PREAD, OP_PREAD_NOWAIT, true, EAGAIN, EOPNOTSUPP, EINVAL); }
BINDING(pwriteNowait) { return rw_try(env, info, OP_PWRITE, OP_PWRITE_NOWAIT, true, EAGAIN, EOPNOTSUPP, EINVAL); }

/* read(2) on a non-blocking fd (arguments as pread, position ignored): -EAGAIN, -EINTR, -ENOENT instead of throwing. */
BINDING(readNonblock) { return rw_try(env, info, OP_PREAD, OP_PREAD, false, EAGAIN, EINTR, ENOENT); }

BINDING(preadAsync) {
  GET_ARGS(env, info, 5);
  io_req init, *r;
  if (!rw_args(env, argv, OP_PREAD, &init) || (r = alloc_req(env, &init)) == NULL) return NULL;
  return start_async(env, r, argv[1]);
}

BINDING(pwriteAsync) {
  GET_ARGS(env, info, 5);
  io_req init, *r;
  if (!rw_args(env, argv, OP_PWRITE, &init) || (r = alloc_req(env, &init)) == NULL) return NULL;
  return start_async(env, r, argv[1]);
}

BINDING(fsyncAsync) {
  GET_ARGS(env, info, 2);
  int32_t fd;
  bool datasync;
  ARG_I32(0, &fd);
  ARG_BOOL(1, &datasync);
  io_req init = { .op = datasync ? OP_FDATASYNC : OP_FSYNC, .fd = fd }, *r;
  if ((r = alloc_req(env, &init)) == NULL) return NULL;
  return start_async(env, r, NULL);
}

/* (fdIn, offIn, fdOut, offOut, len, flags); an offset of -1 uses (and advances) the file offset. */
BINDING(copyFileRangeAsync) {
  GET_ARGS(env, info, 6);
  int32_t fd_in, fd_out;
  int64_t off_in, off_out, len;
  uint32_t flags;
  ARG_I32(0, &fd_in);
  ARG_I64(1, &off_in);
  ARG_I32(2, &fd_out);
  ARG_I64(3, &off_out);
  ARG_I64(4, &len);
  ARG_U32(5, &flags);
  if (off_in < -1) { throw_arg_range(env, 1, "an offset >= 0 or -1"); return NULL; }
  if (off_out < -1) { throw_arg_range(env, 3, "an offset >= 0 or -1"); return NULL; }
  if (len < 0) { throw_arg_range(env, 4, "a length >= 0"); return NULL; }
  io_req init = { .op = OP_COPY_FILE_RANGE, .fd = fd_in, .pos = off_in, .fd_out = fd_out, .pos_out = off_out,
                  .length = len, .flags = flags }, *r;
  if ((r = alloc_req(env, &init)) == NULL) return NULL;
  return start_async(env, r, NULL);
}

BINDING(fallocateAsync) {
  GET_ARGS(env, info, 4);
  int32_t fd, mode;
  int64_t off, len;
  ARG_I32(0, &fd);
  ARG_I32(1, &mode);
  ARG_I64(2, &off);
  ARG_I64(3, &len);
  io_req init = { .op = OP_FALLOCATE, .fd = fd, .mode = mode, .pos = off, .length = len }, *r;
  if ((r = alloc_req(env, &init)) == NULL) return NULL;
  return start_async(env, r, NULL);
}

BINDING(ftruncate) {
  GET_ARGS(env, info, 2);
  int32_t fd;
  int64_t len;
  ARG_I32(0, &fd);
  ARG_I64(1, &len);
  if (ftruncate(fd, (off_t)len) < 0) return throw_errno(env, errno, "ftruncate");
  return js_undefined(env);
}

BINDING(lseek) {
  GET_ARGS(env, info, 3);
  int32_t fd, whence;
  uint64_t off;
  ARG_I32(0, &fd);
  ARG_BIGINT64(1, &off);
  ARG_I32(2, &whence);
  off_t r = lseek(fd, (off_t)off, whence);
  /* Compare with -1 exactly: some files (FMODE_UNSIGNED_OFFSET) have "negative" offsets. */
  if (r == (off_t)-1) return throw_errno(env, errno, "lseek");
  napi_value v;
  NAPI_CALL(env, napi_create_bigint_int64(env, (int64_t)r, &v));
  return v;
}

BINDING(syncfs) {
  GET_ARGS(env, info, 1);
  int32_t fd;
  ARG_I32(0, &fd);
  if (syncfs(fd) < 0) return throw_errno(env, errno, "syncfs");
  return js_undefined(env);
}
