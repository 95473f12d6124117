/*
 * handlefs-sandbox: starts a program (the supervised worker's Node) inside a sandbox. Node is
 * multi-threaded from its first instruction, and unshare(CLONE_NEWNS) refuses a threaded caller,
 * so the sandbox is made here, in a single-threaded process, before Node starts. What goes into the
 * sandbox is decided by the caller (src/sandbox/); this program only carries it out, in order:
 *
 *   --namespace      new mount, pid and network namespaces; the program runs as pid 1 of the new
 *                    pid namespace under a small parent (left in the caller's mount namespace)
 *                    that forwards signals and its exit status;
 *                    a new root (tmpfs, read-only once built) holding only the --ro/--rw paths, at
 *                    the same paths as on the host, and a fresh /proc; pivot_root into it
 *   --ro PATH        (with --namespace) bind PATH read-only; a symlink is copied as a symlink
 *   --rw PATH        (with --namespace) bind PATH read-write
 *   --caps N,N,...   keep only these capabilities (bounding set; root's exec then gets exactly these)
 *   --seccomp kill|log --allow NAME|NR,...
 *                    an allow-list filter: any other syscall kills the process (or is logged)
 *   -- PROGRAM ARG...
 *
 * Errors: one line on stderr, exit 125 (nothing was started).
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <sched.h>
#include <seccomp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#define MAX_BINDS 64
#define NEWROOT "/tmp"

struct bind {
  const char *path;
  int ro;
  int fd; /* O_PATH */
};

static void die(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fputs("handlefs-sandbox: ", stderr);
  vfprintf(stderr, fmt, ap);
  if (errno) fprintf(stderr, ": %s", strerror(errno));
  fputc('\n', stderr);
  va_end(ap);
  _exit(125);
}

/* mkdir -p of every parent of `path` (absolute, below the new root) */
static void make_parents(char *path) {
  for (char *p = path + 1; *p; p++) {
    if (*p != '/') continue;
    *p = '\0';
    if (mkdir(path, 0755) < 0 && errno != EEXIST) die("mkdir %s", path);
    *p = '/';
  }
}

static void bind_into_root(struct bind *b) {
  char target[4096], src[64], link[4096];
  struct stat st;
  if (snprintf(target, sizeof target, "%s%s", NEWROOT, b->path) >= (int)sizeof target) { errno = ENAMETOOLONG; die("%s", b->path); }
  make_parents(target);
  if (fstatat(b->fd, "", &st, AT_EMPTY_PATH) < 0) die("stat %s", b->path);
  if (S_ISLNK(st.st_mode)) {
    ssize_t n = readlinkat(b->fd, "", link, sizeof link - 1);
    if (n < 0) die("readlink %s", b->path);
    link[n] = '\0';
    if (symlink(link, target) < 0 && errno != EEXIST) die("symlink %s", b->path);
    return;
  }
  if (S_ISDIR(st.st_mode)) {
    if (mkdir(target, 0755) < 0 && errno != EEXIST) die("mkdir %s", target);
  } else {
    int fd = open(target, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) die("create %s", target);
    close(fd);
  }
  snprintf(src, sizeof src, "/proc/self/fd/%d", b->fd);
  if (mount(src, target, NULL, MS_BIND | MS_REC, NULL) < 0) die("bind %s", b->path);
  if (b->ro) {
    /* a remount must repeat the flags the kernel locks on the source mount */
    struct statvfs sv;
    unsigned long keep = 0;
    if (statvfs(target, &sv) == 0) {
      if (sv.f_flag & ST_NOSUID) keep |= MS_NOSUID;
      if (sv.f_flag & ST_NODEV) keep |= MS_NODEV;
      if (sv.f_flag & ST_NOEXEC) keep |= MS_NOEXEC;
    }
    if (mount(NULL, target, NULL, MS_BIND | MS_REMOUNT | MS_RDONLY | keep, NULL) < 0) die("read-only %s", b->path);
  }
  close(b->fd);
}

static void build_root(struct bind *binds, int nbinds) {
  /*
   * A slave of the host: mounts the host makes below the share later reach the sandbox (as they
   * reach a virtiofsd client), and nothing made here propagates back.
   */
  if (mount(NULL, "/", NULL, MS_REC | MS_SLAVE, NULL) < 0) die("make / a slave");
  /* opened in this namespace (a bind source must be one of its mounts), before the tmpfs hides any */
  for (int b = 0; b < nbinds; b++) {
    binds[b].fd = open(binds[b].path, O_PATH | O_NOFOLLOW | O_CLOEXEC);
    if (binds[b].fd < 0) die("open %s", binds[b].path);
  }
  if (mount("handlefs-sandbox", NEWROOT, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=1m") < 0) die("tmpfs");
  for (int i = 0; i < nbinds; i++) bind_into_root(&binds[i]);
  if (mkdir(NEWROOT "/proc", 0555) < 0 && errno != EEXIST) die("mkdir /proc");
  if (mount("proc", NEWROOT "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0) die("mount /proc");
  if (chdir(NEWROOT) < 0) die("chdir");
  /* the old root is stacked under the new one, then detached */
  if (syscall(SYS_pivot_root, ".", ".") < 0) die("pivot_root");
  if (umount2(".", MNT_DETACH) < 0) die("detach the old root");
  if (chdir("/") < 0) die("chdir /");
  if (mount(NULL, "/", NULL, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV, NULL) < 0) die("read-only root");
}

static pid_t child_pid;

static void forward(int sig) {
  if (child_pid > 0) kill(child_pid, sig);
}

/* The parent outside the new pid namespace: no capabilities, no fds; forwards signals, then exits as the child did. */
static void wait_for(pid_t pid) {
  child_pid = pid;
  struct __user_cap_header_struct hdr = { .version = _LINUX_CAPABILITY_VERSION_3, .pid = 0 };
  struct __user_cap_data_struct none[_LINUX_CAPABILITY_U32S_3] = { { 0 } };
  syscall(SYS_close_range, 3, ~0U, 0);
  prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
  syscall(SYS_capset, &hdr, none);
  int sigs[] = { SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2 };
  for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++) signal(sigs[i], forward);
  int status;
  while (waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) _exit(125);
  }
  if (WIFEXITED(status)) _exit(WEXITSTATUS(status));
  int sig = WTERMSIG(status);
  signal(sig, SIG_DFL);
  kill(getpid(), sig);
  _exit(128 + sig);
}

static void keep_caps(const char *list) {
  unsigned long long keep = 0;
  char *copy = strdup(list), *save = NULL;
  for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
    char *end;
    unsigned long n = strtoul(t, &end, 10);
    if (*end || n > 63) { errno = 0; die("bad capability number '%s'", t); }
    keep |= 1ULL << n;
  }
  free(copy);
  for (int cap = 0; cap <= 63; cap++) {
    if (keep & (1ULL << cap)) continue;
    if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0 && errno != EINVAL) die("drop capability %d", cap);
  }
  prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
  /* root's exec adds the inheritable set to what the bounding set lets through */
  struct __user_cap_header_struct hdr = { .version = _LINUX_CAPABILITY_VERSION_3, .pid = 0 };
  struct __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3];
  if (syscall(SYS_capget, &hdr, data) < 0) die("capget");
  for (int k = 0; k < _LINUX_CAPABILITY_U32S_3; k++) data[k].inheritable = 0;
  if (syscall(SYS_capset, &hdr, data) < 0) die("capset");
}

static void install_seccomp(const char *mode, const char *allow) {
  uint32_t deny = strcmp(mode, "kill") == 0 ? SCMP_ACT_KILL_PROCESS : strcmp(mode, "log") == 0 ? SCMP_ACT_LOG : 0;
  if (!deny) { errno = 0; die("--seccomp must be kill or log"); }
  scmp_filter_ctx ctx = seccomp_init(deny);
  if (!ctx) die("seccomp_init");
  char *copy = strdup(allow), *save = NULL;
  for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
    char *end;
    long nr = strtol(t, &end, 10);
    /* a name without a number on this architecture resolves to a pseudo number libseccomp skips */
    if (*end) nr = seccomp_syscall_resolve_name(t);
    if (nr == __NR_SCMP_ERROR) { errno = 0; die("unknown syscall '%s'", t); }
    int rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, (int)nr, 0);
    if (rc < 0) { errno = -rc; die("allow syscall %s", t); }
  }
  free(copy);
  int rc = seccomp_load(ctx);
  if (rc < 0) { errno = -rc; die("load the seccomp filter"); }
  seccomp_release(ctx);
}

int main(int argc, char **argv) {
  struct bind binds[MAX_BINDS];
  int nbinds = 0, ns = 0;
  const char *caps = NULL, *seccomp = NULL, *allow = "";
  int i = 1;
  for (; i < argc && strcmp(argv[i], "--") != 0; i++) {
    const char *a = argv[i];
    if (strcmp(a, "--namespace") == 0) { ns = 1; continue; }
    if (i + 1 >= argc) { errno = 0; die("%s needs a value", a); }
    const char *v = argv[++i];
    if (strcmp(a, "--ro") == 0 || strcmp(a, "--rw") == 0) {
      if (nbinds == MAX_BINDS || v[0] != '/') { errno = 0; die("bad bind '%s'", v); }
      binds[nbinds] = (struct bind){ .path = v, .ro = a[3] == 'o', .fd = -1 };
      nbinds++;
    } else if (strcmp(a, "--caps") == 0) caps = v;
    else if (strcmp(a, "--seccomp") == 0) seccomp = v;
    else if (strcmp(a, "--allow") == 0) allow = v;
    else { errno = 0; die("unknown option %s", a); }
  }
  if (i + 1 >= argc || argv[i + 1][0] != '/') { errno = 0; die("usage: handlefs-sandbox [options] -- /PROGRAM [ARG...]"); }
  char **prog = &argv[i + 1];

  if (ns) {
    if (unshare(CLONE_NEWPID) < 0) die("unshare the pid namespace");
    pid_t pid = fork();
    if (pid < 0) die("fork");
    if (pid > 0) wait_for(pid);
    /* pid 1 of the new namespace: dies with the parent */
    if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0) die("PR_SET_PDEATHSIG");
    /*
     * Only this process leaves the mount namespace, and its copy of the host's mounts goes with the
     * old root: a copy of the FUSE mount held on to anywhere would keep the user's umount from
     * ending the connection.
     */
    if (unshare(CLONE_NEWNS | CLONE_NEWNET) < 0) die("unshare");
    build_root(binds, nbinds);
  }
  if (caps) keep_caps(caps);
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) die("PR_SET_NO_NEW_PRIVS");
  if (seccomp) install_seccomp(seccomp, allow);
  execv(prog[0], prog);
  die("exec %s", prog[0]);
}
