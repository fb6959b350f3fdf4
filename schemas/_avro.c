/* A native Avro body decoder: it interprets a decoding program that schemas/native.py derives from a
 * parsed .avsc, so the schema files stay the one definition of every record.
 *
 * A program is a tree of nodes, given as nested tuples of type names:
 *   "null" "boolean" "int" "long" "float" "double" "string" "bytes"
 *   ("enum", (symbol, ...))          the symbols, returned as they are (cached str objects)
 *   ("union", (branch, ...))
 *   ("map", values)   ("array", items)
 *   ("record", (key, ...), (field, ...))
 * Decoding returns what fastavro's schemaless_reader returns for the same schema (dicts, lists, str,
 * bytes, int, float, bool, None). Every read is bounds-checked: bad input raises Malformed with
 * (kind, detail, offset), never reads outside the buffer, and allocates at most in proportion to the
 * bytes it consumed (collections of zero-size items are capped).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

enum Op { OP_NULL, OP_BOOLEAN, OP_INT, OP_LONG, OP_FLOAT, OP_DOUBLE, OP_STRING, OP_BYTES,
          OP_ENUM, OP_UNION, OP_MAP, OP_ARRAY, OP_RECORD };

/* Malformed's kinds (the first of its args) */
enum Kind { KIND_BAD = 0, KIND_TRUNCATED = 1, KIND_TRAILING = 2 };

/* An array block of values that take no bytes (null, an empty record) could claim any count. */
#define MAX_EMPTY_ITEMS (1 << 20)

typedef struct Node {
    enum Op op;
    Py_ssize_t n;            /* record fields, enum symbols, union branches */
    PyObject **names;        /* record: field-name keys; enum: symbols (owned references) */
    struct Node **children;  /* record: fields; union: branches; map, array: [0] the values */
    int empty;               /* a value of this type can take no bytes at all */
} Node;

typedef struct {
    const unsigned char *buf;
    Py_ssize_t pos, end;
    PyObject *field;         /* the innermost record field being read (borrowed), for messages */
} Reader;

static PyObject *Malformed;

/* ------------------------------------------------------------------ errors */

static void fail(Reader *r, enum Kind kind, const char *fmt, ...) {
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
    PyErr_SetObject(Malformed, exc_args);
    Py_DECREF(exc_args);
}

static int need(Reader *r, int64_t n, const char *what) {
    if (n <= r->end - r->pos) return 0;
    fail(r, KIND_TRUNCATED, "the body ends early (%s of %lld bytes at offset %zd, %zd left)",
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
            fail(r, KIND_BAD, "bad varint: longer than the 10 bytes of a long (at offset %zd)", start);
            return -1;
        }
        if (r->pos >= r->end) {
            fail(r, KIND_TRUNCATED, "the body ends early (inside a varint that starts at offset %zd)", start);
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
        fail(r, KIND_BAD, "negative %s length %lld at offset %zd", what, (long long)*n, start);
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
        fail(r, KIND_BAD, "UnicodeDecodeError: %S (a string of %lld bytes at offset %zd)",
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
        fail(r, KIND_BAD, "an enum symbol or union branch index is out of range (%s %lld of %zd, at offset %zd)",
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
            fail(r, KIND_BAD, "bad block count %lld at offset %zd", (long long)*count, start);
            return -1;
        }
        *count = -*count;
        int64_t size;
        if (read_long(r, &size)) return -1;
    }
    return 0;
}

/* ------------------------------------------------------------------ values */

static PyObject *decode(Reader *r, const Node *node);

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
            PyObject *value = decode(r, node->children[0]);
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
            fail(r, KIND_BAD, "an array of more than %d values that take no bytes (a block of %lld)",
                 MAX_EMPTY_ITEMS, (long long)count);
            goto error;
        }
        for (int64_t i = 0; i < count; i++) {
            PyObject *value = decode(r, node->children[0]);
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
        PyObject *value = decode(r, node->children[i]);
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

static PyObject *decode(Reader *r, const Node *node) {
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
                fail(r, KIND_BAD, "field %R holds %lld, outside the 32-bit range of an Avro int", field, (long long)v);
            else
                fail(r, KIND_BAD, "an int holds %lld, outside the 32-bit range of an Avro int", (long long)v);
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
        return decode(r, node->children[i]);
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

/* ------------------------------------------------------------------ programs */

static void free_node(Node *node) {
    if (node == NULL) return;
    if (node->names != NULL) {
        for (Py_ssize_t i = 0; i < node->n; i++) Py_XDECREF(node->names[i]);
        PyMem_Free(node->names);
    }
    if (node->children != NULL) {
        Py_ssize_t k = (node->op == OP_MAP || node->op == OP_ARRAY) ? 1 : node->n;
        for (Py_ssize_t i = 0; i < k; i++) free_node(node->children[i]);
        PyMem_Free(node->children);
    }
    PyMem_Free(node);
}

static Node *compile_node(PyObject *spec, int depth);

/* (str, ...) -> owned references */
static int compile_names(Node *node, PyObject *names) {
    if (!PyTuple_Check(names) || PyTuple_GET_SIZE(names) != node->n) {
        PyErr_SetString(PyExc_ValueError, "decoding program: expected a tuple of names, one per child");
        return -1;
    }
    node->names = PyMem_Calloc((size_t)(node->n ? node->n : 1), sizeof(PyObject *));
    if (node->names == NULL) return -1;
    for (Py_ssize_t i = 0; i < node->n; i++) {
        PyObject *name = PyTuple_GET_ITEM(names, i);
        if (!PyUnicode_CheckExact(name)) {
            PyErr_SetString(PyExc_ValueError, "decoding program: names must be str");
            return -1;
        }
        node->names[i] = Py_NewRef(name);
    }
    return 0;
}

static int compile_children(Node *node, PyObject *specs, int depth) {
    if (!PyTuple_Check(specs)) {
        PyErr_SetString(PyExc_ValueError, "decoding program: expected a tuple of types");
        return -1;
    }
    node->n = PyTuple_GET_SIZE(specs);
    node->children = PyMem_Calloc((size_t)(node->n ? node->n : 1), sizeof(Node *));
    if (node->children == NULL) return -1;
    for (Py_ssize_t i = 0; i < node->n; i++) {
        node->children[i] = compile_node(PyTuple_GET_ITEM(specs, i), depth + 1);
        if (node->children[i] == NULL) return -1;
    }
    return 0;
}

static const char *const PRIMITIVES[] = {"null", "boolean", "int", "long", "float", "double", "string", "bytes"};

static Node *compile_node(PyObject *spec, int depth) {
    if (depth > 64) {
        PyErr_SetString(PyExc_ValueError, "decoding program: nested too deeply");
        return NULL;
    }
    Node *node = PyMem_Calloc(1, sizeof(Node));
    if (node == NULL) return NULL;
    if (PyUnicode_Check(spec)) {
        for (int op = OP_NULL; op <= OP_BYTES; op++) {
            if (PyUnicode_CompareWithASCIIString(spec, PRIMITIVES[op]) == 0) {
                node->op = (enum Op)op;
                node->empty = op == OP_NULL;
                return node;
            }
        }
        PyErr_Format(PyExc_ValueError, "decoding program: unknown type %R", spec);
        goto error;
    }
    Py_ssize_t size = PyTuple_Check(spec) ? PyTuple_GET_SIZE(spec) : 0;
    PyObject *kind = size ? PyTuple_GET_ITEM(spec, 0) : NULL;
    if (kind == NULL || !PyUnicode_Check(kind)) {
        PyErr_Format(PyExc_ValueError, "decoding program: not a type: %R", spec);
        goto error;
    }
    if (size == 2 && PyUnicode_CompareWithASCIIString(kind, "enum") == 0) {
        node->op = OP_ENUM;
        PyObject *symbols = PyTuple_GET_ITEM(spec, 1);
        node->n = PyTuple_Check(symbols) ? PyTuple_GET_SIZE(symbols) : -1;
        if (compile_names(node, symbols)) goto error;
    } else if (size == 2 && PyUnicode_CompareWithASCIIString(kind, "union") == 0) {
        node->op = OP_UNION;
        if (compile_children(node, PyTuple_GET_ITEM(spec, 1), depth)) goto error;
    } else if (size == 2 && (PyUnicode_CompareWithASCIIString(kind, "map") == 0 ||
                             PyUnicode_CompareWithASCIIString(kind, "array") == 0)) {
        node->op = PyUnicode_CompareWithASCIIString(kind, "map") == 0 ? OP_MAP : OP_ARRAY;
        node->children = PyMem_Calloc(1, sizeof(Node *));
        if (node->children == NULL) goto error;
        node->children[0] = compile_node(PyTuple_GET_ITEM(spec, 1), depth + 1);
        if (node->children[0] == NULL) goto error;
    } else if (size == 3 && PyUnicode_CompareWithASCIIString(kind, "record") == 0) {
        node->op = OP_RECORD;
        if (compile_children(node, PyTuple_GET_ITEM(spec, 2), depth)) goto error;
        if (compile_names(node, PyTuple_GET_ITEM(spec, 1))) goto error;
        node->empty = 1;
        for (Py_ssize_t i = 0; i < node->n; i++) node->empty &= node->children[i]->empty;
    } else {
        PyErr_Format(PyExc_ValueError, "decoding program: not a type: %R", spec);
        goto error;
    }
    return node;
error:
    free_node(node);
    return NULL;
}

typedef struct {
    PyObject_HEAD
    Node *root;
} Program;

static int Program_init(Program *self, PyObject *args, PyObject *kwargs) {
    static char *keywords[] = {"spec", NULL};
    PyObject *spec;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O:Program", keywords, &spec)) return -1;
    Node *root = compile_node(spec, 0);
    if (root == NULL) return -1;
    if (root->op != OP_RECORD) {
        free_node(root);
        PyErr_SetString(PyExc_ValueError, "decoding program: the top-level type must be a record");
        return -1;
    }
    free_node(self->root);
    self->root = root;
    return 0;
}

static void Program_dealloc(Program *self) {
    free_node(self->root);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *Program_decode(Program *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "decode(data, offset) takes 2 arguments");
        return NULL;
    }
    if (self->root == NULL) {
        PyErr_SetString(PyExc_ValueError, "Program was not initialised");
        return NULL;
    }
    Py_ssize_t offset = PyLong_AsSsize_t(args[1]);
    if (offset == -1 && PyErr_Occurred()) return NULL;
    Py_buffer view;
    if (PyObject_GetBuffer(args[0], &view, PyBUF_SIMPLE) < 0) return NULL;
    if (offset < 0 || offset > view.len) {
        PyBuffer_Release(&view);
        PyErr_Format(PyExc_ValueError, "offset %zd outside a buffer of %zd bytes", offset, view.len);
        return NULL;
    }
    Reader r = {(const unsigned char *)view.buf, offset, view.len, NULL};
    PyObject *out = decode(&r, self->root);
    if (out != NULL && r.pos != r.end) {
        Py_CLEAR(out);
        r.field = NULL;
        fail(&r, KIND_TRAILING, "%zd trailing bytes after the body", r.end - r.pos);
    }
    PyBuffer_Release(&view);
    return out;
}

static PyMethodDef Program_methods[] = {
    {"decode", (PyCFunction)(void (*)(void))Program_decode, METH_FASTCALL,
     "decode(data, offset) -> the record whose body starts at offset and ends with data; raises Malformed."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject ProgramType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "schemas._avro.Program",
    .tp_basicsize = sizeof(Program),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "A compiled decoding program for the Avro body of one record schema.",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Program_init,
    .tp_dealloc = (destructor)Program_dealloc,
    .tp_methods = Program_methods,
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "schemas._avro",
    "Native Avro body decoding (see schemas/native.py).", -1, NULL, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__avro(void) {
    if (PyType_Ready(&ProgramType) < 0) return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL) return NULL;
    Malformed = PyErr_NewExceptionWithDoc(
        "schemas._avro.Malformed",
        "A body that does not decode: args are (kind: 0 bad, 1 truncated, 2 trailing bytes; detail; offset).",
        PyExc_ValueError, NULL);
    if (Malformed == NULL || PyModule_AddObjectRef(m, "Malformed", Malformed) < 0 ||
        PyModule_AddObjectRef(m, "Program", (PyObject *)&ProgramType) < 0 ||
        PyModule_AddIntConstant(m, "BAD", KIND_BAD) < 0 ||
        PyModule_AddIntConstant(m, "TRUNCATED", KIND_TRUNCATED) < 0 ||
        PyModule_AddIntConstant(m, "TRAILING", KIND_TRAILING) < 0 ||
        PyModule_AddIntConstant(m, "MAX_EMPTY_ITEMS", MAX_EMPTY_ITEMS) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
