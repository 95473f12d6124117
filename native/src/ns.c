/* Namespace operations: create, link, rename, remove, change attributes. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "bindings.h"
#include "errors.h"

/* faccessat2 (5.8) and fchmodat2 (6.6) have the same numbers on every architecture; old headers may lack them. */
#ifndef SYS_faccessat2
#define SYS_faccessat2 439
#endif
#ifndef SYS_fchmodat2
#define SYS_fchmodat2 452
#endif

BINDING(mkdirat) {
  GET_ARGS(env, info, 3);
  int32_t dirfd;
  uint32_t mode;
  char name[NAME_BUF_SIZE];
  ARG_I32(0, &dirfd);
  ARG_NAME(1, "mkdirat", name);
  ARG_U32(2, &mode);
  if (mkdirat(dirfd, name, (mode_t)mode) < 0) return throw_errno(env, errno, "mkdirat");
  return js_undefined(env);
}

BINDING(mknodat) {
  GET_ARGS(env, info, 4);
  int32_t dirfd;
  uint32_t mode;
  uint64_t dev;
  char name[NAME_BUF_SIZE];
  ARG_I32(0, &dirfd);
  ARG_NAME(1, "mknodat", name);
  ARG_U32(2, &mode);
  ARG_BIGINT64(3, &dev);
  if (mknodat(dirfd, name, (mode_t)mode, (dev_t)dev) < 0) return throw_errno(env, errno, "mknodat");
  return js_undefined(env);
}

BINDING(symlinkat) {
  GET_ARGS(env, info, 3);
  int32_t dirfd;
  char target[NAME_BUF_SIZE], name[NAME_BUF_SIZE];
  ARG_NAME(0, "symlinkat", target);
  ARG_I32(1, &dirfd);
  ARG_NAME(2, "symlinkat", name);
  if (symlinkat(target, dirfd, name) < 0) return throw_errno(env, errno, "symlinkat");
  return js_undefined(env);
}

BINDING(unlinkat) {
  GET_ARGS(env, info, 3);
  int32_t dirfd, flags;
  char name[NAME_BUF_SIZE];
  ARG_I32(0, &dirfd);
  ARG_NAME(1, "unlinkat", name);
  ARG_I32(2, &flags);
  if (unlinkat(dirfd, name, flags) < 0) return throw_errno(env, errno, "unlinkat");
  return js_undefined(env);
}

BINDING(renameat2) {
  GET_ARGS(env, info, 5);
  int32_t olddirfd, newdirfd;
  uint32_t flags;
  char oldname[NAME_BUF_SIZE], newname[NAME_BUF_SIZE];
  ARG_I32(0, &olddirfd);
  ARG_NAME(1, "renameat2", oldname);
  ARG_I32(2, &newdirfd);
  ARG_NAME(3, "renameat2", newname);
  ARG_U32(4, &flags);
  if (renameat2(olddirfd, oldname, newdirfd, newname, flags) < 0) return throw_errno(env, errno, "renameat2");
  return js_undefined(env);
}

BINDING(linkat) {
  GET_ARGS(env, info, 5);
  int32_t olddirfd, newdirfd, flags;
  char oldname[NAME_BUF_SIZE], newname[NAME_BUF_SIZE];
  ARG_I32(0, &olddirfd);
  ARG_NAME(1, "linkat", oldname);
  ARG_I32(2, &newdirfd);
  ARG_NAME(3, "linkat", newname);
  ARG_I32(4, &flags);
  if (linkat(olddirfd, oldname, newdirfd, newname, flags) < 0) return throw_errno(env, errno, "linkat");
  return js_undefined(env);
}

BINDING(fchownat) {
  GET_ARGS(env, info, 5);
  int32_t dirfd, flags;
  uint32_t uid, gid;
  char name[NAME_BUF_SIZE];
  ARG_I32(0, &dirfd);
  ARG_NAME(1, "fchownat", name);
  ARG_ID(2, &uid);
  ARG_ID(3, &gid);
  ARG_I32(4, &flags);
  if (fchownat(dirfd, name, (uid_t)uid, (gid_t)gid, flags) < 0) return throw_errno(env, errno, "fchownat");
  return js_undefined(env);
}

BINDING(fchmodat2) {
  GET_ARGS(env, info, 4);
  int32_t dirfd, flags;
  uint32_t mode;
  char name[NAME_BUF_SIZE];
  ARG_I32(0, &dirfd);
  ARG_NAME(1, "fchmodat2", name);
  ARG_U32(2, &mode);
  ARG_I32(3, &flags);
  /* Raw syscall: glibc 2.36's fchmodat emulates AT_SYMLINK_NOFOLLOW through /proc instead. */
  if (syscall(SYS_fchmodat2, dirfd, name, (mode_t)mode, flags) < 0) return throw_errno(env, errno, "fchmodat2");
  return js_undefined(env);
}

BINDING(utimensat) {
  GET_ARGS(env, info, 7);
  int32_t dirfd, flags;
  int64_t asec, ansec, msec, mnsec;
  char name[NAME_BUF_SIZE];
  ARG_I32(0, &dirfd);
  ARG_NAME(1, "utimensat", name);
  ARG_I64(2, &asec);
  ARG_SAFE(3, &ansec);
  ARG_I64(4, &msec);
  ARG_SAFE(5, &mnsec);
  ARG_I32(6, &flags);
  /* Out-of-range nanoseconds are left to the kernel (EINVAL); UTIME_NOW/UTIME_OMIT pass through. */
  const struct timespec times[2] = {
    { .tv_sec = (time_t)asec, .tv_nsec = (long)ansec },
    { .tv_sec = (time_t)msec, .tv_nsec = (long)mnsec },
  };
  if (utimensat(dirfd, name, times, flags) < 0) return throw_errno(env, errno, "utimensat");
  return js_undefined(env);
}

BINDING(faccessat2) {
  GET_ARGS(env, info, 4);
  int32_t dirfd, mode, flags;
  char name[NAME_BUF_SIZE];
  ARG_I32(0, &dirfd);
  ARG_NAME(1, "faccessat2", name);
  ARG_I32(2, &mode);
  ARG_I32(3, &flags);
  /* Raw syscall: glibc's faccessat falls back to a userspace approximation for some flags. */
  if (syscall(SYS_faccessat2, dirfd, name, mode, flags) < 0) return throw_errno(env, errno, "faccessat2");
  return js_undefined(env);
}
