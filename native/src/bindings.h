/* Every exported binding; addon.c registers one property per entry. */
#ifndef HANDLEFS_BINDINGS_H
#define HANDLEFS_BINDINGS_H

#include <node_api.h>

#define BINDING(name) napi_value binding_##name(napi_env env, napi_callback_info info)

/* fs.c */
BINDING(openat); BINDING(openatTry); BINDING(openat2); BINDING(close); BINDING(fcntlInt);
BINDING(statx); BINDING(fstatfs); BINDING(readlinkat);
/* handle.c */
BINDING(nameToHandleInto); BINDING(throwErrno); BINDING(openByHandleAt);
/* ns.c */
BINDING(mkdirat); BINDING(mknodat); BINDING(symlinkat); BINDING(unlinkat); BINDING(renameat2);
BINDING(linkat); BINDING(fchownat); BINDING(fchmodat2); BINDING(utimensat); BINDING(faccessat2);
/* io.c */
BINDING(ftruncate); BINDING(lseek); BINDING(syncfs); BINDING(pread); BINDING(pwrite);
BINDING(preadAsync); BINDING(pwriteAsync); BINDING(fsyncAsync); BINDING(copyFileRangeAsync);
BINDING(fallocateAsync); BINDING(preadNowait); BINDING(pwriteNowait); BINDING(readNonblock);
/* dir.c */
BINDING(getdents64);
/* xattr.c */
BINDING(getxattrTry); BINDING(setxattr); BINDING(listxattr); BINDING(removexattr);
BINDING(lgetxattr); BINDING(lsetxattr); BINDING(fgetxattrTry);
/* lock.c */
BINDING(ofdGetlk); BINDING(ofdSetlk); BINDING(ofdSetlkw); BINDING(flock); BINDING(flockWait);
/* proc.c */
BINDING(getrlimitNofile); BINDING(setrlimitNofile); BINDING(capEffective); BINDING(chrootInto); BINDING(fchdir); BINDING(dropCapability);
/* dev.c */
BINDING(mount); BINDING(umount2); BINDING(fuseBackingOpen); BINDING(fuseBackingClose); BINDING(fuseDevClone); BINDING(pinThread); BINDING(makedev);
BINDING(socketpairUnix); BINDING(recvFd);
/* poll.c */
BINDING(pollStart); BINDING(pollStop); BINDING(loopHot);
/* notify.c */
BINDING(fanotifyInit); BINDING(fanotifyMark);
/* vhost.c */
BINDING(unixListen); BINDING(unixConnect); BINDING(acceptNonblock); BINDING(recvMsg); BINDING(sendMsg);
BINDING(eventfdCreate); BINDING(eventfdRead); BINDING(eventfdWrite);
BINDING(mapShared); BINDING(unmapShared); BINDING(preadvMappedAsync); BINDING(pwritevMappedAsync);
BINDING(memfdCreate);
/* uring.c */
BINDING(uringProbe); BINDING(uringCreate); BINDING(uringRegister); BINDING(uringFd); BINDING(uringNext); BINDING(uringCommit); BINDING(uringReplySpace); BINDING(uringClose);

#endif
