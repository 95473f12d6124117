/* mount(2)/umount2 and /dev/fuse ioctls. */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <sys/ioctl.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "bindings.h"
#include "errors.h"

/*
 * FUSE passthrough backing files (Linux 6.9). Debian 12's <linux/fuse.h> predates them, so the
 * struct and ioctl numbers are declared here, as in the kernel's include/uapi/linux/fuse.h.
 */
struct handlefs_fuse_backing_map {
  int32_t fd;
  uint32_t flags;
  uint64_t padding;
};
_Static_assert(sizeof(struct handlefs_fuse_backing_map) == 16, "fuse_backing_map is 16 bytes");
#define HANDLEFS_FUSE_DEV_IOC_MAGIC 229
#define HANDLEFS_FUSE_DEV_IOC_BACKING_OPEN _IOW(HANDLEFS_FUSE_DEV_IOC_MAGIC, 1, struct handlefs_fuse_backing_map)
#define HANDLEFS_FUSE_DEV_IOC_BACKING_CLOSE _IOW(HANDLEFS_FUSE_DEV_IOC_MAGIC, 2, uint32_t)
/* a second channel of a connection (Linux 4.2): requests go to whichever channel reads first;
 * a reply must go back on the channel its request was read from */
#define HANDLEFS_FUSE_DEV_IOC_CLONE _IOR(HANDLEFS_FUSE_DEV_IOC_MAGIC, 0, uint32_t)

BINDING(mount) {
  GET_ARGS(env, info, 5);
  char source[NAME_BUF_SIZE], target[NAME_BUF_SIZE], fstype[NAME_BUF_SIZE], data[NAME_BUF_SIZE];
  int64_t flags;
  ARG_NAME(0, "mount", source);
  ARG_NAME(1, "mount", target);
  ARG_NAME(2, "mount", fstype);
  ARG_SAFE(3, &flags);
  ARG_NAME(4, "mount", data);
  if (flags < 0) { throw_arg_range(env, 3, "flags >= 0"); return NULL; }
  if (mount(source, target, fstype, (unsigned long)flags, data) < 0) return throw_errno(env, errno, "mount");
  return js_undefined(env);
}

BINDING(umount2) {
  GET_ARGS(env, info, 2);
  char target[NAME_BUF_SIZE];
  int32_t flags;
  ARG_NAME(0, "umount2", target);
  ARG_I32(1, &flags);
  if (umount2(target, flags) < 0) return throw_errno(env, errno, "umount2");
  return js_undefined(env);
}

BINDING(fuseBackingOpen) {
  GET_ARGS(env, info, 3);
  int32_t dev_fd, fd;
  uint32_t flags;
  ARG_I32(0, &dev_fd);
  ARG_I32(1, &fd);
  ARG_U32(2, &flags);
  struct handlefs_fuse_backing_map map = { .fd = fd, .flags = flags, .padding = 0 };
  int id = ioctl(dev_fd, HANDLEFS_FUSE_DEV_IOC_BACKING_OPEN, &map);
  if (id < 0) return throw_errno(env, errno, "ioctl");
  return js_int(env, id);
}

BINDING(fuseBackingClose) {
  GET_ARGS(env, info, 2);
  int32_t dev_fd;
  uint32_t backing_id;
  ARG_I32(0, &dev_fd);
  ARG_U32(1, &backing_id);
  if (ioctl(dev_fd, HANDLEFS_FUSE_DEV_IOC_BACKING_CLOSE, &backing_id) < 0) return throw_errno(env, errno, "ioctl");
  return js_undefined(env);
}

BINDING(fuseDevClone) {
  GET_ARGS(env, info, 1);
  int32_t dev_fd;
  ARG_I32(0, &dev_fd);
  int fd = open("/dev/fuse", O_RDWR | O_CLOEXEC);
  if (fd < 0) return throw_errno(env, errno, "open");
  uint32_t session = (uint32_t)dev_fd;
  if (ioctl(fd, HANDLEFS_FUSE_DEV_IOC_CLONE, &session) < 0) {
    int err = errno;
    close(fd);
    return throw_errno(env, err, "ioctl");
  }
  return js_int(env, fd);
}

BINDING(makedev) {
  GET_ARGS(env, info, 2);
  uint32_t maj, min;
  ARG_U32(0, &maj);
  ARG_U32(1, &min);
  napi_value v;
  NAPI_CALL(env, napi_create_bigint_uint64(env, (uint64_t)makedev(maj, min), &v));
  return v;
}

/* socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC): for fusermount3's _FUSE_COMMFD. Returns [a, b]. */
BINDING(socketpairUnix) {
  (void)info;
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) return throw_errno(env, errno, "socketpair");
  napi_value arr;
  NAPI_CALL(env, napi_create_array_with_length(env, 2, &arr));
  NAPI_CALL(env, napi_set_element(env, arr, 0, js_int(env, sv[0])));
  NAPI_CALL(env, napi_set_element(env, arr, 1, js_int(env, sv[1])));
  return arr;
}

/*
 * Receive one fd sent with SCM_RIGHTS (fusermount3 sends the /dev/fuse fd this way). Blocks until
 * a message arrives; EOF without an fd (the sender exited) gives ECONNRESET. The fd is made
 * close-on-exec (MSG_CMSG_CLOEXEC).
 */
BINDING(recvFd) {
  GET_ARGS(env, info, 1);
  int32_t sock;
  ARG_I32(0, &sock);
  char byte;
  struct iovec iov = { .iov_base = &byte, .iov_len = 1 };
  union {
    struct cmsghdr h;
    char buf[CMSG_SPACE(sizeof(int))];
  } u;
  memset(&u, 0, sizeof(u));
  struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf, .msg_controllen = sizeof(u.buf) };
  ssize_t n;
  do {
    n = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
  } while (n < 0 && errno == EINTR);
  if (n < 0) return throw_errno(env, errno, "recvmsg");
  struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
  if (n == 0 || !c || c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS || c->cmsg_len != CMSG_LEN(sizeof(int))) {
    return throw_errno(env, ECONNRESET, "recvmsg");
  }
  int fd;
  memcpy(&fd, CMSG_DATA(c), sizeof(int));
  return js_int(env, fd);
}
