/* ntpauto._batch: the busy server's common replies, answered in batches of datagrams.
 *
 * One Core per UDP socket.  Core.serve(fd, ...) reads what the socket holds with recvmmsg,
 * answers the requests the Python server would answer from its first stage without any
 * decision of its own (ntpauto.server.Server.answer: plain client requests, requests under a
 * trusted MD5 or SHA1 key, Autokey session-key requests without fields from a client whose
 * cookie the Python server has already made), sends those replies with sendmmsg, and hands
 * every other datagram back to Python unchanged, in order.  Everything it answers with was
 * given to it by the Python server (ntpauto/batch.py): the reply header's system octets and
 * the engine time they hold for, the trusted keys, the Autokey cookie and echo key of each
 * client, and the restrict list's rules as they bear on serving (a limited source is
 * checked against the engine's rate limiter, whose table, _limiter.h, the Python server
 * shares).  It has no state or rule of its own: it applies the Python server's as the
 * Python server does, and what it has not been given goes back to Python.
 *
 * Each datagram's receive timestamp is the kernel's (SO_TIMESTAMPNS, use_kernel_stamps()),
 * for the replies it makes and for the datagrams it hands back, so that neither the time a
 * request waited in the socket nor the nap costs accuracy: a read that found less than a
 * full batch waits once (nap, in Core()) and reads again, so that a busy server wakes once
 * per batch rather than once per few datagrams.
 *
 * Linux only (recvmmsg, sendmmsg).  The replies are byte for byte the Python server's
 * (tests/test_batch.py compares them under a fixed clock).
 */

#define PY_SSIZE_T_CLEAN
#define _GNU_SOURCE
#include <Python.h>

#include <arpa/inet.h>
#include <errno.h>
#include <math.h>
#include <netinet/in.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "_digests.h"
#include "_limiter.h"

#define BATCH 32            /* datagrams per recvmmsg */
#define SEND_CHUNK 8        /* replies per transmit time and sendmmsg */
#define MAX_KEYS 64         /* trusted symmetric keys mirrored (more: the keyed path stays in Python) */
#define MAX_RULES 256       /* restrict rules with an address (more: every request to Python) */
#define PAIR_SLOTS 8192     /* Autokey clients with their cookie (cleared at half) */
#define REPLY_MAX (48 + 4 + 20)
#define CONTROL_SIZE (CMSG_SPACE(sizeof(struct timespec)) + CMSG_SPACE(sizeof(struct in6_pktinfo)))
#define REPLY_CONTROL_SIZE CMSG_SPACE(sizeof(struct in6_pktinfo))
#define NTP_UNIX_OFFSET 2208988800.0
#define ECHO_BITS 12
#define ECHO_MULTIPLIER 0x9E3779B1u
#define UNSYNC_BITS 0xC0
#define MODE_SERVER 4

typedef struct {
    uint8_t word[4];        /* the key ID as on the wire */
    int kind;               /* DIGEST_MD5, DIGEST_SHA1, 0: a trusted key of another type */
    size_t length;          /* its secret's octets */
    uint8_t secret[64];
} Key;

typedef struct {
    uint8_t network[16];    /* the rule's network address */
    uint8_t family_len;     /* 4 or 16 */
    uint8_t prefix;         /* its prefix length */
    uint8_t flags;          /* 0 (not served here), or SERVE with LIMITED_FLAG and KOD_FLAG */
} Rule;

enum { SERVE = 1, LIMITED_FLAG = 2, KOD_FLAG = 4 };

typedef struct {
    uint8_t used;
    uint8_t family_len;
    uint8_t address[16];
    uint8_t local[16];      /* the server's side: the address the client asked */
    uint8_t cookie[4];
    uint32_t echo;
    uint64_t generation;
    uint32_t valid_from, valid_until;   /* the seed's interval (NTP seconds) */
} Pair;

typedef struct {
    PyObject_HEAD
    size_t size;                        /* receive buffer per datagram */
    uint8_t *buffers;                   /* BATCH * size */
    struct mmsghdr in[BATCH], out[BATCH];
    struct iovec in_iov[BATCH], out_iov[BATCH];
    struct sockaddr_storage from[BATCH];
    uint8_t replies[BATCH][REPLY_MAX];
    uint8_t control[BATCH][CONTROL_SIZE];
    /* each datagram's destination (a wildcard socket's IP_PKTINFO / IPV6_PKTINFO): the
     * address its reply leaves from and, for Autokey, the server's side of its session key */
    const struct cmsghdr *pktinfo[BATCH];
    uint8_t destination[BATCH][16];
    uint8_t reply_control[BATCH][REPLY_CONTROL_SIZE];
    size_t reply_control_len[BATCH];
    long nap_ns;                        /* the nap of a read that found little (0: none) */
    int nap_below;                      /* ... fewer datagrams than this */
    /* the reply header (Server._new_base) and the engine time it holds for */
    int have_header;
    uint8_t first_bits, stratum, system[21];
    double header_from, header_until;
    /* symmetric keys */
    Key keys[MAX_KEYS];
    int key_count, keys_complete;
    /* Autokey session keys */
    int autokey_digest;                 /* 0: none */
    uint8_t local[16];
    int local_len;
    uint64_t generation;
    Pair *pairs;
    int pair_count;
    /* the restrict list (RestrictList.flags_for): defaults, then rules by prefix, longest
     * first; each a Rule's flags */
    int have_rules;
    uint8_t default4, default6;
    Rule rules[MAX_RULES];
    int rule_count;
    Limiter *limiter;                   /* the engine's (LIMITED sources: none, Python's) */
    /* tests: a fixed clock (Unix seconds), or NaN for the real one */
    double fixed_now;
} Core;

/* -- time -------------------------------------------------------------------------------- */

static double unix_now(Core *self)
{
    if (!isnan(self->fixed_now))
        return self->fixed_now;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* A non-negative double truncated to an integer modulo 2**64, exactly: a double of 2**64 or
 * more is an integer, and so is what is left of it below 2**64. */
static uint64_t wrap64(double x)
{
    const double era = 18446744073709551616.0;  /* 2**64 */
    if (x >= era)
        x -= era * (double)(uint64_t)(x / era);
    return (uint64_t)x;
}

/* unix_to_ntp as the Python server computes it (int((t + offset) * 2**32) mod 2**64): from
 * 2036-02-07 (NTP era 1) the product is 2**64 or more, where a cast alone is undefined (it
 * gave zeros). */
static uint64_t ntp64(double t)
{
    double x = (t + NTP_UNIX_OFFSET) * 4294967296.0;
    return x >= 0 ? wrap64(x) : (uint64_t)0 - wrap64(-x);
}

/* Datagram i came with destination ancillary data c; its reply leaves with (level, type,
 * value): the address to send it from. */
static void reply_from(Core *self, int i, const struct cmsghdr *c, int level, int type,
                       const void *value, size_t length)
{
    struct cmsghdr *r = (struct cmsghdr *)self->reply_control[i];
    r->cmsg_level = level;
    r->cmsg_type = type;
    r->cmsg_len = CMSG_LEN(length);
    memcpy(CMSG_DATA(r), value, length);
    self->reply_control_len[i] = CMSG_SPACE(length);
    self->pktinfo[i] = c;
}

/* The ancillary data of datagram i: when it arrived (Unix seconds: the kernel's stamp,
 * SO_TIMESTAMPNS, or now where there is none, and always the fixed clock of tests), and on a
 * wildcard socket its destination with the ancillary data that replies from it, as
 * ntpauto.udpsocket.Destinations reads them. */
static double read_control(Core *self, int i)
{
    double arrived = NAN;
    struct msghdr *h = &self->in[i].msg_hdr;
    self->pktinfo[i] = NULL;
    self->reply_control_len[i] = 0;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(h); c != NULL; c = CMSG_NXTHDR(h, c)) {
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_TIMESTAMPNS
            && c->cmsg_len >= CMSG_LEN(sizeof(struct timespec))) {
            struct timespec ts;
            memcpy(&ts, CMSG_DATA(c), sizeof ts);
            arrived = (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
        } else if (c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_PKTINFO
                   && c->cmsg_len >= CMSG_LEN(sizeof(struct in_pktinfo))) {
            struct in_pktinfo in, out;
            memcpy(&in, CMSG_DATA(c), sizeof in);
            memcpy(self->destination[i], &in.ipi_addr, 4);
            /* reply from the local address the kernel gives, routed as usual */
            memset(&out, 0, sizeof out);
            out.ipi_spec_dst = in.ipi_spec_dst;
            reply_from(self, i, c, IPPROTO_IP, IP_PKTINFO, &out, sizeof out);
        } else if (c->cmsg_level == IPPROTO_IPV6 && c->cmsg_type == IPV6_PKTINFO
                   && c->cmsg_len >= CMSG_LEN(sizeof(struct in6_pktinfo))) {
            struct in6_pktinfo in, out;
            memcpy(&in, CMSG_DATA(c), sizeof in);
            const uint8_t *to = (const uint8_t *)&in.ipi6_addr;
            memcpy(self->destination[i], to, 16);
            /* a multicast destination is no source; the interface stays for link-local */
            memset(&out, 0, sizeof out);
            if (to[0] != 0xFF)
                out.ipi6_addr = in.ipi6_addr;
            if (to[0] == 0xFE && (to[1] & 0xC0) == 0x80)
                out.ipi6_ifindex = in.ipi6_ifindex;
            reply_from(self, i, c, IPPROTO_IPV6, IPV6_PKTINFO, &out, sizeof out);
        }
    }
    return isnan(arrived) || !isnan(self->fixed_now) ? unix_now(self) : arrived;
}

static void put64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (56 - 8 * i));
}

/* -- tables -------------------------------------------------------------------------------- */

/* The raw address of a received datagram's source: 4 or 16 octets, 0 for another family. */
static int source_address(const struct sockaddr_storage *ss, const uint8_t **raw, int *port)
{
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *sin = (const struct sockaddr_in *)ss;
        *raw = (const uint8_t *)&sin->sin_addr;
        *port = ntohs(sin->sin_port);
        return 4;
    }
    if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)ss;
        *raw = (const uint8_t *)&sin6->sin6_addr;
        *port = ntohs(sin6->sin6_port);
        return 16;
    }
    return 0;
}

/* How the restrict list serves raw address a (n octets): RestrictList.flags_for, the first
 * rule of its family whose network holds it (longest prefix first), else the family's
 * default; 0 when no rules are known. */
static int restrict_flags(Core *self, const uint8_t *a, int n)
{
    if (!self->have_rules)
        return 0;
    for (int r = 0; r < self->rule_count; r++) {
        const Rule *rule = &self->rules[r];
        if (rule->family_len != n)
            continue;
        int whole = rule->prefix / 8, rest = rule->prefix % 8;
        if (memcmp(rule->network, a, (size_t)whole) != 0)
            continue;
        if (rest && ((rule->network[whole] ^ a[whole]) & (uint8_t)(0xFF << (8 - rest))))
            continue;
        return rule->flags;
    }
    return n == 4 ? self->default4 : self->default6;
}

static Pair *pair_of(Core *self, const uint8_t *raw, const uint8_t *local, int n)
{
    uint32_t i = hash_address(raw, n) & (PAIR_SLOTS - 1);
    for (;;) {
        Pair *p = &self->pairs[i];
        if (!p->used)
            return NULL;
        if (p->family_len == n && memcmp(p->address, raw, (size_t)n) == 0
            && memcmp(p->local, local, (size_t)n) == 0)
            return p;
        i = (i + 1) & (PAIR_SLOTS - 1);
    }
}

static int address_arg(Py_buffer *b)
{
    if (b->len != 4 && b->len != 16) {
        PyErr_SetString(PyExc_ValueError, "an address is 4 or 16 octets");
        return 0;
    }
    return 1;
}

/* -- the answers --------------------------------------------------------------------------- */

enum { LEFT = 0, SERVED, BADAUTH, SESSION_BADAUTH, DROPPED, WITHHELD, KISSED };
/* SERVED and BADAUTH count as served (BADAUTH also as badauth), as the Python server counts
 * a request under a symmetric key; a session-key request failing its MAC counts as badauth
 * only (ntpauto.autokey.serving.SessionKeys.serve).  A LIMITED source over its rate
 * (Server._limited): DROPPED without a kiss flag, else WITHHELD (a kiss went out within
 * the interval) or KISSED (the RATE kiss). */

typedef struct {
    unsigned long long received, served, badauth, limited, kod_withheld, kodsent;
} Counts;

/* The counters of one decision, as the Python server counts it. */
static void count(Counts *c, int verdict)
{
    c->received++;
    c->served += verdict == SERVED || verdict == BADAUTH;
    c->badauth += verdict == BADAUTH || verdict == SESSION_BADAUTH;
    c->limited += verdict == DROPPED || verdict == WITHHELD || verdict == KISSED;
    c->kod_withheld += verdict == WITHHELD;
    c->kodsent += verdict == KISSED;
}

/* The RATE kiss to request d received at rx (Server.kiss): no time in it. */
static void kiss(Core *self, const uint8_t *d, uint64_t rx, uint8_t *out)
{
    out[0] = (uint8_t)(UNSYNC_BITS | (d[0] & 0x38) | MODE_SERVER);
    out[1] = 0;
    out[2] = d[2];
    out[3] = self->system[0];  /* precision */
    memset(out + 4, 0, 8);
    memcpy(out + 12, "RATE", 4);
    memset(out + 16, 0, 8);
    memcpy(out + 24, d + 40, 8);
    put64(out + 32, rx);
    put64(out + 40, rx);
}

/* The reply header (48 octets) to request d at rx, transmit timestamp still zero. */
static void header(Core *self, const uint8_t *d, uint64_t rx, uint8_t *out)
{
    out[0] = (uint8_t)(self->first_bits | (d[0] & 0x38) | MODE_SERVER);
    out[1] = self->stratum;
    out[2] = d[2];
    memcpy(out + 3, self->system, 21);
    memcpy(out + 24, d + 40, 8);
    put64(out + 32, rx);
    memset(out + 40, 0, 8);
}

static const Key *key_of(Core *self, const uint8_t *word)
{
    for (int i = 0; i < self->key_count; i++)
        if (memcmp(self->keys[i].word, word, 4) == 0)
            return &self->keys[i];
    return NULL;
}

/* Decide the answer to datagram d (n octets) from raw source address a (alen octets):
 * LEFT (Python's), or the reply's length in *length with its kind.  *mac_key says how the
 * transmit-time MAC is made once the batch's transmit time is known: NULL (none), a Key, or
 * (autokey) the reply key in reply_key. */
typedef struct {
    int how;                 /* 0: no MAC, 1: symmetric key, 2: session key, 3: crypto-NAK,
                                4: the RATE kiss (complete) */
    const Key *key;
    uint8_t reply_key[20];
    size_t reply_key_len;
    uint32_t echo;
    int kind;                /* an Autokey reply's digest (its timestamp tagged), else 0 */
    size_t length;
} Plan;

static int decide(Core *self, const uint8_t *d, Py_ssize_t n, const uint8_t *a, int alen,
                  const uint8_t *local, int port, double now, uint64_t rx, uint8_t *reply,
                  Plan *plan)
{
    if (n != 48 && n != 68 && n != 72)
        return LEFT;
    uint8_t first = d[0];
    if ((first & 7) != 3 || (first & 0x38) < 0x08 || (first & 0x38) > 0x20 || port == 0)
        return LEFT;
    if (!self->have_header || !(self->header_from <= now && now < self->header_until))
        return LEFT;
    int flags = restrict_flags(self, a, alen);
    if (!flags)
        return LEFT;
    /* Everything that sends a request to Python is decided before the rate limiter counts
     * it, so that no request is counted twice. */
    const uint8_t *word = d + 48;
    int session = n > 48 && (word[0] || word[1]);  /* above 65535: an Autokey session key */
    Pair *p = NULL;
    const Key *key = NULL;
    if (session) {
        uint32_t crypto_now = (uint32_t)(rx >> 32);
        if (!self->autokey_digest || self->first_bits == UNSYNC_BITS || local == NULL)
            return LEFT;
        p = pair_of(self, a, local, alen);
        if (p == NULL || p->generation != self->generation
            || !(p->valid_from <= crypto_now && crypto_now < p->valid_until))
            return LEFT;
    } else if (n > 48) {
        if (!self->keys_complete)
            return LEFT;
        key = key_of(self, word);
        if (key != NULL && key->kind == 0)
            return LEFT;  /* a trusted key of a type answered in Python (AES-CMAC) */
    }
    memset(plan, 0, sizeof *plan);
    plan->length = 48;
    if ((flags & LIMITED_FLAG) && !session) {
        /* session-key requests without fields are not rate-limited (Server._restricted) */
        if (self->limiter == NULL)
            return LEFT;
        int over = limiter_check(self->limiter, a, alen, now);
        if (over != PASS) {
            if (!(flags & KOD_FLAG))
                return DROPPED;
            if (over != KISS)
                return WITHHELD;
            kiss(self, d, rx, reply);
            plan->how = 4;
            return KISSED;
        }
    }
    header(self, d, rx, reply);
    if (n == 48)
        return SERVED;
    const uint8_t *mac = d + 52;
    size_t mac_len = (size_t)n - 52;
    uint8_t digest[20];
    if (session) {
        int kind = self->autokey_digest;
        uint8_t block[16 + 16 + 4 + 4];
        size_t blen = 0;
        /* the request's key: H(client || server || key ID || cookie) */
        memcpy(block, a, (size_t)alen);
        memcpy(block + alen, local, (size_t)alen);
        blen = 2 * (size_t)alen;
        memcpy(block + blen, word, 4);
        memcpy(block + blen + 4, p->cookie, 4);
        blen += 8;
        uint8_t key[20];
        size_t key_len = digest2(kind, block, blen, NULL, 0, key);
        size_t got = digest2(kind, key, key_len, d, 48, digest);
        plan->echo = p->echo;
        plan->kind = kind;
        if (got != mac_len || !equal_octets(digest, mac, got)) {
            plan->how = 3;
            plan->length = 52;
            return SESSION_BADAUTH;
        }
        /* the reply's key: H(server || client || key ID || cookie) */
        memcpy(block, local, (size_t)alen);
        memcpy(block + alen, a, (size_t)alen);
        plan->reply_key_len = digest2(kind, block, blen, NULL, 0, plan->reply_key);
        memcpy(reply + 48, word, 4);
        plan->how = 2;
        plan->length = 52 + got;
        return SERVED;
    }
    if (key == NULL || digest2(key->kind, key->secret, key->length, d, 48, digest) != mac_len
        || !equal_octets(digest, mac, mac_len)) {
        plan->how = 3;
        plan->length = 52;
        return BADAUTH;
    }
    memcpy(reply + 48, word, 4);
    plan->how = 1;
    plan->key = key;
    plan->length = 52 + mac_len;
    return SERVED;
}

/* The transmit timestamp and MAC of a planned reply, at Unix time t. */
static void finish(const Plan *plan, uint8_t *reply, double t)
{
    if (plan->how == 4)
        return;
    if (plan->kind) {
        /* an Autokey reply: the timestamp tagged with the client's echo key */
        uint64_t high = (uint64_t)((t + NTP_UNIX_OFFSET) * (double)(1u << (32 - ECHO_BITS)))
                        & ((UINT64_C(1) << (64 - ECHO_BITS)) - 1);
        uint32_t tag = (uint32_t)(((uint32_t)(high ^ plan->echo)) * ECHO_MULTIPLIER)
                       >> (32 - ECHO_BITS);
        put64(reply + 40, high << ECHO_BITS | tag);
    } else {
        put64(reply + 40, ntp64(t));
    }
    if (plan->how == 1) {
        digest2(plan->key->kind, plan->key->secret, plan->key->length, reply, 48, reply + 52);
    } else if (plan->how == 2) {
        digest2(plan->kind, plan->reply_key, plan->reply_key_len, reply, 48, reply + 52);
    } else if (plan->how == 3) {
        memset(reply + 48, 0, 4);  /* the crypto-NAK: a key ID of zero, no digest */
    }
}

/* -- Core ---------------------------------------------------------------------------------- */

static PyObject *address_tuple(const struct sockaddr_storage *ss)
{
    char host[INET6_ADDRSTRLEN];
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *sin = (const struct sockaddr_in *)ss;
        inet_ntop(AF_INET, &sin->sin_addr, host, sizeof host);
        return Py_BuildValue("(si)", host, ntohs(sin->sin_port));
    }
    if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)ss;
        inet_ntop(AF_INET6, &sin6->sin6_addr, host, sizeof host);
        if (sin6->sin6_scope_id) {
            /* as Python's socket module writes a scoped address: host%interface */
            PyObject *socket = PyImport_ImportModule("socket");
            if (socket == NULL)
                return NULL;
            PyObject *name = PyObject_CallMethod(socket, "if_indextoname", "I",
                                                 (unsigned int)sin6->sin6_scope_id);
            Py_DECREF(socket);
            PyObject *result = NULL;
            if (name == NULL) {
                PyErr_Clear();
                result = Py_BuildValue("(siII)", host, ntohs(sin6->sin6_port),
                                       (unsigned int)ntohl(sin6->sin6_flowinfo),
                                       (unsigned int)sin6->sin6_scope_id);
            } else {
                PyObject *scoped = PyUnicode_FromFormat("%s%%%U", host, name);
                Py_DECREF(name);
                if (scoped != NULL)
                    result = Py_BuildValue("(NiII)", scoped, ntohs(sin6->sin6_port),
                                           (unsigned int)ntohl(sin6->sin6_flowinfo),
                                           (unsigned int)sin6->sin6_scope_id);
            }
            return result;
        }
        return Py_BuildValue("(siII)", host, ntohs(sin6->sin6_port),
                             (unsigned int)ntohl(sin6->sin6_flowinfo), 0u);
    }
    Py_RETURN_NONE;
}

/* A leftover's ancillary data as Python's recvmsg gives it: [(level, type, data)] with its
 * destination (a wildcard socket), else []. */
static PyObject *ancillary_list(const struct cmsghdr *c)
{
    if (c == NULL)
        return PyList_New(0);
    Py_ssize_t length = (Py_ssize_t)(c->cmsg_len - CMSG_LEN(0));
    return Py_BuildValue("[(iiy#)]", c->cmsg_level, c->cmsg_type,
                         (const char *)CMSG_DATA(c), length);
}

static int read_done(int err)
{
    return err == EAGAIN || err == EWOULDBLOCK || err == EINTR || err == ECONNREFUSED;
}

/* Send replies out[at..count); failures are appended to errors as (errno, address). */
static int send_all(Core *self, int fd, int at, int count, PyObject **errors)
{
    while (at < count) {
        int sent = sendmmsg(fd, self->out + at, (unsigned int)(count - at), 0);
        if (sent > 0) {
            at += sent;
            continue;
        }
        int err = errno;
        if (sent < 0 && err == EINTR)
            continue;
        if (*errors == NULL && (*errors = PyList_New(0)) == NULL)
            return -1;
        PyObject *where = address_tuple((struct sockaddr_storage *)self->out[at].msg_hdr.msg_name);
        if (where == NULL)
            return -1;
        PyObject *item = Py_BuildValue("(iN)", sent < 0 ? err : 0, where);
        if (item == NULL || PyList_Append(*errors, item) < 0) {
            Py_XDECREF(item);
            return -1;
        }
        Py_DECREF(item);
        at++;  /* that one is lost, as a failed sendto is; the rest still go */
    }
    return 0;
}

PyDoc_STRVAR(serve_doc,
"serve(fd, limit) -> (leftovers, counts, send_errors)\n\n"
"Read the socket until it is empty or limit octets were read; answer what this core was\n"
"told enough to answer; return the other datagrams as (data, address, receive timestamp)\n"
"in arrival order (the timestamp in NTP format, the kernel's where use_kernel_stamps()\n"
"succeeded), the counters of the requests it decided (received, served, badauth,\n"
"limited, kod_withheld, kodsent), and the sends that failed as (errno,\n"
"address) (None when none did).  A read that found fewer than nap_below datagrams naps\n"
"once for nap seconds and reads again: the next read finds more, and a busy server wakes\n"
"less often per datagram.  Raises OSError for a receive error Twisted does not end a read\n"
"on.");

static PyObject *Core_serve(Core *self, PyObject *args)
{
    int fd;
    Py_ssize_t limit;
    if (!PyArg_ParseTuple(args, "in", &fd, &limit))
        return NULL;
    PyObject *leftovers = PyList_New(0);
    if (leftovers == NULL)
        return NULL;
    PyObject *errors = NULL;
    Counts counts = {0, 0, 0, 0, 0, 0};
    Plan plans[BATCH];
    Py_ssize_t read = 0;
    int taken = 0, napped = 0;
    while (read < limit) {
        for (int i = 0; i < BATCH; i++) {
            self->in_iov[i].iov_base = self->buffers + (size_t)i * self->size;
            self->in_iov[i].iov_len = self->size;
            memset(&self->in[i].msg_hdr, 0, sizeof(struct msghdr));
            self->in[i].msg_hdr.msg_name = &self->from[i];
            self->in[i].msg_hdr.msg_namelen = sizeof(struct sockaddr_storage);
            self->in[i].msg_hdr.msg_iov = &self->in_iov[i];
            self->in[i].msg_hdr.msg_iovlen = 1;
            self->in[i].msg_hdr.msg_control = self->control[i];  /* stamps, destinations */
            self->in[i].msg_hdr.msg_controllen = CONTROL_SIZE;
        }
        int got = recvmmsg(fd, self->in, BATCH, MSG_DONTWAIT, NULL);
        if (got < 0) {
            if ((errno == EAGAIN || errno == EWOULDBLOCK) && !napped && taken < self->nap_below
                && self->nap_ns > 0) {
                struct timespec nap = {0, self->nap_ns};
                napped = 1;
                Py_BEGIN_ALLOW_THREADS
                nanosleep(&nap, NULL);
                Py_END_ALLOW_THREADS
                continue;
            }
            if (read_done(errno))
                break;
            PyErr_SetFromErrno(PyExc_OSError);
            goto fail;
        }
        if (got == 0)
            break;
        int replies = 0;
        int planned[BATCH];
        taken += got;
        for (int i = 0; i < got; i++) {
            const uint8_t *d = self->buffers + (size_t)i * self->size;
            Py_ssize_t n = (Py_ssize_t)self->in[i].msg_len;
            read += n;
            const uint8_t *raw = NULL;
            int port = 0;
            int alen = source_address(&self->from[i], &raw, &port);
            int verdict = LEFT;
            uint64_t rx = ntp64(read_control(self, i));
            const uint8_t *local = self->pktinfo[i] != NULL ? self->destination[i]
                                   : self->local_len == alen ? self->local : NULL;
            if (alen && !(self->in[i].msg_hdr.msg_flags & MSG_TRUNC))
                verdict = decide(self, d, n, raw, alen, local, port, unix_now(self), rx,
                                 self->replies[replies], &plans[replies]);
            if (verdict == LEFT) {
                PyObject *where = address_tuple(&self->from[i]);
                if (where == NULL)
                    goto fail;
                PyObject *ancillary = ancillary_list(self->pktinfo[i]);
                if (ancillary == NULL) {
                    Py_DECREF(where);
                    goto fail;
                }
                PyObject *item = Py_BuildValue("(y#NKN)", (const char *)d, n, where,
                                               (unsigned long long)rx, ancillary);
                if (item == NULL || PyList_Append(leftovers, item) < 0) {
                    Py_XDECREF(item);
                    goto fail;
                }
                Py_DECREF(item);
                continue;
            }
            count(&counts, verdict);
            if (verdict != DROPPED && verdict != WITHHELD)
                planned[replies++] = i;
        }
        for (int first = 0; first < replies; first += SEND_CHUNK) {
            /* one transmit time per chunk, taken after every request of the batch was
             * checked, just before the chunk's MACs and its send */
            int last = first + SEND_CHUNK < replies ? first + SEND_CHUNK : replies;
            double t = unix_now(self);
            for (int r = first; r < last; r++) {
                finish(&plans[r], self->replies[r], t);
                int i = planned[r];
                self->out_iov[r].iov_base = self->replies[r];
                self->out_iov[r].iov_len = plans[r].length;
                memset(&self->out[r].msg_hdr, 0, sizeof(struct msghdr));
                self->out[r].msg_hdr.msg_name = &self->from[i];
                self->out[r].msg_hdr.msg_namelen = self->in[i].msg_hdr.msg_namelen;
                self->out[r].msg_hdr.msg_iov = &self->out_iov[r];
                self->out[r].msg_hdr.msg_iovlen = 1;
                if (self->reply_control_len[i]) {  /* from the address the client asked */
                    self->out[r].msg_hdr.msg_control = self->reply_control[i];
                    self->out[r].msg_hdr.msg_controllen = self->reply_control_len[i];
                }
            }
            if (send_all(self, fd, first, last, &errors) < 0)
                goto fail;
        }
        if (got < BATCH && (napped || taken >= self->nap_below || self->nap_ns <= 0))
            break;  /* the socket is empty (and no nap is due): no call to find it so */
    }
    return Py_BuildValue("(N(KKKKKK)N)", leftovers, counts.received, counts.served,
                         counts.badauth, counts.limited, counts.kod_withheld, counts.kodsent,
                         errors != NULL ? errors : Py_NewRef(Py_None));
fail:
    Py_DECREF(leftovers);
    Py_XDECREF(errors);
    return NULL;
}

PyDoc_STRVAR(answer_doc,
"answer(data, host, port[, local]) -> bytes | None\n\n"
"What serve() would send to a datagram from raw address host (4 or 16 octets), b'' for\n"
"nothing (rate-limited), or None when it would hand it to Python (for tests: no socket);\n"
"local: the address it was sent to (default: the one set_autokey gave).");

static PyObject *Core_answer(Core *self, PyObject *args)
{
    Py_buffer data, host, local = {0};
    int port;
    if (!PyArg_ParseTuple(args, "y*y*i|y*", &data, &host, &port, &local))
        return NULL;
    PyObject *result = NULL;
    const uint8_t *server = local.buf != NULL ? local.buf
                            : self->local_len == host.len ? self->local : NULL;
    if (local.buf != NULL && local.len != host.len)
        PyErr_SetString(PyExc_ValueError, "the local address is of another family");
    else if (address_arg(&host)) {
        uint8_t reply[REPLY_MAX];
        Plan plan;
        memset(&plan, 0, sizeof plan);
        double now = unix_now(self);
        int verdict = decide(self, data.buf, data.len, host.buf, (int)host.len, server, port, now,
                             ntp64(now), reply, &plan);
        if (verdict == LEFT) {
            result = Py_NewRef(Py_None);
        } else if (verdict == DROPPED || verdict == WITHHELD) {
            result = PyBytes_FromStringAndSize(NULL, 0);
        } else {
            finish(&plan, reply, unix_now(self));
            result = PyBytes_FromStringAndSize((const char *)reply, (Py_ssize_t)plan.length);
        }
    }
    PyBuffer_Release(&data);
    PyBuffer_Release(&host);
    if (local.buf != NULL)
        PyBuffer_Release(&local);
    return result;
}

static PyObject *Core_set_header(Core *self, PyObject *args)
{
    int first_bits, stratum;
    Py_buffer system;
    double from, until;
    if (!PyArg_ParseTuple(args, "iiy*dd", &first_bits, &stratum, &system, &from, &until))
        return NULL;
    if (system.len != 21) {
        PyBuffer_Release(&system);
        PyErr_SetString(PyExc_ValueError, "the system octets are 21");
        return NULL;
    }
    self->first_bits = (uint8_t)first_bits;
    self->stratum = (uint8_t)stratum;
    memcpy(self->system, system.buf, 21);
    self->header_from = from;
    self->header_until = until;
    self->have_header = 1;
    PyBuffer_Release(&system);
    Py_RETURN_NONE;
}

static PyObject *Core_clear_header(Core *self, PyObject *Py_UNUSED(ignored))
{
    self->have_header = 0;
    Py_RETURN_NONE;
}

static PyObject *Core_set_keys(Core *self, PyObject *keys)
{
    /* keys: a sequence of (key ID, digest kind or 0, secret) */
    PyObject *seq = PySequence_Fast(keys, "keys: a sequence of (keyid, kind, secret)");
    if (seq == NULL)
        return NULL;
    Py_ssize_t count = PySequence_Fast_GET_SIZE(seq);
    explicit_bzero(self->keys, sizeof self->keys);  /* the old secrets too */
    self->key_count = 0;
    self->keys_complete = count <= MAX_KEYS;
    for (Py_ssize_t i = 0; i < count && i < MAX_KEYS; i++) {
        unsigned int keyid;
        int kind;
        Py_buffer secret;
        if (!PyArg_ParseTuple(PySequence_Fast_GET_ITEM(seq, i), "Iiy*", &keyid, &kind, &secret)) {
            Py_DECREF(seq);
            self->key_count = 0;
            self->keys_complete = 0;
            return NULL;
        }
        Key *key = &self->keys[self->key_count++];
        key->word[0] = (uint8_t)(keyid >> 24);
        key->word[1] = (uint8_t)(keyid >> 16);
        key->word[2] = (uint8_t)(keyid >> 8);
        key->word[3] = (uint8_t)keyid;
        key->kind = (kind == DIGEST_MD5 || kind == DIGEST_SHA1) && secret.len <= 64 ? kind : 0;
        if (key->kind) {
            key->length = (size_t)secret.len;
            memcpy(key->secret, secret.buf, key->length);
        }
        PyBuffer_Release(&secret);
    }
    Py_DECREF(seq);
    Py_RETURN_NONE;
}

static PyObject *Core_set_autokey(Core *self, PyObject *args)
{
    int kind;
    Py_buffer local;
    if (!PyArg_ParseTuple(args, "iy*", &kind, &local))
        return NULL;
    if (local.len != 0 && !address_arg(&local)) {
        PyBuffer_Release(&local);
        return NULL;
    }
    self->autokey_digest = (kind == DIGEST_MD5 || kind == DIGEST_SHA1) && local.len ? kind : 0;
    self->local_len = (int)local.len;
    memcpy(self->local, local.buf, (size_t)local.len);
    PyBuffer_Release(&local);
    memset(self->pairs, 0, sizeof(Pair) * PAIR_SLOTS);
    self->pair_count = 0;
    Py_RETURN_NONE;
}

static PyObject *Core_set_generation(Core *self, PyObject *arg)
{
    unsigned long long generation = PyLong_AsUnsignedLongLong(arg);
    if (generation == (unsigned long long)-1 && PyErr_Occurred())
        return NULL;
    self->generation = generation;
    Py_RETURN_NONE;
}

static PyObject *Core_learn_pair(Core *self, PyObject *args)
{
    Py_buffer client, local, cookie;
    unsigned int echo, valid_from, valid_until;
    unsigned long long generation;
    if (!PyArg_ParseTuple(args, "y*y*y*IKII", &client, &local, &cookie, &echo, &generation,
                          &valid_from, &valid_until))
        return NULL;
    PyObject *result = NULL;
    if (!address_arg(&client) || local.len != client.len || cookie.len != 4) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_ValueError,
                            "client and local: one family; a cookie is 4 octets");
        goto done;
    }
    int n = (int)client.len;
    Pair *p = pair_of(self, client.buf, local.buf, n);
    if (p == NULL) {
        if (self->pair_count >= PAIR_SLOTS / 2) {
            memset(self->pairs, 0, sizeof(Pair) * PAIR_SLOTS);
            self->pair_count = 0;
        }
        uint32_t i = hash_address(client.buf, n) & (PAIR_SLOTS - 1);
        while (self->pairs[i].used)
            i = (i + 1) & (PAIR_SLOTS - 1);
        p = &self->pairs[i];
        p->used = 1;
        p->family_len = (uint8_t)n;
        memcpy(p->address, client.buf, (size_t)n);
        memcpy(p->local, local.buf, (size_t)n);
        self->pair_count++;
    }
    memcpy(p->cookie, cookie.buf, 4);
    p->echo = echo;
    p->generation = generation;
    p->valid_from = valid_from;
    p->valid_until = valid_until;
    result = Py_NewRef(Py_None);
done:
    PyBuffer_Release(&client);
    PyBuffer_Release(&local);
    PyBuffer_Release(&cookie);
    return result;
}

static int rule_flags(int flags)
{
    return flags & SERVE ? SERVE | (flags & (LIMITED_FLAG | KOD_FLAG)) : 0;
}

static PyObject *Core_set_rules(Core *self, PyObject *args)
{
    /* the restrict list: the defaults' flags, the rules with an address as (network,
     * prefix length, flags) longest prefix first, and the engine's rate limiter */
    int default4, default6;
    PyObject *rules, *limiter;
    if (!PyArg_ParseTuple(args, "iiOO", &default4, &default6, &rules, &limiter))
        return NULL;
    if (limiter != Py_None && !PyObject_TypeCheck(limiter, &LimiterType)) {
        PyErr_SetString(PyExc_TypeError, "limiter: an ntpauto._batch.Limiter or None");
        return NULL;
    }
    PyObject *seq = PySequence_Fast(rules, "rules: a sequence of (network, prefix, flags)");
    if (seq == NULL)
        return NULL;
    self->have_rules = 0;  /* until every rule is in */
    Py_ssize_t count = PySequence_Fast_GET_SIZE(seq);
    self->rule_count = 0;
    for (Py_ssize_t i = 0; i < count && count <= MAX_RULES; i++) {
        Py_buffer network;
        int prefix, flags;
        if (!PyArg_ParseTuple(PySequence_Fast_GET_ITEM(seq, i), "y*ii", &network, &prefix,
                              &flags)) {
            Py_DECREF(seq);
            return NULL;
        }
        int ok = address_arg(&network) && prefix >= 0 && prefix <= 8 * network.len;
        if (ok) {
            Rule *rule = &self->rules[self->rule_count++];
            memcpy(rule->network, network.buf, (size_t)network.len);
            rule->family_len = (uint8_t)network.len;
            rule->prefix = (uint8_t)prefix;
            rule->flags = (uint8_t)rule_flags(flags);
        } else if (!PyErr_Occurred()) {
            PyErr_SetString(PyExc_ValueError, "a rule's prefix is longer than its address");
        }
        PyBuffer_Release(&network);
        if (!ok) {
            Py_DECREF(seq);
            return NULL;
        }
    }
    Py_DECREF(seq);
    Py_XDECREF(self->limiter);
    self->limiter = limiter == Py_None ? NULL : (Limiter *)Py_NewRef(limiter);
    self->default4 = (uint8_t)rule_flags(default4);
    self->default6 = (uint8_t)rule_flags(default6);
    self->have_rules = count <= MAX_RULES;
    Py_RETURN_NONE;
}

static PyObject *Core_use_kernel_stamps(Core *self, PyObject *arg)
{
    /* fd: have the kernel stamp each datagram's arrival (SO_TIMESTAMPNS); False where it
     * will not (the receive timestamps are then read when a datagram is read) */
    int fd = PyLong_AsLong(arg);
    if (fd == -1 && PyErr_Occurred())
        return NULL;
    int on = 1;
    return PyBool_FromLong(setsockopt(fd, SOL_SOCKET, SO_TIMESTAMPNS, &on, sizeof on) == 0);
}

static PyObject *Core_fix_clock(Core *self, PyObject *arg)
{
    /* tests: a fixed Unix time for every reading, None for the real clock */
    if (arg == Py_None) {
        self->fixed_now = NAN;
        Py_RETURN_NONE;
    }
    double t = PyFloat_AsDouble(arg);
    if (t == -1.0 && PyErr_Occurred())
        return NULL;
    self->fixed_now = t;
    Py_RETURN_NONE;
}

static PyMethodDef Core_methods[] = {
    {"serve", (PyCFunction)Core_serve, METH_VARARGS, serve_doc},
    {"answer", (PyCFunction)Core_answer, METH_VARARGS, answer_doc},
    {"set_header", (PyCFunction)Core_set_header, METH_VARARGS,
     "set_header(first_bits, stratum, system_octets, valid_from, valid_until): the reply header"},
    {"clear_header", (PyCFunction)Core_clear_header, METH_NOARGS,
     "clear_header(): no header known (every request goes to Python)"},
    {"set_keys", (PyCFunction)Core_set_keys, METH_O,
     "set_keys([(keyid, kind, secret), ...]): the trusted symmetric keys, all of them"},
    {"set_autokey", (PyCFunction)Core_set_autokey, METH_VARARGS,
     "set_autokey(kind, local): the session-key digest (0: none) and the server's address"},
    {"set_generation", (PyCFunction)Core_set_generation, METH_O,
     "set_generation(n): the server seed's generation now"},
    {"learn_pair", (PyCFunction)Core_learn_pair, METH_VARARGS,
     "learn_pair(client, local, cookie, echo, generation, valid_from, valid_until): a\n"
     "client's cookie and echo key with the address it asked (the session key's server)"},
    {"set_rules", (PyCFunction)Core_set_rules, METH_VARARGS,
     "set_rules(default4, default6, [(network, prefix, flags), ...], limiter): the restrict\n"
     "list, each flags 0 (not served here) or SERVE with LIMITED and KOD, the rules longest\n"
     "prefix first; and the engine's rate limiter (or None)"},
    {"fix_clock", (PyCFunction)Core_fix_clock, METH_O, "fix_clock(seconds or None): tests"},
    {"use_kernel_stamps", (PyCFunction)Core_use_kernel_stamps, METH_O,
     "use_kernel_stamps(fd) -> bool: receive timestamps from the kernel (SO_TIMESTAMPNS)"},
    {NULL, NULL, 0, NULL}};

static PyObject *Core_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    Py_ssize_t size = 8192;
    double nap = 0.0;
    int nap_below = 0;
    static char *names[] = {"size", "nap", "nap_below", NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "|ndi", names, &size, &nap, &nap_below))
        return NULL;
    if (size < 72 || size > 65536) {
        PyErr_SetString(PyExc_ValueError, "size: 72 to 65536 octets");
        return NULL;
    }
    if (!(nap >= 0.0 && nap < 0.01) || nap_below < 0) {
        PyErr_SetString(PyExc_ValueError, "nap: 0 to 10 ms; nap_below: 0 or more");
        return NULL;
    }
    Core *self = (Core *)type->tp_alloc(type, 0);
    if (self == NULL)
        return NULL;
    self->size = (size_t)size;
    self->fixed_now = NAN;
    self->nap_ns = (long)(nap * 1e9);
    self->nap_below = nap_below;
    self->buffers = PyMem_Calloc(BATCH, (size_t)size);
    self->pairs = PyMem_Calloc(PAIR_SLOTS, sizeof(Pair));
    if (self->buffers == NULL || self->pairs == NULL) {
        Py_DECREF(self);
        return PyErr_NoMemory();
    }
    return (PyObject *)self;
}

static void Core_dealloc(Core *self)
{
    PyMem_Free(self->buffers);
    PyMem_Free(self->pairs);
    Py_XDECREF(self->limiter);
    explicit_bzero(self->keys, sizeof self->keys);  /* the secrets do not outlive the core */
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyTypeObject CoreType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "ntpauto._batch.Core",
    .tp_basicsize = sizeof(Core),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "The batched server path of one UDP socket (see ntpauto/batch.py).",
    .tp_new = Core_new,
    .tp_dealloc = (destructor)Core_dealloc,
    .tp_methods = Core_methods,
};

static PyObject *digest_function(PyObject *Py_UNUSED(module), PyObject *args)
{
    int kind;
    Py_buffer a, b;
    if (!PyArg_ParseTuple(args, "iy*y*", &kind, &a, &b))
        return NULL;
    PyObject *result = NULL;
    if (kind != DIGEST_MD5 && kind != DIGEST_SHA1) {
        PyErr_SetString(PyExc_ValueError, "kind: 1 (MD5) or 2 (SHA1)");
    } else {
        uint8_t out[20];
        size_t n = digest2(kind, a.buf, (size_t)a.len, b.buf, (size_t)b.len, out);
        result = PyBytes_FromStringAndSize((const char *)out, (Py_ssize_t)n);
    }
    PyBuffer_Release(&a);
    PyBuffer_Release(&b);
    return result;
}

static PyMethodDef module_methods[] = {
    {"digest", digest_function, METH_VARARGS,
     "digest(kind, a, b): MD5 (1) or SHA1 (2) of a + b, as the core computes it (tests)"},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "ntpauto._batch",
    "The busy server's common replies in batches of datagrams (see ntpauto/batch.py).", -1,
    module_methods};

PyMODINIT_FUNC PyInit__batch(void)
{
    if (PyType_Ready(&CoreType) < 0 || PyType_Ready(&LimiterType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    Py_INCREF(&CoreType);
    if (PyModule_AddObject(m, "Core", (PyObject *)&CoreType) < 0) {
        Py_DECREF(&CoreType);
        Py_DECREF(m);
        return NULL;
    }
    Py_INCREF(&LimiterType);
    if (PyModule_AddObject(m, "Limiter", (PyObject *)&LimiterType) < 0) {
        Py_DECREF(&LimiterType);
        Py_DECREF(m);
        return NULL;
    }
    PyModule_AddIntConstant(m, "SERVE", SERVE);
    PyModule_AddIntConstant(m, "LIMITED", LIMITED_FLAG);
    PyModule_AddIntConstant(m, "KOD", KOD_FLAG);
    PyModule_AddIntConstant(m, "MD5", DIGEST_MD5);
    PyModule_AddIntConstant(m, "SHA1", DIGEST_SHA1);
    PyModule_AddIntConstant(m, "BATCH", BATCH);
    PyModule_AddIntConstant(m, "MAX_KEYS", MAX_KEYS);
    return m;
}
