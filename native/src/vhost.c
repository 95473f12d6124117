/*
 * The syscalls of a vhost-user back-end: its AF_UNIX listening socket (and the connecting end a VMM,
 * or a test posing as one, uses) and the SCM_RIGHTS messages on it, eventfds (kick/call), guest
 * memory mapped MAP_SHARED from the VMM's fds, and vectored file I/O straight into and out of that
 * memory on the libuv pool. Thin wrappers; the protocol, address translation and every policy live
 * in TypeScript.
 */
#define _FILE_OFFSET_BITS 64
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <unistd.h>

#include "bindings.h"
#include "errors.h"

/* Most fds one message carries either way: QEMU sends one per memory region, up to 32 mem slots. */
#define VHOST_MAX_FDS 32
/*
 * Largest mapping handed to JS: V8's TypedArray limit on 64-bit Node 20 (buffer.constants.MAX_LENGTH).
 * Checked here because Node may run the external buffer's finalizer from inside a failed creation.
 */
#define MAP_MAX_BYTES ((int64_t)1 << 32)
/* memfd_create(2): names are at most 249 bytes ("memfd:" + name fits NAME_MAX). */
#define MEMFD_NAME_MAX 249

/*
 * A string or a Buffer, copied NUL-terminated into out (cap bytes with the NUL). Throws the errno
 * error ENAMETOOLONG when it does not fit and EINVAL when it contains a NUL byte.
 */
static bool napi_failed(napi_env env, napi_status s, const char *what) {
  throw_napi_failure(env, s, what);
  return false;
}

static bool arg_text(napi_env env, napi_value v, size_t idx, const char *syscall, char *out, size_t cap) {
  napi_valuetype t;
  napi_status s;
  size_t len = 0;
  void *data = NULL;
  if ((s = napi_typeof(env, v, &t)) != napi_ok) return napi_failed(env, s, "napi_typeof");
  if (t == napi_string) {
    if ((s = napi_get_value_string_utf8(env, v, NULL, 0, &len)) != napi_ok) return napi_failed(env, s, "napi_get_value_string_utf8");
  } else {
    bool is_buffer = false;
    if ((s = napi_is_buffer(env, v, &is_buffer)) != napi_ok) return napi_failed(env, s, "napi_is_buffer");
    if (!is_buffer) return throw_arg_type(env, idx, "a string or a Buffer");
    if (!arg_buffer(env, v, idx, &data, &len)) return false;
  }
  if (len >= cap) {
    throw_errno(env, ENAMETOOLONG, syscall);
    return false;
  }
  if (data != NULL) {
    memcpy(out, data, len);
  } else if ((s = napi_get_value_string_utf8(env, v, out, cap, &len)) != napi_ok) {
    return napi_failed(env, s, "napi_get_value_string_utf8");
  }
  out[len] = '\0';
  if (memchr(out, 0, len) != NULL) {
    throw_errno(env, EINVAL, syscall);
    return false;
  }
  return true;
}

static napi_value js_null(napi_env env) {
  napi_value v;
  NAPI_CALL(env, napi_get_null(env, &v));
  return v;
}

/* ---- the socket: listening, and connecting as a VMM does */

/* unixListen(path, backlog): socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC) + bind + listen. */
BINDING(unixListen) {
  GET_ARGS(env, info, 2);
  struct sockaddr_un addr = { .sun_family = AF_UNIX };
  int32_t backlog;
  if (!arg_text(env, argv[0], 0, "bind", addr.sun_path, sizeof addr.sun_path)) return NULL;
  ARG_I32(1, &backlog);
  /* an empty path would autobind an abstract address: not a place a VMM can be told about */
  if (addr.sun_path[0] == '\0') return throw_errno(env, EINVAL, "bind");
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return throw_errno(env, errno, "socket");
  const char *failed = "bind";
  if (bind(fd, (struct sockaddr *)&addr, sizeof addr) == 0) {
    failed = "listen";
    if (listen(fd, backlog) == 0) return js_int(env, fd);
  }
  int err = errno;
  close(fd);
  return throw_errno(env, err, failed);
}

/*
 * unixConnect(path): socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC) connected to path; the fd is
 * blocking, as socketpairUnix's are (recvMsg and sendMsg never wait either way). The connect itself
 * never waits: a listener whose backlog is full gives EAGAIN rather than blocking the thread, which
 * may be the one that would accept.
 */
BINDING(unixConnect) {
  GET_ARGS(env, info, 1);
  struct sockaddr_un addr = { .sun_family = AF_UNIX };
  if (!arg_text(env, argv[0], 0, "connect", addr.sun_path, sizeof addr.sun_path)) return NULL;
  /* an empty path would name an abstract address: unixListen never binds one */
  if (addr.sun_path[0] == '\0') return throw_errno(env, EINVAL, "connect");
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return throw_errno(env, errno, "socket");
  /* AF_UNIX: a non-blocking connect completes at once or fails (EAGAIN, never EINPROGRESS) */
  const char *failed = "connect";
  if (connect(fd, (struct sockaddr *)&addr, sizeof addr) == 0) {
    failed = "fcntl";
    int fl = fcntl(fd, F_GETFL);
    if (fl >= 0 && fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) == 0) return js_int(env, fd);
  }
  int err = errno;
  close(fd);
  return throw_errno(env, err, failed);
}

/* acceptNonblock(listenFd): the connection's fd (non-blocking, close-on-exec), or -EAGAIN when none is pending. */
BINDING(acceptNonblock) {
  GET_ARGS(env, info, 1);
  int32_t fd;
  ARG_I32(0, &fd);
  int c;
  do {
    c = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
  } while (c < 0 && errno == EINTR);
  if (c < 0) return fail_errno(env, errno, "accept4", errno == EAGAIN);
  return js_int(env, c);
}

/* ---- messages with SCM_RIGHTS */

typedef union {
  struct cmsghdr align;
  char buf[CMSG_SPACE(VHOST_MAX_FDS * sizeof(int))];
} fd_control;

static void close_all(const int *fds, size_t n) {
  for (size_t i = 0; i < n; i++) close(fds[i]);
}

/* (fd, buf, offset, length) of recvMsg and sendMsg: the fd and the Buffer slice. */
static bool msg_args(napi_env env, napi_value *argv, int32_t *fd, struct iovec *iov) {
  void *data;
  size_t buflen;
  int64_t off, len;
  if (!arg_i32(env, argv[0], 0, fd) || !arg_buffer(env, argv[1], 1, &data, &buflen) || !arg_safe(env, argv[2], 2, &off) ||
      !arg_safe(env, argv[3], 3, &len) || !check_range(env, off, len, buflen))
    return false;
  *iov = (struct iovec){ .iov_base = (char *)data + off, .iov_len = (size_t)len };
  return true;
}

/* { n, fds, truncated }; NULL after throwing (the caller still owns the fds). */
static napi_value recv_result(napi_env env, ssize_t n, const int *fds, size_t nfds, bool truncated) {
  napi_value obj, arr;
  NAPI_CALL(env, napi_create_object(env, &obj));
  NAPI_CALL(env, napi_create_array_with_length(env, nfds, &arr));
  for (size_t i = 0; i < nfds; i++) {
    napi_value fd = js_int(env, fds[i]);
    if (fd == NULL) return NULL;
    NAPI_CALL(env, napi_set_element(env, arr, (uint32_t)i, fd));
  }
  napi_value jn = js_int(env, n), jt = js_bool(env, truncated);
  if (jn == NULL || jt == NULL) return NULL;
  NAPI_CALL(env, napi_set_named_property(env, obj, "n", jn));
  NAPI_CALL(env, napi_set_named_property(env, obj, "fds", arr));
  NAPI_CALL(env, napi_set_named_property(env, obj, "truncated", jt));
  return obj;
}

/*
 * recvMsg(fd, buf, offset, length, maxFds): one non-blocking recvmsg into buf[offset, offset+length)
 * with MSG_CMSG_CLOEXEC. null on EAGAIN, n = 0 at EOF. Fds past maxFds are closed here and flagged
 * as truncated, as is a control message the kernel cut (MSG_CTRUNC: it installed no fd that did
 * not fit); every fd received is either returned or closed.
 */
BINDING(recvMsg) {
  GET_ARGS(env, info, 5);
  int32_t fd;
  struct iovec iov;
  uint32_t max_fds;
  if (!msg_args(env, argv, &fd, &iov)) return NULL;
  ARG_U32(4, &max_fds);
  if (max_fds > VHOST_MAX_FDS) {
    throw_arg_range(env, 4, "at most 32");
    return NULL;
  }
  fd_control control;
  struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.buf, .msg_controllen = sizeof control.buf };
  ssize_t n;
  do {
    n = recvmsg(fd, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
  } while (n < 0 && errno == EINTR);
  if (n < 0) return errno == EAGAIN ? js_null(env) : throw_errno(env, errno, "recvmsg");
  int fds[VHOST_MAX_FDS];
  size_t nfds = 0;
  bool truncated = (msg.msg_flags & MSG_CTRUNC) != 0;
  for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c != NULL; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (size_t i = 0; i < count; i++) {
      int got;
      memcpy(&got, CMSG_DATA(c) + i * sizeof(int), sizeof got);
      if (nfds < max_fds) {
        fds[nfds++] = got;
      } else {
        close(got);
        truncated = true;
      }
    }
  }
  napi_value result = recv_result(env, n, fds, nfds, truncated);
  if (result == NULL) close_all(fds, nfds);
  return result;
}

/* sendMsg(fd, buf, offset, length, fds?): one sendmsg (MSG_NOSIGNAL, MSG_DONTWAIT): the count, or -EAGAIN. */
BINDING(sendMsg) {
  GET_ARGS(env, info, 5);
  int32_t fd;
  struct iovec iov;
  if (!msg_args(env, argv, &fd, &iov)) return NULL;
  int fds[VHOST_MAX_FDS];
  uint32_t nfds = 0;
  napi_valuetype t;
  NAPI_CALL(env, napi_typeof(env, argv[4], &t));
  if (t != napi_undefined) {
    bool is_array = false;
    NAPI_CALL(env, napi_is_array(env, argv[4], &is_array));
    if (!is_array) { throw_arg_type(env, 4, "an array of fds"); return NULL; }
    NAPI_CALL(env, napi_get_array_length(env, argv[4], &nfds));
    if (nfds > VHOST_MAX_FDS) { throw_arg_range(env, 4, "an array of at most 32 fds"); return NULL; }
    for (uint32_t i = 0; i < nfds; i++) {
      napi_value e;
      NAPI_CALL(env, napi_get_element(env, argv[4], i, &e));
      if (!arg_i32(env, e, 4, &fds[i])) return NULL;
    }
  }
  fd_control control;
  memset(&control, 0, sizeof control);
  struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1 };
  if (nfds > 0) {
    msg.msg_control = control.buf;
    msg.msg_controllen = CMSG_SPACE(nfds * sizeof(int));
    struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(nfds * sizeof(int));
    memcpy(CMSG_DATA(c), fds, nfds * sizeof(int));
  }
  ssize_t n;
  do {
    n = sendmsg(fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
  } while (n < 0 && errno == EINTR);
  if (n < 0) return fail_errno(env, errno, "sendmsg", errno == EAGAIN);
  return js_int(env, n);
}

/* ---- eventfds */

/* eventfdCreate(flags): eventfd(0, flags) */
BINDING(eventfdCreate) {
  GET_ARGS(env, info, 1);
  int32_t flags;
  ARG_I32(0, &flags);
  int fd = eventfd(0, flags);
  if (fd < 0) return throw_errno(env, errno, "eventfd");
  return js_int(env, fd);
}

/* eventfdRead(fd): the counter as a bigint (read resets it), or null when it is 0 (EAGAIN on a non-blocking fd). */
BINDING(eventfdRead) {
  GET_ARGS(env, info, 1);
  int32_t fd;
  ARG_I32(0, &fd);
  uint64_t value;
  ssize_t n;
  do {
    n = read(fd, &value, sizeof value);
  } while (n < 0 && errno == EINTR);
  if (n < 0) return errno == EAGAIN ? js_null(env) : throw_errno(env, errno, "read");
  if (n != sizeof value) return throw_errno(env, EIO, "read");
  napi_value v;
  NAPI_CALL(env, napi_create_bigint_uint64(env, value, &v));
  return v;
}

/* eventfdWrite(fd, value = 1): adds value; EAGAIN (the counter would overflow: the reader has a wake-up pending anyway) is not an error. */
BINDING(eventfdWrite) {
  GET_ARGS(env, info, 2);
  int32_t fd;
  uint64_t value = 1;
  ARG_I32(0, &fd);
  napi_valuetype t;
  NAPI_CALL(env, napi_typeof(env, argv[1], &t));
  if (t == napi_bigint) {
    ARG_BIGINT64(1, &value);
  } else if (t != napi_undefined) {
    int64_t x;
    if (!arg_int(env, argv[1], 1, 0, 9007199254740991LL, "a safe integer >= 0 or a bigint", &x)) return NULL;
    value = (uint64_t)x;
  }
  ssize_t n;
  do {
    n = write(fd, &value, sizeof value);
  } while (n < 0 && errno == EINTR);
  if (n < 0 && errno != EAGAIN) return throw_errno(env, errno, "write");
  return js_undefined(env);
}

/* ---- guest memory */

/*
 * One mmap handed to JS as an external ArrayBuffer. Only the JS thread touches it (bindings,
 * finalizers, async completions), so no lock. Owners ("holds"): the ArrayBuffer's backing-store
 * finalizer, the wrap's finalizer (the struct is found from the ArrayBuffer through napi_wrap,
 * behind a type tag) and every segment of a queued I/O; the last one frees the struct.
 */
typedef struct {
  char *base;
  size_t size;
  unsigned inflight; /* segments of queued I/O using the memory */
  unsigned holds;
  bool released;     /* JS can no longer reach the memory (detached or collected): munmap once inflight is 0 */
  bool unmapped;
} vmap;

static const napi_type_tag VMAP_TAG = { 0x68616e646c656673ULL, 0x76686f73746d6170ULL };

static void vmap_update(vmap *m) {
  if (m->released && m->inflight == 0 && !m->unmapped) {
    munmap(m->base, m->size);
    m->unmapped = true;
  }
  if (m->holds == 0) free(m);
}

static void vmap_drop(vmap *m, bool segment) {
  if (segment) m->inflight--;
  m->holds--;
  vmap_update(m);
}

static void vmap_backing_finalize(napi_env env, void *data, void *hint) {
  (void)env;
  (void)data;
  vmap *m = hint;
  m->released = true;
  vmap_drop(m, false);
}

static void vmap_wrap_finalize(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  vmap_drop(data, false);
}

/* mapShared(fd, size, offset): mmap(PROT_READ | PROT_WRITE, MAP_SHARED) as an external ArrayBuffer. */
BINDING(mapShared) {
  GET_ARGS(env, info, 3);
  int32_t fd;
  int64_t size, offset;
  ARG_I32(0, &fd);
  ARG_I64(1, &size);
  ARG_I64(2, &offset);
  if (size <= 0 || size > MAP_MAX_BYTES || offset < 0) return throw_errno(env, EINVAL, "mmap");
  vmap *m = calloc(1, sizeof *m);
  if (m == NULL) return throw_errno(env, ENOMEM, "mmap");
  void *p = mmap(NULL, (size_t)size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, (off_t)offset);
  if (p == MAP_FAILED) {
    int err = errno;
    free(m);
    return throw_errno(env, err, "mmap");
  }
  *m = (vmap){ .base = p, .size = (size_t)size, .holds = 1 };
  /* From here the backing-store finalizer owns m (Node runs it even when creation fails). */
  napi_value ab;
  NAPI_CALL(env, napi_create_external_arraybuffer(env, p, (size_t)size, vmap_backing_finalize, m, &ab));
  NAPI_CALL(env, napi_type_tag_object(env, ab, &VMAP_TAG));
  m->holds++;
  napi_status s = napi_wrap(env, ab, m, vmap_wrap_finalize, NULL, NULL);
  if (s != napi_ok) {
    m->holds--;
    return throw_napi_failure(env, s, "napi_wrap");
  }
  return ab;
}

/* The mapping behind v (*out = NULL when v is an ArrayBuffer that mapShared did not make); false after throwing. */
static bool vmap_of(napi_env env, napi_value v, size_t idx, vmap **out) {
  bool is_ab = false, ours = false;
  napi_status s = napi_is_arraybuffer(env, v, &is_ab);
  if (s != napi_ok) return napi_failed(env, s, "napi_is_arraybuffer");
  if (!is_ab) return throw_arg_type(env, idx, "an ArrayBuffer");
  if ((s = napi_check_object_type_tag(env, v, &VMAP_TAG, &ours)) != napi_ok)
    return napi_failed(env, s, "napi_check_object_type_tag");
  *out = NULL;
  if (ours && (s = napi_unwrap(env, v, (void **)out)) != napi_ok) return napi_failed(env, s, "napi_unwrap");
  return true;
}

/*
 * unmapShared(ab): detach ab (every view of it reads as empty from now on), then munmap, or leave
 * the munmap to the last in-flight I/O using it. A second call does nothing.
 */
BINDING(unmapShared) {
  GET_ARGS(env, info, 1);
  vmap *m;
  if (!vmap_of(env, argv[0], 0, &m)) return NULL;
  if (m == NULL) return throw_errno(env, EINVAL, "munmap");
  if (!m->released) {
    NAPI_CALL(env, napi_detach_arraybuffer(env, argv[0]));
    m->released = true;
    vmap_update(m);
  }
  return js_undefined(env);
}

typedef struct {
  bool write;
  int fd;
  int64_t pos;
  int iovcnt;
  ssize_t result;
  int err;
  napi_async_work work;
  napi_deferred deferred;
  vmap **maps;         /* maps[i] backs iov[i] and holds one segment of it */
  struct iovec iov[];
} seg_req;

static void seg_release(seg_req *r) {
  for (int i = 0; i < r->iovcnt; i++) vmap_drop(r->maps[i], true);
  free(r);
}

static void seg_execute(napi_env env, void *data) {
  (void)env;
  seg_req *r = data;
  /* offset -1: the file offset, as readv/writev (pipes, sockets) */
  ssize_t n = r->write ? pwritev2(r->fd, r->iov, r->iovcnt, (off_t)r->pos, 0)
                       : preadv2(r->fd, r->iov, r->iovcnt, (off_t)r->pos, 0);
  r->err = n < 0 ? errno : 0;
  r->result = n;
}

static void seg_complete(napi_env env, napi_status status, void *data) {
  seg_req *r = data;
  settle_async(env, r->deferred, status, r->err, r->write ? "pwritev" : "preadv", true, r->result);
  napi_delete_async_work(env, r->work);
  seg_release(r);
}

/* A promise already rejected with the errno error err. */
static napi_value rejected(napi_env env, int err, const char *syscall) {
  napi_value promise, error;
  napi_deferred deferred;
  NAPI_CALL(env, napi_create_promise(env, &deferred, &promise));
  if (make_errno_error(env, err, syscall, &error) != napi_ok) NAPI_CALL(env, napi_get_undefined(env, &error));
  NAPI_CALL(env, napi_reject_deferred(env, deferred, error));
  return promise;
}

/*
 * Fills r->iov from the count entries of segs ([ArrayBuffer, offset, length] each), holding each
 * mapping as it is found (r->iovcnt counts the held ones: seg_release lets them go). Returns 0, or
 * EINVAL for a segment outside its mapping or of a detached or foreign ArrayBuffer, or -1 after
 * throwing (wrong types). Reading segs may run JS (getters), so "detached" is judged at the end.
 */
static int seg_parse(napi_env env, napi_value segs, uint32_t count, seg_req *r) {
  for (uint32_t i = 0; i < count; i++) {
    napi_value seg, parts[3];
    bool is_array = false;
    uint32_t n = 0;
    if (napi_get_element(env, segs, i, &seg) != napi_ok || napi_is_array(env, seg, &is_array) != napi_ok) {
      throw_napi_failure(env, napi_generic_failure, "napi_get_element");
      return -1;
    }
    if (is_array && napi_get_array_length(env, seg, &n) != napi_ok) n = 0;
    if (!is_array || n != 3) {
      throw_arg_type(env, 1, "an array of [ArrayBuffer, offset, length]");
      return -1;
    }
    for (uint32_t k = 0; k < 3; k++) {
      if (napi_get_element(env, seg, k, &parts[k]) != napi_ok) {
        throw_napi_failure(env, napi_generic_failure, "napi_get_element");
        return -1;
      }
    }
    vmap *m;
    int64_t off, len;
    if (!vmap_of(env, parts[0], 1, &m) || !arg_safe(env, parts[1], 1, &off) || !arg_safe(env, parts[2], 1, &len)) return -1;
    if (m == NULL || off < 0 || len < 0 || (uint64_t)off > m->size || (uint64_t)len > m->size - (uint64_t)off)
      return EINVAL;
    m->inflight++;
    m->holds++;
    r->maps[i] = m;
    r->iov[i] = (struct iovec){ .iov_base = m->base + off, .iov_len = (size_t)len };
    r->iovcnt++;
  }
  for (int i = 0; i < r->iovcnt; i++)
    if (r->maps[i]->released) return EINVAL;
  return 0;
}

/*
 * (fd, segs, position): preadv2/pwritev2 between fd and guest memory on the libuv pool. Every
 * segment is checked against its mapping before anything is queued; each holds its mapping until
 * the I/O completes, so an unmapShared meanwhile detaches at once and munmaps afterwards.
 */
static napi_value mapped_io(napi_env env, napi_callback_info info, bool write) {
  GET_ARGS(env, info, 3);
  const char *syscall = write ? "pwritev" : "preadv";
  int32_t fd;
  int64_t pos;
  bool is_array = false;
  uint32_t count;
  ARG_I32(0, &fd);
  NAPI_CALL(env, napi_is_array(env, argv[1], &is_array));
  if (!is_array) { throw_arg_type(env, 1, "an array of [ArrayBuffer, offset, length]"); return NULL; }
  ARG_I64(2, &pos);
  if (pos < -1) { throw_arg_range(env, 2, "a position >= 0 or -1"); return NULL; }
  NAPI_CALL(env, napi_get_array_length(env, argv[1], &count));
  if (count > IOV_MAX) return rejected(env, EINVAL, syscall);
  seg_req *r = calloc(1, sizeof *r + count * (sizeof(struct iovec) + sizeof(vmap *)));
  if (r == NULL) return throw_errno(env, ENOMEM, syscall);
  *r = (seg_req){ .write = write, .fd = fd, .pos = pos, .maps = (vmap **)(r->iov + count) };
  int bad = seg_parse(env, argv[1], count, r);
  if (bad != 0) {
    seg_release(r);
    return bad < 0 ? NULL : rejected(env, bad, syscall);
  }
  napi_value promise, name;
  napi_status s = napi_create_promise(env, &r->deferred, &promise);
  if (s == napi_ok) s = napi_create_string_utf8(env, syscall, NAPI_AUTO_LENGTH, &name);
  if (s == napi_ok) s = napi_create_async_work(env, NULL, name, seg_execute, seg_complete, r, &r->work);
  if (s == napi_ok) s = napi_queue_async_work(env, r->work);
  if (s == napi_ok) return promise;
  /* not queued: nothing ran; the promise (if any) is dropped unsettled with the thrown error */
  if (r->work != NULL) napi_delete_async_work(env, r->work);
  seg_release(r);
  return throw_napi_failure(env, s, "napi_queue_async_work");
}

BINDING(preadvMappedAsync) { return mapped_io(env, info, false); }
BINDING(pwritevMappedAsync) { return mapped_io(env, info, true); }

/* memfdCreate(name, size): memfd_create(name, MFD_CLOEXEC) grown to size with ftruncate. */
BINDING(memfdCreate) {
  GET_ARGS(env, info, 2);
  char name[MEMFD_NAME_MAX + 1];
  int64_t size;
  if (!arg_text(env, argv[0], 0, "memfd_create", name, sizeof name)) return NULL;
  ARG_I64(1, &size);
  int fd = memfd_create(name, MFD_CLOEXEC);
  if (fd < 0) return throw_errno(env, errno, "memfd_create");
  if (ftruncate(fd, (off_t)size) < 0) {
    int err = errno;
    close(fd);
    return throw_errno(env, err, "ftruncate");
  }
  return js_int(env, fd);
}
