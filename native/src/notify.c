/*
 * fanotify: the server learns of every rename on the shared directory's filesystem, so that a
 * directory proven to be beneath the root stays proven until something moves (src/fs/move-watch.ts).
 */
#include <errno.h>
#include <fcntl.h>
#include <sys/fanotify.h>

#include "bindings.h"
#include "errors.h"

/* fanotifyInit(flags, eventFlags) -> fd */
BINDING(fanotifyInit) {
  GET_ARGS(env, info, 2);
  uint32_t flags, event_flags;
  ARG_U32(0, &flags);
  ARG_U32(1, &event_flags);
  int fd = fanotify_init(flags, event_flags);
  if (fd < 0) return throw_errno(env, errno, "fanotify_init");
  return js_int(env, fd);
}

/* fanotifyMark(fd, flags, mask (a bigint: the mask is 64 bits), dirfd, path) */
BINDING(fanotifyMark) {
  GET_ARGS(env, info, 5);
  int32_t fd, dirfd;
  uint32_t flags;
  uint64_t mask;
  char path[NAME_BUF_SIZE];
  ARG_I32(0, &fd);
  ARG_U32(1, &flags);
  ARG_BIGINT64(2, &mask);
  ARG_I32(3, &dirfd);
  ARG_NAME(4, "fanotify_mark", path);
  if (fanotify_mark(fd, flags, mask, dirfd, path) < 0) return throw_errno(env, errno, "fanotify_mark");
  return js_undefined(env);
}
