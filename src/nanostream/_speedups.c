/* nanostream._speedups: the engine's per-item loops, compiled.
 *
 * Optional: nanostream._core.fast holds the same things in Python and uses them when
 * this module is missing (a build without a C compiler, another interpreter) or when
 * NANOSTREAM_PURE_PYTHON=1. Each behaves exactly like its Python twin; the tests run both.
 *
 * - CheckedOutp: a source's outp. Appends to a list and calls flush() once the list holds
 *   limit[0] items (limit is a one-item list other threads may lower).
 * - drive(inp, process, outp): for item in inp: for out in process(item): outp(out)
 * - drive_source(items, outp, special_type, special): for item in items: special(item) if
 *   type(item) is special_type else outp(item)
 * - drive_acked(items, outp, acked_type, first_ack, bufs, mark): drive_source for a source's
 *   Acked(item, ack) pairs in a run (see py_drive_acked in _core/fast.py)
 * - call_rows(cls, objs, fields, lasting=False): a row of cls (a tuple subclass such as a
 *   named tuple, made without calling cls) for each object of a list, each field made of
 *   the object by a function (a source's records from its client's messages); a row that
 *   holds only objects the cyclic GC does not track (numbers, text, bytes, None, tuples of
 *   those) is left untracked, as the collector itself would leave a plain tuple, when
 *   nothing else in it can lead back to it: a row of a class made at run time refers to
 *   that class, which may refer back to the row, so it is left untracked only with
 *   lasting true (the caller's word that cls lives as long as the process)
 * - typed_rows(items, cls, fields, types): whether every item of a list is exactly a cls
 *   tuple whose items at the indexes `fields` are each exactly of one of `types` (a
 *   sink's check that a slice holds records it may copy as they are)
 *
 * None of them releases the GIL; user code they call may.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>

/* ------------------------------------------------------------------ CheckedOutp */

typedef struct {
    PyObject_HEAD
    PyObject *buf;    /* list */
    PyObject *limit;  /* list of one int */
    PyObject *flush;  /* callable, no arguments */
    PyObject *extend; /* anything: outp.extend(items), set by the owner */
    vectorcallfunc vectorcall;
} CheckedOutp;

static int
outp_append(CheckedOutp *self, PyObject *item)
{
    PyObject *buf = self->buf;
    if (PyList_Append(buf, item) < 0) {
        return -1;
    }
    PyObject *limit = self->limit;
    if (!PyList_CheckExact(limit) || PyList_GET_SIZE(limit) < 1) {
        PyErr_SetString(PyExc_TypeError, "CheckedOutp: limit must be a one-item list");
        return -1;
    }
    Py_ssize_t n = PyLong_AsSsize_t(PyList_GET_ITEM(limit, 0));
    if (n == -1 && PyErr_Occurred()) {
        return -1;
    }
    if (PyList_GET_SIZE(buf) >= n) {
        PyObject *res = PyObject_CallNoArgs(self->flush);
        if (res == NULL) {
            return -1;
        }
        Py_DECREF(res);
    }
    return 0;
}

static PyObject *
outp_vectorcall(PyObject *op, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    if (nargs != 1 || (kwnames != NULL && PyTuple_GET_SIZE(kwnames) > 0)) {
        PyErr_SetString(PyExc_TypeError, "outp() takes exactly one argument, the item");
        return NULL;
    }
    if (outp_append((CheckedOutp *)op, args[0]) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *
outp_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"buf", "limit", "flush", NULL};
    PyObject *buf, *limit, *flush;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O!O!O:CheckedOutp", kwlist, &PyList_Type,
                                     &buf, &PyList_Type, &limit, &flush)) {
        return NULL;
    }
    if (PyList_GET_SIZE(limit) != 1) {
        PyErr_SetString(PyExc_ValueError, "CheckedOutp: limit must be a one-item list");
        return NULL;
    }
    if (!PyCallable_Check(flush)) {
        PyErr_SetString(PyExc_TypeError, "CheckedOutp: flush must be callable");
        return NULL;
    }
    CheckedOutp *self = (CheckedOutp *)type->tp_alloc(type, 0);
    if (self == NULL) {
        return NULL;
    }
    self->buf = Py_NewRef(buf);
    self->limit = Py_NewRef(limit);
    self->flush = Py_NewRef(flush);
    self->extend = Py_NewRef(Py_None);
    self->vectorcall = outp_vectorcall;
    return (PyObject *)self;
}

static int
outp_traverse(CheckedOutp *self, visitproc visit, void *arg)
{
    Py_VISIT(self->buf);
    Py_VISIT(self->limit);
    Py_VISIT(self->flush);
    Py_VISIT(self->extend);
    return 0;
}

static int
outp_clear(CheckedOutp *self)
{
    Py_CLEAR(self->buf);
    Py_CLEAR(self->limit);
    Py_CLEAR(self->flush);
    Py_CLEAR(self->extend);
    return 0;
}

static void
outp_dealloc(CheckedOutp *self)
{
    PyObject_GC_UnTrack(self);
    outp_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyMemberDef outp_members[] = {
    {"buf", T_OBJECT, offsetof(CheckedOutp, buf), READONLY, "the buffer (a list)"},
    {"limit", T_OBJECT, offsetof(CheckedOutp, limit), READONLY, "one-item list: flush size"},
    {"flush", T_OBJECT, offsetof(CheckedOutp, flush), READONLY, "called when full"},
    {"extend", T_OBJECT, offsetof(CheckedOutp, extend), 0, "outp.extend(items)"},
    {"__vectorcalloffset__", T_PYSSIZET, offsetof(CheckedOutp, vectorcall), READONLY},
    {NULL},
};

static PyTypeObject CheckedOutpType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "nanostream._speedups.CheckedOutp",
    .tp_doc = "CheckedOutp(buf, limit, flush): a source's outp; appends, flushes when full.",
    .tp_basicsize = sizeof(CheckedOutp),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_new = outp_new,
    .tp_traverse = (traverseproc)outp_traverse,
    .tp_clear = (inquiry)outp_clear,
    .tp_dealloc = (destructor)outp_dealloc,
    .tp_call = PyVectorcall_Call,
    .tp_vectorcall_offset = offsetof(CheckedOutp, vectorcall),
    .tp_members = outp_members,
};

/* ------------------------------------------------------------------ drive */

/* How drive() calls outp: a CheckedOutp and a one-argument C method (such as the bound
 * append of a deque, the outp of nodes that read input) are called directly, anything else
 * through the vectorcall protocol. */
typedef struct {
    PyObject *outp;
    PyCFunction cfunc; /* set for a METH_O builtin */
    PyObject *cself;
    int checked; /* outp is a CheckedOutp */
} Emitter;

static void
emitter_init(Emitter *e, PyObject *outp)
{
    e->outp = outp;
    e->cfunc = NULL;
    e->cself = NULL;
    e->checked = Py_IS_TYPE(outp, &CheckedOutpType);
    if (PyCFunction_CheckExact(outp) && PyCFunction_GET_FLAGS(outp) == METH_O) {
        e->cfunc = PyCFunction_GET_FUNCTION(outp);
        e->cself = PyCFunction_GET_SELF(outp);
    }
}

static inline int
emit(Emitter *e, PyObject *out)
{
    PyObject *res;
    if (e->checked) {
        return outp_append((CheckedOutp *)e->outp, out);
    }
    if (e->cfunc != NULL) {
        res = e->cfunc(e->cself, out);
    }
    else {
        res = PyObject_CallOneArg(e->outp, out);
    }
    if (res == NULL) {
        return -1;
    }
    Py_DECREF(res);
    return 0;
}

/* Next item of iterator `it` (a new reference), or NULL: at the end with no error set
 * (a StopIteration is cleared, as a for loop does), else with the error set. */
static inline PyObject *
next_item(PyObject *it, iternextfunc next)
{
    PyObject *item = next(it);
    if (item == NULL && PyErr_Occurred()) {
        if (PyErr_ExceptionMatches(PyExc_StopIteration)) {
            PyErr_Clear();
        }
    }
    return item;
}

static PyObject *
drive(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "drive(inp, process, outp) takes 3 arguments");
        return NULL;
    }
    /* A bound method (node.process_item) is called as its function with self first. */
    PyObject *process = args[1];
    PyObject *call_args[3] = {NULL, NULL, NULL};
    PyObject *func = process;
    PyObject **item_slot = &call_args[1];
    size_t nargsf = 1 | PY_VECTORCALL_ARGUMENTS_OFFSET;
    if (PyMethod_Check(process)) {
        func = PyMethod_GET_FUNCTION(process);
        call_args[1] = PyMethod_GET_SELF(process);
        item_slot = &call_args[2];
        nargsf = 2 | PY_VECTORCALL_ARGUMENTS_OFFSET;
    }
    Emitter emitter;
    emitter_init(&emitter, args[2]);
    PyObject *it = PyObject_GetIter(args[0]);
    if (it == NULL) {
        return NULL;
    }
    iternextfunc next = Py_TYPE(it)->tp_iternext;
    PyObject *item;
    while ((item = next_item(it, next)) != NULL) {
        *item_slot = item;
        PyObject *outs = PyObject_Vectorcall(func, &call_args[1], nargsf, NULL);
        Py_DECREF(item);
        if (outs == NULL) {
            goto error;
        }
        PyObject *oit;
        if (PyGen_CheckExact(outs)) { /* the usual case: process_item is a generator */
            oit = outs;
        }
        else {
            oit = PyObject_GetIter(outs);
            Py_DECREF(outs);
            if (oit == NULL) {
                goto error;
            }
        }
        iternextfunc onext = Py_TYPE(oit)->tp_iternext;
        PyObject *out;
        while ((out = next_item(oit, onext)) != NULL) {
            int rc = emit(&emitter, out);
            Py_DECREF(out);
            if (rc < 0) {
                Py_DECREF(oit);
                goto error;
            }
        }
        Py_DECREF(oit);
        if (PyErr_Occurred()) {
            goto error;
        }
    }
    if (PyErr_Occurred()) {
        goto error;
    }
    Py_DECREF(it);
    Py_RETURN_NONE;
error:
    Py_DECREF(it);
    return NULL;
}

static PyObject *
drive_source(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError,
                        "drive_source(items, outp, special_type, special) takes 4 arguments");
        return NULL;
    }
    PyObject *special_type = args[2], *special = args[3];
    Emitter emitter;
    emitter_init(&emitter, args[1]);
    PyObject *it = PyObject_GetIter(args[0]);
    if (it == NULL) {
        return NULL;
    }
    iternextfunc next = Py_TYPE(it)->tp_iternext;
    PyObject *item;
    while ((item = next_item(it, next)) != NULL) {
        int rc;
        if ((PyObject *)Py_TYPE(item) == special_type) {
            PyObject *res = PyObject_CallOneArg(special, item);
            rc = res == NULL ? -1 : 0;
            Py_XDECREF(res);
        }
        else {
            rc = emit(&emitter, item);
        }
        Py_DECREF(item);
        if (rc < 0) {
            Py_DECREF(it);
            return NULL;
        }
    }
    Py_DECREF(it);
    if (PyErr_Occurred()) {
        return NULL;
    }
    Py_RETURN_NONE;
}

/* One Acked(item, ack) of a source: emit item; attach ack (even when emitting raised; the
 * first ack asks first_ack() for the callable that attaches); then mark() when one of the
 * lists in bufs is empty (the item went out with its batch). */
static int
emit_acked(Emitter *emitter, PyObject *acked, PyObject **append, PyObject *first_ack,
           PyObject *bufs, PyObject *mark)
{
    if (!PyTuple_Check(acked) || PyTuple_GET_SIZE(acked) != 2) {
        PyErr_SetString(PyExc_TypeError, "drive_acked: an acked item must be a pair");
        return -1;
    }
    int rc = emit(emitter, PyTuple_GET_ITEM(acked, 0));
    PyObject *exc_type = NULL, *exc_value = NULL, *exc_tb = NULL;
    if (rc < 0) {
        PyErr_Fetch(&exc_type, &exc_value, &exc_tb);
    }
    int ok = 0;
    if (*append == NULL) {
        *append = PyObject_CallNoArgs(first_ack);
    }
    if (*append != NULL) {
        PyObject *res = PyObject_CallOneArg(*append, PyTuple_GET_ITEM(acked, 1));
        if (res != NULL) {
            Py_DECREF(res);
            ok = 1;
        }
    }
    if (ok && rc == 0) {
        Py_ssize_t n = PyList_GET_SIZE(bufs);
        for (Py_ssize_t i = 0; i < n; i++) {
            PyObject *buf = PyList_GET_ITEM(bufs, i);
            if (!PyList_Check(buf) || PyList_GET_SIZE(buf) == 0) {
                PyObject *res = PyObject_CallNoArgs(mark);
                if (res == NULL) {
                    return -1;
                }
                Py_DECREF(res);
                break;
            }
        }
    }
    if (rc < 0) {
        if (ok) {
            PyErr_Restore(exc_type, exc_value, exc_tb);
        }
        else { /* the attach failed too: that error wins, the item's is dropped */
            Py_XDECREF(exc_type);
            Py_XDECREF(exc_value);
            Py_XDECREF(exc_tb);
        }
        return -1;
    }
    return ok ? 0 : -1;
}

static PyObject *
drive_acked(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 6) {
        PyErr_SetString(PyExc_TypeError,
                        "drive_acked(items, outp, acked_type, first_ack, bufs, mark) takes 6 "
                        "arguments");
        return NULL;
    }
    PyObject *acked_type = args[2], *first_ack = args[3], *bufs = args[4], *mark = args[5];
    if (!PyList_CheckExact(bufs)) {
        PyErr_SetString(PyExc_TypeError, "drive_acked: bufs must be a list");
        return NULL;
    }
    PyObject *append = NULL;
    Emitter emitter;
    emitter_init(&emitter, args[1]);
    PyObject *it = PyObject_GetIter(args[0]);
    if (it == NULL) {
        return NULL;
    }
    iternextfunc next = Py_TYPE(it)->tp_iternext;
    PyObject *item;
    while ((item = next_item(it, next)) != NULL) {
        int rc;
        if ((PyObject *)Py_TYPE(item) == acked_type) {
            rc = emit_acked(&emitter, item, &append, first_ack, bufs, mark);
        }
        else {
            rc = emit(&emitter, item);
        }
        Py_DECREF(item);
        if (rc < 0) {
            Py_DECREF(it);
            Py_XDECREF(append);
            return NULL;
        }
    }
    Py_DECREF(it);
    Py_XDECREF(append);
    if (PyErr_Occurred()) {
        return NULL;
    }
    Py_RETURN_NONE;
}

/* ------------------------------------------------------------------ settled */

/* 1 when `o` is, or is made, an object the cyclic GC does not track and never will: not a
 * GC object, or an exact tuple (immutable) whose items are such objects, looked into
 * `depth` levels deep (an exact tuple found tracked is untracked, as the collector itself
 * does with tuples it traverses). Any other container may be mutated into a cycle: 0. */
static int
settled(PyObject *o, int depth)
{
    if (!PyObject_IS_GC(o)) {
        return 1;
    }
    if (!PyTuple_CheckExact(o)) {
        return 0;
    }
    if (!PyObject_GC_IsTracked(o)) {
        return 1;
    }
    if (depth == 0) {
        return 0;
    }
    Py_ssize_t n = PyTuple_GET_SIZE(o);
    for (Py_ssize_t i = 0; i < n; i++) {
        if (!settled(PyTuple_GET_ITEM(o, i), depth - 1)) {
            return 0;
        }
    }
    PyObject_GC_UnTrack(o);
    return 1;
}

/* How deep settled() looks into a row's items (a record's headers: a tuple of pairs). */
#define SETTLE_DEPTH 3

/* ------------------------------------------------------------------ call_rows */

/* What call_rows makes of one field of a row (see its docstring in the method table). */
enum { FIELD_CONST = 0, FIELD_CALL = 1, FIELD_TUPLE = 2, FIELD_SECOND = 3 };

static PyObject *
call_field(int code, PyObject *arg, PyObject *obj)
{
    if (code == FIELD_CONST) {
        return Py_NewRef(arg);
    }
    PyObject *got = PyObject_CallOneArg(arg, obj);
    if (got == NULL || code == FIELD_CALL) {
        return got;
    }
    PyObject *made;
    if (code == FIELD_TUPLE) {
        if (got == Py_None) {
            made = PyTuple_New(0);
        }
        else if (PyTuple_CheckExact(got)) {
            return got;
        }
        else if (PyList_CheckExact(got)) {
            made = PyList_AsTuple(got);
        }
        else {
            made = PySequence_Tuple(got);
        }
    }
    else { /* FIELD_SECOND */
        if (!PyTuple_Check(got) || PyTuple_GET_SIZE(got) < 2) {
            PyErr_SetString(PyExc_TypeError, "call_rows: a 'second' field's function must "
                                             "return a pair");
            made = NULL;
        }
        else {
            PyObject *second = PyTuple_GET_ITEM(got, 1);
            int none = 0;
            if (PyLong_CheckExact(second)) {
                long v = PyLong_AsLong(second);
                if (v == -1 && PyErr_Occurred()) {
                    PyErr_Clear(); /* too large to be -1 */
                }
                else {
                    none = v == -1;
                }
            }
            made = Py_NewRef(none ? Py_None : second);
        }
    }
    Py_DECREF(got);
    return made;
}

static PyObject *
call_rows(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3 && nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "call_rows(cls, objs, fields, lasting=False) takes 3 "
                                         "or 4 arguments");
        return NULL;
    }
    PyObject *cls = args[0], *objs = args[1], *fields = args[2];
    int lasting = nargs == 4 ? PyObject_IsTrue(args[3]) : 0;
    if (lasting < 0) {
        return NULL;
    }
    if (!PyType_Check(cls) || !PyType_IsSubtype((PyTypeObject *)cls, &PyTuple_Type)) {
        PyErr_SetString(PyExc_TypeError, "call_rows: cls must be tuple or a subclass of it");
        return NULL;
    }
    if (!PyList_CheckExact(objs)) {
        PyErr_SetString(PyExc_TypeError, "call_rows: objs must be a list");
        return NULL;
    }
    if (!PyTuple_CheckExact(fields)) {
        PyErr_SetString(PyExc_TypeError, "call_rows: fields must be a tuple of (kind, x) pairs");
        return NULL;
    }
    Py_ssize_t width = PyTuple_GET_SIZE(fields);
    int codes[16];
    if (width > 16) {
        PyErr_SetString(PyExc_ValueError, "call_rows: at most 16 fields");
        return NULL;
    }
    for (Py_ssize_t j = 0; j < width; j++) {
        PyObject *field = PyTuple_GET_ITEM(fields, j);
        long code = -1;
        if (PyTuple_CheckExact(field) && PyTuple_GET_SIZE(field) == 2 &&
            PyLong_CheckExact(PyTuple_GET_ITEM(field, 0))) { /* (a kind is an exact int) */
            code = PyLong_AsLong(PyTuple_GET_ITEM(field, 0));
            if (code == -1 && PyErr_Occurred()) {
                PyErr_Clear(); /* too large: no such kind */
            }
        }
        if (code < FIELD_CONST || code > FIELD_SECOND ||
            (code != FIELD_CONST && !PyCallable_Check(PyTuple_GET_ITEM(field, 1)))) {
            PyErr_SetString(PyExc_ValueError, "call_rows: each field is (0, value), or (1, 2 or "
                                              "3, function)");
            return NULL;
        }
        codes[j] = (int)code;
    }
    PyTypeObject *type = (PyTypeObject *)cls;
    /* Rows of a subclass with no instance dict or slots hold only their items and their
     * type: they may be left untracked as an exact tuple may when the type cannot be part
     * of a cycle that must be collected, that is a static type, or a class made at run
     * time (a heap type, which its instances refer to) that the caller says lasts. */
    int plain = type == &PyTuple_Type ||
                (type->tp_dictoffset == 0 && type->tp_basicsize == PyTuple_Type.tp_basicsize &&
                 (lasting || !(type->tp_flags & Py_TPFLAGS_HEAPTYPE)));
    /* The functions may be anyone's: the list is copied, so that they cannot change it. */
    PyObject *held = PyList_GetSlice(objs, 0, PyList_GET_SIZE(objs));
    if (held == NULL) {
        return NULL;
    }
    /* A row is made once its fields are: the functions (Python code) never see a row, or
     * the list of rows, with items not set yet. */
    Py_ssize_t n = PyList_GET_SIZE(held);
    PyObject *rows = PyList_New(0);
    PyObject *made[16];
    if (rows == NULL) {
        Py_DECREF(held);
        return NULL;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *obj = PyList_GET_ITEM(held, i);
        int untrack = plain;
        for (Py_ssize_t j = 0; j < width; j++) {
            made[j] = call_field(codes[j], PyTuple_GET_ITEM(PyTuple_GET_ITEM(fields, j), 1), obj);
            if (made[j] == NULL) {
                for (Py_ssize_t k = 0; k < j; k++) {
                    Py_DECREF(made[k]);
                }
                goto fail;
            }
            if (untrack && !settled(made[j], SETTLE_DEPTH)) {
                untrack = 0;
            }
        }
        PyObject *row = type == &PyTuple_Type ? PyTuple_New(width) : type->tp_alloc(type, width);
        if (row == NULL) {
            for (Py_ssize_t k = 0; k < width; k++) {
                Py_DECREF(made[k]);
            }
            goto fail;
        }
        for (Py_ssize_t j = 0; j < width; j++) {
            PyTuple_SET_ITEM(row, j, made[j]);
        }
        if (untrack && width > 0 && PyObject_GC_IsTracked(row)) {
            PyObject_GC_UnTrack(row);
        }
        int rc = PyList_Append(rows, row);
        Py_DECREF(row);
        if (rc < 0) {
            goto fail;
        }
    }
    Py_DECREF(held);
    return rows;
fail:
    Py_DECREF(held);
    Py_DECREF(rows);
    return NULL;
}

/* ------------------------------------------------------------------ typed_rows */

static PyObject *
typed_rows(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "typed_rows(items, cls, fields, types) takes 4 "
                                         "arguments");
        return NULL;
    }
    PyObject *items = args[0], *cls = args[1], *fields = args[2], *types = args[3];
    if (!PyList_CheckExact(items)) {
        PyErr_SetString(PyExc_TypeError, "typed_rows: items must be a list");
        return NULL;
    }
    if (!PyType_Check(cls) || !PyType_IsSubtype((PyTypeObject *)cls, &PyTuple_Type)) {
        PyErr_SetString(PyExc_TypeError, "typed_rows: cls must be tuple or a subclass of it");
        return NULL;
    }
    if (!PyTuple_CheckExact(fields) || !PyTuple_CheckExact(types)) {
        PyErr_SetString(PyExc_TypeError, "typed_rows: fields and types must be tuples");
        return NULL;
    }
    Py_ssize_t nfields = PyTuple_GET_SIZE(fields), ntypes = PyTuple_GET_SIZE(types);
    Py_ssize_t at[8];
    if (nfields > 8) {
        PyErr_SetString(PyExc_ValueError, "typed_rows: at most 8 fields");
        return NULL;
    }
    for (Py_ssize_t j = 0; j < nfields; j++) {
        at[j] = PyLong_AsSsize_t(PyTuple_GET_ITEM(fields, j));
        if (at[j] == -1 && PyErr_Occurred()) {
            return NULL;
        }
        if (at[j] < 0) {
            PyErr_SetString(PyExc_ValueError, "typed_rows: fields are indexes, 0 or more");
            return NULL;
        }
    }
    /* (the list is read without calling Python code: it cannot change meanwhile) */
    Py_ssize_t n = PyList_GET_SIZE(items);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *row = PyList_GET_ITEM(items, i);
        if (Py_TYPE(row) != (PyTypeObject *)cls) {
            Py_RETURN_FALSE;
        }
        for (Py_ssize_t j = 0; j < nfields; j++) {
            if (at[j] >= PyTuple_GET_SIZE(row)) {
                Py_RETURN_FALSE;
            }
            PyObject *kind = (PyObject *)Py_TYPE(PyTuple_GET_ITEM(row, at[j]));
            Py_ssize_t k = 0;
            while (k < ntypes && PyTuple_GET_ITEM(types, k) != kind) {
                k++;
            }
            if (k == ntypes) {
                Py_RETURN_FALSE;
            }
        }
    }
    Py_RETURN_TRUE;
}

static PyMethodDef speedups_methods[] = {
    {"drive", (PyCFunction)(void (*)(void))drive, METH_FASTCALL,
     "drive(inp, process, outp): for item in inp: for out in process(item): outp(out)"},
    {"drive_source", (PyCFunction)(void (*)(void))drive_source, METH_FASTCALL,
     "drive_source(items, outp, special_type, special): outp(item) for each item, or "
     "special(item) when type(item) is special_type"},
    {"drive_acked", (PyCFunction)(void (*)(void))drive_acked, METH_FASTCALL,
     "drive_acked(items, outp, acked_type, first_ack, bufs, mark): a source's items, its "
     "acked pairs emitted with their acks attached (see nanostream._core.fast)"},
    {"call_rows", (PyCFunction)(void (*)(void))call_rows, METH_FASTCALL,
     "call_rows(cls, objs, fields, lasting=False): a list of cls tuples, one per object of "
     "the list objs, field j of each made as fields[j] says: (0, value) the value; (1, f) "
     "f(obj); (2, f) f(obj) as a tuple, None as (); (3, f) item 1 of the pair f(obj), None "
     "when it is -1; a row holding only objects the GC does not track is not tracked either (a row of a class made at run time only when lasting is true)"},
    {"typed_rows", (PyCFunction)(void (*)(void))typed_rows, METH_FASTCALL,
     "typed_rows(items, cls, fields, types): whether every item of the list is exactly a cls "
     "tuple whose items at the indexes fields are each exactly of one of types"},
    {NULL, NULL, 0, NULL},
};

static int
speedups_exec(PyObject *module)
{
    if (PyType_Ready(&CheckedOutpType) < 0) {
        return -1;
    }
    if (PyModule_AddObjectRef(module, "CheckedOutp", (PyObject *)&CheckedOutpType) < 0) {
        return -1;
    }
    return 0;
}

static PyModuleDef_Slot speedups_slots[] = {
    {Py_mod_exec, speedups_exec},
    {0, NULL},
};

static struct PyModuleDef speedups_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "nanostream._speedups",
    .m_doc = "The engine's per-item loops, compiled (optional; see nanostream._core.fast).",
    .m_size = 0,
    .m_methods = speedups_methods,
    .m_slots = speedups_slots,
};

PyMODINIT_FUNC
PyInit__speedups(void)
{
    return PyModuleDef_Init(&speedups_module);
}
