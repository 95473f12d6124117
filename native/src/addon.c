/* Module init: one property per exported syscall binding, and nothing else. */
#include <node_api.h>

#include "bindings.h"
#include "errors.h"

#define EXPORT(name) { #name, NULL, binding_##name, NULL, NULL, NULL, napi_enumerable, NULL }

static napi_value init(napi_env env, napi_value exports) {
  static const napi_property_descriptor props[] = {
    /* fs.c */
    EXPORT(openat), EXPORT(openatTry), EXPORT(openat2), EXPORT(close), EXPORT(fcntlInt),
    EXPORT(statx), EXPORT(fstatfs), EXPORT(readlinkat),
    /* handle.c */
    EXPORT(nameToHandleInto), EXPORT(throwErrno), EXPORT(openByHandleAt),
    /* ns.c */
    EXPORT(mkdirat), EXPORT(mknodat), EXPORT(symlinkat), EXPORT(unlinkat), EXPORT(renameat2),
    EXPORT(linkat), EXPORT(fchownat), EXPORT(fchmodat2), EXPORT(utimensat), EXPORT(faccessat2),
    /* io.c */
    EXPORT(ftruncate), EXPORT(lseek), EXPORT(syncfs), EXPORT(pread), EXPORT(pwrite),
    EXPORT(preadAsync), EXPORT(pwriteAsync), EXPORT(fsyncAsync), EXPORT(copyFileRangeAsync),
    EXPORT(fallocateAsync), EXPORT(preadNowait), EXPORT(pwriteNowait), EXPORT(readNonblock),
    /* dir.c */
    EXPORT(getdents64),
    /* xattr.c */
    EXPORT(getxattrTry), EXPORT(setxattr), EXPORT(listxattr), EXPORT(removexattr),
    EXPORT(lgetxattr), EXPORT(lsetxattr), EXPORT(fgetxattrTry),
    /* lock.c */
    EXPORT(ofdGetlk), EXPORT(ofdSetlk), EXPORT(ofdSetlkw), EXPORT(flock), EXPORT(flockWait),
    /* proc.c */
    EXPORT(getrlimitNofile), EXPORT(setrlimitNofile), EXPORT(capEffective), EXPORT(chrootInto), EXPORT(fchdir), EXPORT(dropCapability),
    /* dev.c */
    EXPORT(mount), EXPORT(umount2), EXPORT(fuseBackingOpen), EXPORT(fuseBackingClose), EXPORT(fuseDevClone), EXPORT(pinThread), EXPORT(makedev),
    EXPORT(socketpairUnix), EXPORT(recvFd),
    /* poll.c */
    EXPORT(pollStart), EXPORT(pollStop), EXPORT(loopHot),
    /* notify.c */
    EXPORT(fanotifyInit), EXPORT(fanotifyMark),
    /* vhost.c */
    EXPORT(unixListen), EXPORT(unixConnect), EXPORT(acceptNonblock), EXPORT(recvMsg), EXPORT(sendMsg),
    EXPORT(eventfdCreate), EXPORT(eventfdRead), EXPORT(eventfdWrite),
    EXPORT(mapShared), EXPORT(unmapShared), EXPORT(preadvMappedAsync), EXPORT(pwritevMappedAsync),
    EXPORT(memfdCreate),
    EXPORT(uringProbe), EXPORT(uringCreate), EXPORT(uringRegister), EXPORT(uringFd), EXPORT(uringNext), EXPORT(uringCommit), EXPORT(uringReplySpace), EXPORT(uringClose),
  };
  NAPI_CALL(env, napi_define_properties(env, exports, sizeof props / sizeof props[0], props));
  return exports;
}

NAPI_MODULE_INIT() {
  return init(env, exports);
}
