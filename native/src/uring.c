/*
 * FUSE over io_uring (protocol 7.42+): an io_uring per serving thread, and ring entries (a header
 * and a payload buffer each, REGISTERed for one FUSE queue) in one table for the whole process.
 * Raw syscalls (io_uring_setup/enter and the mmaps), no liburing: the addon then loads on a machine
 * without it, and what is used here is a few fields of an SQE.
 *
 * A request reaches an entry as a completion on the ring that submitted the entry's last command;
 * uringNext copies it out in /dev/fuse's layout (fuse_in_header, the per-op struct, the rest), so
 * the protocol server parses ring requests and device requests alike. uringCommit copies a reply
 * into the entry's buffers and submits COMMIT_AND_FETCH on the calling thread's ring: the kernel
 * takes the reply and gives the entry its next request, from then on on that ring. So an entry
 * follows the thread that answered it, and a request handed to another thread is answered there
 * directly, without going back. No policy here: which queues a thread registers, and who serves
 * what, is decided in TypeScript (src/frontends/devfuse/ring.ts).
 *
 * The kernel copies a request into an entry as task_work of the thread that submitted the entry's
 * last command, so every call on one ring must come from the thread that created it.
 */
#include <errno.h>
#include <linux/io_uring.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include "bindings.h"
#include "errors.h"

/* The FUSE-over-io_uring uAPI (include/uapi/linux/fuse.h, 7.42); Debian 12's header predates it. */
#define RING_IN_OUT_SZ 128
#define RING_OP_SZ 128
struct ring_ent_in_out {
  uint64_t flags;
  uint64_t commit_id;  /* the request's unique */
  uint32_t payload_sz; /* bytes used in the payload buffer, either way */
  uint32_t padding;
  uint64_t reserved;
};
struct ring_req_header {
  char in_out[RING_IN_OUT_SZ]; /* fuse_in_header, then fuse_out_header */
  char op_in[RING_OP_SZ];      /* the request's first argument (the per-op struct) */
  struct ring_ent_in_out ent;
};
struct ring_cmd_req {
  uint64_t flags;
  uint64_t commit_id;
  uint16_t qid;
  uint8_t padding[6];
};
enum { RING_CMD_REGISTER = 1, RING_CMD_COMMIT_AND_FETCH = 2 };
_Static_assert(sizeof(struct ring_ent_in_out) == 32, "ring_ent_in_out");
_Static_assert(sizeof(struct ring_req_header) == 288, "ring_req_header");
_Static_assert(sizeof(struct ring_cmd_req) == 24, "ring_cmd_req");

#define IN_HEADER 40
#define OUT_HEADER 16
/* uringNext's result: (qid * MAX_ENTRIES + entry) * LEN_SHIFT + length (a request is at most 168 bytes + payload) */
#define LEN_SHIFT 4194304.0
#define MAX_ENTRIES 16384
#define MAX_QID 4095
#define MAX_PAYLOAD (4u * 1024 * 1024 - 4096)
#define REPLY_PAGE 4096
/* submission queue entries per ring (commits are submitted at once: a few are queued at most) */
#define SQ_ENTRIES 64
/* completions per ring: every entry of the process could end up with its command on one ring */
#define CQ_ENTRIES 32768

typedef struct {
  struct ring_req_header *hdr;
  /* a page, then the payload: a READ reply can be built in place, its fuse_out_header in the page's last 16 bytes */
  char *region;
  char *payload;
  size_t payload_size;
  struct iovec iov[2];
  uint16_t qid;
  int live; /* registered, and not completed with an error */
} ring_ent_t;

/* Every entry of the process, by id; slots are only ever added (an entry's id travels between threads). */
static ring_ent_t *entries[MAX_ENTRIES];
static unsigned entry_count;
static pthread_mutex_t entry_lock = PTHREAD_MUTEX_INITIALIZER;

typedef struct {
  int fd;
  /* signalled when work for this ring is waiting (IORING_REGISTER_EVENTFD): what the event loop watches */
  int efd;
  int dev_fd;
  void *sq_map, *cq_map, *sqe_map;
  size_t sq_len, cq_len, sqe_len;
  unsigned *sq_head, *sq_tail, *sq_mask, *sq_array;
  unsigned *cq_head, *cq_tail, *cq_mask;
  struct io_uring_cqe *cqes;
  char *sqes; /* 128-byte SQEs (IORING_SETUP_SQE128) */
  unsigned sq_entries;
  int closed;
} ring_t;

static int sys_setup(unsigned entries, struct io_uring_params *p) {
  return (int)syscall(__NR_io_uring_setup, entries, p);
}

static int sys_register(int fd, unsigned op, void *arg, unsigned nr) {
  return (int)syscall(__NR_io_uring_register, fd, op, arg, nr);
}

static int sys_enter(int fd, unsigned submit, unsigned min_complete, unsigned flags) {
  return (int)syscall(__NR_io_uring_enter, fd, submit, min_complete, flags, NULL, 0);
}

/* Everything but the struct itself (uringClose; the external's finalizer frees the struct). */
static void ring_release(ring_t *r) {
  if (r->sqe_map) munmap(r->sqe_map, r->sqe_len);
  if (r->cq_map && r->cq_map != r->sq_map) munmap(r->cq_map, r->cq_len);
  if (r->sq_map) munmap(r->sq_map, r->sq_len);
  if (r->fd >= 0) close(r->fd);
  if (r->efd >= 0) close(r->efd);
  r->sq_map = r->cq_map = r->sqe_map = NULL;
  r->fd = r->efd = -1;
}

static void ring_free(ring_t *r) {
  ring_release(r);
  free(r);
}

/* Map the rings of a set-up io_uring; -errno on failure. */
static int ring_map(ring_t *r, const struct io_uring_params *p) {
  r->sq_len = p->sq_off.array + p->sq_entries * sizeof(unsigned);
  r->cq_len = p->cq_off.cqes + p->cq_entries * sizeof(struct io_uring_cqe);
  int single = (p->features & IORING_FEAT_SINGLE_MMAP) != 0;
  if (single) r->sq_len = r->cq_len = r->sq_len > r->cq_len ? r->sq_len : r->cq_len;
  r->sq_map = mmap(NULL, r->sq_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, r->fd, IORING_OFF_SQ_RING);
  if (r->sq_map == MAP_FAILED) return r->sq_map = NULL, -errno;
  r->cq_map = single ? r->sq_map
                     : mmap(NULL, r->cq_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, r->fd, IORING_OFF_CQ_RING);
  if (r->cq_map == MAP_FAILED) return r->cq_map = NULL, -errno;
  r->sqe_len = (size_t)p->sq_entries * 128;
  r->sqe_map = mmap(NULL, r->sqe_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, r->fd, IORING_OFF_SQES);
  if (r->sqe_map == MAP_FAILED) return r->sqe_map = NULL, -errno;
  char *sq = r->sq_map, *cq = r->cq_map;
  r->sq_head = (unsigned *)(sq + p->sq_off.head);
  r->sq_tail = (unsigned *)(sq + p->sq_off.tail);
  r->sq_mask = (unsigned *)(sq + p->sq_off.ring_mask);
  r->sq_array = (unsigned *)(sq + p->sq_off.array);
  r->cq_head = (unsigned *)(cq + p->cq_off.head);
  r->cq_tail = (unsigned *)(cq + p->cq_off.tail);
  r->cq_mask = (unsigned *)(cq + p->cq_off.ring_mask);
  r->cqes = (struct io_uring_cqe *)(cq + p->cq_off.cqes);
  r->sqes = r->sqe_map;
  r->sq_entries = p->sq_entries;
  return 0;
}

/* The entry with this id, or NULL. */
static ring_ent_t *entry_at(uint64_t id) {
  if (id >= MAX_ENTRIES) return NULL;
  return __atomic_load_n(&entries[id], __ATOMIC_ACQUIRE);
}

/* Queue one FUSE command for entry id (not yet submitted); -EBUSY when the submission queue is full. */
static int queue_cmd(ring_t *r, unsigned id, ring_ent_t *e, uint32_t op, uint64_t commit_id) {
  unsigned tail = *r->sq_tail;
  if (tail - __atomic_load_n(r->sq_head, __ATOMIC_ACQUIRE) >= r->sq_entries) return -EBUSY;
  unsigned idx = tail & *r->sq_mask;
  struct io_uring_sqe *sqe = (struct io_uring_sqe *)(r->sqes + (size_t)idx * 128);
  memset(sqe, 0, 128);
  sqe->opcode = IORING_OP_URING_CMD;
  sqe->fd = r->dev_fd;
  sqe->cmd_op = op;
  sqe->user_data = id;
  if (op == RING_CMD_REGISTER) {
    sqe->addr = (uint64_t)(uintptr_t)e->iov;
    sqe->len = 2;
  }
  struct ring_cmd_req *req = (struct ring_cmd_req *)sqe->cmd;
  req->commit_id = commit_id;
  req->qid = e->qid;
  r->sq_array[idx] = idx;
  __atomic_store_n(r->sq_tail, tail + 1, __ATOMIC_RELEASE);
  return 0;
}

/* Submit what is queued; -errno on failure. */
static int submit(ring_t *r) {
  for (;;) {
    unsigned pending = *r->sq_tail - __atomic_load_n(r->sq_head, __ATOMIC_ACQUIRE);
    if (pending == 0) return 0;
    /* GETEVENTS: also run the deferred work (the next requests' copies into their entries) */
    int n = sys_enter(r->fd, pending, 0, IORING_ENTER_GETEVENTS);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return -errno;
    if (n == 0) return -EAGAIN;
  }
}

/* Queue a command, making room first when the submission queue is full; -errno on failure. */
static int queue_room(ring_t *r, unsigned id, ring_ent_t *e, uint32_t op, uint64_t commit_id) {
  int err = queue_cmd(r, id, e, op, commit_id);
  if (err == -EBUSY && (err = submit(r)) == 0) err = queue_cmd(r, id, e, op, commit_id);
  return err;
}

static void on_finalize(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  ring_free(data);
}

static bool get_ring(napi_env env, napi_value v, ring_t **out) {
  napi_valuetype t;
  if (napi_typeof(env, v, &t) != napi_ok || t != napi_external) {
    napi_throw_type_error(env, NULL, "Expected first argument to be a ring");
    return false;
  }
  if (napi_get_value_external(env, v, (void **)out) != napi_ok || *out == NULL || (*out)->closed) {
    napi_throw_error(env, "EBADF", "the ring is closed");
    return false;
  }
  return true;
}

/* uringProbe(): make and drop a small SQE128 ring; throws why this process cannot (ENOSYS, EPERM...). */
BINDING(uringProbe) {
  (void)info;
  struct io_uring_params p;
  memset(&p, 0, sizeof(p));
  p.flags = IORING_SETUP_SQE128;
  int fd = sys_setup(2, &p);
  if (fd < 0) return throw_errno(env, errno, "io_uring_setup");
  close(fd);
  return js_undefined(env);
}

/* uringCreate(devFd) -> ring: an io_uring (SQE128) whose commands go to devFd's FUSE connection. */
BINDING(uringCreate) {
  GET_ARGS(env, info, 1);
  int32_t dev_fd;
  ARG_I32(0, &dev_fd);
  ring_t *r = calloc(1, sizeof(*r));
  if (!r) return throw_errno(env, ENOMEM, "calloc");
  r->fd = r->efd = -1;
  r->dev_fd = dev_fd;
  struct io_uring_params p;
  memset(&p, 0, sizeof(p));
  /*
   * DEFER_TASKRUN: the kernel's work for this ring (copying a request into an entry) waits until
   * this thread asks for it (enter with GETEVENTS) instead of interrupting it with an IPI whenever
   * a request arrives on another CPU; the eventfd tells the event loop there is some.
   */
  p.flags = IORING_SETUP_SQE128 | IORING_SETUP_CQSIZE | IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN;
  p.cq_entries = CQ_ENTRIES;
  r->fd = sys_setup(SQ_ENTRIES, &p);
  if (r->fd < 0) {
    int err = errno;
    ring_free(r);
    return throw_errno(env, err, "io_uring_setup");
  }
  int err = ring_map(r, &p);
  if (err < 0) {
    ring_free(r);
    return throw_errno(env, -err, "mmap");
  }
  r->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (r->efd < 0 || sys_register(r->fd, IORING_REGISTER_EVENTFD, &r->efd, 1) < 0) {
    err = errno;
    const char *what = r->efd < 0 ? "eventfd" : "io_uring_register";
    ring_free(r);
    return throw_errno(env, err, what);
  }
  napi_value ext;
  NAPI_CALL(env, napi_create_external(env, r, on_finalize, NULL, &ext));
  return ext;
}

/* A new entry for queue qid in the process table: its id, or -errno. */
static int entry_new(uint16_t qid, size_t payload) {
  ring_ent_t *e = calloc(1, sizeof(*e));
  if (!e) return -ENOMEM;
  if (posix_memalign((void **)&e->hdr, 64, sizeof(struct ring_req_header)) != 0) {
    free(e);
    return -ENOMEM;
  }
  memset(e->hdr, 0, sizeof(*e->hdr));
  /* mapped, not allocated: pages cost nothing until a request or reply touches them */
  e->region = mmap(NULL, REPLY_PAGE + payload, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (e->region == MAP_FAILED) {
    int err = errno;
    free(e->hdr);
    free(e);
    return -err;
  }
  e->payload = e->region + REPLY_PAGE;
  e->payload_size = payload;
  e->qid = qid;
  e->iov[0] = (struct iovec){ e->hdr, sizeof(*e->hdr) };
  e->iov[1] = (struct iovec){ e->payload, payload };
  pthread_mutex_lock(&entry_lock);
  int id = entry_count < MAX_ENTRIES ? (int)entry_count++ : -ENOSPC;
  if (id >= 0) __atomic_store_n(&entries[id], e, __ATOMIC_RELEASE);
  pthread_mutex_unlock(&entry_lock);
  if (id < 0) {
    munmap(e->region, REPLY_PAGE + payload);
    free(e->hdr);
    free(e);
  }
  return id;
}

/*
 * uringRegister(ring, qids[], perQueue, payloadSize) -> entries made: perQueue new entries for each
 * FUSE queue in qids, each with a 288-byte header and a payloadSize buffer, REGISTERed through this
 * ring (submitted, not waited for: a REGISTER completes with the entry's first request, or at once
 * with an error). Only once INIT is answered (the kernel refuses it before).
 */
BINDING(uringRegister) {
  GET_ARGS(env, info, 4);
  ring_t *r;
  if (!get_ring(env, argv[0], &r)) return NULL;
  uint32_t per_queue, payload;
  ARG_U32(2, &per_queue);
  ARG_U32(3, &payload);
  bool is_array;
  NAPI_CALL(env, napi_is_array(env, argv[1], &is_array));
  if (!is_array) {
    napi_throw_type_error(env, NULL, "Expected second argument to be an array of queue ids");
    return NULL;
  }
  uint32_t nq;
  NAPI_CALL(env, napi_get_array_length(env, argv[1], &nq));
  if (nq > MAX_QID + 1 || per_queue == 0 || per_queue > 256 || (uint64_t)nq * per_queue > MAX_ENTRIES) {
    napi_throw_range_error(env, NULL, "queues (0..4096) x entries per queue (1..256) out of range");
    return NULL;
  }
  if (payload < 8192 || payload > MAX_PAYLOAD) {
    napi_throw_range_error(env, NULL, "payload size out of range");
    return NULL;
  }
  uint16_t *qids = calloc(nq ? nq : 1, sizeof(*qids));
  if (!qids) return throw_errno(env, ENOMEM, "calloc");
  for (uint32_t q = 0; q < nq; q++) {
    napi_value v;
    uint32_t qid;
    if (napi_get_element(env, argv[1], q, &v) != napi_ok || napi_get_value_uint32(env, v, &qid) != napi_ok || qid > MAX_QID) {
      free(qids);
      napi_throw_type_error(env, NULL, "Expected queue ids 0..4095");
      return NULL;
    }
    qids[q] = (uint16_t)qid;
  }
  int err = 0;
  uint32_t made = 0;
  for (uint32_t q = 0; q < nq && err == 0; q++) {
    for (uint32_t k = 0; k < per_queue && err == 0; k++) {
      int id = entry_new(qids[q], payload);
      if (id < 0) {
        err = id;
        break;
      }
      ring_ent_t *e = entries[id];
      if ((err = queue_room(r, (unsigned)id, e, RING_CMD_REGISTER, 0)) == 0) {
        e->live = 1;
        made++;
      }
    }
  }
  free(qids);
  if (err == 0) err = submit(r);
  if (err < 0) return throw_errno(env, -err, err == -ENOMEM || err == -ENOSPC ? "mmap" : "io_uring_enter");
  return js_int(env, (int32_t)made);
}

/* uringFd(ring) -> an eventfd, readable when work or a completion waits for this ring (uv_poll). */
BINDING(uringFd) {
  GET_ARGS(env, info, 1);
  ring_t *r;
  if (!get_ring(env, argv[0], &r)) return NULL;
  return js_int(env, r->efd);
}

/*
 * uringNext(ring, buf) -> one completion, or 0 for none:
 *   > 0: a request, copied into buf in /dev/fuse's layout: (qid * 16384 + entry) * 2^22 + its length;
 *   < 0: the entry's command ended with an error (-ENOTCONN once the connection ended, or a
 *        REGISTER the kernel refused): -(entry * 4096 + errno). The entry is dead.
 */
BINDING(uringNext) {
  GET_ARGS(env, info, 2);
  ring_t *r;
  if (!get_ring(env, argv[0], &r)) return NULL;
  void *data;
  size_t len;
  ARG_BUFFER(1, &data, &len);
  if (len < IN_HEADER) {
    napi_throw_range_error(env, NULL, "request buffer too small");
    return NULL;
  }
  unsigned head = *r->cq_head;
  unsigned tail = __atomic_load_n(r->cq_tail, __ATOMIC_ACQUIRE);
  if (head == tail) {
    /* the eventfd first (a signal after this read is kept), then the deferred work, which may complete entries */
    uint64_t count;
    if (read(r->efd, &count, sizeof(count)) < 0 && errno != EAGAIN) return throw_errno(env, errno, "read");
    sys_enter(r->fd, 0, 0, IORING_ENTER_GETEVENTS);
    tail = __atomic_load_n(r->cq_tail, __ATOMIC_ACQUIRE);
    if (head == tail) return js_int(env, 0);
  }
  struct io_uring_cqe *cqe = &r->cqes[head & *r->cq_mask];
  uint64_t id = cqe->user_data;
  int res = cqe->res;
  __atomic_store_n(r->cq_head, head + 1, __ATOMIC_RELEASE);
  ring_ent_t *e = entry_at(id);
  if (e == NULL) {
    napi_throw_error(env, "EIO", "io_uring completion for an unknown entry");
    return NULL;
  }
  napi_value out;
  if (res < 0) {
    e->live = 0;
    NAPI_CALL(env, napi_create_double(env, -((double)id * 4096 + (double)-res), &out));
    return out;
  }
  double tag = ((double)e->qid * MAX_ENTRIES + (double)id) * LEN_SHIFT;
  uint32_t total, psz = e->hdr->ent.payload_sz;
  memcpy(&total, e->hdr->in_out, sizeof(total));
  /* fuse_in_header.len counts the header, the per-op struct (in op_in) and the payload */
  if (total < IN_HEADER + psz || total - IN_HEADER - psz > RING_OP_SZ || psz > e->payload_size || total > len) {
    /* only the header, which says so: the caller answers it as any malformed request */
    memcpy(data, e->hdr->in_out, IN_HEADER);
    uint32_t header_only = IN_HEADER;
    memcpy(data, &header_only, sizeof(header_only));
    NAPI_CALL(env, napi_create_double(env, tag + IN_HEADER, &out));
    return out;
  }
  uint32_t op = total - IN_HEADER - psz;
  char *b = data;
  memcpy(b, e->hdr->in_out, IN_HEADER);
  memcpy(b + IN_HEADER, e->hdr->op_in, op);
  memcpy(b + IN_HEADER + op, e->payload, psz);
  NAPI_CALL(env, napi_create_double(env, tag + total, &out));
  return out;
}

static void no_finalize(napi_env env, void *data, void *hint) {
  (void)env;
  (void)data;
  (void)hint;
}

/*
 * uringReplySpace(entry) -> a Buffer over the entry's payload and the 16 bytes before it: a reply
 * built there (fuse_out_header, then the data) is committed without a copy. The memory lives as
 * long as the process; only the thread holding the entry (the one that read its request) may
 * write it, until it commits.
 */
BINDING(uringReplySpace) {
  GET_ARGS(env, info, 1);
  uint32_t id;
  ARG_U32(0, &id);
  ring_ent_t *e = entry_at(id);
  if (e == NULL) {
    napi_throw_range_error(env, NULL, "no such ring entry");
    return NULL;
  }
  napi_value buf;
  NAPI_CALL(env, napi_create_external_buffer(env, OUT_HEADER + e->payload_size, e->payload - OUT_HEADER, no_finalize, NULL, &buf));
  return buf;
}

/*
 * uringCommit(ring, entry, reply): the reply (fuse_out_header + its arguments, /dev/fuse's
 * layout) into the entry's buffers, and COMMIT_AND_FETCH submitted on this ring: the kernel takes
 * the reply and gives the entry its next request, as a completion on this ring (now or later).
 * The entry may have come from another thread's ring: from now on it is this ring's.
 */
BINDING(uringCommit) {
  GET_ARGS(env, info, 3);
  ring_t *r;
  if (!get_ring(env, argv[0], &r)) return NULL;
  uint32_t id;
  ARG_U32(1, &id);
  void *data;
  size_t len;
  ARG_BUFFER(2, &data, &len);
  ring_ent_t *e = entry_at(id);
  if (e == NULL || !e->live) {
    napi_throw_range_error(env, NULL, "no such live ring entry");
    return NULL;
  }
  if (len < OUT_HEADER || len - OUT_HEADER > e->payload_size) {
    napi_throw_range_error(env, NULL, "reply size out of range");
    return NULL;
  }
  uint64_t unique;
  memcpy(&unique, (char *)data + 8, sizeof(unique));
  memcpy(e->hdr->in_out, data, OUT_HEADER);
  /* a reply built in the entry's own space (uringReplySpace) is in place already */
  if ((char *)data != e->payload - OUT_HEADER) memcpy(e->payload, (char *)data + OUT_HEADER, len - OUT_HEADER);
  e->hdr->ent.payload_sz = (uint32_t)(len - OUT_HEADER);
  int err = queue_room(r, id, e, RING_CMD_COMMIT_AND_FETCH, unique);
  if (err == 0) err = submit(r);
  if (err < 0) return throw_errno(env, -err, "io_uring_enter");
  return js_undefined(env);
}

/*
 * uringClose(ring): unmap and close. Only once the connection has ended: the kernel cancels the
 * commands on it, and a queue whose entries are gone while the connection lives stalls every
 * request from its CPU. The entries stay (another ring may still hold them; they are few and live
 * as long as the connection, which is the process's).
 */
BINDING(uringClose) {
  GET_ARGS(env, info, 1);
  ring_t *r;
  if (!get_ring(env, argv[0], &r)) return NULL;
  r->closed = 1;
  ring_release(r);
  return js_undefined(env);
}
