/* Extended attributes: l*xattr on paths (use /proc/self/fd/N for O_PATH fds) and f*xattr on fds. */
#include <errno.h>
#include <sys/xattr.h>

#include "bindings.h"
#include "errors.h"

BINDING(lgetxattr) {
  GET_ARGS(env, info, 3);
  char path[NAME_BUF_SIZE], name[NAME_BUF_SIZE];
  void *value;
  size_t len;
  ARG_NAME(0, "lgetxattr", path);
  ARG_NAME(1, "lgetxattr", name);
  ARG_BUFFER_OR_NULL(2, &value, &len);
  ssize_t n = lgetxattr(path, name, value, len);
  if (n < 0) return throw_errno(env, errno, "lgetxattr");
  return js_int(env, n);
}

BINDING(lsetxattr) {
  GET_ARGS(env, info, 4);
  char path[NAME_BUF_SIZE], name[NAME_BUF_SIZE];
  void *value;
  size_t len;
  int32_t flags;
  ARG_NAME(0, "lsetxattr", path);
  ARG_NAME(1, "lsetxattr", name);
  ARG_BUFFER(2, &value, &len);
  ARG_I32(3, &flags);
  if (lsetxattr(path, name, value, len, flags) < 0) return throw_errno(env, errno, "lsetxattr");
  return js_undefined(env);
}

BINDING(llistxattr) {
  GET_ARGS(env, info, 2);
  char path[NAME_BUF_SIZE];
  void *list;
  size_t len;
  ARG_NAME(0, "llistxattr", path);
  ARG_BUFFER_OR_NULL(1, &list, &len);
  ssize_t n = llistxattr(path, list, len);
  if (n < 0) return throw_errno(env, errno, "llistxattr");
  return js_int(env, n);
}

BINDING(lremovexattr) {
  GET_ARGS(env, info, 2);
  char path[NAME_BUF_SIZE], name[NAME_BUF_SIZE];
  ARG_NAME(0, "lremovexattr", path);
  ARG_NAME(1, "lremovexattr", name);
  if (lremovexattr(path, name) < 0) return throw_errno(env, errno, "lremovexattr");
  return js_undefined(env);
}

BINDING(fgetxattr) {
  GET_ARGS(env, info, 3);
  int32_t fd;
  char name[NAME_BUF_SIZE];
  void *value;
  size_t len;
  ARG_I32(0, &fd);
  ARG_NAME(1, "fgetxattr", name);
  ARG_BUFFER_OR_NULL(2, &value, &len);
  ssize_t n = fgetxattr(fd, name, value, len);
  if (n < 0) return throw_errno(env, errno, "fgetxattr");
  return js_int(env, n);
}

BINDING(fsetxattr) {
  GET_ARGS(env, info, 4);
  int32_t fd, flags;
  char name[NAME_BUF_SIZE];
  void *value;
  size_t len;
  ARG_I32(0, &fd);
  ARG_NAME(1, "fsetxattr", name);
  ARG_BUFFER(2, &value, &len);
  ARG_I32(3, &flags);
  if (fsetxattr(fd, name, value, len, flags) < 0) return throw_errno(env, errno, "fsetxattr");
  return js_undefined(env);
}

BINDING(flistxattr) {
  GET_ARGS(env, info, 2);
  int32_t fd;
  void *list;
  size_t len;
  ARG_I32(0, &fd);
  ARG_BUFFER_OR_NULL(1, &list, &len);
  ssize_t n = flistxattr(fd, list, len);
  if (n < 0) return throw_errno(env, errno, "flistxattr");
  return js_int(env, n);
}

BINDING(fremovexattr) {
  GET_ARGS(env, info, 2);
  int32_t fd;
  char name[NAME_BUF_SIZE];
  ARG_I32(0, &fd);
  ARG_NAME(1, "fremovexattr", name);
  if (fremovexattr(fd, name) < 0) return throw_errno(env, errno, "fremovexattr");
  return js_undefined(env);
}
