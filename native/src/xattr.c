/*
 * Extended attributes on paths and on fds. The path forms come in two flavours, like the syscalls:
 * getxattr & co. follow a final symlink, lgetxattr & co. do not. For an O_PATH fd use the
 * following form on /proc/self/fd/N: the magic link resolves to the fd's own file (the symlink
 * itself for an O_PATH|O_NOFOLLOW fd), whereas l*xattr would act on the /proc link.
 */
#include <errno.h>
#include <sys/xattr.h>

#include "bindings.h"
#include "errors.h"

#define PATH_XATTR_BINDINGS(js, c_get, c_set, c_list, c_remove)                      \
  static napi_value js##getxattr_impl(napi_env env, napi_callback_info info, bool soft) { \
    GET_ARGS(env, info, 3);                                                          \
    char path[NAME_BUF_SIZE], name[NAME_BUF_SIZE];                                   \
    void *value;                                                                     \
    size_t len;                                                                      \
    ARG_NAME(0, #c_get, path);                                                       \
    ARG_NAME(1, #c_get, name);                                                       \
    ARG_BUFFER_OR_NULL(2, &value, &len);                                             \
    ssize_t n = c_get(path, name, value, len);                                       \
    if (n < 0) return fail_errno(env, errno, #c_get, soft);                          \
    return js_int(env, n);                                                           \
  }                                                                                  \
  BINDING(js##getxattr) { return js##getxattr_impl(env, info, false); }              \
  BINDING(js##getxattr##Try) { return js##getxattr_impl(env, info, true); }          \
  BINDING(js##setxattr) {                                                            \
    GET_ARGS(env, info, 4);                                                          \
    char path[NAME_BUF_SIZE], name[NAME_BUF_SIZE];                                   \
    void *value;                                                                     \
    size_t len;                                                                      \
    int32_t flags;                                                                   \
    ARG_NAME(0, #c_set, path);                                                       \
    ARG_NAME(1, #c_set, name);                                                       \
    ARG_BUFFER(2, &value, &len);                                                     \
    ARG_I32(3, &flags);                                                              \
    if (c_set(path, name, value, len, flags) < 0) return throw_errno(env, errno, #c_set); \
    return js_undefined(env);                                                        \
  }                                                                                  \
  BINDING(js##listxattr) {                                                           \
    GET_ARGS(env, info, 2);                                                          \
    char path[NAME_BUF_SIZE];                                                        \
    void *list;                                                                      \
    size_t len;                                                                      \
    ARG_NAME(0, #c_list, path);                                                      \
    ARG_BUFFER_OR_NULL(1, &list, &len);                                              \
    ssize_t n = c_list(path, list, len);                                             \
    if (n < 0) return throw_errno(env, errno, #c_list);                              \
    return js_int(env, n);                                                           \
  }                                                                                  \
  BINDING(js##removexattr) {                                                         \
    GET_ARGS(env, info, 2);                                                          \
    char path[NAME_BUF_SIZE], name[NAME_BUF_SIZE];                                   \
    ARG_NAME(0, #c_remove, path);                                                    \
    ARG_NAME(1, #c_remove, name);                                                    \
    if (c_remove(path, name) < 0) return throw_errno(env, errno, #c_remove);         \
    return js_undefined(env);                                                        \
  }

PATH_XATTR_BINDINGS(, getxattr, setxattr, listxattr, removexattr)
PATH_XATTR_BINDINGS(l, lgetxattr, lsetxattr, llistxattr, lremovexattr)

static napi_value fgetxattr_impl(napi_env env, napi_callback_info info, bool soft) {
  GET_ARGS(env, info, 3);
  int32_t fd;
  char name[NAME_BUF_SIZE];
  void *value;
  size_t len;
  ARG_I32(0, &fd);
  ARG_NAME(1, "fgetxattr", name);
  ARG_BUFFER_OR_NULL(2, &value, &len);
  ssize_t n = fgetxattr(fd, name, value, len);
  if (n < 0) return fail_errno(env, errno, "fgetxattr", soft);
  return js_int(env, n);
}

BINDING(fgetxattr) { return fgetxattr_impl(env, info, false); }
BINDING(fgetxattrTry) { return fgetxattr_impl(env, info, true); }

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
