/*
 * Minimal low-level FUSE server that compares ways of serving one connection:
 *   a  one thread, blocking read()/write() on /dev/fuse
 *   b  FUSE over io_uring, one thread owning every queue (+ /dev/fuse reader)
 *   c  FUSE over io_uring, one thread per queue, pinned to the queue's CPU
 *   d  one thread per CPU, each with a FUSE_DEV_IOC_CLONE'd fd, blocking reads
 *   p  diagnostic: like b but registers only queue 0, so the ring never
 *      becomes ready and every request waits (see tools/channels/README.md)
 *
 * It answers INIT, LOOKUP("f" in the root), GETATTR (constant attributes,
 * timeouts 0 so every stat() costs a LOOKUP and a GETATTR), FORGET,
 * BATCH_FORGET, INTERRUPT and DESTROY; anything else gets ENOSYS.
 *
 * usage: srv MODE MOUNTPOINT [depth] [ringflags]  (as root)
 *   depth      ring entries per queue (default 2)
 *   ringflags  0 (default) | 1 = IORING_SETUP_SINGLE_ISSUER|DEFER_TASKRUN
 *              | 2 = IORING_SETUP_COOP_TASKRUN|TASKRUN_FLAG
 *
 * Prints "READY" on stdout once the mount exists and, except in mode a, INIT
 * is answered (ring modes: the REGISTER commands are submitted too). Exits when
 * the connection ends (unmount or abort), printing per-thread counters and
 * rusage on stderr.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <linux/fuse.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/sysinfo.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

/* ---- FUSE-over-io_uring uAPI (protocol 7.42), layouts from the kernel's
 * include/uapi/linux/fuse.h; Debian 12's header is 7.38 and lacks them. */
#define XFUSE_OVER_IO_URING (1ULL << 41) /* INIT flag, lives in flags2 bit 9 */
#define XFUSE_URING_IN_OUT_HEADER_SZ 128
#define XFUSE_URING_OP_IN_OUT_SZ 128
struct xfuse_uring_ent_in_out {
	uint64_t flags;
	uint64_t commit_id;  /* = fuse_in_header.unique of the request */
	uint32_t payload_sz; /* bytes used in the payload buffer (either way) */
	uint32_t padding;
	uint64_t reserved;
};
struct xfuse_uring_req_header {
	char in_out[XFUSE_URING_IN_OUT_HEADER_SZ]; /* fuse_in_header / fuse_out_header */
	char op_in[XFUSE_URING_OP_IN_OUT_SZ];      /* in_args[0]: per-op struct */
	struct xfuse_uring_ent_in_out ring_ent_in_out;
};
enum { XFUSE_IO_URING_CMD_REGISTER = 1, XFUSE_IO_URING_CMD_COMMIT_AND_FETCH = 2 };
struct xfuse_uring_cmd_req { /* in the 80-byte cmd area of a 128-byte SQE */
	uint64_t flags;
	uint64_t commit_id;
	uint16_t qid;
	uint8_t padding[6];
};
_Static_assert(sizeof(struct xfuse_uring_ent_in_out) == 32, "ent_in_out");
_Static_assert(sizeof(struct xfuse_uring_req_header) == 288, "req_header");
_Static_assert(sizeof(struct xfuse_uring_cmd_req) == 24, "cmd_req");

/* REGISTER wants >= max(8K, max_write, max_pages * 4K): 128 KiB here */
#define PAYLOAD_SZ (1024 * 1024)
#define MAXT 64

static int devfd = -1;
static char mode;
static int ncpu;
static int depth = 2;
static int ringflags;
static atomic_int init_done;
static atomic_int threads_ready;
static atomic_int conn_gone;

/* Per-thread counters; [0] is the /dev/fuse reader (modes a, b, c, p), the
 * ring or per-CPU threads are [1..]. */
static struct tstat {
	long lookup, getattr, forget, other, init;
	int cpu_first, cpu_migrations;
	int last_cpu;
} tst[MAXT + 1];

static void die(const char *m)
{
	perror(m);
	exit(1);
}

/* Zeroed memory aligned to align (a power of two); exits when out of memory. */
static void *xalloc(size_t align, size_t size)
{
	size = (size + align - 1) & ~(align - 1); /* aligned_alloc wants a multiple */
	void *p = aligned_alloc(align, size);
	if (!p)
		die("aligned_alloc");
	memset(p, 0, size);
	return p;
}

static void fill_attr(struct fuse_attr *a, uint64_t ino)
{
	memset(a, 0, sizeof(*a));
	a->ino = ino;
	a->nlink = ino == 1 ? 2 : 1;
	a->mode = ino == 1 ? (S_IFDIR | 0755) : (S_IFREG | 0644);
	a->size = ino == 1 ? 0 : 4096;
	a->blocks = ino == 1 ? 0 : 8;
	a->blksize = 4096;
	a->atime = a->mtime = a->ctime = 1700000000;
}

static void note_cpu(struct tstat *s)
{
	int c = sched_getcpu();
	if (s->last_cpu != c) {
		if (s->last_cpu >= 0)
			s->cpu_migrations++;
		else
			s->cpu_first = c;
		s->last_cpu = c;
	}
}

/* handle() result for requests that get no reply */
#define NOREPLY (1 << 30)

/*
 * Handles one request other than INIT. name: the LOOKUP name, or NULL.
 * Returns -errno, NOREPLY, or the number of reply bytes written to out.
 */
static int handle(const struct fuse_in_header *ih, const char *name, void *out,
		  struct tstat *s)
{
	switch (ih->opcode) {
	case FUSE_LOOKUP: {
		s->lookup++;
		if (ih->nodeid != FUSE_ROOT_ID || !name || strcmp(name, "f"))
			return -ENOENT;
		struct fuse_entry_out *e = out;
		memset(e, 0, sizeof(*e));
		e->nodeid = 2;
		e->generation = 1;
		e->entry_valid = e->attr_valid = 0; /* every stat reaches us */
		fill_attr(&e->attr, 2);
		return sizeof(*e);
	}
	case FUSE_GETATTR: {
		s->getattr++;
		struct fuse_attr_out *o = out;
		memset(o, 0, sizeof(*o));
		o->attr_valid = 0;
		fill_attr(&o->attr, ih->nodeid == FUSE_ROOT_ID ? 1 : 2);
		return sizeof(*o);
	}
	case FUSE_FORGET:
	case FUSE_BATCH_FORGET:
		s->forget++;
		return NOREPLY;
	case FUSE_INTERRUPT:
		return NOREPLY;
	case FUSE_DESTROY:
		fprintf(stderr, "DESTROY received\n");
		return 0;
	default:
		if (!s->other++) fprintf(stderr, "first other opcode %u\n", ih->opcode);
		return -ENOSYS;
	}
}

static void dev_reply(int fd, uint64_t unique, int r, void *out)
{
	struct fuse_out_header oh = { .unique = unique };
	struct iovec iov[2] = { { &oh, sizeof(oh) }, { out, 0 } };
	int n = 1;
	if (r < 0)
		oh.error = r;
	else if (r > 0) {
		iov[1].iov_len = r;
		n = 2;
	}
	oh.len = sizeof(oh) + (r > 0 ? r : 0);
	if (writev(fd, iov, n) < 0 && errno != ENOENT)
		perror("writev /dev/fuse");
}

static void do_init(int fd, const struct fuse_in_header *ih, const void *arg,
		    struct tstat *s)
{
	const struct fuse_init_in *in = arg;
	struct fuse_init_out o;
	memset(&o, 0, sizeof(o));
	s->init++;
	o.major = FUSE_KERNEL_VERSION;
	o.minor = 42; /* io_uring needs >= 42; kernel 6.18 offers more */
	o.max_readahead = in->max_readahead;
	o.flags = FUSE_INIT_EXT;
	if (mode == 'b' || mode == 'c' || mode == 'p') {
		uint64_t offered = ((uint64_t)in->flags2 << 32) | in->flags;
		if (!(offered & XFUSE_OVER_IO_URING))
			fprintf(stderr, "kernel did not offer FUSE_OVER_IO_URING "
					"(enable_uring=N?) kernel minor %u\n", in->minor);
		o.flags2 = (uint32_t)(XFUSE_OVER_IO_URING >> 32);
	}
	o.max_background = 16;
	o.congestion_threshold = 12;
	o.max_write = 4096;
	o.time_gran = 1;
	fprintf(stderr, "INIT: kernel %u.%u flags=%#x flags2=%#x\n", in->major,
		in->minor, in->flags, in->flags2);
	dev_reply(fd, ih->unique, sizeof(o), &o);
	atomic_store(&init_done, 1);
}

/* Blocking /dev/fuse serving loop; used by modes a and d, and as the
 * INIT/FORGET/INTERRUPT reader in ring modes. */
static void dev_loop(int fd, struct tstat *s)
{
	size_t bsz = PAYLOAD_SZ + 4096;
	char *buf = xalloc(4096, bsz), *out = xalloc(64, 4096);
	s->last_cpu = -1;
	for (;;) {
		ssize_t n = read(fd, buf, bsz);
		if (n < 0) {
			if (errno == EINTR || errno == EAGAIN)
				continue;
			if (errno == ENOENT) /* request was interrupted */
				continue;
			if (errno != ENODEV)
				perror("read /dev/fuse");
			break; /* ENODEV: connection gone (umount / abort) */
		}
		note_cpu(s);
		struct fuse_in_header *ih = (void *)buf;
		void *arg = buf + sizeof(*ih);
		if (ih->opcode == FUSE_INIT) {
			do_init(fd, ih, arg, s);
			continue;
		}
		int r = handle(ih, ih->opcode == FUSE_LOOKUP ? arg : NULL, out, s);
		if (r != NOREPLY)
			dev_reply(fd, ih->unique, r, out);
		if (ih->opcode == FUSE_DESTROY)
			break;
	}
	atomic_store(&conn_gone, 1);
	free(buf);
	free(out);
}

/* ------------------------------ io_uring ------------------------------ */
struct ent {
	struct xfuse_uring_req_header *hdr;
	char *payload;
	struct iovec iov[2];
	uint16_t qid;
};

static void prep_cmd(struct io_uring *ring, struct ent *e, uint32_t op,
		     uint64_t commit_id)
{
	/* The ring has twice as many SQEs as entries: there is always one. */
	struct io_uring_sqe *sqe = io_uring_get_sqe(ring);
	if (!sqe) {
		fprintf(stderr, "io_uring_get_sqe: submission queue full\n");
		exit(1);
	}
	memset((void *)sqe, 0, 128); /* SQE128: the cmd area is the last 80 bytes */
	sqe->opcode = IORING_OP_URING_CMD;
	sqe->fd = devfd;
	sqe->cmd_op = op;
	if (op == XFUSE_IO_URING_CMD_REGISTER) {
		sqe->addr = (uint64_t)(uintptr_t)e->iov; /* iov[0]=headers, iov[1]=payload */
		sqe->len = 2;
	}
	struct xfuse_uring_cmd_req *cr = (void *)sqe->cmd;
	cr->qid = e->qid;
	cr->commit_id = commit_id;
	io_uring_sqe_set_data(sqe, e);
}

struct ring_thread {
	pthread_t t;
	int idx;
	int qfirst, qlast; /* queues owned: [qfirst, qlast] */
	int pin_cpu;       /* -1: no pinning */
};

static void *ring_thread_fn(void *arg)
{
	struct ring_thread *rt = arg;
	struct tstat *s = &tst[rt->idx];
	s->last_cpu = -1;
	if (rt->pin_cpu >= 0) {
		cpu_set_t cs;
		CPU_ZERO(&cs);
		CPU_SET(rt->pin_cpu, &cs);
		if (sched_setaffinity(0, sizeof(cs), &cs))
			die("sched_setaffinity");
	}
	int nq = rt->qlast - rt->qfirst + 1;
	int nent = nq * depth;
	struct io_uring ring;
	struct io_uring_params p;
	memset(&p, 0, sizeof(p));
	p.flags = IORING_SETUP_SQE128;
	if (ringflags == 1)
		p.flags |= IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN;
	if (ringflags == 2)
		p.flags |= IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG;
	int r = io_uring_queue_init_params(nent < 8 ? 8 : nent * 2, &ring, &p);
	if (r < 0) {
		errno = -r;
		die("io_uring_queue_init_params");
	}
	/* The kernel keeps these user pointers: the buffers live until exit. */
	struct ent *ents = xalloc(64, nent * sizeof(*ents));
	for (int i = 0; i < nent; i++) {
		struct ent *e = &ents[i];
		e->qid = rt->qfirst + i / depth;
		e->hdr = xalloc(4096, 4096);
		e->payload = xalloc(4096, PAYLOAD_SZ);
		e->iov[0] = (struct iovec){ e->hdr, sizeof(*e->hdr) };
		e->iov[1] = (struct iovec){ e->payload, PAYLOAD_SZ };
	}
	while (!atomic_load(&init_done))
		usleep(1000);
	/* REGISTER must be issued after INIT was answered (else -EAGAIN) and
	 * by the thread that will serve: completions are task_work for the
	 * submitting task. */
	for (int i = 0; i < nent; i++)
		prep_cmd(&ring, &ents[i], XFUSE_IO_URING_CMD_REGISTER, 0);
	r = io_uring_submit(&ring);
	if (r != nent)
		fprintf(stderr, "submit REGISTER: %d (want %d)\n", r, nent);
	atomic_fetch_add(&threads_ready, 1);

	char *out = xalloc(64, 4096);
	int live = nent; /* entries not yet returned by the kernel for good */
	while (live > 0) {
		struct io_uring_cqe *cqe;
		r = io_uring_submit_and_wait(&ring, 1);
		if (r < 0 && r != -EINTR && r != -EBUSY) {
			fprintf(stderr, "submit_and_wait: %s\n", strerror(-r));
			break;
		}
		unsigned head, seen = 0;
		io_uring_for_each_cqe(&ring, head, cqe)
		{
			struct ent *e = io_uring_cqe_get_data(cqe);
			int res = cqe->res;
			seen++;
			if (res < 0) {
				/* -ENOTCONN at umount/abort teardown, -ECANCELED if
				 * the task died; the entry is gone for good. */
				if (res != -ENOTCONN && res != -ECANCELED)
					fprintf(stderr, "q%d cqe res %s\n", e->qid,
						strerror(-res));
				live--;
				continue;
			}
			note_cpu(s);
			struct fuse_in_header *ih = (void *)e->hdr->in_out;
			uint64_t commit_id = e->hdr->ring_ent_in_out.commit_id;
			uint32_t psz = e->hdr->ring_ent_in_out.payload_sz;
			const char *name = NULL;
			if (ih->opcode == FUSE_LOOKUP) {
				/* LOOKUP's in_args[0] is empty; the name is payload */
				name = e->payload;
				if (psz == 0 || e->payload[psz - 1])
					name = NULL;
			}
			int hr = handle(ih, name, out, s);
			/* reply: fuse_out_header into in_out; all out args into
			 * the payload; payload_sz = their total size */
			struct fuse_out_header *oh = (void *)e->hdr->in_out;
			uint64_t unique = ih->unique;
			memset(oh, 0, sizeof(*oh));
			oh->unique = unique;
			oh->error = hr < 0 ? hr : 0;
			uint32_t plen = hr > 0 && hr != NOREPLY ? hr : 0;
			if (plen)
				memcpy(e->payload, out, plen);
			oh->len = sizeof(*oh) + plen;
			e->hdr->ring_ent_in_out.payload_sz = plen;
			prep_cmd(&ring, e, XFUSE_IO_URING_CMD_COMMIT_AND_FETCH, commit_id);
		}
		io_uring_cq_advance(&ring, seen);
	}
	io_uring_queue_exit(&ring);
	return NULL;
}

static void *dev_thread_fn(void *arg)
{
	long idx = (long)arg;
	int fd = devfd;
	if (mode == 'd') {
		int cpu = idx - 1;
		cpu_set_t cs;
		CPU_ZERO(&cs);
		CPU_SET(cpu, &cs);
		if (sched_setaffinity(0, sizeof(cs), &cs))
			die("sched_setaffinity");
		if (cpu > 0) {
			fd = open("/dev/fuse", O_RDWR | O_CLOEXEC);
			if (fd < 0)
				die("open clone");
			uint32_t m = devfd;
			if (ioctl(fd, FUSE_DEV_IOC_CLONE, &m))
				die("FUSE_DEV_IOC_CLONE");
		}
	}
	dev_loop(fd, &tst[idx]);
	if (fd != devfd)
		close(fd);
	return NULL;
}

int main(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: %s a|b|c|d|p MOUNTPOINT [depth] [ringflags]\n",
			argv[0]);
		return 2;
	}
	mode = argv[1][0];
	if (argc > 3)
		depth = atoi(argv[3]);
	if (argc > 4)
		ringflags = atoi(argv[4]);
	if (mode != 'a' && mode != 'b' && mode != 'c' && mode != 'd' && mode != 'p') {
		fprintf(stderr, "bad mode %s\n", argv[1]);
		return 2;
	}
	if (depth < 1) {
		fprintf(stderr, "bad depth %s\n", argv[3]);
		return 2;
	}
	/* The kernel wants one queue per *possible* CPU (not online). */
	ncpu = get_nprocs_conf();
	FILE *f = fopen("/sys/devices/system/cpu/possible", "r");
	int lo, hi;
	if (f && fscanf(f, "%d-%d", &lo, &hi) == 2)
		ncpu = hi + 1;
	if (f)
		fclose(f);
	if (ncpu > MAXT) {
		/* fewer queues than possible CPUs would never become ready */
		fprintf(stderr, "%d possible CPUs, at most %d supported\n", ncpu, MAXT);
		return 2;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);

	devfd = open("/dev/fuse", O_RDWR | O_CLOEXEC);
	if (devfd < 0)
		die("open /dev/fuse");
	char opts[128];
	snprintf(opts, sizeof(opts), "fd=%d,rootmode=40000,user_id=0,group_id=0",
		 devfd);
	if (mount("handlefs-channels", argv[2], "fuse", MS_NOSUID | MS_NODEV, opts))
		die("mount");

	int nthreads = 0;
	struct ring_thread rts[MAXT];
	pthread_t dt[MAXT];
	int ndt = 0;

	switch (mode) {
	case 'a':
		printf("READY\n"); /* INIT will be answered by the loop */
		dev_loop(devfd, &tst[0]);
		break;
	case 'd':
		for (long i = 0; i < ncpu; i++)
			pthread_create(&dt[ndt++], NULL, dev_thread_fn, (void *)(i + 1));
		while (!atomic_load(&init_done) && !atomic_load(&conn_gone))
			usleep(1000);
		printf("READY\n");
		break;
	case 'b':
	case 'p':
	case 'c':
		pthread_create(&dt[ndt++], NULL, dev_thread_fn, (void *)0);
		if (mode == 'c') {
			for (int i = 0; i < ncpu; i++) {
				rts[i] = (struct ring_thread){ .idx = i + 1, .qfirst = i,
							       .qlast = i, .pin_cpu = i };
			}
			nthreads = ncpu;
		} else {
			rts[0] = (struct ring_thread){ .idx = 1, .qfirst = 0,
						       .qlast = mode == 'p' ? 0 : ncpu - 1,
						       .pin_cpu = -1 };
			nthreads = 1;
		}
		for (int i = 0; i < nthreads; i++)
			pthread_create(&rts[i].t, NULL, ring_thread_fn, &rts[i]);
		while (atomic_load(&threads_ready) < nthreads)
			usleep(1000);
		printf("READY\n");
		break;
	}
	for (int i = 0; i < nthreads; i++)
		pthread_join(rts[i].t, NULL);
	for (int i = 0; i < ndt; i++)
		pthread_join(dt[i], NULL);

	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	int nt = (mode == 'd') ? ncpu + 1 : nthreads + 1;
	for (int i = 0; i < nt; i++)
		fprintf(stderr,
			"thread %d: init %ld lookup %ld getattr %ld forget %ld other %ld "
			"first_cpu %d migrations %d\n",
			i, tst[i].init, tst[i].lookup, tst[i].getattr, tst[i].forget,
			tst[i].other, tst[i].cpu_first, tst[i].cpu_migrations);
	fprintf(stderr, "rusage: user %.3fs sys %.3fs nvcsw %ld nivcsw %ld\n",
		ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6,
		ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6, ru.ru_nvcsw,
		ru.ru_nivcsw);
	return 0;
}
