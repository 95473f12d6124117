/* Process state: RLIMIT_NOFILE, capabilities and thread CPU affinity. */
#include <errno.h>
#include <sched.h>
#include <stdbool.h>
#include <string.h>
#include <linux/capability.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "bindings.h"
#include "errors.h"

static int64_t rlim_to_js(rlim_t v) {
  if (v == RLIM_INFINITY) return -1;
  /* Finite limits above 2^53 do not exist in practice (the kernel caps nofile at nr_open). */
  return v > (rlim_t)9007199254740991ULL ? 9007199254740991LL : (int64_t)v;
}

BINDING(getrlimitNofile) {
  (void)info; /* extra arguments are ignored, as in JS */
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) < 0) return throw_errno(env, errno, "getrlimit");
  napi_value arr, soft, hard;
  NAPI_CALL(env, napi_create_array_with_length(env, 2, &arr));
  NAPI_CALL(env, napi_create_int64(env, rlim_to_js(rl.rlim_cur), &soft));
  NAPI_CALL(env, napi_create_int64(env, rlim_to_js(rl.rlim_max), &hard));
  NAPI_CALL(env, napi_set_element(env, arr, 0, soft));
  NAPI_CALL(env, napi_set_element(env, arr, 1, hard));
  return arr;
}

BINDING(setrlimitNofile) {
  GET_ARGS(env, info, 1);
  uint32_t n;
  ARG_U32(0, &n);
  struct rlimit rl = { .rlim_cur = n, .rlim_max = n };
  if (setrlimit(RLIMIT_NOFILE, &rl) < 0) return throw_errno(env, errno, "setrlimit");
  return NULL;
}

/* chrootInto(rootFd): make the directory rootFd this process's root and its cwd (fchdir + chroot(".")). */
BINDING(chrootInto) {
  GET_ARGS(env, info, 1);
  int32_t root;
  ARG_I32(0, &root);
  if (fchdir(root) < 0) return throw_errno(env, errno, "fchdir");
  if (chroot(".") < 0) return throw_errno(env, errno, "chroot");
  return NULL;
}

BINDING(fchdir) {
  GET_ARGS(env, info, 1);
  int32_t fd;
  ARG_I32(0, &fd);
  if (fchdir(fd) < 0) return throw_errno(env, errno, "fchdir");
  return NULL;
}

/*
 * Argument 0 as a capability number and this process's capability sets, for the bindings below;
 * false when it threw (a bad number, or capget failed).
 */
static bool cap_and_sets(napi_env env, napi_value arg, uint32_t *cap, struct __user_cap_header_struct *hdr,
                         struct __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3]) {
  if (!arg_u32(env, arg, 0, cap)) return false;
  if (*cap >= 32 * _LINUX_CAPABILITY_U32S_3) { throw_arg_range(env, 0, "a capability number below 64"); return false; }
  *hdr = (struct __user_cap_header_struct){ .version = _LINUX_CAPABILITY_VERSION_3, .pid = 0 };
  memset(data, 0, sizeof(struct __user_cap_data_struct) * _LINUX_CAPABILITY_U32S_3);
  if (syscall(SYS_capget, hdr, data) < 0) { throw_errno(env, errno, "capget"); return false; }
  return true;
}

/* dropCapability(cap): remove cap from this process's effective, permitted and inheritable sets (no privilege needed). */
BINDING(dropCapability) {
  GET_ARGS(env, info, 1);
  uint32_t cap;
  struct __user_cap_header_struct hdr;
  struct __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3];
  if (!cap_and_sets(env, argv[0], &cap, &hdr, data)) return NULL;
  uint32_t bit = 1u << (cap % 32);
  data[cap / 32].effective &= ~bit;
  data[cap / 32].permitted &= ~bit;
  data[cap / 32].inheritable &= ~bit;
  if (syscall(SYS_capset, &hdr, data) < 0) return throw_errno(env, errno, "capset");
  return NULL;
}

BINDING(capEffective) {
  GET_ARGS(env, info, 1);
  uint32_t cap;
  struct __user_cap_header_struct hdr;
  struct __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3];
  if (!cap_and_sets(env, argv[0], &cap, &hdr, data)) return NULL;
  return js_bool(env, (data[cap / 32].effective >> (cap % 32)) & 1u);
}

/* Bind the calling thread (not the process) to one CPU (a serving thread per CPU), or with -1
 * let it run on every CPU again. */
BINDING(pinThread) {
  GET_ARGS(env, info, 1);
  int32_t cpu;
  ARG_I32(0, &cpu);
  if (cpu < -1 || cpu >= CPU_SETSIZE) { throw_arg_range(env, 0, "-1 <= cpu < CPU_SETSIZE"); return NULL; }
  cpu_set_t set;
  CPU_ZERO(&set);
  if (cpu >= 0) CPU_SET(cpu, &set);
  else for (int i = 0; i < CPU_SETSIZE; i++) CPU_SET(i, &set);
  if (sched_setaffinity(0, sizeof set, &set) < 0) return throw_errno(env, errno, "sched_setaffinity");
  return js_undefined(env);
}
