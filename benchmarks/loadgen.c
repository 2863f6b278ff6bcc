/* The load generator of benchmarks/server_throughput.py (built there with the system's C
 * compiler; the script falls back to a Python one without it).
 *
 *   loadgen PORT REQUESTS SOURCES WINDOW TOTAL SECONDS
 *
 * REQUESTS is a file of requests, each a source index (1 octet), a length (2 octets, big
 * endian) and the datagram.  Source i is a UDP socket bound to 127.0.0.(2 + i) and connected
 * to 127.0.0.1 PORT; a request is always sent from its own source (an Autokey request's MAC
 * hashes the client's address).  WINDOW requests are kept outstanding: each reply sends the
 * next request of the pool, in turn; after 100 ms without a reply the window is sent again
 * (lost datagrams).  A reply is matched to its request by its origin timestamp (the
 * request's transmit timestamp, unique in the pool) for its latency.  Ends after TOTAL
 * replies or SECONDS, then waits 100 ms for late replies.  Prints one line:
 *
 *   replies late sent seconds p50_us p99_us
 *
 * (replies: within the measured time; late: during the last 100 ms.)
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_SOURCES 250
#define MAX_REQUESTS 65536
#define HASH_SLOTS (1 << 17)
#define BUCKETS 100000 /* latency histogram: 1 us buckets up to 100 ms */

struct request {
    int source;
    uint16_t length;
    unsigned char data[2048];
    uint64_t stamp;
    double sent;
};

static struct request *pool;
static int pool_size;
static int slots[HASH_SLOTS];
static uint64_t histogram[BUCKETS + 1];

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static uint64_t stamp_at(const unsigned char *p) {
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v = v << 8 | p[i];
    return v;
}

static unsigned slot_of(uint64_t stamp) {
    return (unsigned)((stamp * 0x9E3779B97F4A7C15ull) >> 47) & (HASH_SLOTS - 1);
}

static void index_pool(void) {
    memset(slots, -1, sizeof slots);
    for (int i = 0; i < pool_size; i++) {
        unsigned s = slot_of(pool[i].stamp);
        while (slots[s] >= 0) s = (s + 1) & (HASH_SLOTS - 1);
        slots[s] = i;
    }
}

static int find(uint64_t stamp) {
    unsigned s = slot_of(stamp);
    while (slots[s] >= 0) {
        if (pool[slots[s]].stamp == stamp) return slots[s];
        s = (s + 1) & (HASH_SLOTS - 1);
    }
    return -1;
}

static int read_pool(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    pool = calloc(MAX_REQUESTS, sizeof *pool);
    unsigned char head[3];
    while (pool_size < MAX_REQUESTS && fread(head, 1, 3, f) == 3) {
        struct request *r = &pool[pool_size];
        r->source = head[0];
        r->length = (uint16_t)(head[1] << 8 | head[2]);
        if (r->length < 48 || r->length > sizeof r->data
            || fread(r->data, 1, r->length, f) != r->length) {
            fclose(f);
            return -1;
        }
        r->stamp = stamp_at(r->data + 40);
        pool_size++;
    }
    fclose(f);
    return pool_size ? 0 : -1;
}

int main(int argc, char **argv) {
    if (argc != 7) {
        fprintf(stderr, "usage: loadgen PORT REQUESTS SOURCES WINDOW TOTAL SECONDS\n");
        return 2;
    }
    int port = atoi(argv[1]), sources = atoi(argv[3]), window = atoi(argv[4]);
    long total = atol(argv[5]);
    double seconds = atof(argv[6]);
    if (sources < 1 || sources > MAX_SOURCES || window < 1 || read_pool(argv[2]) < 0) {
        fprintf(stderr, "loadgen: bad arguments or request file\n");
        return 2;
    }
    index_pool();
    int epoll = epoll_create1(0);
    int socks[MAX_SOURCES];
    for (int i = 0; i < sources; i++) {
        struct sockaddr_in local = {.sin_family = AF_INET}, server = {.sin_family = AF_INET};
        local.sin_addr.s_addr = htonl(0x7F000002u + (uint32_t)i);
        server.sin_addr.s_addr = htonl(0x7F000001u);
        server.sin_port = htons((uint16_t)port);
        int size = 1 << 20;
        socks[i] = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
        setsockopt(socks[i], SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
        if (bind(socks[i], (struct sockaddr *)&local, sizeof local) < 0
            || connect(socks[i], (struct sockaddr *)&server, sizeof server) < 0) {
            perror("loadgen: socket");
            return 1;
        }
        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)i};
        epoll_ctl(epoll, EPOLL_CTL_ADD, socks[i], &ev);
    }
    long sent = 0, replies = 0, late = 0;
    int next = 0;
    unsigned char buffer[4096];
    struct epoll_event events[64];
    double start = now(), deadline = start + seconds;
#define SEND_NEXT() do {                                                        \
        struct request *r = &pool[next];                                      \
        next = (next + 1) % pool_size;                                        \
        r->sent = now();                                                      \
        if (send(socks[r->source % sources], r->data, r->length, 0) >= 0) sent++; \
    } while (0)
    for (int i = 0; i < window; i++) SEND_NEXT();
    double end = start;
    int draining = 0;
    double drain_until = 0;
    for (;;) {
        double t = now();
        if (!draining && (replies >= total || t > deadline)) {
            draining = 1;
            end = t;
            drain_until = t + 0.1;
        }
        if (draining && t > drain_until) break;
        int n = epoll_wait(epoll, events, 64, 100);
        if (n == 0 && !draining) {
            for (int i = 0; i < window; i++) SEND_NEXT();
            continue;
        }
        for (int e = 0; e < n; e++) {
            int fd = socks[events[e].data.u32];
            for (;;) {
                ssize_t got = recv(fd, buffer, sizeof buffer, 0);
                if (got < 0) break;
                if (got < 48) continue;
                int idx = find(stamp_at(buffer + 24));
                double arrived = now();
                if (draining) {
                    late++;
                    continue;
                }
                replies++;
                if (idx >= 0) {
                    long us = (long)((arrived - pool[idx].sent) * 1e6);
                    histogram[us < 0 ? 0 : us > BUCKETS ? BUCKETS : us]++;
                }
                if (sent < total + window) SEND_NEXT();
            }
        }
    }
    uint64_t counted = 0, p50 = 0, p99 = 0, seen = 0;
    for (int i = 0; i <= BUCKETS; i++) counted += histogram[i];
    for (int i = 0; i <= BUCKETS; i++) {
        seen += histogram[i];
        if (!p50 && seen * 2 >= counted) p50 = (uint64_t)i;
        if (!p99 && seen * 100 >= counted * 99) {
            p99 = (uint64_t)i;
            break;
        }
    }
    printf("%ld %ld %ld %.6f %llu %llu\n", replies, late, sent, end - start,
           (unsigned long long)p50, (unsigned long long)p99);
    return 0;
}
