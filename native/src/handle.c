/* name_to_handle_at / open_by_handle_at. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "bindings.h"
#include "errors.h"

#ifndef AT_HANDLE_MNT_ID_UNIQUE
#define AT_HANDLE_MNT_ID_UNIQUE 0x001 /* Linux 6.12: return the unique 64-bit mount id */
#endif

/* A file_handle with room for the largest handle; heap-allocated, so no aliasing concerns. */
static struct file_handle *alloc_handle(void) {
  return malloc(sizeof(struct file_handle) + MAX_HANDLE_SZ);
}

/* nameToHandleInto's record, little-endian: handle_type (i32), handle_bytes (u32), mount id (u64), the bytes */
#define HANDLE_REC_HEAD 16

static void put_le(unsigned char *p, uint64_t v, int n) {
  for (int i = 0; i < n; i++) p[i] = (unsigned char)(v >> (8 * i));
}

/*
 * nameToHandleInto(dirfd, name, flags, out): name_to_handle_at into `out`, a Buffer of at least
 * 16 + MAX_HANDLE_SZ bytes holding the record above; 0, or -errno. No object is built here:
 * src/sys/syscalls.ts makes the FileHandleRaw in JS, where an object literal costs a fraction of
 * napi_set_named_property (which internalizes each key per call).
 */
BINDING(nameToHandleInto) {
  GET_ARGS(env, info, 4);
  int32_t dirfd, flags;
  char name[NAME_BUF_SIZE];
  void *data;
  size_t len;
  ARG_I32(0, &dirfd);
  ARG_NAME(1, "name_to_handle_at", name);
  ARG_I32(2, &flags);
  ARG_BUFFER(3, &data, &len);
  if (len < HANDLE_REC_HEAD + MAX_HANDLE_SZ) {
    napi_throw_range_error(env, NULL, "nameToHandleInto: the record buffer is too small");
    return NULL;
  }
  union {
    struct file_handle fh;
    unsigned char room[sizeof(struct file_handle) + MAX_HANDLE_SZ];
  } h;
  h.fh.handle_bytes = MAX_HANDLE_SZ;
  /*
   * With AT_HANDLE_MNT_ID_UNIQUE the kernel writes a u64 through the mount_id pointer, otherwise
   * an int. The raw syscall avoids glibc's int * prototype.
   */
  uint64_t mnt_unique = 0;
  int mnt_int = 0;
  void *mnt_ptr = (flags & AT_HANDLE_MNT_ID_UNIQUE) ? (void *)&mnt_unique : (void *)&mnt_int;
  int r = 0;
  if (syscall(SYS_name_to_handle_at, dirfd, name, &h.fh, mnt_ptr, flags) < 0) {
    r = -errno;
  } else {
    uint64_t mount_id = (flags & AT_HANDLE_MNT_ID_UNIQUE) ? mnt_unique : (uint64_t)(uint32_t)mnt_int;
    unsigned char *out = data;
    int32_t type = h.fh.handle_type;
    uint32_t n = h.fh.handle_bytes;
    put_le(out, (uint32_t)type, 4);
    put_le(out + 4, n, 4);
    put_le(out + 8, mount_id, 8);
    memcpy(out + HANDLE_REC_HEAD, h.fh.f_handle, n);
  }
  return js_int(env, r);
}

/* throwErrno(errno, syscall): throws the addon's error for errno, as a failing binding does. */
BINDING(throwErrno) {
  GET_ARGS(env, info, 2);
  int32_t err;
  ARG_I32(0, &err);
  char syscall_name[64];
  size_t n = 0;
  NAPI_CALL(env, napi_get_value_string_utf8(env, argv[1], syscall_name, sizeof syscall_name, &n));
  return throw_errno(env, err, syscall_name);
}

BINDING(openByHandleAt) {
  GET_ARGS(env, info, 4);
  int32_t mount_fd, type, flags;
  void *bytes;
  size_t len;
  ARG_I32(0, &mount_fd);
  ARG_I32(1, &type);
  ARG_BUFFER(2, &bytes, &len);
  ARG_I32(3, &flags);
  /* The kernel would say EINVAL too; checking here keeps the copy below in bounds. */
  if (len > MAX_HANDLE_SZ) return throw_errno(env, EINVAL, "open_by_handle_at");
  struct file_handle *fh = alloc_handle();
  if (fh == NULL) return throw_errno(env, ENOMEM, "open_by_handle_at");
  fh->handle_bytes = (unsigned int)len;
  fh->handle_type = type;
  if (len > 0) memcpy(fh->f_handle, bytes, len);
  int fd = open_by_handle_at(mount_fd, fh, flags);
  int err = errno;
  free(fh);
  if (fd < 0) return throw_errno(env, err, "open_by_handle_at");
  return js_int(env, fd);
}
