/* Decoding programs: the nested tuples schemas/native.py derives from an .avsc, as a node tree. */
#include "_avro.h"

void avro_free(Node *node) {
    if (node == NULL) return;
    if (node->names != NULL) {
        for (Py_ssize_t i = 0; i < node->n; i++) Py_XDECREF(node->names[i]);
        PyMem_Free(node->names);
    }
    if (node->children != NULL) {
        Py_ssize_t k = (node->op == OP_MAP || node->op == OP_ARRAY) ? 1 : node->n;
        for (Py_ssize_t i = 0; i < k; i++) avro_free(node->children[i]);
        PyMem_Free(node->children);
    }
    PyMem_Free(node);
}

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
        node->children[i] = avro_compile(PyTuple_GET_ITEM(specs, i), depth + 1);
        if (node->children[i] == NULL) return -1;
    }
    return 0;
}

static const char *const PRIMITIVES[] = {"null", "boolean", "int", "long", "float", "double", "string", "bytes"};

Node *avro_compile(PyObject *spec, int depth) {
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
        node->children[0] = avro_compile(PyTuple_GET_ITEM(spec, 1), depth + 1);
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
    avro_free(node);
    return NULL;
}
