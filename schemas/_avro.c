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
 *
 * This file is the module and its Program type; _avro_program.c turns the tuples into a node tree,
 * _avro_decode.c decodes with it.
 */
#include "_avro.h"

typedef struct {
    PyObject_HEAD
    Node *root;
} Program;

static int Program_init(Program *self, PyObject *args, PyObject *kwargs) {
    static char *keywords[] = {"spec", NULL};
    PyObject *spec;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O:Program", keywords, &spec)) return -1;
    Node *root = avro_compile(spec, 0);
    if (root == NULL) return -1;
    if (root->op != OP_RECORD) {
        avro_free(root);
        PyErr_SetString(PyExc_ValueError, "decoding program: the top-level type must be a record");
        return -1;
    }
    avro_free(self->root);
    self->root = root;
    return 0;
}

static void Program_dealloc(Program *self) {
    avro_free(self->root);
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
    PyObject *out = avro_decode(&r, self->root);
    if (out != NULL && r.pos != r.end) {
        Py_CLEAR(out);
        r.field = NULL;
        avro_fail(&r, KIND_TRAILING, "%zd trailing bytes after the body", r.end - r.pos);
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
    avro_Malformed = PyErr_NewExceptionWithDoc(
        "schemas._avro.Malformed",
        "A body that does not decode: args are (kind: 0 bad, 1 truncated, 2 trailing bytes; detail; offset).",
        PyExc_ValueError, NULL);
    if (avro_Malformed == NULL || PyModule_AddObjectRef(m, "Malformed", avro_Malformed) < 0 ||
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
