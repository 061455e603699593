/*
 * zcrecv: the CPU cost per byte of one loopback TCP stream, received with
 * read(2) or with TCP_ZEROCOPY_RECEIVE (the kernel maps the received pages
 * into the reader's address space instead of copying them).
 *
 * A child process writes TOTAL MiB in writes of CHUNK bytes; the parent
 * receives them and sums them as float32 (as a reduction would read them).
 * It prints the throughput and the CPU time per byte of each side.
 *
 *   cc -O3 -march=native -ffast-math -o /tmp/zcrecv bench/loopback/zcrecv.c
 *   /tmp/zcrecv read|zerocopy TOTAL_MIB [CHUNK_BYTES]
 *
 * Zero-copy receive maps only pages that the sender's socket filled whole;
 * on loopback that needs order-0 page fragments, that is
 * `sysctl -w net.core.high_order_alloc_disable=1` (restore it to 0 after).
 * Without it the mapped share printed is 0 % and every byte is copied.
 * Linux only. It listens on 127.0.0.1:40111.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* struct tcp_zerocopy_receive of linux/tcp.h (5.11 and later). */
struct zc_receive {
	uint64_t address;
	uint32_t length;
	uint32_t recv_skip_hint;
	uint32_t inq;
	int32_t err;
	uint64_t copybuf_address;
	int32_t copybuf_len;
	uint32_t flags;
	uint64_t msg_control;
	uint64_t msg_controllen;
	uint32_t msg_flags;
	uint32_t reserved;
};

#ifndef TCP_ZEROCOPY_RECEIVE
#define TCP_ZEROCOPY_RECEIVE 35
#endif

static double now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec + t.tv_nsec * 1e-9;
}

static double cpu(int who)
{
	struct rusage r;
	getrusage(who, &r);
	return r.ru_utime.tv_sec + r.ru_utime.tv_usec * 1e-6 + r.ru_stime.tv_sec + r.ru_stime.tv_usec * 1e-6;
}

static float sum(const char *p, long n)
{
	const float *f = (const float *)p;
	float acc = 0;
	for (long i = 0; i < n / 4; i++)
		acc += f[i];
	return acc;
}

static void die(const char *what)
{
	perror(what);
	exit(1);
}

int main(int argc, char **argv)
{
	if (argc < 3 || (strcmp(argv[1], "read") && strcmp(argv[1], "zerocopy"))) {
		fprintf(stderr, "usage: %s read|zerocopy TOTAL_MIB [CHUNK_BYTES]\n", argv[0]);
		return 2;
	}
	int zc = !strcmp(argv[1], "zerocopy");
	long total = atol(argv[2]) << 20;
	long chunk = argc > 3 ? atol(argv[3]) : 1 << 20;
	const size_t window = 4 << 20;

	int ls = socket(AF_INET, SOCK_STREAM, 0), one = 1;
	setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(40111)};
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (bind(ls, (struct sockaddr *)&a, sizeof a) || listen(ls, 1))
		die("listen");
	pid_t child = fork();
	if (child == 0) {
		int s = socket(AF_INET, SOCK_STREAM, 0);
		if (connect(s, (struct sockaddr *)&a, sizeof a))
			die("connect");
		char *buf = aligned_alloc(4096, chunk);
		memset(buf, 1, chunk);
		for (long sent = 0; sent < total;) {
			long n = write(s, buf, chunk < total - sent ? chunk : total - sent);
			if (n < 0)
				die("write");
			sent += n;
		}
		close(s);
		exit(0);
	}
	int s = accept(ls, NULL, NULL);
	if (s < 0)
		die("accept");
	char *map = NULL;
	if (zc) {
		map = mmap(NULL, window, PROT_READ, MAP_SHARED, s, 0);
		if (map == MAP_FAILED)
			die("mmap of the socket");
	}
	char *buf = aligned_alloc(4096, window);
	float acc = 0;
	long got = 0, mapped = 0;
	double t0 = now(), c0 = cpu(RUSAGE_SELF);
	while (got < total) {
		if (!zc) {
			long n = read(s, buf, window);
			if (n <= 0)
				break;
			acc += sum(buf, n);
			got += n;
			continue;
		}
		struct zc_receive z;
		memset(&z, 0, sizeof z);
		z.address = (uint64_t)(uintptr_t)map;
		z.length = window;
		socklen_t zl = sizeof z;
		if (getsockopt(s, IPPROTO_TCP, TCP_ZEROCOPY_RECEIVE, &z, &zl))
			die("TCP_ZEROCOPY_RECEIVE");
		if (z.err) {
			fprintf(stderr, "socket error %d\n", z.err);
			return 1;
		}
		acc += sum(map, z.length);
		got += z.length;
		mapped += z.length;
		/* What could not be mapped is read (copied) the usual way. */
		long skip = z.recv_skip_hint;
		if (!z.length && !skip) {
			if (z.inq > 0) {
				skip = z.inq; /* less than a page is waiting: copy it */
			} else {
				struct pollfd p = {.fd = s, .events = POLLIN};
				poll(&p, 1, -1); /* nothing yet: wait for the next bytes */
			}
		}
		while (skip > 0) {
			long n = read(s, buf, skip < (long)window ? skip : (long)window);
			if (n <= 0)
				goto done;
			acc += sum(buf, n);
			got += n;
			skip -= n;
		}
	}
done:;
	double t1 = now(), c1 = cpu(RUSAGE_SELF);
	int st;
	waitpid(child, &st, 0);
	double cs = cpu(RUSAGE_CHILDREN);
	printf("%s: %ld MiB, %.1f %% mapped, %.2f GB/s, CPU per byte: receiver %.3f ns, sender %.3f ns, both %.3f ns (checksum %g)\n",
	       argv[1], got >> 20, 100.0 * mapped / (got ? got : 1), got / (t1 - t0) / 1e9,
	       (c1 - c0) / got * 1e9, cs / got * 1e9, (c1 - c0 + cs) / got * 1e9, acc);
	return 0;
}
