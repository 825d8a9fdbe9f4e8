/*
 * relay.c: the bench's calibration target, an IRC "server" that does as little as possible
 * per delivery, so that the load generator's ceiling can be measured (docs/benchmarks.md).
 *
 * It speaks just enough IRC for bench/loadgen.py and nothing more: NICK + USER -> 001,
 * JOIN -> the joiner's own JOIN echo and 366 (everyone is in one room, whatever its name),
 * PING -> PONG, PRIVMSG -> the line with the sender's prefix, appended to every other
 * member's output buffer. No nick checks, no flood control, no limits beyond a cap on a
 * member's unsent output (past it the member is dropped).
 *
 * One thread, one epoll loop. Each pass reads once from every readable socket, handles the
 * complete lines, then writes once to every client that has output: one write per client
 * per pass, however many lines it was sent. Built by bench/servers.py with the system C
 * compiler into a temporary directory: cc -O2 -o relay relay.c
 *
 * Usage: relay HOST PORT   (PORT 0: the kernel picks one; the first stdout line says which)
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#define IN_SIZE 8192          /* a client's unprocessed input; IRC lines are at most 512 */
#define OUT_CAP (64 << 20)    /* unsent output past which a member is dropped */
#define EVENTS 1024

struct client {
    int fd, joined, dirty, dead, writing;
    char prefix[80];          /* ":nick!u@127.0.0.1 " */
    int prefix_len;
    char nick[32];
    char in[IN_SIZE];
    size_t in_len;
    char *out;
    size_t out_len, out_cap;
};

static struct client **by_fd;             /* indexed by file descriptor */
static int *members, member_count;        /* fds in the room */
static int *dirty, dirty_count;           /* fds to write to at the end of this pass */
static int *dead, dead_count;             /* fds to close at the end of this pass */
static int by_fd_size, members_size, dirty_size, dead_size;
static int epoll_fd;

static void *grow(void *array, int *size, int wanted, size_t item)
{
    if (wanted < *size)
        return array;
    int size2 = *size ? *size : 1024;
    while (size2 <= wanted)
        size2 *= 2;
    array = realloc(array, (size_t)size2 * item);
    if (!array) {
        perror("realloc");
        exit(1);
    }
    memset((char *)array + (size_t)*size * item, 0, (size_t)(size2 - *size) * item);
    *size = size2;
    return array;
}

static void drop(struct client *c)
{
    if (c->dead)
        return;
    c->dead = 1;
    dead = grow(dead, &dead_size, dead_count, sizeof *dead);
    dead[dead_count++] = c->fd;
}

static void mark_dirty(struct client *c)
{
    if (!c->dirty) {
        c->dirty = 1;
        dirty = grow(dirty, &dirty_size, dirty_count, sizeof *dirty);
        dirty[dirty_count++] = c->fd;
    }
}

/* Queue bytes for one client; they go out in this pass's single write. */
static void queue(struct client *c, const char *data, size_t len)
{
    if (c->dead)
        return;
    if (c->out_len + len > OUT_CAP) {
        drop(c);
        return;
    }
    if (c->out_len + len > c->out_cap) {
        size_t cap = c->out_cap ? c->out_cap : 4096;
        while (cap < c->out_len + len)
            cap *= 2;
        c->out = realloc(c->out, cap);
        if (!c->out) {
            perror("realloc");
            exit(1);
        }
        c->out_cap = cap;
    }
    memcpy(c->out + c->out_len, data, len);
    c->out_len += len;
    mark_dirty(c);
}

static void reply(struct client *c, const char *format, ...)
{
    char line[600];
    va_list args;
    va_start(args, format);
    int len = vsnprintf(line, sizeof line, format, args);
    va_end(args);
    queue(c, line, len < (int)sizeof line ? (size_t)len : sizeof line - 1);
}

/* One complete line from a client, without its CR/LF. */
static void handle_line(struct client *c, char *line, size_t len)
{
    static char relayed[IN_SIZE + 128];
    if (len > 8 && !memcmp(line, "PRIVMSG ", 8)) {
        if (!c->joined)
            return;
        memcpy(relayed, c->prefix, (size_t)c->prefix_len);
        memcpy(relayed + c->prefix_len, line, len);
        memcpy(relayed + c->prefix_len + len, "\r\n", 2);
        size_t total = (size_t)c->prefix_len + len + 2;
        for (int i = 0; i < member_count; i++)
            if (members[i] != c->fd)
                queue(by_fd[members[i]], relayed, total);
    } else if (len > 5 && !memcmp(line, "NICK ", 5)) {
        snprintf(c->nick, sizeof c->nick, "%.*s", (int)(len - 5), line + 5);
        c->prefix_len = snprintf(c->prefix, sizeof c->prefix, ":%s!u@127.0.0.1 ", c->nick);
    } else if (len > 5 && !memcmp(line, "USER ", 5) && c->nick[0]) {
        reply(c, ":relay 001 %s :Welcome to the bench relay\r\n", c->nick);
    } else if (len > 5 && !memcmp(line, "JOIN ", 5) && c->nick[0] && !c->joined) {
        c->joined = 1;
        members = grow(members, &members_size, member_count, sizeof *members);
        members[member_count++] = c->fd;
        line[len] = '\0';
        reply(c, "%sJOIN %s\r\n", c->prefix, line + 5);
        reply(c, ":relay 366 %s %s :End of /NAMES list\r\n", c->nick, line + 5);
    } else if (len >= 4 && !memcmp(line, "PING", 4)) {
        line[len] = '\0';
        reply(c, "PONG%s\r\n", line + 4);
    } else if (len >= 4 && !memcmp(line, "QUIT", 4)) {
        drop(c);
    }
}

static void read_client(struct client *c)
{
    ssize_t got = read(c->fd, c->in + c->in_len, IN_SIZE - c->in_len);
    if (got <= 0) {
        if (got < 0 && (errno == EAGAIN || errno == EINTR))
            return;
        drop(c);
        return;
    }
    c->in_len += (size_t)got;
    char *start = c->in, *end = c->in + c->in_len, *newline;
    while (!c->dead && (newline = memchr(start, '\n', (size_t)(end - start)))) {
        size_t len = (size_t)(newline - start);
        if (len && start[len - 1] == '\r')
            len--;
        handle_line(c, start, len);
        start = newline + 1;
    }
    c->in_len = (size_t)(end - start);
    if (c->in_len == IN_SIZE)
        drop(c);  /* a line longer than the whole buffer: not a client we serve */
    memmove(c->in, start, c->in_len);
}

static void watch(struct client *c, int writing)
{
    struct epoll_event event = {.events = EPOLLIN | (writing ? EPOLLOUT : 0), .data.fd = c->fd};
    c->writing = writing;
    epoll_ctl(epoll_fd, EPOLL_CTL_MOD, c->fd, &event);
}

static void flush(struct client *c)
{
    c->dirty = 0;
    if (c->dead || !c->out_len)
        return;
    ssize_t sent = write(c->fd, c->out, c->out_len);
    if (sent < 0) {
        if (errno != EAGAIN && errno != EINTR)
            drop(c);
        sent = 0;
    }
    c->out_len -= (size_t)sent;
    memmove(c->out, c->out + sent, c->out_len);
    if (c->writing != (c->out_len > 0))
        watch(c, c->out_len > 0);  /* wait for room only while output is left over */
}

static void accept_all(int listener)
{
    for (;;) {
        int fd = accept4(listener, NULL, NULL, SOCK_NONBLOCK);
        if (fd < 0)
            return;
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        by_fd = grow(by_fd, &by_fd_size, fd, sizeof *by_fd);
        struct client *c = calloc(1, sizeof *c);
        if (!c) {
            perror("calloc");
            exit(1);
        }
        c->fd = fd;
        by_fd[fd] = c;
        struct epoll_event event = {.events = EPOLLIN, .data.fd = fd};
        epoll_ctl(epoll_fd, EPOLL_CTL_ADD, fd, &event);
    }
}

static void close_dead(void)
{
    for (int i = 0; i < dead_count; i++) {
        struct client *c = by_fd[dead[i]];
        for (int m = 0; m < member_count; m++)
            if (members[m] == c->fd) {
                members[m] = members[--member_count];
                break;
            }
        close(c->fd);
        by_fd[c->fd] = NULL;
        free(c->out);
        free(c);
    }
    dead_count = 0;
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: %s HOST PORT\n", argv[0]);
        return 2;
    }
    struct rlimit files;
    if (getrlimit(RLIMIT_NOFILE, &files) == 0) {
        files.rlim_cur = files.rlim_max;  /* thousands of clients */
        setrlimit(RLIMIT_NOFILE, &files);
    }
    signal(SIGPIPE, SIG_IGN);
    struct sockaddr_in address = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[2]))};
    if (inet_pton(AF_INET, argv[1], &address.sin_addr) != 1) {
        fprintf(stderr, "relay: not an IPv4 address: %s\n", argv[1]);
        return 2;
    }
    int listener = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0), one = 1;
    setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    socklen_t size = sizeof address;
    if (bind(listener, (struct sockaddr *)&address, sizeof address) || listen(listener, 1024)
        || getsockname(listener, (struct sockaddr *)&address, &size)) {
        perror("relay");
        return 1;
    }
    printf("relay listening on %s:%d\n", argv[1], ntohs(address.sin_port));
    fflush(stdout);

    epoll_fd = epoll_create1(0);
    struct epoll_event event = {.events = EPOLLIN, .data.fd = listener}, events[EVENTS];
    epoll_ctl(epoll_fd, EPOLL_CTL_ADD, listener, &event);
    for (;;) {
        int ready = epoll_wait(epoll_fd, events, EVENTS, -1);
        for (int i = 0; i < ready; i++) {
            int fd = events[i].data.fd;
            if (fd == listener) {
                accept_all(listener);
                continue;
            }
            struct client *c = by_fd[fd];
            if (c->dead)
                continue;
            if (events[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP))
                read_client(c);
            if (events[i].events & EPOLLOUT)
                mark_dirty(c);  /* room again: written below, with this pass's output */
        }
        for (int i = 0; i < dirty_count; i++)
            flush(by_fd[dirty[i]]);
        dirty_count = 0;
        close_dead();
    }
}
