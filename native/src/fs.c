/* open/close/fcntl, statx, fstatfs, readlinkat. */
#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "bindings.h"
#include "errors.h"

/* Must match ST / STAT_LEN in src/sys/stat.ts. */
enum {
  ST_MASK, ST_BLKSIZE, ST_ATTRIBUTES, ST_NLINK, ST_UID, ST_GID, ST_MODE, ST_INO, ST_SIZE,
  ST_BLOCKS, ST_ATTRIBUTES_MASK,
  ST_ATIME_SEC, ST_ATIME_NSEC, ST_BTIME_SEC, ST_BTIME_NSEC, ST_CTIME_SEC, ST_CTIME_NSEC,
  ST_MTIME_SEC, ST_MTIME_NSEC, ST_RDEV_MAJOR, ST_RDEV_MINOR, ST_DEV_MAJOR, ST_DEV_MINOR,
  ST_MNT_ID, ST_DIO_MEM_ALIGN, ST_DIO_OFFSET_ALIGN,
  STAT_LEN
};

/* Must match STATFS / STATFS_LEN in src/sys/stat.ts. */
enum {
  SF_TYPE, SF_BSIZE, SF_BLOCKS, SF_BFREE, SF_BAVAIL, SF_FILES, SF_FFREE, SF_FSID0, SF_FSID1,
  SF_NAMELEN, SF_FRSIZE, SF_FLAGS,
  STATFS_LEN
};

static napi_value do_openat(napi_env env, napi_callback_info info, bool soft) {
  GET_ARGS(env, info, 4);
  int32_t dirfd, flags;
  uint32_t mode;
  char name[NAME_BUF_SIZE];
  ARG_I32(0, &dirfd);
  ARG_NAME(1, "openat", name);
  ARG_I32(2, &flags);
  ARG_U32(3, &mode);
  int fd = openat(dirfd, name, flags, (mode_t)mode);
  if (fd < 0) return fail_errno(env, errno, "openat", soft);
  return js_int(env, fd);
}

BINDING(openat) { return do_openat(env, info, false); }
/* openat, returning -errno on failure. */
BINDING(openatTry) { return do_openat(env, info, true); }

BINDING(openat2) {
  GET_ARGS(env, info, 5);
  int32_t dirfd;
  uint32_t flags, mode, resolve;
  char name[NAME_BUF_SIZE];
  ARG_I32(0, &dirfd);
  ARG_NAME(1, "openat2", name);
  ARG_U32(2, &flags);
  ARG_U32(3, &mode);
  ARG_U32(4, &resolve);
  /* Zero-initialised: the kernel rejects unknown non-zero trailing bytes. */
  struct open_how how = { .flags = flags, .mode = mode, .resolve = resolve };
  long fd = syscall(SYS_openat2, dirfd, name, &how, sizeof how);
  if (fd < 0) return throw_errno(env, errno, "openat2");
  return js_int(env, fd);
}

BINDING(close) {
  GET_ARGS(env, info, 1);
  int32_t fd;
  ARG_I32(0, &fd);
  /* No retry on EINTR: on Linux the fd is released even then. */
  if (close(fd) < 0) return throw_errno(env, errno, "close");
  return js_undefined(env);
}

BINDING(fcntlInt) {
  GET_ARGS(env, info, 3);
  int32_t fd, cmd, arg;
  ARG_I32(0, &fd);
  ARG_I32(1, &cmd);
  ARG_I32(2, &arg);
  int r = fcntl(fd, cmd, arg);
  if (r < 0) return throw_errno(env, errno, "fcntl");
  return js_int(env, r);
}

BINDING(statx) {
  GET_ARGS(env, info, 5);
  int32_t dirfd, flags;
  uint32_t mask;
  uint64_t *out;
  char name[NAME_BUF_SIZE];
  ARG_I32(0, &dirfd);
  ARG_NAME(1, "statx", name);
  ARG_I32(2, &flags);
  ARG_U32(3, &mask);
  ARG_U64ARRAY(4, STAT_LEN, &out);
  struct statx stx;
  if (statx(dirfd, name, flags, mask, &stx) < 0) return throw_errno(env, errno, "statx");
  out[ST_MASK] = stx.stx_mask;
  out[ST_BLKSIZE] = stx.stx_blksize;
  out[ST_ATTRIBUTES] = stx.stx_attributes;
  out[ST_NLINK] = stx.stx_nlink;
  out[ST_UID] = stx.stx_uid;
  out[ST_GID] = stx.stx_gid;
  out[ST_MODE] = stx.stx_mode;
  out[ST_INO] = stx.stx_ino;
  out[ST_SIZE] = stx.stx_size;
  out[ST_BLOCKS] = stx.stx_blocks;
  out[ST_ATTRIBUTES_MASK] = stx.stx_attributes_mask;
  /* Seconds are signed: stored as two's complement, decoded with BigInt.asIntN(64, ...). */
  out[ST_ATIME_SEC] = (uint64_t)stx.stx_atime.tv_sec;
  out[ST_ATIME_NSEC] = stx.stx_atime.tv_nsec;
  out[ST_BTIME_SEC] = (uint64_t)stx.stx_btime.tv_sec;
  out[ST_BTIME_NSEC] = stx.stx_btime.tv_nsec;
  out[ST_CTIME_SEC] = (uint64_t)stx.stx_ctime.tv_sec;
  out[ST_CTIME_NSEC] = stx.stx_ctime.tv_nsec;
  out[ST_MTIME_SEC] = (uint64_t)stx.stx_mtime.tv_sec;
  out[ST_MTIME_NSEC] = stx.stx_mtime.tv_nsec;
  out[ST_RDEV_MAJOR] = stx.stx_rdev_major;
  out[ST_RDEV_MINOR] = stx.stx_rdev_minor;
  out[ST_DEV_MAJOR] = stx.stx_dev_major;
  out[ST_DEV_MINOR] = stx.stx_dev_minor;
  out[ST_MNT_ID] = stx.stx_mnt_id;
  out[ST_DIO_MEM_ALIGN] = stx.stx_dio_mem_align;
  out[ST_DIO_OFFSET_ALIGN] = stx.stx_dio_offset_align;
  return js_undefined(env);
}

BINDING(fstatfs) {
  GET_ARGS(env, info, 2);
  int32_t fd;
  uint64_t *out;
  ARG_I32(0, &fd);
  ARG_U64ARRAY(1, STATFS_LEN, &out);
  struct statfs sf;
  if (fstatfs(fd, &sf) < 0) return throw_errno(env, errno, "fstatfs");
  out[SF_TYPE] = (uint64_t)sf.f_type;
  out[SF_BSIZE] = (uint64_t)sf.f_bsize;
  out[SF_BLOCKS] = sf.f_blocks;
  out[SF_BFREE] = sf.f_bfree;
  out[SF_BAVAIL] = sf.f_bavail;
  out[SF_FILES] = sf.f_files;
  out[SF_FFREE] = sf.f_ffree;
  out[SF_FSID0] = (uint32_t)sf.f_fsid.__val[0];
  out[SF_FSID1] = (uint32_t)sf.f_fsid.__val[1];
  out[SF_NAMELEN] = (uint64_t)sf.f_namelen;
  out[SF_FRSIZE] = (uint64_t)sf.f_frsize;
  out[SF_FLAGS] = (uint64_t)sf.f_flags;
  return js_undefined(env);
}

/* Symlink bodies are capped at PATH_MAX by the VFS, so the buffer never needs to grow. */
BINDING(readlinkat) {
  GET_ARGS(env, info, 2);
  int32_t dirfd;
  char name[NAME_BUF_SIZE];
  ARG_I32(0, &dirfd);
  ARG_NAME(1, "readlinkat", name);
  char *target = malloc(PATH_MAX + 1);
  if (target == NULL) return throw_errno(env, ENOMEM, "readlinkat");
  ssize_t n = readlinkat(dirfd, name, target, PATH_MAX + 1);
  if (n < 0) {
    int err = errno;
    free(target);
    return throw_errno(env, err, "readlinkat");
  }
  napi_value result;
  napi_status s = napi_create_buffer_copy(env, (size_t)n, target, NULL, &result);
  free(target);
  if (s != napi_ok) return throw_napi_failure(env, s, "napi_create_buffer_copy");
  return result;
}
