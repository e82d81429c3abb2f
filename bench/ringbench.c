// SPDX-License-Identifier: GPL-2.0
/*
 * The C side of skbtrail's benchmarks (built by bench/run.ts with
 * cc -O2 ... -lbpf). Every mode prints one JSON line on stdout.
 *
 *   ringbench produce SECONDS [RATE [BATCH]]
 *       Waits for a line on stdin, then calls getpid() in a loop for SECONDS
 *       (each call makes bench/producer.bpf.c write BATCH records). RATE > 0
 *       paces the calls to RATE records/s (BATCH records per call). Reports
 *       its CPU time, which includes the BPF program's (it runs in the
 *       producer's system calls).
 *   ringbench fill
 *       For each line N on stdin: N getpid() calls, then prints "ok".
 *   ringbench consume MAP_FD SECONDS [IDLE_MS]
 *       Consumes the ring buffer map at MAP_FD (inherited) with libbpf's
 *       ring_buffer__new + ring_buffer__poll, decoding every struct drop_event
 *       (the fields src/events/decode.ts reads). Stops after IDLE_MS (default 200)
 *       without a record once records were seen, or after SECONDS.
 *   ringbench drain MAP_FD
 *       Prints "ready"; for each line on stdin consumes what the ring holds
 *       (ring_buffer__consume, no waiting) and prints the count and the time.
 *   ringbench flood ADDR PORT SECONDS
 *       Sends 16-byte UDP datagrams to ADDR:PORT with unconnected sendto()
 *       as fast as it can for SECONDS.
 *   ringbench openclose SECONDS
 *       Opens and closes /dev/null as fast as it can for SECONDS: work with
 *       no network in it, whose slab frees (the file, its name) a program on
 *       kmem:kmem_cache_free is entered for (bench/ab.ts --slab).
 *   ringbench sink ADDR PORT SECONDS
 *       Receives (and discards) UDP datagrams on ADDR:PORT with recvmmsg for
 *       SECONDS, from a large receive buffer: the delivered traffic of
 *       bench/monitor.ts. Prints "ready" once bound, then the count.
 *   ringbench tcpbulk ADDR PORT SECONDS
 *       One TCP connection over ADDR:PORT inside this process: a sink thread
 *       accepts and reads (discarding), the main thread writes 64 KiB
 *       buffers flat out for SECONDS. Prints the bytes and MB/s.
 *   ringbench tcpconn ADDR PORT SECONDS
 *       Short connections to PORT: a server thread accepts, reads 16 bytes,
 *       answers 16 bytes and closes; the main thread connects (to ADDR and
 *       the 15 addresses after it in turn, see tcpconn), writes 16 bytes,
 *       reads the answer and closes, one connection after the other, for
 *       SECONDS. Prints the connections completed.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/types.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#include <bpf/libbpf.h>
#include "../bpf/include/events.h"

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static double cpu_seconds(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

static int usage(void)
{
	fprintf(stderr, "usage: ringbench produce SECONDS [RATE [BATCH]] | fill | consume MAP_FD SECONDS [IDLE_MS] | drain MAP_FD | flood ADDR PORT SECONDS | openclose SECONDS | sink ADDR PORT SECONDS | tcpbulk ADDR PORT SECONDS | tcpconn ADDR PORT SECONDS\n");
	return 2;
}

/* ---- produce ------------------------------------------------------------ */

static int produce(double seconds, double rate, int batch)
{
	char line[16];
	unsigned long calls = 0;
	double start, end, cpu, interval = rate > 0 ? batch / rate : 0;

	if (!fgets(line, sizeof(line), stdin)) /* the go signal */
		return 1;
	cpu = cpu_seconds();
	start = now();
	end = start + seconds;
	if (interval <= 0) {
		do {
			for (int i = 0; i < 8; i++)
				syscall(SYS_getpid);
			calls += 8;
		} while (now() < end);
	} else {
		/* Make the calls due by now: (now - start) / interval. */
		double t;

		while ((t = now()) < end) {
			unsigned long due = (unsigned long)((t - start) / interval);

			while (calls < due) {
				syscall(SYS_getpid);
				calls++;
			}
		}
	}
	end = now();
	cpu = cpu_seconds() - cpu;
	printf("{\"calls\":%lu,\"seconds\":%.6f,\"cpu_seconds\":%.6f}\n", calls, end - start, cpu);
	return 0;
}

static int fill(void)
{
	char line[32];

	while (fgets(line, sizeof(line), stdin)) {
		long n = atol(line);

		for (long i = 0; i < n; i++)
			syscall(SYS_getpid);
		printf("ok\n");
	}
	return 0;
}

/* ---- consume ------------------------------------------------------------ */

/* What src/events/decode.ts's decodeDrop reads, field by field (no formatting). */
struct decoded {
	__u32 cpu;
	__u64 time_ns;
	__u64 skb;
	__u32 len, mark, ifindex, netns, pid;
	char ifname[16], comm[16];
	__u16 l3;
	__u8 l4, parsed, tcp_flags, icmp_type, icmp_code, ttl;
	__u8 saddr[16], daddr[16];
	__u16 sport, dport, ip_len, icmp_id, icmp_seq, arp_op, vlan;
	__u32 tcp_seq, tcp_ack;
	__u64 location;
	__u32 reason;
	__s32 stack_id;
};

struct consumer {
	unsigned long events, bad;
	__u64 checksum;
	double first, last;
};

static void copy_string(char *dst, const char *src, size_t max)
{
	size_t n = strnlen(src, max);

	memcpy(dst, src, n);
	if (n < max)
		dst[n] = 0;
}

static int on_record(void *ctx, void *data, size_t size)
{
	struct consumer *c = ctx;
	const struct drop_event *e = data;
	struct decoded d;

	if (size < sizeof(*e) || e->hdr.version != EVENT_VERSION || e->hdr.kind != EVENT_DROP) {
		c->bad++;
		return 0;
	}
	d.cpu = e->hdr.cpu;
	d.time_ns = e->hdr.time_ns;
	d.skb = e->meta.skb;
	d.len = e->meta.len;
	d.mark = e->meta.mark;
	d.ifindex = e->meta.ifindex;
	d.netns = e->meta.netns;
	d.pid = e->meta.pid;
	copy_string(d.ifname, e->meta.ifname, sizeof(d.ifname));
	copy_string(d.comm, e->meta.comm, sizeof(d.comm));
	d.l3 = e->pkt.l3_proto;
	d.l4 = e->pkt.l4_proto;
	d.parsed = e->pkt.parsed;
	memcpy(d.saddr, e->pkt.saddr, d.l3 == 0x86dd ? 16 : 4);
	memcpy(d.daddr, e->pkt.daddr, d.l3 == 0x86dd ? 16 : 4);
	d.sport = e->pkt.sport;
	d.dport = e->pkt.dport;
	d.tcp_flags = e->pkt.tcp_flags;
	d.tcp_seq = e->pkt.tcp_seq;
	d.tcp_ack = e->pkt.tcp_ack;
	d.ip_len = e->pkt.ip_len;
	d.icmp_type = e->pkt.icmp_type;
	d.icmp_code = e->pkt.icmp_code;
	d.icmp_id = e->pkt.icmp_id;
	d.icmp_seq = e->pkt.icmp_seq;
	d.arp_op = e->pkt.arp_op;
	d.vlan = e->pkt.vlan_id;
	d.ttl = e->pkt.ttl;
	d.location = e->location;
	d.reason = e->reason;
	d.stack_id = e->stack_id;
	/* Use every field, so none of the reads above can be left out. */
	c->checksum += d.cpu + d.time_ns + d.skb + d.len + d.mark + d.ifindex + d.netns + d.pid +
		       (__u8)d.ifname[0] + (__u8)d.comm[0] + d.l3 + d.l4 + d.parsed + d.saddr[3] + d.daddr[3] +
		       d.sport + d.dport + d.tcp_flags + d.tcp_seq + d.tcp_ack + d.ip_len + d.icmp_type +
		       d.icmp_code + d.icmp_id + d.icmp_seq + d.arp_op + d.vlan + d.ttl + d.location +
		       d.reason + (__u32)d.stack_id;
	if (!c->events++)
		c->first = now();
	return 0;
}

static int consume(int map_fd, double seconds, int idle_ms)
{
	struct consumer c = { 0 };
	struct ring_buffer *rb;
	double start = now(), cpu = cpu_seconds(), t;

	rb = ring_buffer__new(map_fd, on_record, &c, NULL);
	if (!rb) {
		fprintf(stderr, "ringbench: ring_buffer__new: %s\n", strerror(errno));
		return 1;
	}
	printf("ready\n");
	/* Same short timeout as the product's reader (src/bpf/session.ts, 50 ms). */
	while ((t = now()) < start + seconds) {
		unsigned long before = c.events;
		int n = ring_buffer__poll(rb, 50);

		if (n < 0 && n != -EINTR) {
			fprintf(stderr, "ringbench: ring_buffer__poll: %s\n", strerror(-n));
			break;
		}
		/* Records submitted with BPF_RB_NO_WAKEUP do not make the ring
		 * readable for epoll: after a timeout, read what is there anyway,
		 * as the product's reader does after every wait. */
		if (n == 0)
			ring_buffer__consume(rb);
		if (c.events != before) {
			c.last = now();
		} else if (c.events && (t - c.last) * 1000 >= idle_ms) {
			break;
		}
	}
	cpu = cpu_seconds() - cpu;
	ring_buffer__free(rb);
	printf("{\"events\":%lu,\"seconds\":%.6f,\"cpu_seconds\":%.6f,\"bad\":%lu,\"checksum\":%llu}\n", c.events,
	       c.events ? c.last - c.first : 0, cpu, c.bad, (unsigned long long)c.checksum);
	return 0;
}

static int drain(int map_fd)
{
	struct consumer c = { 0 };
	struct ring_buffer *rb = ring_buffer__new(map_fd, on_record, &c, NULL);
	char line[16];

	if (!rb) {
		fprintf(stderr, "ringbench: ring_buffer__new: %s\n", strerror(errno));
		return 1;
	}
	printf("ready\n");
	while (fgets(line, sizeof(line), stdin)) {
		unsigned long before = c.events;
		double t = now();

		ring_buffer__consume(rb);
		t = now() - t;
		printf("{\"events\":%lu,\"seconds\":%.9f,\"bad\":%lu}\n", c.events - before, t, c.bad);
	}
	ring_buffer__free(rb);
	return 0;
}

/* ---- flood -------------------------------------------------------------- */

static int flood(const char *addr, int port, double seconds)
{
	struct sockaddr_in to = { .sin_family = AF_INET, .sin_port = htons(port) };
	char payload[16] = "skbtrail bench!";
	unsigned long sent = 0, errors = 0;
	double start, end;
	int fd = socket(AF_INET, SOCK_DGRAM, 0);

	if (fd < 0 || inet_pton(AF_INET, addr, &to.sin_addr) != 1) {
		fprintf(stderr, "ringbench: bad address %s or socket: %s\n", addr, strerror(errno));
		return 1;
	}
	start = now();
	end = start + seconds;
	do {
		for (int i = 0; i < 256; i++) {
			if (sendto(fd, payload, sizeof(payload), 0, (struct sockaddr *)&to, sizeof(to)) < 0)
				errors++;
			else
				sent++;
		}
	} while (now() < end);
	printf("{\"packets\":%lu,\"errors\":%lu,\"seconds\":%.6f}\n", sent, errors, now() - start);
	return 0;
}

/* ---- openclose ---------------------------------------------------------- */

static int openclose(double seconds)
{
	unsigned long ops = 0;
	double start = now(), end = start + seconds;

	do {
		for (int i = 0; i < 256; i++) {
			int fd = open("/dev/null", O_RDONLY);

			if (fd < 0) {
				fprintf(stderr, "ringbench: open /dev/null: %s\n", strerror(errno));
				return 1;
			}
			close(fd);
		}
		ops += 256;
	} while (now() < end);
	printf("{\"ops\":%lu,\"seconds\":%.6f}\n", ops, now() - start);
	return 0;
}

/* ---- sink --------------------------------------------------------------- */

static int sink(const char *addr, int port, double seconds)
{
	struct sockaddr_in at = { .sin_family = AF_INET, .sin_port = htons(port) };
	struct timeval timeout = { .tv_usec = 100000 };
	int rcvbuf = 64 << 20, fd = socket(AF_INET, SOCK_DGRAM, 0);
	static char bufs[256][64];
	struct iovec iov[256];
	struct mmsghdr msgs[256];
	unsigned long received = 0;
	double end;

	if (fd < 0 || inet_pton(AF_INET, addr, &at.sin_addr) != 1 || bind(fd, (struct sockaddr *)&at, sizeof(at))) {
		fprintf(stderr, "ringbench: cannot bind %s:%d: %s\n", addr, port, strerror(errno));
		return 1;
	}
	/* SO_RCVBUFFORCE (root) past rmem_max: a short stall of this process must not drop. */
	if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf, sizeof(rcvbuf)))
		setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
	for (int i = 0; i < 256; i++) {
		iov[i] = (struct iovec){ .iov_base = bufs[i], .iov_len = sizeof(bufs[i]) };
		msgs[i] = (struct mmsghdr){ .msg_hdr = { .msg_iov = &iov[i], .msg_iovlen = 1 } };
	}
	printf("ready\n");
	end = now() + seconds;
	while (now() < end) {
		int n = recvmmsg(fd, msgs, 256, 0, NULL);

		if (n > 0)
			received += n;
	}
	printf("{\"received\":%lu}\n", received);
	return 0;
}

/* ---- tcpbulk, tcpconn -------------------------------------------------- */

/* ADDR:PORT into *at, or -1 (message printed). */
static int tcp_address(const char *addr, int port, struct sockaddr_in *at)
{
	*at = (struct sockaddr_in){ .sin_family = AF_INET, .sin_port = htons(port) };
	if (inet_pton(AF_INET, addr, &at->sin_addr) != 1) {
		fprintf(stderr, "ringbench: bad address %s\n", addr);
		return -1;
	}
	return 0;
}

/* A TCP socket listening on *at, or -1 (message printed). */
static int tcp_listen(const struct sockaddr_in *at)
{
	int one = 1, fd = socket(AF_INET, SOCK_STREAM, 0);

	if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) ||
	    bind(fd, (const struct sockaddr *)at, sizeof(*at)) || listen(fd, 4096)) {
		fprintf(stderr, "ringbench: cannot listen on port %d: %s\n", ntohs(at->sin_port), strerror(errno));
		return -1;
	}
	return fd;
}

static int tcp_connect(const struct sockaddr_in *to)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	if (fd < 0 || connect(fd, (const struct sockaddr *)to, sizeof(*to))) {
		fprintf(stderr, "ringbench: connect: %s\n", strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	return fd;
}

struct tcp_server {
	int listen_fd;
	unsigned long count; /* tcpbulk: bytes read; tcpconn: connections answered */
};

static void *bulk_sink(void *arg)
{
	struct tcp_server *s = arg;
	static char buf[64 << 10];
	int fd = accept(s->listen_fd, NULL, NULL);
	ssize_t n;

	while (fd >= 0 && (n = read(fd, buf, sizeof(buf))) > 0)
		s->count += n;
	if (fd >= 0)
		close(fd);
	return NULL;
}

static int tcpbulk(const char *addr, int port, double seconds)
{
	struct tcp_server s = { 0 };
	struct sockaddr_in at;
	static char buf[64 << 10];
	unsigned long written = 0;
	double start, end;
	pthread_t sink;
	int fd;

	if (tcp_address(addr, port, &at) || (s.listen_fd = tcp_listen(&at)) < 0 || pthread_create(&sink, NULL, bulk_sink, &s))
		return 1;
	if ((fd = tcp_connect(&at)) < 0)
		return 1;
	memset(buf, 'x', sizeof(buf));
	start = now();
	end = start + seconds;
	do {
		ssize_t n = write(fd, buf, sizeof(buf));

		if (n < 0) {
			fprintf(stderr, "ringbench: write: %s\n", strerror(errno));
			return 1;
		}
		written += n;
	} while (now() < end);
	end = now();
	close(fd); /* the sink reads the rest, then sees the end */
	pthread_join(sink, NULL);
	printf("{\"bytes\":%lu,\"received\":%lu,\"seconds\":%.6f,\"mbps\":%.1f}\n", written, s.count, end - start,
	       written / (end - start) / 1e6);
	return 0;
}

/* Reads exactly n bytes unless the peer closes or fails first. */
static ssize_t read_full(int fd, char *buf, size_t n)
{
	size_t got = 0;

	while (got < n) {
		ssize_t r = read(fd, buf + got, n - got);

		if (r <= 0)
			return r;
		got += r;
	}
	return got;
}

static void *conn_server(void *arg)
{
	struct tcp_server *s = arg;
	char buf[16];
	int fd;

	/* Ends when the main thread shuts the listening socket down (accept fails). */
	while ((fd = accept(s->listen_fd, NULL, NULL)) >= 0) {
		if (read_full(fd, buf, sizeof(buf)) == sizeof(buf) && write(fd, buf, sizeof(buf)) == sizeof(buf))
			s->count++;
		close(fd);
	}
	return NULL;
}

/*
 * Ports and TIME_WAIT: the server closes first (right after its answer), so
 * TIME_WAIT is on the server's side and a client port is free again as soon
 * as its connection is gone: connect() never runs out of ports. The client
 * connects to CONN_ADDRS addresses in turn (ADDR, ADDR+1, ...: all local on
 * 127.0.0.0/8; the server listens on every address), each with its own
 * ports, so a (client port, server address) pair comes round again only
 * after CONN_ADDRS x the ports connect() uses (every other port of
 * ip_local_port_range): about 225,000 connections with the default range,
 * 500,000 with bench/sock.ts's. Before that no SYN meets a TIME_WAIT socket
 * (which the kernel lets a newer SYN take over: another path). A reset
 * close on the client (SO_LINGER {1, 0}) would avoid TIME_WAIT but take
 * another path than ordinary connections too.
 */
#define CONN_ADDRS 16

static int tcpconn(const char *addr, int port, double seconds)
{
	struct tcp_server s = { 0 };
	struct sockaddr_in any = { .sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(INADDR_ANY) };
	struct sockaddr_in to[CONN_ADDRS];
	char query[16] = "skbtrail bench?", answer[16];
	unsigned long done = 0;
	double start, end;
	pthread_t server;

	if (tcp_address(addr, port, &to[0]))
		return 1;
	for (int i = 1; i < CONN_ADDRS; i++) {
		to[i] = to[0];
		to[i].sin_addr.s_addr = htonl(ntohl(to[0].sin_addr.s_addr) + i);
	}
	if ((s.listen_fd = tcp_listen(&any)) < 0 || pthread_create(&server, NULL, conn_server, &s))
		return 1;
	start = now();
	end = start + seconds;
	do {
		int fd = tcp_connect(&to[done % CONN_ADDRS]);

		if (fd < 0)
			return 1;
		if (write(fd, query, sizeof(query)) != sizeof(query) || read_full(fd, answer, sizeof(answer)) != sizeof(answer)) {
			fprintf(stderr, "ringbench: connection %lu: no answer: %s\n", done, strerror(errno));
			return 1;
		}
		close(fd);
		done++;
	} while (now() < end);
	end = now();
	shutdown(s.listen_fd, SHUT_RDWR); /* wakes the server's accept() */
	pthread_join(server, NULL);
	printf("{\"connections\":%lu,\"answered\":%lu,\"seconds\":%.6f}\n", done, s.count, end - start);
	return 0;
}

int main(int argc, char **argv)
{
	const char *cpu = getenv("RINGBENCH_CPU");

	setvbuf(stdout, NULL, _IOLBF, 0);
	if (cpu && *cpu) { /* pin this process to one CPU */
		cpu_set_t set;

		CPU_ZERO(&set);
		CPU_SET(atoi(cpu), &set);
		if (sched_setaffinity(0, sizeof(set), &set))
			perror("ringbench: sched_setaffinity");
	}
	if (argc >= 3 && !strcmp(argv[1], "produce"))
		return produce(atof(argv[2]), argc > 3 ? atof(argv[3]) : 0, argc > 4 ? atoi(argv[4]) : 1024);
	if (argc >= 4 && !strcmp(argv[1], "consume"))
		return consume(atoi(argv[2]), atof(argv[3]), argc > 4 ? atoi(argv[4]) : 200);
	if (argc == 5 && !strcmp(argv[1], "flood"))
		return flood(argv[2], atoi(argv[3]), atof(argv[4]));
	if (argc == 3 && !strcmp(argv[1], "openclose"))
		return openclose(atof(argv[2]));
	if (argc == 5 && !strcmp(argv[1], "sink"))
		return sink(argv[2], atoi(argv[3]), atof(argv[4]));
	if (argc == 5 && !strcmp(argv[1], "tcpbulk"))
		return tcpbulk(argv[2], atoi(argv[3]), atof(argv[4]));
	if (argc == 5 && !strcmp(argv[1], "tcpconn"))
		return tcpconn(argv[2], atoi(argv[3]), atof(argv[4]));
	if (argc == 2 && !strcmp(argv[1], "fill"))
		return fill();
	if (argc == 3 && !strcmp(argv[1], "drain"))
		return drain(atoi(argv[2]));
	return usage();
}
