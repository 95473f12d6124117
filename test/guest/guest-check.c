/*
 * guest-check: the static helper that the guest's busybox shell calls for what a shell cannot do.
 * Built by tools/lib/guest.ts with `gcc -static -O2`; it also runs on the host (the tests list its
 * cases there).
 *
 *   guest-check list                  the POSIX case names, one a line
 *   guest-check cases DIR [NAME...]   run the cases (all, or the named ones), each in DIR/NAME:
 *                                     one "CASE <name> ok" or "CASE <name> fail <reason>" line each
 *   guest-check tree DIR              one "T ..." line per entry below DIR (see tree_entry); reads
 *                                     every regular file whole (a sparse 5 GiB file takes minutes)
 *   guest-check mktree SPEC DIR       create the tree SPEC describes (format: cmd_mktree, test/helpers/guest.ts)
 *   guest-check handle-save DIR FILE  name_to_handle_at for DIR/probe (created), handle saved to FILE
 *   guest-check handle-open MNT FILE  open_by_handle_at from FILE, read: "HANDLE ok|fail <reason>"
 *   guest-check create|stat|unlink DIR N   N files f<i> in DIR: the bench's metadata loops
 *   guest-check walk DIR EVERY        lstat every entry below DIR, read every EVERY-th regular
 *                                     file: "WALK entries=N files=N read=N errors=N first=<errno>"
 *   guest-check time LABEL CMD [ARG...]    run CMD, print "TIME <label> <ns> <exit status>"
 *
 * Names in output lines are hex, so that any byte can pass the serial console.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <linux/fs.h>
#include <linux/stat.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

/* ------------------------------------------------------------------ failures */

static char why[512];

static const char *ename(int e) {
  const char *n = strerrorname_np(e);
  return n ? n : "E?";
}

/* a case body returns 0, or -1 after one of these set `why` */
#define CHECK(cond)                                                                                \
  do {                                                                                             \
    if (!(cond)) {                                                                                 \
      snprintf(why, sizeof why, "line %d: %s (errno %s)", __LINE__, #cond, ename(errno));          \
      return -1;                                                                                   \
    }                                                                                              \
  } while (0)
/* a call that must fail with errno E (or E2) */
#define FAILS(expr, E, E2)                                                                         \
  do {                                                                                             \
    errno = 0;                                                                                     \
    long r_ = (long)(expr);                                                                        \
    if (r_ != -1 || (errno != (E) && errno != (E2))) {                                             \
      snprintf(why, sizeof why, "line %d: %s: want %s, got %ld %s", __LINE__, #expr, ename(E), r_, \
               r_ == -1 ? ename(errno) : "");                                                      \
      return -1;                                                                                   \
    }                                                                                              \
  } while (0)
#define EQ(a, b)                                                                                   \
  do {                                                                                             \
    long long a_ = (long long)(a), b_ = (long long)(b);                                            \
    if (a_ != b_) {                                                                                \
      snprintf(why, sizeof why, "line %d: %s == %lld, want %lld", __LINE__, #a, a_, b_);           \
      return -1;                                                                                   \
    }                                                                                              \
  } while (0)

/* ------------------------------------------------------------------ small tools */

/* file contents: a 32-bit LCG, each byte the top 8 bits of the next state (lcgBytes() in test/helpers/guest.ts) */
static void pattern(unsigned char *b, size_t n, uint32_t seed) {
  uint32_t x = seed;
  for (size_t i = 0; i < n; i++) {
    x = x * 1103515245u + 12345u;
    b[i] = x >> 24;
  }
}

static int put(const char *name, const void *data, size_t n, mode_t mode) {
  int fd = open(name, O_WRONLY | O_CREAT | O_TRUNC, mode);
  if (fd < 0) return -1;
  ssize_t w = write(fd, data, n);
  close(fd);
  return w == (ssize_t)n ? 0 : -1;
}

static int puts_(const char *name, const char *s) { return put(name, s, strlen(s), 0644); }

/* the whole file into buf (at most cap bytes); its length, or -1 */
static ssize_t get(const char *name, void *buf, size_t cap) {
  int fd = open(name, O_RDONLY);
  if (fd < 0) return -1;
  size_t got = 0;
  for (;;) {
    ssize_t r = read(fd, (char *)buf + got, cap - got);
    if (r < 0) {
      close(fd);
      return -1;
    }
    if (r == 0 || (got += r) == cap) break;
  }
  close(fd);
  return got;
}

static int content_is(const char *name, const char *want) {
  char buf[256];
  ssize_t n = get(name, buf, sizeof buf);
  return n == (ssize_t)strlen(want) && memcmp(buf, want, n) == 0;
}

static int exists(const char *name) {
  struct stat st;
  return lstat(name, &st) == 0;
}

static long long nsec_now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1000000000LL + t.tv_nsec;
}

static void hex(FILE *f, const void *p, size_t n) {
  for (size_t i = 0; i < n; i++) fprintf(f, "%02x", ((const unsigned char *)p)[i]);
}

/* 0 on success; the byte string of a hex string, in place */
static int unhex(char *s, size_t *len) {
  size_t n = strlen(s);
  if (n % 2) return -1;
  for (size_t i = 0; i < n / 2; i++) {
    unsigned v;
    if (sscanf(s + 2 * i, "%2x", &v) != 1) return -1;
    s[i] = (char)v;
  }
  s[n / 2] = 0;
  *len = n / 2;
  return 0;
}

/* fork: the child runs fn and exits with its result; the parent gets the exit status */
static int in_child(int (*fn)(void *), void *arg) {
  pid_t p = fork();
  if (p < 0) return -1;
  if (p == 0) _exit(fn(arg));
  int st;
  if (waitpid(p, &st, 0) < 0) return -1;
  return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* ------------------------------------------------------------------ the cases (cwd: an empty dir) */

static int c_create_write_read(void) {
  CHECK(puts_("f", "hello world") == 0);
  CHECK(content_is("f", "hello world"));
  struct stat st;
  CHECK(stat("f", &st) == 0);
  CHECK(S_ISREG(st.st_mode));
  EQ(st.st_size, 11);
  EQ(st.st_nlink, 1);
  return 0;
}

static int c_pwrite_hole_pread(void) {
  int fd = open("f", O_RDWR | O_CREAT, 0644);
  CHECK(fd >= 0);
  EQ(pwrite(fd, "abc", 3, 0), 3);
  EQ(pwrite(fd, "xyz", 3, 10000), 3);
  struct stat st;
  CHECK(fstat(fd, &st) == 0);
  EQ(st.st_size, 10003);
  char b[20], want[13] = {0};
  memcpy(want + 10, "xyz", 3);
  EQ(pread(fd, b, 20, 9990), 13);
  CHECK(memcmp(b, want, 13) == 0);
  EQ(pread(fd, b, 4, 10003), 0);
  close(fd);
  return 0;
}

static int c_large_4mib_roundtrip(void) {
  size_t n = 4 << 20;
  unsigned char *a = malloc(n), *b = malloc(n + 1);
  CHECK(a && b);
  pattern(a, n, 7);
  CHECK(put("big", a, n, 0644) == 0);
  EQ(get("big", b, n + 1), n);
  CHECK(memcmp(a, b, n) == 0);
  free(a);
  free(b);
  return 0;
}

static int c_append_after_seek(void) {
  CHECK(puts_("log", "abc") == 0);
  int fd = open("log", O_WRONLY | O_APPEND);
  CHECK(fd >= 0);
  EQ(pwrite(fd, "def", 3, 0), 3);
  EQ(lseek(fd, 0, SEEK_SET), 0);
  EQ(write(fd, "ghi", 3), 3);
  EQ(lseek(fd, 0, SEEK_CUR), 9);
  close(fd);
  CHECK(content_is("log", "abcdefghi"));
  return 0;
}

static int c_truncate_grow_shrink(void) {
  char b[16];
  CHECK(puts_("f", "abcdef") == 0);
  CHECK(truncate("f", 3) == 0);
  CHECK(content_is("f", "abc"));
  CHECK(truncate("f", 8) == 0);
  EQ(get("f", b, sizeof b), 8);
  CHECK(memcmp(b, "abc\0\0\0\0\0", 8) == 0);
  int fd = open("f", O_RDWR);
  CHECK(fd >= 0);
  CHECK(ftruncate(fd, 1 << 20) == 0);
  struct stat st;
  CHECK(fstat(fd, &st) == 0);
  EQ(st.st_size, 1 << 20);
  CHECK(ftruncate(fd, 0) == 0);
  close(fd);
  CHECK(stat("f", &st) == 0);
  EQ(st.st_size, 0);
  return 0;
}

static int c_sparse_seek_data_hole(void) {
  int fd = open("sparse", O_RDWR | O_CREAT, 0644);
  CHECK(fd >= 0);
  off_t four = 1LL << 32, off = 5LL << 30;
  char b[4096];
  EQ(pwrite(fd, "ABCD", 4, four - 2), 4);
  EQ(pread(fd, b, 4, four - 2), 4);
  CHECK(memcmp(b, "ABCD", 4) == 0);
  memset(b, 'x', sizeof b);
  EQ(pwrite(fd, b, 4096, off), 4096);
  struct stat st;
  CHECK(fstat(fd, &st) == 0);
  EQ(st.st_size, off + 4096);
  CHECK(st.st_blocks < 1024);
  EQ(lseek(fd, 0, SEEK_DATA), four - 4096);
  EQ(lseek(fd, 0, SEEK_HOLE), 0);
  EQ(lseek(fd, four + 4096, SEEK_DATA), off);
  EQ(lseek(fd, off, SEEK_HOLE), off + 4096);
  FAILS(lseek(fd, st.st_size, SEEK_DATA), ENXIO, ENXIO);
  char z[16] = {0}, r[16];
  EQ(pread(fd, r, 16, 3LL << 30), 16);
  CHECK(memcmp(r, z, 16) == 0);
  close(fd);
  return 0;
}

static int c_fallocate_punch_hole(void) {
  int fd = open("f", O_RDWR | O_CREAT, 0644);
  CHECK(fd >= 0);
  CHECK(posix_fallocate(fd, 0, 1 << 20) == 0);
  struct stat st, st2;
  CHECK(fstat(fd, &st) == 0);
  EQ(st.st_size, 1 << 20);
  CHECK(st.st_blocks >= (1 << 20) / 512);
  static char y[1 << 20];
  memset(y, 'y', sizeof y);
  EQ(pwrite(fd, y, sizeof y, 0), sizeof y);
  CHECK(fallocate(fd, FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE, 65536, 65536) == 0);
  CHECK(fstat(fd, &st2) == 0);
  EQ(st2.st_size, 1 << 20);
  EQ(st2.st_blocks, st.st_blocks - 65536 / 512);
  EQ(lseek(fd, 0, SEEK_HOLE), 65536);
  static char z[65536], r[65536];
  EQ(pread(fd, r, sizeof r, 65536), sizeof r);
  CHECK(memcmp(r, z, sizeof r) == 0);
  EQ(pread(fd, r, 4, 131072), 4);
  CHECK(memcmp(r, "yyyy", 4) == 0);
  close(fd);
  return 0;
}

static int c_copy_file_range(void) {
  size_t n = 300000;
  unsigned char *data = malloc(n), *back = malloc(n);
  CHECK(data && back);
  pattern(data, n, 3);
  CHECK(put("src", data, n, 0644) == 0);
  CHECK(puts_("dst", "HEAD") == 0);
  int a = open("src", O_RDONLY), b = open("dst", O_WRONLY);
  CHECK(a >= 0 && b >= 0);
  size_t total = 0;
  while (total < 200000) {
    off_t in = 10 + total, out = 4 + total;
    ssize_t r = copy_file_range(a, &in, b, &out, 200000 - total, 0);
    CHECK(r >= 0);
    if (r == 0) break;
    total += r;
  }
  close(a);
  close(b);
  EQ(total, 200000);
  EQ(get("dst", back, n), 200004);
  CHECK(memcmp(back, "HEAD", 4) == 0);
  CHECK(memcmp(back + 4, data + 10, 200000) == 0);
  free(data);
  free(back);
  return 0;
}

static int c_mmap_shared_write(void) {
  static char zero[8192], b[8192];
  CHECK(put("m", zero, sizeof zero, 0644) == 0);
  int fd = open("m", O_RDWR);
  CHECK(fd >= 0);
  char *m = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  CHECK(m != MAP_FAILED);
  memcpy(m, "hello", 5);
  memcpy(m + 4096, "world", 5);
  CHECK(msync(m, 8192, MS_SYNC) == 0);
  EQ(pwrite(fd, "XYZ", 3, 100), 3);
  CHECK(memcmp(m + 100, "XYZ", 3) == 0);
  munmap(m, 8192);
  close(fd);
  EQ(get("m", b, sizeof b), 8192);
  CHECK(memcmp(b, "hello", 5) == 0 && memcmp(b + 4096, "world", 5) == 0 && memcmp(b + 100, "XYZ", 3) == 0);
  return 0;
}

static int c_mmap_private_read(void) {
  static unsigned char d[20000];
  pattern(d, sizeof d, 5);
  CHECK(put("m", d, sizeof d, 0644) == 0);
  int fd = open("m", O_RDONLY);
  CHECK(fd >= 0);
  unsigned char *m = mmap(NULL, sizeof d, PROT_READ, MAP_PRIVATE, fd, 0);
  CHECK(m != MAP_FAILED);
  CHECK(memcmp(m, d, sizeof d) == 0);
  munmap(m, sizeof d);
  close(fd);
  return 0;
}

static int c_fsync_file_and_dir(void) {
  int fd = open("f", O_RDWR | O_CREAT, 0644);
  CHECK(fd >= 0);
  EQ(write(fd, "data", 4), 4);
  CHECK(fsync(fd) == 0);
  CHECK(fdatasync(fd) == 0);
  close(fd);
  fd = open(".", O_RDONLY | O_DIRECTORY);
  CHECK(fd >= 0);
  CHECK(fsync(fd) == 0);
  CHECK(fdatasync(fd) == 0);
  close(fd);
  return 0;
}

static int count_entries(const char *dir) {
  DIR *d = opendir(dir);
  if (!d) return -1;
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d)))
    if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) n++;
  closedir(d);
  return n;
}

static int c_unlink_open_file(void) {
  int fd = open("f", O_RDWR | O_CREAT, 0644);
  CHECK(fd >= 0);
  EQ(write(fd, "abc", 3), 3);
  CHECK(unlink("f") == 0);
  struct stat st;
  FAILS(stat("f", &st), ENOENT, ENOENT);
  EQ(count_entries("."), 0);
  EQ(pwrite(fd, "def", 3, 3), 3);
  char b[6];
  EQ(pread(fd, b, 6, 0), 6);
  CHECK(memcmp(b, "abcdef", 6) == 0);
  CHECK(fstat(fd, &st) == 0);
  EQ(st.st_nlink, 0);
  EQ(st.st_size, 6);
  CHECK(ftruncate(fd, 2) == 0);
  CHECK(fstat(fd, &st) == 0);
  EQ(st.st_size, 2);
  close(fd);
  return 0;
}

static int c_rename_over_open_file(void) {
  CHECK(puts_("a", "old") == 0);
  CHECK(puts_("b", "new") == 0);
  int fd = open("a", O_RDONLY);
  CHECK(fd >= 0);
  CHECK(rename("b", "a") == 0);
  char b[3];
  EQ(pread(fd, b, 3, 0), 3);
  CHECK(memcmp(b, "old", 3) == 0);
  struct stat st;
  CHECK(fstat(fd, &st) == 0);
  EQ(st.st_nlink, 0);
  close(fd);
  CHECK(content_is("a", "new"));
  return 0;
}

static int c_o_excl_and_dangling_symlink(void) {
  int fd = open("f", O_RDWR | O_CREAT | O_EXCL, 0600);
  CHECK(fd >= 0);
  close(fd);
  FAILS(open("f", O_RDWR | O_CREAT | O_EXCL, 0600), EEXIST, EEXIST);
  CHECK(symlink("nowhere", "dangling") == 0);
  FAILS(open("dangling", O_RDWR | O_CREAT | O_EXCL, 0600), EEXIST, EEXIST);
  CHECK(!exists("nowhere"));
  fd = open("dangling", O_WRONLY | O_CREAT, 0600);
  CHECK(fd >= 0);
  close(fd);
  struct stat st;
  CHECK(lstat("nowhere", &st) == 0 && S_ISREG(st.st_mode));
  return 0;
}

static int c_o_trunc(void) {
  struct stat a, b;
  CHECK(puts_("f", "some content") == 0);
  CHECK(stat("f", &a) == 0);
  int fd = open("f", O_WRONLY | O_TRUNC);
  CHECK(fd >= 0);
  CHECK(fstat(fd, &b) == 0);
  EQ(b.st_size, 0);
  close(fd);
  CHECK(stat("f", &b) == 0);
  EQ(b.st_size, 0);
  EQ(b.st_ino, a.st_ino);
  return 0;
}

static int c_open_flag_errors(void) {
  CHECK(puts_("f", "x") == 0);
  CHECK(symlink("f", "l") == 0);
  CHECK(mkdir("d", 0755) == 0);
  struct stat st;
  FAILS(open("f", O_RDONLY | O_DIRECTORY), ENOTDIR, ENOTDIR);
  FAILS(open("l", O_RDONLY | O_NOFOLLOW), ELOOP, ELOOP);
  FAILS(open("d", O_WRONLY), EISDIR, EISDIR);
  FAILS(stat("f/x", &st), ENOTDIR, ENOTDIR);
  FAILS(open("missing", O_RDONLY), ENOENT, ENOENT);
  return 0;
}

static int c_access_modes(void) {
  CHECK(puts_("f", "x") == 0);
  CHECK(chmod("f", 0644) == 0);
  CHECK(access("f", F_OK) == 0);
  CHECK(access("f", R_OK | W_OK) == 0);
  FAILS(access("f", X_OK), EACCES, EACCES);
  CHECK(chmod("f", 0755) == 0);
  CHECK(access("f", X_OK) == 0);
  FAILS(access("missing", F_OK), ENOENT, ENOENT);
  return 0;
}

static int c_mkdir_rmdir_errors(void) {
  struct stat st;
  CHECK(mkdir("d", 0755) == 0);
  CHECK(stat("d", &st) == 0 && S_ISDIR(st.st_mode));
  EQ(st.st_mode & 07777, 0755);
  FAILS(mkdir("d", 0755), EEXIST, EEXIST);
  CHECK(puts_("d/f", "x") == 0);
  FAILS(rmdir("d"), ENOTEMPTY, EEXIST);
  FAILS(rmdir("d/f"), ENOTDIR, ENOTDIR);
  FAILS(rmdir("missing"), ENOENT, ENOENT);
  CHECK(unlink("d/f") == 0);
  CHECK(rmdir("d") == 0);
  FAILS(stat("d", &st), ENOENT, ENOENT);
  return 0;
}

static int c_dir_nlink(void) {
  struct stat st;
  CHECK(mkdir("d", 0755) == 0);
  CHECK(stat("d", &st) == 0);
  EQ(st.st_nlink, 2);
  CHECK(mkdir("d/a", 0755) == 0 && mkdir("d/b", 0755) == 0 && puts_("d/f", "") == 0);
  CHECK(stat("d", &st) == 0);
  EQ(st.st_nlink, 4);
  CHECK(rmdir("d/a") == 0);
  CHECK(stat("d", &st) == 0);
  EQ(st.st_nlink, 3);
  return 0;
}

static int c_unlink_errors(void) {
  FAILS(unlink("missing"), ENOENT, ENOENT);
  CHECK(mkdir("d", 0755) == 0);
  FAILS(unlink("d"), EISDIR, EISDIR);
  CHECK(puts_("f", "") == 0);
  CHECK(unlink("f") == 0);
  EQ(count_entries("."), 1);
  return 0;
}

static int c_readdir_types(void) {
  char n[32];
  for (int i = 0; i < 40; i++) {
    snprintf(n, sizeof n, "file%d", i);
    CHECK(puts_(n, "") == 0);
  }
  CHECK(mkdir("sub", 0755) == 0);
  CHECK(symlink("file0", "link") == 0);
  int files = 0, dirs = 0, links = 0, dots = 0, other = 0;
  DIR *d = opendir(".");
  CHECK(d);
  struct dirent *e;
  while ((e = readdir(d))) {
    if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) dots++;
    else if (e->d_type == DT_REG && !strncmp(e->d_name, "file", 4)) files++;
    else if (e->d_type == DT_DIR && !strcmp(e->d_name, "sub")) dirs++;
    else if (e->d_type == DT_LNK && !strcmp(e->d_name, "link")) links++;
    else other++;
  }
  closedir(d);
  EQ(files, 40);
  EQ(dirs, 1);
  EQ(links, 1);
  EQ(dots, 2);
  EQ(other, 0);
  return 0;
}

/* long names: more than one getdents buffer; every telldir position resumes at its entry */
static int c_telldir_seekdir(void) {
  enum { N = 600 };
  char n[80];
  for (int i = 0; i < N; i++) {
    snprintf(n, sizeof n, "entry-%04d-%040d", i, 0);
    CHECK(puts_(n, "") == 0);
  }
  static long pos[N + 2];
  static char names[N + 2][NAME_MAX + 1];
  DIR *d = opendir(".");
  CHECK(d);
  int k = 0;
  for (;;) {
    long p = telldir(d);
    struct dirent *e = readdir(d);
    if (!e) break;
    CHECK(k < N + 2);
    pos[k] = p;
    snprintf(names[k++], NAME_MAX + 1, "%s", e->d_name);
  }
  EQ(k, N + 2);
  /* every 37th position and the last one */
  for (int i = 0; i < k; i = i == k - 1 ? k : i + 37 < k ? i + 37 : k - 1) {
    seekdir(d, pos[i]);
    for (int j = i; j < k; j++) {
      struct dirent *e = readdir(d);
      CHECK(e && !strcmp(e->d_name, names[j]));
    }
    CHECK(readdir(d) == NULL);
  }
  rewinddir(d);
  struct dirent *e = readdir(d);
  CHECK(e && !strcmp(e->d_name, names[0]));
  closedir(d);
  return 0;
}

static int c_readdir_5000_entries(void) {
  enum { N = 5000 };
  char n[32];
  CHECK(mkdir("many", 0755) == 0);
  for (int i = 0; i < N; i++) {
    snprintf(n, sizeof n, "many/n%d", i);
    int fd = open(n, O_WRONLY | O_CREAT, 0644);
    CHECK(fd >= 0);
    close(fd);
  }
  static unsigned char seen[N];
  DIR *d = opendir("many");
  CHECK(d);
  struct dirent *e;
  int total = 0;
  while ((e = readdir(d))) {
    if (e->d_name[0] == '.') continue;
    int i = atoi(e->d_name + 1);
    CHECK(e->d_name[0] == 'n' && i >= 0 && i < N && !seen[i]);
    seen[i] = 1;
    total++;
  }
  closedir(d);
  EQ(total, N);
  return 0;
}

static int c_non_utf8_names(void) {
  const char *a = "caf\xe9-\xff\xfe", *b = "\x80\x81-renamed";
  CHECK(puts_(a, "bytes") == 0);
  DIR *d = opendir(".");
  CHECK(d);
  struct dirent *e;
  int found = 0;
  while ((e = readdir(d))) found += !strcmp(e->d_name, a);
  closedir(d);
  EQ(found, 1);
  CHECK(content_is(a, "bytes"));
  CHECK(rename(a, b) == 0);
  CHECK(!exists(a) && content_is(b, "bytes"));
  CHECK(unlink(b) == 0);
  EQ(count_entries("."), 0);
  return 0;
}

static int c_name_length_limit(void) {
  char n[258];
  memset(n, 'a', 255);
  n[255] = 0;
  CHECK(puts_(n, "x") == 0);
  CHECK(content_is(n, "x"));
  n[255] = 'a';
  n[256] = 0;
  FAILS(open(n, O_WRONLY | O_CREAT, 0644), ENAMETOOLONG, ENAMETOOLONG);
  return 0;
}

static int c_rename_replaces_file(void) {
  struct stat a, b;
  CHECK(puts_("a", "A") == 0 && puts_("b", "B") == 0);
  CHECK(stat("a", &a) == 0);
  CHECK(rename("a", "b") == 0);
  CHECK(!exists("a") && content_is("b", "A"));
  CHECK(stat("b", &b) == 0);
  EQ(b.st_ino, a.st_ino);
  return 0;
}

static int c_rename_across_dirs(void) {
  CHECK(mkdir("x", 0755) == 0 && mkdir("y", 0755) == 0 && puts_("x/f", "data") == 0);
  CHECK(rename("x/f", "y/g") == 0);
  CHECK(!exists("x/f") && content_is("y/g", "data"));
  CHECK(rename("x", "y/x") == 0);
  struct stat st;
  CHECK(stat("y/x", &st) == 0 && S_ISDIR(st.st_mode));
  return 0;
}

static int c_rename_dir_cases(void) {
  struct stat st;
  CHECK(mkdir("a", 0755) == 0 && mkdir("b", 0755) == 0 && puts_("a/f", "1") == 0);
  CHECK(rename("a", "b") == 0);
  CHECK(!exists("a") && content_is("b/f", "1"));
  CHECK(mkdir("c", 0755) == 0);
  FAILS(rename("c", "b"), ENOTEMPTY, EEXIST);
  CHECK(puts_("file", "") == 0);
  FAILS(rename("file", "c"), EISDIR, EISDIR);
  FAILS(rename("c", "file"), ENOTDIR, ENOTDIR);
  FAILS(rename("b", "b/inside"), EINVAL, EINVAL);
  CHECK(stat("c", &st) == 0 && S_ISDIR(st.st_mode));
  return 0;
}

static int c_rename_noreplace(void) {
  CHECK(puts_("a", "A") == 0 && puts_("b", "B") == 0);
  FAILS(renameat2(AT_FDCWD, "a", AT_FDCWD, "b", RENAME_NOREPLACE), EEXIST, EEXIST);
  CHECK(content_is("a", "A") && content_is("b", "B"));
  CHECK(renameat2(AT_FDCWD, "a", AT_FDCWD, "c", RENAME_NOREPLACE) == 0);
  CHECK(!exists("a") && content_is("c", "A"));
  return 0;
}

static int c_rename_exchange(void) {
  struct stat st;
  CHECK(puts_("f", "F") == 0 && mkdir("d", 0755) == 0 && puts_("d/inner", "I") == 0);
  CHECK(renameat2(AT_FDCWD, "f", AT_FDCWD, "d", RENAME_EXCHANGE) == 0);
  CHECK(stat("f", &st) == 0 && S_ISDIR(st.st_mode));
  CHECK(content_is("f/inner", "I") && content_is("d", "F"));
  FAILS(renameat2(AT_FDCWD, "d", AT_FDCWD, "missing", RENAME_EXCHANGE), ENOENT, ENOENT);
  return 0;
}

static int c_hard_links(void) {
  struct stat a, b;
  CHECK(puts_("a", "shared") == 0);
  CHECK(link("a", "b") == 0);
  CHECK(stat("a", &a) == 0 && stat("b", &b) == 0);
  EQ(a.st_ino, b.st_ino);
  EQ(b.st_nlink, 2);
  CHECK(puts_("b", "changed") == 0);
  CHECK(content_is("a", "changed"));
  CHECK(unlink("a") == 0);
  CHECK(stat("b", &b) == 0);
  EQ(b.st_nlink, 1);
  CHECK(mkdir("d", 0755) == 0);
  FAILS(link("d", "d2"), EPERM, EPERM);
  return 0;
}

static int c_symlinks(void) {
  char b[PATH_MAX];
  struct stat st;
  CHECK(puts_("target", "12345") == 0);
  CHECK(symlink("target", "l") == 0);
  EQ(readlink("l", b, sizeof b), 6);
  CHECK(!memcmp(b, "target", 6));
  CHECK(stat("l", &st) == 0 && S_ISREG(st.st_mode) && st.st_size == 5);
  CHECK(lstat("l", &st) == 0 && S_ISLNK(st.st_mode) && st.st_size == 6);
  CHECK(symlink("nowhere", "dangling") == 0);
  CHECK(lstat("dangling", &st) == 0);
  FAILS(stat("dangling", &st), ENOENT, ENOENT);
  const char *outside = "../../../../etc/passwd", *abs = "/etc/shadow";
  CHECK(symlink(outside, "out1") == 0 && symlink(abs, "out2") == 0);
  EQ(readlink("out1", b, sizeof b), strlen(outside));
  CHECK(!memcmp(b, outside, strlen(outside)));
  EQ(readlink("out2", b, sizeof b), strlen(abs));
  CHECK(!memcmp(b, abs, strlen(abs)));
  return 0;
}

static int c_chmod_bits(void) {
  struct stat st;
  CHECK(puts_("f", "") == 0 && mkdir("d", 0755) == 0);
  CHECK(chmod("f", 0640) == 0 && stat("f", &st) == 0);
  EQ(st.st_mode & 07777, 0640);
  CHECK(chmod("f", 02755) == 0 && stat("f", &st) == 0);
  EQ(st.st_mode & 07777, 02755);
  CHECK(chmod("d", 01777) == 0 && stat("d", &st) == 0);
  EQ(st.st_mode & 07777, 01777);
  return 0;
}

static int c_ctime_mtime_updates(void) {
  struct stat a, b, c;
  CHECK(puts_("f", "x") == 0);
  struct timespec old[2] = {{1000000000, 0}, {1000000000, 0}};
  CHECK(utimensat(AT_FDCWD, "f", old, 0) == 0);
  CHECK(stat("f", &a) == 0);
  CHECK(chmod("f", 0600) == 0 && stat("f", &b) == 0);
  CHECK(b.st_ctim.tv_sec > a.st_mtim.tv_sec);
  EQ(b.st_mtim.tv_sec, 1000000000);
  int fd = open("f", O_WRONLY);
  CHECK(fd >= 0);
  EQ(write(fd, "y", 1), 1);
  close(fd);
  CHECK(stat("f", &c) == 0);
  CHECK(c.st_mtim.tv_sec > 1000000000);
  return 0;
}

static int c_chown(void) {
  struct stat st;
  CHECK(puts_("f", "") == 0);
  CHECK(chown("f", getuid(), getgid()) == 0);
  CHECK(chmod("f", 04755) == 0);
  CHECK(chown("f", 4321, 8765) == 0 && stat("f", &st) == 0);
  EQ(st.st_uid, 4321);
  EQ(st.st_gid, 8765);
  EQ(st.st_mode & 04000, 0);
  CHECK(symlink("f", "l") == 0 && lchown("l", 1111, 2222) == 0 && lstat("l", &st) == 0);
  EQ(st.st_uid, 1111);
  CHECK(stat("f", &st) == 0);
  EQ(st.st_uid, 4321);
  return 0;
}

static int c_utimensat_nsec(void) {
  struct stat st;
  CHECK(puts_("f", "") == 0);
  struct timespec t[2] = {{1234567890, 123456789}, {1500000000, 987654321}};
  CHECK(utimensat(AT_FDCWD, "f", t, 0) == 0 && stat("f", &st) == 0);
  EQ(st.st_atim.tv_sec, 1234567890);
  EQ(st.st_atim.tv_nsec, 123456789);
  EQ(st.st_mtim.tv_sec, 1500000000);
  EQ(st.st_mtim.tv_nsec, 987654321);
  struct timespec omit[2] = {{0, UTIME_OMIT}, {1600000000, 5}};
  CHECK(utimensat(AT_FDCWD, "f", omit, 0) == 0 && stat("f", &st) == 0);
  EQ(st.st_atim.tv_nsec, 123456789);
  EQ(st.st_mtim.tv_sec, 1600000000);
  EQ(st.st_mtim.tv_nsec, 5);
  struct timespec now[2] = {{0, UTIME_NOW}, {0, UTIME_OMIT}};
  CHECK(utimensat(AT_FDCWD, "f", now, 0) == 0 && stat("f", &st) == 0);
  CHECK(st.st_atim.tv_sec > 1600000000);
  EQ(st.st_mtim.tv_sec, 1600000000);
  CHECK(symlink("f", "l") == 0);
  struct timespec lt[2] = {{1100000000, 7}, {1100000000, 9}};
  CHECK(utimensat(AT_FDCWD, "l", lt, AT_SYMLINK_NOFOLLOW) == 0 && lstat("l", &st) == 0);
  EQ(st.st_mtim.tv_sec, 1100000000);
  EQ(st.st_mtim.tv_nsec, 9);
  CHECK(stat("f", &st) == 0);
  EQ(st.st_mtim.tv_sec, 1600000000);
  return 0;
}

static int c_xattr_user(void) {
  char b[256];
  CHECK(puts_("f", "") == 0);
  FAILS(getxattr("f", "user.k", b, sizeof b), ENODATA, ENODATA);
  CHECK(setxattr("f", "user.k", "v1", 2, 0) == 0);
  CHECK(setxattr("f", "user.bin", "\0\1\2", 3, 0) == 0);
  EQ(getxattr("f", "user.k", b, sizeof b), 2);
  CHECK(!memcmp(b, "v1", 2));
  EQ(getxattr("f", "user.bin", NULL, 0), 3);
  FAILS(setxattr("f", "user.k", "v2", 2, XATTR_CREATE), EEXIST, EEXIST);
  FAILS(setxattr("f", "user.new", "v", 1, XATTR_REPLACE), ENODATA, ENODATA);
  CHECK(setxattr("f", "user.k", "v22", 3, XATTR_REPLACE) == 0);
  EQ(getxattr("f", "user.k", b, sizeof b), 3);
  ssize_t n = listxattr("f", b, sizeof b);
  CHECK(n > 0);
  int k = 0, bin = 0;
  for (char *p = b; p < b + n; p += strlen(p) + 1) k += !strcmp(p, "user.k"), bin += !strcmp(p, "user.bin");
  CHECK(k == 1 && bin == 1);
  CHECK(removexattr("f", "user.k") == 0);
  FAILS(removexattr("f", "user.k"), ENODATA, ENODATA);
  FAILS(getxattr("f", "user.k", b, sizeof b), ENODATA, ENODATA);
  CHECK(mkdir("d", 0755) == 0 && setxattr("d", "user.dir", "x", 1, 0) == 0);
  EQ(getxattr("d", "user.dir", b, sizeof b), 1);
  CHECK(symlink("f", "l") == 0);
  FAILS(lsetxattr("l", "user.k", "v", 1, 0), EPERM, EPERM);
  return 0;
}

static int c_statvfs(void) {
  struct statvfs v;
  CHECK(statvfs(".", &v) == 0);
  CHECK(v.f_bsize > 0 && v.f_blocks > 0 && v.f_bfree <= v.f_blocks && v.f_namemax >= 255);
  return 0;
}

/* a child's lock attempts: flock or F_SETLK; exit 0 = got it, 1 = EWOULDBLOCK/EAGAIN/EACCES */
struct lockarg {
  int posix;
  off_t start, len;
};

static int try_lock(void *p) {
  struct lockarg *a = p;
  int fd = open("lock", O_RDWR);
  if (fd < 0) return 2;
  if (!a->posix) return flock(fd, LOCK_EX | LOCK_NB) == 0 ? 0 : errno == EWOULDBLOCK ? 1 : 2;
  struct flock l = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = a->start, .l_len = a->len};
  return fcntl(fd, F_SETLK, &l) == 0 ? 0 : (errno == EAGAIN || errno == EACCES) ? 1 : 2;
}

static int c_flock_contended(void) {
  CHECK(puts_("lock", "") == 0);
  int fd = open("lock", O_RDWR);
  CHECK(fd >= 0 && flock(fd, LOCK_EX) == 0);
  struct lockarg a = {0};
  EQ(in_child(try_lock, &a), 1);
  CHECK(flock(fd, LOCK_UN) == 0);
  EQ(in_child(try_lock, &a), 0);
  close(fd);
  return 0;
}

static int c_posix_locks_contended(void) {
  CHECK(puts_("lock", "") == 0);
  int fd = open("lock", O_RDWR);
  CHECK(fd >= 0);
  struct flock l = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 10, .l_len = 10};
  CHECK(fcntl(fd, F_SETLK, &l) == 0);
  struct lockarg overlap = {1, 15, 10}, apart = {1, 20, 5};
  EQ(in_child(try_lock, &overlap), 1);
  EQ(in_child(try_lock, &apart), 0);
  l.l_type = F_UNLCK;
  CHECK(fcntl(fd, F_SETLK, &l) == 0);
  EQ(in_child(try_lock, &overlap), 0);
  close(fd);
  return 0;
}

static int c_ofd_locks(void) {
  CHECK(puts_("lock", "") == 0);
  int a = open("lock", O_RDWR), b = open("lock", O_RDWR);
  CHECK(a >= 0 && b >= 0);
  struct flock l = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 100};
  CHECK(fcntl(a, F_OFD_SETLK, &l) == 0);
  struct flock m = l;
  FAILS(fcntl(b, F_OFD_SETLK, &m), EAGAIN, EACCES);
  m = l;
  CHECK(fcntl(b, F_OFD_GETLK, &m) == 0);
  EQ(m.l_type, F_WRLCK);
  EQ(m.l_pid, -1);
  close(a);
  m = l;
  CHECK(fcntl(b, F_OFD_SETLK, &m) == 0);
  close(b);
  return 0;
}

static int c_special_files(void) {
  struct stat st;
  CHECK(mkfifo("fifo", 0644) == 0 && lstat("fifo", &st) == 0 && S_ISFIFO(st.st_mode));
  int s = socket(AF_UNIX, SOCK_STREAM, 0);
  CHECK(s >= 0);
  struct sockaddr_un a = {.sun_family = AF_UNIX};
  strcpy(a.sun_path, "sock");
  CHECK(bind(s, (struct sockaddr *)&a, sizeof a) == 0);
  close(s);
  CHECK(lstat("sock", &st) == 0 && S_ISSOCK(st.st_mode));
  CHECK(mknod("reg", S_IFREG | 0644, 0) == 0 && lstat("reg", &st) == 0 && S_ISREG(st.st_mode));
  CHECK(mknod("chr", S_IFCHR | 0600, makedev(1, 3)) == 0 && lstat("chr", &st) == 0 && S_ISCHR(st.st_mode));
  EQ(st.st_rdev, makedev(1, 3));
  return 0;
}

static int c_o_tmpfile_linkat(void) {
  int fd = open(".", O_TMPFILE | O_RDWR, 0600);
  CHECK(fd >= 0);
  EQ(count_entries("."), 0);
  EQ(write(fd, "tmp data", 8), 8);
  struct stat st;
  CHECK(fstat(fd, &st) == 0);
  EQ(st.st_nlink, 0);
  char p[64];
  snprintf(p, sizeof p, "/proc/self/fd/%d", fd);
  CHECK(linkat(AT_FDCWD, p, AT_FDCWD, "linked", AT_SYMLINK_FOLLOW) == 0);
  close(fd);
  CHECK(content_is("linked", "tmp data"));
  CHECK(stat("linked", &st) == 0);
  EQ(st.st_nlink, 1);
  return 0;
}

static int c_statx_fields(void) {
  CHECK(puts_("f", "12345") == 0);
  struct statx sx;
  struct stat st;
  CHECK(statx(AT_FDCWD, "f", AT_SYMLINK_NOFOLLOW, STATX_BASIC_STATS, &sx) == 0);
  CHECK(stat("f", &st) == 0);
  CHECK((sx.stx_mask & STATX_BASIC_STATS) == STATX_BASIC_STATS);
  EQ(sx.stx_size, 5);
  EQ(sx.stx_ino, st.st_ino);
  EQ(sx.stx_mode, st.st_mode);
  EQ(sx.stx_mtime.tv_nsec, st.st_mtim.tv_nsec);
  return 0;
}

static int c_drop_caches_reread(void) {
  static unsigned char a[300000], b[300001];
  pattern(a, sizeof a, 11);
  CHECK(put("f", a, sizeof a, 0644) == 0);
  CHECK(mkdir("d", 0700) == 0);
  sync();
  int fd = open("/proc/sys/vm/drop_caches", O_WRONLY);
  CHECK(fd >= 0);
  EQ(write(fd, "3", 1), 1);
  close(fd);
  EQ(get("f", b, sizeof b), sizeof a);
  CHECK(memcmp(a, b, sizeof a) == 0);
  struct stat st;
  CHECK(stat("d", &st) == 0);
  EQ(st.st_mode & 07777, 0700);
  return 0;
}

static const struct {
  const char *name;
  int (*fn)(void);
} cases[] = {
#define C(n) {#n, c_##n}
    C(create_write_read), C(pwrite_hole_pread), C(large_4mib_roundtrip), C(append_after_seek),
    C(truncate_grow_shrink), C(sparse_seek_data_hole), C(fallocate_punch_hole), C(copy_file_range),
    C(mmap_shared_write), C(mmap_private_read), C(fsync_file_and_dir), C(unlink_open_file),
    C(rename_over_open_file), C(o_excl_and_dangling_symlink), C(o_trunc), C(open_flag_errors),
    C(access_modes), C(mkdir_rmdir_errors), C(dir_nlink), C(unlink_errors), C(readdir_types),
    C(telldir_seekdir), C(readdir_5000_entries), C(non_utf8_names), C(name_length_limit),
    C(rename_replaces_file), C(rename_across_dirs), C(rename_dir_cases), C(rename_noreplace),
    C(rename_exchange), C(hard_links), C(symlinks), C(chmod_bits), C(ctime_mtime_updates), C(chown),
    C(utimensat_nsec), C(xattr_user), C(statvfs), C(flock_contended), C(posix_locks_contended),
    C(ofd_locks), C(special_files), C(o_tmpfile_linkat), C(statx_fields), C(drop_caches_reread),
#undef C
};
enum { NCASES = sizeof cases / sizeof cases[0] };

static int run_case(int i, const char *base) {
  char dir[PATH_MAX];
  snprintf(dir, sizeof dir, "%s/%s", base, cases[i].name);
  fflush(stdout);
  pid_t p = fork();
  if (p == 0) {
    alarm(120);
    umask(022);
    if (mkdir(dir, 0755) != 0 || chdir(dir) != 0) {
      printf("CASE %s fail set-up: %s: %s\n", cases[i].name, dir, ename(errno));
      _exit(1);
    }
    int r = cases[i].fn();
    if (r == 0) printf("CASE %s ok\n", cases[i].name);
    else printf("CASE %s fail %s\n", cases[i].name, why);
    fflush(stdout);
    _exit(r == 0 ? 0 : 1);
  }
  int st = 0;
  if (p < 0 || waitpid(p, &st, 0) < 0) {
    printf("CASE %s fail fork/wait: %s\n", cases[i].name, ename(errno));
    return 1;
  }
  if (WIFSIGNALED(st)) printf("CASE %s fail killed by signal %d\n", cases[i].name, WTERMSIG(st));
  return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : 1;
}

static int cmd_cases(const char *base, int argc, char **argv) {
  int failed = 0;
  for (int i = 0; i < NCASES; i++) {
    int want = argc == 0;
    for (int k = 0; k < argc; k++) want |= !strcmp(argv[k], cases[i].name);
    if (want) failed += run_case(i, base);
  }
  fflush(stdout);
  return failed ? 1 : 0;
}

/* ------------------------------------------------------------------ SHA-256 (for tree) */

static const uint32_t K256[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2};

struct sha {
  uint32_t h[8];
  unsigned char buf[64];
  uint64_t len;
};

#define ROR(x, n) (((x) >> (n)) | ((x) << (32 - (n))))

static void sha_block(struct sha *s, const unsigned char *p) {
  uint32_t w[64], a[8];
  for (int i = 0; i < 16; i++) w[i] = (uint32_t)p[4 * i] << 24 | p[4 * i + 1] << 16 | p[4 * i + 2] << 8 | p[4 * i + 3];
  for (int i = 16; i < 64; i++) {
    uint32_t s0 = ROR(w[i - 15], 7) ^ ROR(w[i - 15], 18) ^ (w[i - 15] >> 3);
    uint32_t s1 = ROR(w[i - 2], 17) ^ ROR(w[i - 2], 19) ^ (w[i - 2] >> 10);
    w[i] = w[i - 16] + s0 + w[i - 7] + s1;
  }
  memcpy(a, s->h, sizeof a);
  for (int i = 0; i < 64; i++) {
    uint32_t t1 = a[7] + (ROR(a[4], 6) ^ ROR(a[4], 11) ^ ROR(a[4], 25)) + ((a[4] & a[5]) ^ (~a[4] & a[6])) + K256[i] + w[i];
    uint32_t t2 = (ROR(a[0], 2) ^ ROR(a[0], 13) ^ ROR(a[0], 22)) + ((a[0] & a[1]) ^ (a[0] & a[2]) ^ (a[1] & a[2]));
    memmove(a + 1, a, 7 * sizeof a[0]);
    a[4] += t1;
    a[0] = t1 + t2;
  }
  for (int i = 0; i < 8; i++) s->h[i] += a[i];
}

static void sha_init(struct sha *s) {
  static const uint32_t h0[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
  memcpy(s->h, h0, sizeof h0);
  s->len = 0;
}

static void sha_update(struct sha *s, const unsigned char *p, size_t n) {
  while (n) {
    size_t at = s->len % 64, take = 64 - at < n ? 64 - at : n;
    memcpy(s->buf + at, p, take);
    s->len += take;
    p += take;
    n -= take;
    if (s->len % 64 == 0) sha_block(s, s->buf);
  }
}

static void sha_final(struct sha *s, unsigned char out[32]) {
  uint64_t bits = s->len * 8;
  unsigned char pad[72] = {0x80};
  size_t padn = (s->len % 64 < 56 ? 56 : 120) - s->len % 64;
  for (int i = 0; i < 8; i++) pad[padn + i] = bits >> (56 - 8 * i);
  sha_update(s, pad, padn + 8);
  for (int i = 0; i < 8; i++)
    for (int k = 0; k < 4; k++) out[4 * i + k] = s->h[i] >> (24 - 8 * k);
}

/* ------------------------------------------------------------------ tree, mktree */

static size_t tree_root_len;

/*
 * T <hex path below the root> <type f|d|l|p|s|c|b> <mode octal> <uid> <gid> <size> <nlink> <ino>
 *   <mtime sec.nsec> <sha256 of the content | hex of the link target | ->
 */
static int tree_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
  (void)flag;
  (void)ftw;
  const char *rel = path + tree_root_len;
  if (*rel == '/') rel++;
  char t = S_ISREG(st->st_mode) ? 'f' : S_ISDIR(st->st_mode) ? 'd' : S_ISLNK(st->st_mode) ? 'l' : S_ISFIFO(st->st_mode) ? 'p' : S_ISSOCK(st->st_mode) ? 's' : S_ISCHR(st->st_mode) ? 'c' : 'b';
  printf("T ");
  if (*rel) hex(stdout, rel, strlen(rel));
  else printf(".");
  printf(" %c %o %u %u %lld %lu %llu %lld.%09ld ", t, st->st_mode & 07777, st->st_uid, st->st_gid, S_ISDIR(st->st_mode) ? 0LL : (long long)st->st_size,
         (unsigned long)st->st_nlink, (unsigned long long)st->st_ino, (long long)st->st_mtim.tv_sec, st->st_mtim.tv_nsec);
  if (t == 'f') {
    static unsigned char buf[1 << 16];
    struct sha s;
    unsigned char d[32];
    sha_init(&s);
    int fd = open(path, O_RDONLY);
    ssize_t r = -1;
    if (fd >= 0) {
      while ((r = read(fd, buf, sizeof buf)) > 0) sha_update(&s, buf, r);
      close(fd);
    }
    if (r < 0) printf("error:%s", ename(errno));
    else {
      sha_final(&s, d);
      hex(stdout, d, 32);
    }
  } else if (t == 'l') {
    char b[PATH_MAX];
    ssize_t n = readlink(path, b, sizeof b);
    if (n < 0) printf("error:%s", ename(errno));
    else hex(stdout, b, n);
  } else printf("-");
  printf("\n");
  return 0;
}

static int cmd_tree(const char *dir) {
  tree_root_len = strlen(dir);
  if (nftw(dir, tree_entry, 64, FTW_PHYS) != 0) {
    printf("TREE-ERROR %s\n", ename(errno));
    return 1;
  }
  printf("TREE-END\n");
  return 0;
}

/*
 * SPEC lines (fields separated by one space, names hex, paths relative to DIR):
 *   D path mode uid gid mtime_ns | F path mode uid gid mtime_ns size seed | L path target uid gid mtime_ns
 *   H path existing
 * Times are set after everything is created (a later entry changes its directory's mtime).
 */
static int cmd_mktree(const char *spec, const char *dir) {
  FILE *f = fopen(spec, "r");
  if (!f || chdir(dir) != 0) {
    printf("MKTREE-ERROR open: %s\n", ename(errno));
    return 1;
  }
  umask(0);
  static char line[8192];
  int pass, n = 0;
  for (pass = 0; pass < 2; pass++) {
    rewind(f);
    while (fgets(line, sizeof line, f)) {
      char kind, p[4096], x[4096];
      unsigned mode, uid, gid;
      long long mt, size;
      unsigned seed;
      size_t plen, xlen;
      int ok = 1;
      line[strcspn(line, "\n")] = 0;
      kind = line[0];
      if (kind == 'D' && sscanf(line, "D %4095s %o %u %u %lld", p, &mode, &uid, &gid, &mt) == 5 && !unhex(p, &plen)) {
        if (pass == 0) ok = mkdir(p, mode) == 0 && chmod(p, mode) == 0 && lchown(p, uid, gid) == 0;
      } else if (kind == 'F' && sscanf(line, "F %4095s %o %u %u %lld %lld %u", p, &mode, &uid, &gid, &mt, &size, &seed) == 7 && !unhex(p, &plen)) {
        if (pass == 0) {
          unsigned char *b = malloc(size ? size : 1);
          pattern(b, size, seed);
          ok = b && put(p, b, size, mode) == 0 && lchown(p, uid, gid) == 0 && chmod(p, mode) == 0;
          free(b);
        }
      } else if (kind == 'L' && sscanf(line, "L %4095s %4095s %u %u %lld", p, x, &uid, &gid, &mt) == 5 && !unhex(p, &plen) && !unhex(x, &xlen)) {
        if (pass == 0) ok = symlink(x, p) == 0 && lchown(p, uid, gid) == 0;
      } else if (kind == 'H' && sscanf(line, "H %4095s %4095s", p, x) == 2 && !unhex(p, &plen) && !unhex(x, &xlen)) {
        if (pass == 0) ok = link(x, p) == 0;
        mt = -1;
      } else {
        printf("MKTREE-ERROR bad line: %.80s\n", line);
        return 1;
      }
      if (pass == 1 && mt >= 0) {
        struct timespec t[2] = {{mt / 1000000000, mt % 1000000000}, {mt / 1000000000, mt % 1000000000}};
        ok = utimensat(AT_FDCWD, p, t, AT_SYMLINK_NOFOLLOW) == 0;
      }
      if (!ok) {
        printf("MKTREE-ERROR %s: %s\n", line, ename(errno));
        return 1;
      }
      n += pass == 0;
    }
  }
  fclose(f);
  printf("MKTREE-END %d\n", n);
  return 0;
}

/* ------------------------------------------------------------------ handles across drop_caches */

static int cmd_handle_save(const char *dir, const char *file) {
  char p[PATH_MAX];
  snprintf(p, sizeof p, "%s/probe", dir);
  if (puts_(p, "handle content") != 0) {
    printf("HANDLE fail create %s: %s\n", p, ename(errno));
    return 1;
  }
  struct {
    struct file_handle h;
    unsigned char f[MAX_HANDLE_SZ];
  } fh = {.h.handle_bytes = MAX_HANDLE_SZ};
  int mnt;
  if (name_to_handle_at(AT_FDCWD, p, &fh.h, &mnt, 0) != 0) {
    printf("HANDLE fail name_to_handle_at: %s\n", ename(errno));
    return 1;
  }
  if (put(file, &fh, sizeof fh.h + fh.h.handle_bytes, 0600) != 0) {
    printf("HANDLE fail save: %s\n", ename(errno));
    return 1;
  }
  printf("HANDLE-SAVED %u bytes type %d\n", fh.h.handle_bytes, fh.h.handle_type);
  return 0;
}

static int cmd_handle_open(const char *mntpath, const char *file) {
  struct {
    struct file_handle h;
    unsigned char f[MAX_HANDLE_SZ];
  } fh;
  if (get(file, &fh, sizeof fh) < (ssize_t)sizeof fh.h) {
    printf("HANDLE fail load: %s\n", ename(errno));
    return 1;
  }
  int m = open(mntpath, O_RDONLY | O_DIRECTORY);
  int fd = m < 0 ? -1 : open_by_handle_at(m, &fh.h, O_RDONLY);
  if (fd < 0) {
    printf("HANDLE fail open_by_handle_at: %s\n", ename(errno));
    return 1;
  }
  char b[64];
  ssize_t n = read(fd, b, sizeof b);
  if (n != 14 || memcmp(b, "handle content", 14) != 0) {
    printf("HANDLE fail read back %zd bytes\n", n);
    return 1;
  }
  printf("HANDLE ok\n");
  return 0;
}

/* ------------------------------------------------------------------ bench loops, walk, time */

static int cmd_files(const char *op, const char *dir, long n) {
  char p[PATH_MAX];
  struct stat st;
  for (long i = 0; i < n; i++) {
    snprintf(p, sizeof p, "%s/f%ld", dir, i);
    int r;
    if (!strcmp(op, "create")) {
      r = open(p, O_WRONLY | O_CREAT | O_EXCL, 0644);
      if (r >= 0) r = close(r);
    } else if (!strcmp(op, "stat")) r = lstat(p, &st);
    else r = unlink(p);
    if (r != 0) {
      printf("FILES-ERROR %s %s: %s\n", op, p, ename(errno));
      return 1;
    }
  }
  return 0;
}

static long walk_entries, walk_files, walk_read, walk_errors, walk_every;
static int walk_first;

static void walk_error(void) {
  if (!walk_errors++) walk_first = errno;
}

static int walk_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
  (void)ftw;
  walk_entries++;
  struct stat again;
  if (flag == FTW_NS || flag == FTW_DNR || lstat(path, &again) != 0) {
    walk_error();
    return 0;
  }
  if (S_ISREG(st->st_mode) && walk_files++ % walk_every == 0) {
    static char buf[1 << 16];
    int fd = open(path, O_RDONLY);
    if (fd < 0 || read(fd, buf, sizeof buf) < 0) walk_error();
    else walk_read++;
    if (fd >= 0) close(fd);
  }
  return 0;
}

static int cmd_walk(const char *dir, long every) {
  walk_every = every > 0 ? every : 1;
  int r = nftw(dir, walk_entry, 32, FTW_PHYS);
  if (r != 0) walk_error();
  printf("WALK entries=%ld files=%ld read=%ld errors=%ld first=%s\n", walk_entries, walk_files, walk_read, walk_errors,
         walk_errors ? ename(walk_first) : "-");
  return walk_errors ? 1 : 0;
}

static int cmd_time(const char *label, char **argv) {
  fflush(stdout);
  long long t0 = nsec_now();
  pid_t p = fork();
  if (p == 0) {
    execvp(argv[0], argv);
    _exit(127);
  }
  int st = 0;
  waitpid(p, &st, 0);
  long long t1 = nsec_now();
  int code = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
  printf("TIME %s %lld %d\n", label, t1 - t0, code);
  return code;
}

int main(int argc, char **argv) {
  setvbuf(stdout, NULL, _IOLBF, 0);
  const char *cmd = argc > 1 ? argv[1] : "";
  if (!strcmp(cmd, "list")) {
    for (int i = 0; i < NCASES; i++) printf("%s\n", cases[i].name);
    return 0;
  }
  if (!strcmp(cmd, "cases") && argc >= 3) return cmd_cases(argv[2], argc - 3, argv + 3);
  if (!strcmp(cmd, "tree") && argc == 3) return cmd_tree(argv[2]);
  if (!strcmp(cmd, "mktree") && argc == 4) return cmd_mktree(argv[2], argv[3]);
  if (!strcmp(cmd, "handle-save") && argc == 4) return cmd_handle_save(argv[2], argv[3]);
  if (!strcmp(cmd, "handle-open") && argc == 4) return cmd_handle_open(argv[2], argv[3]);
  if ((!strcmp(cmd, "create") || !strcmp(cmd, "stat") || !strcmp(cmd, "unlink")) && argc == 4) return cmd_files(cmd, argv[2], atol(argv[3]));
  if (!strcmp(cmd, "walk") && argc == 4) return cmd_walk(argv[2], atol(argv[3]));
  if (!strcmp(cmd, "time") && argc >= 4) return cmd_time(argv[2], argv + 3);
  fprintf(stderr, "usage: guest-check list | cases DIR [NAME...] | tree DIR | mktree SPEC DIR | handle-save DIR FILE |\n"
                  "       handle-open MNT FILE | create|stat|unlink DIR N | walk DIR EVERY | time LABEL CMD [ARG...]\n");
  return 2;
}
