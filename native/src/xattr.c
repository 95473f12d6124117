/*
 * Extended attributes. The server reaches an inode's xattrs through the following path forms on
 * /proc/self/fd/N: the magic link resolves to the fd's own file (the symlink itself for an
 * O_PATH|O_NOFOLLOW fd), whereas l*xattr on that path would act on the /proc link, and f*xattr
 * refuse O_PATH fds. fgetxattrTry serves a file open for I/O.
 */
#include <errno.h>
#include <sys/xattr.h>

#include "bindings.h"
#include "errors.h"

typedef ssize_t (*path_get_fn)(const char *path, const char *name, void *value, size_t size);
typedef int (*path_set_fn)(const char *path, const char *name, const void *value, size_t size, int flags);

static napi_value path_get(napi_env env, napi_callback_info info, path_get_fn get, const char *syscall, bool soft) {
  GET_ARGS(env, info, 3);
  char path[NAME_BUF_SIZE], name[NAME_BUF_SIZE];
  void *value;
  size_t len;
  ARG_NAME(0, syscall, path);
  ARG_NAME(1, syscall, name);
  ARG_BUFFER_OR_NULL(2, &value, &len);
  ssize_t n = get(path, name, value, len);
  if (n < 0) return fail_errno(env, errno, syscall, soft);
  return js_int(env, n);
}

static napi_value path_set(napi_env env, napi_callback_info info, path_set_fn set, const char *syscall) {
  GET_ARGS(env, info, 4);
  char path[NAME_BUF_SIZE], name[NAME_BUF_SIZE];
  void *value;
  size_t len;
  int32_t flags;
  ARG_NAME(0, syscall, path);
  ARG_NAME(1, syscall, name);
  ARG_BUFFER(2, &value, &len);
  ARG_I32(3, &flags);
  if (set(path, name, value, len, flags) < 0) return throw_errno(env, errno, syscall);
  return js_undefined(env);
}

BINDING(getxattrTry) { return path_get(env, info, getxattr, "getxattr", true); }
BINDING(setxattr) { return path_set(env, info, setxattr, "setxattr"); }
/* lgetxattr/lsetxattr: the tests' independent view of a symlink's own xattrs (see native.d.ts). */
BINDING(lgetxattr) { return path_get(env, info, lgetxattr, "lgetxattr", false); }
BINDING(lsetxattr) { return path_set(env, info, lsetxattr, "lsetxattr"); }

BINDING(listxattr) {
  GET_ARGS(env, info, 2);
  char path[NAME_BUF_SIZE];
  void *list;
  size_t len;
  ARG_NAME(0, "listxattr", path);
  ARG_BUFFER_OR_NULL(1, &list, &len);
  ssize_t n = listxattr(path, list, len);
  if (n < 0) return throw_errno(env, errno, "listxattr");
  return js_int(env, n);
}

BINDING(removexattr) {
  GET_ARGS(env, info, 2);
  char path[NAME_BUF_SIZE], name[NAME_BUF_SIZE];
  ARG_NAME(0, "removexattr", path);
  ARG_NAME(1, "removexattr", name);
  if (removexattr(path, name) < 0) return throw_errno(env, errno, "removexattr");
  return js_undefined(env);
}

BINDING(fgetxattrTry) {
  GET_ARGS(env, info, 3);
  int32_t fd;
  char name[NAME_BUF_SIZE];
  void *value;
  size_t len;
  ARG_I32(0, &fd);
  ARG_NAME(1, "fgetxattr", name);
  ARG_BUFFER_OR_NULL(2, &value, &len);
  ssize_t n = fgetxattr(fd, name, value, len);
  if (n < 0) return fail_errno(env, errno, "fgetxattr", true);
  return js_int(env, n);
}
