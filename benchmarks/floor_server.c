/* The machine's floor for the cache-hit benchmark: answers every HTTP/1.1 request on
 * 127.0.0.1:PORT with the bytes of FILE, keep-alive, one thread, epoll. Nothing of Python
 * is in its path, so what wrk measures against it is the kernel, the loopback and the
 * scheduler of this machine: no server here, in any language, answers faster.
 *
 * Build: cc -O2 -o floor_server floor_server.c     Run: floor_server PORT FILE
 * (benchmarks/accel_latency.py builds and runs it when a C compiler is installed.)
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_FDS 4096
#define BUF 65536

static char *bufs[MAX_FDS];
static size_t used[MAX_FDS];

/* Bytes of one whole request at the start of b (head and Content-Length body), or 0. */
static size_t framed(const char *b, size_t n) {
    const char *end = memmem(b, n, "\r\n\r\n", 4);
    if (end == NULL) return 0;
    size_t head = (size_t)(end - b) + 4, body = 0;
    for (const char *p = b; p < end; p++) {
        if ((p == b || p[-1] == '\n') && strncasecmp(p, "content-length:", 15) == 0) {
            body = strtoul(p + 15, NULL, 10);
            break;
        }
    }
    return head + body <= n ? head + body : 0;
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: %s PORT FILE\n", argv[0]);
        return 2;
    }
    FILE *f = fopen(argv[2], "rb");
    if (f == NULL) {
        perror(argv[2]);
        return 2;
    }
    static char body[BUF], answer[BUF + 256];
    size_t blen = fread(body, 1, sizeof body, f);
    fclose(f);
    int alen = snprintf(answer, 256,
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                        "Content-Length: %zu\r\n\r\n", blen);
    memcpy(answer + alen, body, blen);
    alen += (int)blen;

    int ls = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0), one = 1;
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[1]))};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(ls, (struct sockaddr *)&addr, sizeof addr) != 0 || listen(ls, 1024) != 0) {
        perror("bind/listen");
        return 1;
    }
    int ep = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = ls}, events[256];
    epoll_ctl(ep, EPOLL_CTL_ADD, ls, &ev);
    for (;;) {
        int n = epoll_wait(ep, events, 256, -1);
        for (int i = 0; i < n; i++) {
            int fd = events[i].data.fd;
            if (fd == ls) {
                int c;
                while ((c = accept4(ls, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
                    if (c >= MAX_FDS) {
                        close(c);
                        continue;
                    }
                    setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    if (bufs[c] == NULL) bufs[c] = malloc(BUF);
                    used[c] = 0;
                    struct epoll_event cev = {.events = EPOLLIN, .data.fd = c};
                    epoll_ctl(ep, EPOLL_CTL_ADD, c, &cev);
                }
                continue;
            }
            ssize_t got = read(fd, bufs[fd] + used[fd], BUF - used[fd]);
            if (got <= 0) {
                if (got < 0 && errno == EAGAIN) continue;
                close(fd);  /* closing removes it from the epoll set */
                continue;
            }
            used[fd] += (size_t)got;
            size_t at = 0, whole;
            while ((whole = framed(bufs[fd] + at, used[fd] - at)) > 0) {
                /* a loopback socket's buffer takes a small answer whole */
                if (write(fd, answer, (size_t)alen) != alen) break;
                at += whole;
            }
            memmove(bufs[fd], bufs[fd] + at, used[fd] - at);
            used[fd] -= at;
            if (used[fd] == BUF) { /* a request larger than the buffer: not ours to serve */
                close(fd);
            }
        }
    }
}
