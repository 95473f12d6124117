/* getdents64 into the caller's Buffer; the records are parsed in TS (src/sys/dirent.ts). */
#include <errno.h>
#include <limits.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "bindings.h"
#include "errors.h"

BINDING(getdents64) {
  GET_ARGS(env, info, 2);
  int32_t fd;
  void *data;
  size_t len;
  ARG_I32(0, &fd);
  ARG_BUFFER(1, &data, &len);
  /* The kernel takes an unsigned int count. */
  if (len > UINT_MAX) len = UINT_MAX;
  long n = syscall(SYS_getdents64, fd, data, (unsigned int)len);
  if (n < 0) return throw_errno(env, errno, "getdents64");
  return js_int(env, n);
}
