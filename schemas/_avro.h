/* Shared by the native Avro body decoder's files (see _avro.c). */
#ifndef SCHEMAS_AVRO_H
#define SCHEMAS_AVRO_H
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>

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

/* the exception every decoding error raises: args (kind, detail, offset) */
extern PyObject *avro_Malformed;

/* _avro_program.c: a decoding program (nested tuples, see _avro.c) -> its node tree, and back */
Node *avro_compile(PyObject *spec, int depth);
void avro_free(Node *node);

/* _avro_decode.c: one value of type `node` at the reader's position; NULL with an exception set */
PyObject *avro_decode(Reader *r, const Node *node);
void avro_fail(Reader *r, enum Kind kind, const char *fmt, ...);

#endif
