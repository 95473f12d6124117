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

static napi_value name_to_handle(napi_env env, napi_callback_info info, bool soft) {
  GET_ARGS(env, info, 3);
  int32_t dirfd, flags;
  char name[NAME_BUF_SIZE];
  ARG_I32(0, &dirfd);
  ARG_NAME(1, "name_to_handle_at", name);
  ARG_I32(2, &flags);
  struct file_handle *fh = alloc_handle();
  if (fh == NULL) return throw_errno(env, ENOMEM, "name_to_handle_at");
  fh->handle_bytes = MAX_HANDLE_SZ;
  /*
   * With AT_HANDLE_MNT_ID_UNIQUE the kernel writes a u64 through the mount_id pointer, otherwise
   * an int. The raw syscall avoids glibc's int * prototype.
   */
  uint64_t mnt_unique = 0;
  int mnt_int = 0;
  void *mnt_ptr = (flags & AT_HANDLE_MNT_ID_UNIQUE) ? (void *)&mnt_unique : (void *)&mnt_int;
  if (syscall(SYS_name_to_handle_at, dirfd, name, fh, mnt_ptr, flags) < 0) {
    int err = errno;
    free(fh);
    return fail_errno(env, err, "name_to_handle_at", soft);
  }
  uint64_t mount_id = (flags & AT_HANDLE_MNT_ID_UNIQUE) ? mnt_unique : (uint64_t)(uint32_t)mnt_int;

  napi_value result, type, bytes, mnt;
  napi_status s;
  const char *what = "napi_create_object";
  if ((s = napi_create_object(env, &result)) != napi_ok) goto fail;
  what = "napi_create_int32";
  if ((s = napi_create_int32(env, fh->handle_type, &type)) != napi_ok) goto fail;
  what = "napi_create_buffer_copy";
  if ((s = napi_create_buffer_copy(env, fh->handle_bytes, fh->f_handle, NULL, &bytes)) != napi_ok) goto fail;
  what = "napi_create_bigint_uint64";
  if ((s = napi_create_bigint_uint64(env, mount_id, &mnt)) != napi_ok) goto fail;
  what = "napi_set_named_property";
  if ((s = napi_set_named_property(env, result, "type", type)) != napi_ok) goto fail;
  if ((s = napi_set_named_property(env, result, "bytes", bytes)) != napi_ok) goto fail;
  if ((s = napi_set_named_property(env, result, "mountId", mnt)) != napi_ok) goto fail;
  free(fh);
  return result;
fail:
  free(fh);
  return throw_napi_failure(env, s, what);
}

BINDING(nameToHandleAt) { return name_to_handle(env, info, false); }
/* nameToHandleAt returning -errno (a number) instead of throwing: lookups of names that are not there. */
BINDING(nameToHandleAtTry) { return name_to_handle(env, info, true); }

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
