/* Module init: one property per exported syscall binding, and nothing else. */
#include <node_api.h>

#include "bindings.h"
#include "errors.h"

#define EXPORT(name) { #name, NULL, binding_##name, NULL, NULL, NULL, napi_enumerable, NULL }

static napi_value init(napi_env env, napi_value exports) {
  static const napi_property_descriptor props[] = {
    EXPORT(openat), EXPORT(openatTry), EXPORT(openat2), EXPORT(close), EXPORT(fcntlInt),
    EXPORT(nameToHandleAt), EXPORT(nameToHandleAtTry), EXPORT(openByHandleAt),
    EXPORT(statx), EXPORT(fstatat), EXPORT(fstatfs),
    EXPORT(mkdirat), EXPORT(mknodat), EXPORT(symlinkat), EXPORT(readlinkat), EXPORT(unlinkat),
    EXPORT(renameat2), EXPORT(linkat), EXPORT(fchownat), EXPORT(fchmodat2), EXPORT(utimensat),
    EXPORT(faccessat2),
    EXPORT(ftruncate), EXPORT(fallocate), EXPORT(lseek), EXPORT(copyFileRange), EXPORT(fsync),
    EXPORT(fdatasync), EXPORT(syncfs), EXPORT(pread), EXPORT(pwrite),
    EXPORT(preadAsync), EXPORT(pwriteAsync), EXPORT(fsyncAsync), EXPORT(copyFileRangeAsync),
    EXPORT(fallocateAsync),
    EXPORT(getdents64),
    EXPORT(getxattr), EXPORT(getxattrTry), EXPORT(setxattr), EXPORT(listxattr), EXPORT(removexattr),
    EXPORT(lgetxattr), EXPORT(lgetxattrTry), EXPORT(lsetxattr), EXPORT(llistxattr), EXPORT(lremovexattr),
    EXPORT(fgetxattr), EXPORT(fgetxattrTry), EXPORT(fsetxattr), EXPORT(flistxattr), EXPORT(fremovexattr),
    EXPORT(ofdGetlk), EXPORT(ofdSetlk), EXPORT(ofdSetlkw), EXPORT(flock), EXPORT(flockWait),
    EXPORT(getrlimitNofile), EXPORT(setrlimitNofile), EXPORT(capEffective), EXPORT(setfsuid),
    EXPORT(setfsgid), EXPORT(gettid),
    EXPORT(mount), EXPORT(umount2), EXPORT(fuseBackingOpen), EXPORT(fuseBackingClose),
    EXPORT(makedev), EXPORT(socketpairUnix), EXPORT(recvFd), EXPORT(pollStart), EXPORT(pollStop), EXPORT(preadNowait), EXPORT(pwriteNowait), EXPORT(readNonblock),
    EXPORT(fanotifyInit), EXPORT(fanotifyMark),
  };
  NAPI_CALL(env, napi_define_properties(env, exports, sizeof props / sizeof props[0], props));
  return exports;
}

NAPI_MODULE_INIT() {
  return init(env, exports);
}
