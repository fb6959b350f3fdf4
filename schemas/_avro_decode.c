/* Decoding Avro bodies with a compiled program (see _avro.c). Every read is bounds-checked. */
#include "_avro.h"

PyObject *avro_Malformed;

/* ------------------------------------------------------------------ errors */

void avro_fail(Reader *r, enum Kind kind, const char *fmt, ...) {
    va_list args;
    va_start(args, fmt);
    PyObject *detail = PyUnicode_FromFormatV(fmt, args);
    va_end(args);
    if (detail == NULL) return;
    if (r->field != NULL) {
        PyObject *full = PyUnicode_FromFormat("field %R: %U", r->field, detail);
        Py_DECREF(detail);
        if (full == NULL) return;
        detail = full;
    }
    PyObject *exc_args = Py_BuildValue("(iNn)", (int)kind, detail, r->pos);
    if (exc_args == NULL) return;
    PyErr_SetObject(avro_Malformed, exc_args);
    Py_DECREF(exc_args);
}

static int need(Reader *r, int64_t n, const char *what) {
    if (n <= r->end - r->pos) return 0;
    avro_fail(r, KIND_TRUNCATED, "the body ends early (%s of %lld bytes at offset %zd, %zd left)",
         what, (long long)n, r->pos, r->end - r->pos);
    return -1;
}

/* ------------------------------------------------------------------ primitives */

static int read_long(Reader *r, int64_t *out) {
    uint64_t acc = 0;
    Py_ssize_t start = r->pos;
    for (int shift = 0;; shift += 7) {
        if (shift > 63) {
            r->pos = start;
            avro_fail(r, KIND_BAD, "bad varint: longer than the 10 bytes of a long (at offset %zd)", start);
            return -1;
        }
        if (r->pos >= r->end) {
            avro_fail(r, KIND_TRUNCATED, "the body ends early (inside a varint that starts at offset %zd)", start);
            return -1;
        }
        unsigned char b = r->buf[r->pos++];
        acc |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) break;
    }
    *out = (int64_t)((acc >> 1) ^ (~(acc & 1) + 1));  /* zig-zag */
    return 0;
}

/* A length or block count, and where it started (for messages). */
static int read_length(Reader *r, const char *what, int64_t *n) {
    Py_ssize_t start = r->pos;
    if (read_long(r, n)) return -1;
    if (*n < 0) {
        r->pos = start;
        avro_fail(r, KIND_BAD, "negative %s length %lld at offset %zd", what, (long long)*n, start);
        return -1;
    }
    return 0;
}

static PyObject *read_string(Reader *r) {
    int64_t n;
    if (read_length(r, "string", &n) || need(r, n, "a string")) return NULL;
    PyObject *s = PyUnicode_DecodeUTF8((const char *)r->buf + r->pos, (Py_ssize_t)n, NULL);
    if (s == NULL) {
        if (!PyErr_ExceptionMatches(PyExc_UnicodeDecodeError)) return NULL;
        PyObject *type, *value, *tb;
        PyErr_Fetch(&type, &value, &tb);
        PyErr_NormalizeException(&type, &value, &tb);
        avro_fail(r, KIND_BAD, "UnicodeDecodeError: %S (a string of %lld bytes at offset %zd)",
             value != NULL ? value : Py_None, (long long)n, r->pos);
        Py_XDECREF(type);
        Py_XDECREF(value);
        Py_XDECREF(tb);
        return NULL;
    }
    r->pos += (Py_ssize_t)n;
    return s;
}

static PyObject *read_bytes(Reader *r) {
    int64_t n;
    if (read_length(r, "bytes", &n) || need(r, n, "a bytes value")) return NULL;
    PyObject *b = PyBytes_FromStringAndSize((const char *)r->buf + r->pos, (Py_ssize_t)n);
    if (b != NULL) r->pos += (Py_ssize_t)n;
    return b;
}

/* An enum symbol or union branch index, checked against the n there are. */
static int read_index(Reader *r, Py_ssize_t n, const char *what, Py_ssize_t *out) {
    Py_ssize_t start = r->pos;
    int64_t i;
    if (read_long(r, &i)) return -1;
    if (i < 0 || i >= n) {
        r->pos = start;
        avro_fail(r, KIND_BAD, "an enum symbol or union branch index is out of range (%s %lld of %zd, at offset %zd)",
             what, (long long)i, n, start);
        return -1;
    }
    *out = (Py_ssize_t)i;
    return 0;
}

/* The item count of the next block of a map or array (0 at the end); a negative count is followed
 * by the block's size in bytes, which is read and not needed. */
static int read_block(Reader *r, int64_t *count) {
    Py_ssize_t start = r->pos;
    if (read_long(r, count)) return -1;
    if (*count < 0) {
        if (*count == INT64_MIN) {
            r->pos = start;
            avro_fail(r, KIND_BAD, "bad block count %lld at offset %zd", (long long)*count, start);
            return -1;
        }
        *count = -*count;
        int64_t size;
        if (read_long(r, &size)) return -1;
    }
    return 0;
}

/* ------------------------------------------------------------------ values */

static PyObject *decode_map(Reader *r, const Node *node) {
    PyObject *out = PyDict_New();
    if (out == NULL) return NULL;
    int64_t count;
    for (;;) {
        if (read_block(r, &count)) goto error;
        if (count == 0) return out;
        /* every entry takes at least a byte (its key's length): the loop ends with the input */
        for (int64_t i = 0; i < count; i++) {
            PyObject *key = read_string(r);
            if (key == NULL) goto error;
            PyObject *value = avro_decode(r, node->children[0]);
            if (value == NULL) {
                Py_DECREF(key);
                goto error;
            }
            int failed = PyDict_SetItem(out, key, value);
            Py_DECREF(key);
            Py_DECREF(value);
            if (failed) goto error;
        }
    }
error:
    Py_DECREF(out);
    return NULL;
}

static PyObject *decode_array(Reader *r, const Node *node) {
    PyObject *out = PyList_New(0);
    if (out == NULL) return NULL;
    int64_t count;
    for (;;) {
        if (read_block(r, &count)) goto error;
        if (count == 0) return out;
        if (node->children[0]->empty && count > MAX_EMPTY_ITEMS - PyList_GET_SIZE(out)) {
            avro_fail(r, KIND_BAD, "an array of more than %d values that take no bytes (a block of %lld)",
                 MAX_EMPTY_ITEMS, (long long)count);
            goto error;
        }
        for (int64_t i = 0; i < count; i++) {
            PyObject *value = avro_decode(r, node->children[0]);
            if (value == NULL) goto error;
            int failed = PyList_Append(out, value);
            Py_DECREF(value);
            if (failed) goto error;
        }
    }
error:
    Py_DECREF(out);
    return NULL;
}

static PyObject *decode_record(Reader *r, const Node *node) {
    PyObject *out = _PyDict_NewPresized(node->n);
    if (out == NULL) return NULL;
    for (Py_ssize_t i = 0; i < node->n; i++) {
        r->field = node->names[i];
        PyObject *value = avro_decode(r, node->children[i]);
        if (value == NULL) {
            Py_DECREF(out);
            return NULL;
        }
        int failed = PyDict_SetItem(out, node->names[i], value);
        Py_DECREF(value);
        if (failed) {
            Py_DECREF(out);
            return NULL;
        }
    }
    return out;
}

PyObject *avro_decode(Reader *r, const Node *node) {
    int64_t v;
    Py_ssize_t i;
    switch (node->op) {
    case OP_NULL:
        Py_RETURN_NONE;
    case OP_BOOLEAN:
        if (need(r, 1, "a boolean")) return NULL;
        return PyBool_FromLong(r->buf[r->pos++] != 0);  /* any non-zero byte, as fastavro reads it */
    case OP_INT: {
        Py_ssize_t start = r->pos;
        if (read_long(r, &v)) return NULL;
        if (v < INT32_MIN || v > INT32_MAX) {
            PyObject *field = r->field;
            r->pos = start;
            r->field = NULL;  /* named here: "field 'position' holds ..." */
            if (field != NULL)
                avro_fail(r, KIND_BAD, "field %R holds %lld, outside the 32-bit range of an Avro int", field, (long long)v);
            else
                avro_fail(r, KIND_BAD, "an int holds %lld, outside the 32-bit range of an Avro int", (long long)v);
            return NULL;
        }
        return PyLong_FromLongLong(v);
    }
    case OP_LONG:
        if (read_long(r, &v)) return NULL;
        return PyLong_FromLongLong(v);
    case OP_FLOAT: {
        if (need(r, 4, "a float")) return NULL;
        double d = PyFloat_Unpack4((const char *)r->buf + r->pos, 1);
        if (d == -1.0 && PyErr_Occurred()) return NULL;
        r->pos += 4;
        return PyFloat_FromDouble(d);
    }
    case OP_DOUBLE: {
        if (need(r, 8, "a double")) return NULL;
        double d = PyFloat_Unpack8((const char *)r->buf + r->pos, 1);
        if (d == -1.0 && PyErr_Occurred()) return NULL;
        r->pos += 8;
        return PyFloat_FromDouble(d);
    }
    case OP_STRING:
        return read_string(r);
    case OP_BYTES:
        return read_bytes(r);
    case OP_ENUM:
        if (read_index(r, node->n, "enum index", &i)) return NULL;
        return Py_NewRef(node->names[i]);
    case OP_UNION:
        if (read_index(r, node->n, "union branch", &i)) return NULL;
        return avro_decode(r, node->children[i]);
    case OP_MAP:
        return decode_map(r, node);
    case OP_ARRAY:
        return decode_array(r, node);
    case OP_RECORD:
        return decode_record(r, node);
    }
    PyErr_SetString(PyExc_SystemError, "corrupt decoding program");
    return NULL;
}
