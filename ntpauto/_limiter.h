/* The rate limiter's table for ntpauto._batch: ntpauto.ntp.restrict.RateLimiter's sources in
 * C, so that the Python server (RateLimiter.check) and every core that serves for it share
 * one bucket per source.  The same arithmetic as the Python table (tests/test_batch.py checks
 * the two agree packet for packet): a bounded table, the least recently seen source evicted
 * when it is full; chained buckets and a doubly linked recency list, both over indices. */

#ifndef NTPAUTO_LIMITER_H
#define NTPAUTO_LIMITER_H

#include <Python.h>
#include <stdint.h>
#include <string.h>

/* FNV-1a of an address's octets: the core's tables and this one. */
static uint32_t hash_address(const uint8_t *a, int n)
{
    uint32_t h = 2166136261u;
    for (int i = 0; i < n; i++)
        h = (h ^ a[i]) * 16777619u;
    return h;
}

enum { PASS = 0, OVER = 1, KISS = 2 };  /* RateLimiter's PASS, LIMITED, KOD */

typedef struct {
    uint8_t address[16];
    uint8_t len;
    double last, level;
    int32_t next_in_bucket, newer, older;
} LimitEntry;

typedef struct {
    PyObject_HEAD
    double head, limit, minimum;
    Py_ssize_t capacity, count;
    LimitEntry *entries;
    int32_t *buckets;
    uint32_t bucket_mask;
    int32_t oldest, newest;
} Limiter;

static void limiter_unlink(Limiter *l, int32_t i)
{
    LimitEntry *e = &l->entries[i];
    if (e->older >= 0)
        l->entries[e->older].newer = e->newer;
    else
        l->oldest = e->newer;
    if (e->newer >= 0)
        l->entries[e->newer].older = e->older;
    else
        l->newest = e->older;
}

static void limiter_push(Limiter *l, int32_t i)
{
    LimitEntry *e = &l->entries[i];
    e->newer = -1;
    e->older = l->newest;
    if (l->newest >= 0)
        l->entries[l->newest].newer = i;
    l->newest = i;
    if (l->oldest < 0)
        l->oldest = i;
}

/* RateLimiter.check, step for step: a packet from raw address a (n octets) at now. */
static int limiter_check(Limiter *l, const uint8_t *a, int n, double now)
{
    uint32_t b = hash_address(a, n) & l->bucket_mask;
    int32_t i = l->buckets[b];
    while (i >= 0 && !(l->entries[i].len == n && memcmp(l->entries[i].address, a, (size_t)n) == 0))
        i = l->entries[i].next_in_bucket;
    if (i < 0) {
        if (l->count >= l->capacity) {  /* the least recently seen source makes room */
            i = l->oldest;
            limiter_unlink(l, i);
            LimitEntry *old = &l->entries[i];
            int32_t *link = &l->buckets[hash_address(old->address, old->len) & l->bucket_mask];
            while (*link != i)
                link = &l->entries[*link].next_in_bucket;
            *link = old->next_in_bucket;
        } else {
            i = (int32_t)l->count++;
        }
        LimitEntry *e = &l->entries[i];
        memcpy(e->address, a, (size_t)n);
        e->len = (uint8_t)n;
        e->last = now;
        e->level = l->head;
        e->next_in_bucket = l->buckets[b];
        l->buckets[b] = i;
        limiter_push(l, i);
        return PASS;
    }
    LimitEntry *e = &l->entries[i];
    limiter_unlink(l, i);
    limiter_push(l, i);
    double interval = now - e->last;
    e->last = now;
    double level = e->level - interval;
    if (level < 0.0)
        level = 0.0;
    if (interval >= l->minimum && level + l->head <= l->limit) {
        e->level = level + l->head;
        return PASS;
    }
    if (level < l->limit) {
        e->level = l->limit + l->head;
        return KISS;
    }
    e->level = level;
    return OVER;
}

static PyObject *Limiter_check(Limiter *self, PyObject *args)
{
    Py_buffer address;
    double now;
    if (!PyArg_ParseTuple(args, "y*d", &address, &now))
        return NULL;
    PyObject *result = NULL;
    if (address.len < 1 || address.len > 16)
        PyErr_SetString(PyExc_ValueError, "an address key is 1 to 16 octets");
    else
        result = PyLong_FromLong(limiter_check(self, address.buf, (int)address.len, now));
    PyBuffer_Release(&address);
    return result;
}

static Py_ssize_t Limiter_len(Limiter *self)
{
    return self->count;
}

static PyObject *Limiter_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    double head, limit, minimum;
    Py_ssize_t capacity;
    static char *names[] = {"head", "limit", "minimum", "capacity", NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "dddn", names, &head, &limit, &minimum,
                                     &capacity))
        return NULL;
    if (capacity < 1 || capacity > (1 << 24)) {
        PyErr_SetString(PyExc_ValueError, "capacity: 1 to 2**24 sources");
        return NULL;
    }
    Limiter *self = (Limiter *)type->tp_alloc(type, 0);
    if (self == NULL)
        return NULL;
    self->head = head;
    self->limit = limit;
    self->minimum = minimum;
    self->capacity = capacity;
    self->oldest = self->newest = -1;
    uint32_t buckets = 1;
    while (buckets < (uint32_t)capacity * 2)
        buckets <<= 1;
    self->bucket_mask = buckets - 1;
    self->entries = PyMem_Calloc((size_t)capacity, sizeof(LimitEntry));
    self->buckets = PyMem_Malloc(sizeof(int32_t) * buckets);
    if (self->entries == NULL || self->buckets == NULL) {
        Py_DECREF(self);
        return PyErr_NoMemory();
    }
    memset(self->buckets, 0xff, sizeof(int32_t) * buckets);  /* -1: empty */
    return (PyObject *)self;
}

static void Limiter_dealloc(Limiter *self)
{
    PyMem_Free(self->entries);
    PyMem_Free(self->buckets);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyMethodDef Limiter_methods[] = {
    {"check", (PyCFunction)Limiter_check, METH_VARARGS,
     "check(address, now) -> 0 (pass), 1 (limited) or 2 (a kiss may go): RateLimiter.check"},
    {NULL, NULL, 0, NULL}};

static PySequenceMethods Limiter_sequence = {.sq_length = (lenfunc)Limiter_len};

static PyTypeObject LimiterType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "ntpauto._batch.Limiter",
    .tp_basicsize = sizeof(Limiter),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "ntpauto.ntp.restrict.RateLimiter's table of sources (shared with the cores).",
    .tp_new = Limiter_new,
    .tp_dealloc = (destructor)Limiter_dealloc,
    .tp_methods = Limiter_methods,
    .tp_as_sequence = &Limiter_sequence,
};

#endif
