# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False
"""Cython hot loop: the compiled twin of `histograms/_slow.py`.

Same checks, same order, same reason texts as the twin (the property test compares them). The
speed comes from:

* walking each histogram's dict once to read its nine known fields, settling a key by its
  address when the parser handed out the same key object as last time (orjson does);
* parsing each decimal bucket key in C and finding it in the layout (a C array) by a forward
  scan from the previous hit, since payloads list buckets in order, with binary search as the
  fallback, instead of a dict lookup per bucket;
* checking counts as C integers (the sign of an exact int without a call);
* walking the entry arrays of the parser's dicts directly on CPython 3.11 (PyDict_Next was a
  fifth of the instructions), with PyDict_Next on other versions and unusual tables;
* writing the result list's item array directly and untracking it from the cyclic GC (it holds
  only numbers); reading the spec tuple by borrowed references; a presized result dict.

Anything unusual goes through the same dict lookups as the twin.
"""

from libc.string cimport memcmp
from cpython.dict cimport PyDict_GetItem, PyDict_Next
from cpython.list cimport PyList_New, PyList_SET_ITEM
from cpython.object cimport PyObject
from cpython.ref cimport Py_INCREF
from cpython cimport array

from histograms.spec import STATS, flexible_spec

cdef extern from "Python.h":
    dict _new_presized_dict "_PyDict_NewPresized"(Py_ssize_t minused)
    PyObject *PyDict_GetItemWithError(object d, object key) except? NULL
    long long PyLong_AsLongLongAndOverflow(object obj, int *overflow) except? -1
    bint PyLong_CheckExact(object obj)
    bint PyFloat_CheckExact(object obj)
    Py_ssize_t PyLong_AsSsize_t(object obj) except? -1
    bint PyUnicode_CheckExact(object obj)
    void PyObject_GC_UnTrack(object obj)
    bint PyUnicode_IS_ASCII(object obj)
    Py_ssize_t PyUnicode_GET_LENGTH(object obj)
    const unsigned char *PyUnicode_1BYTE_DATA(object obj)
    bint _str_exact "PyUnicode_CheckExact"(PyObject *obj)
    bint _str_ascii "PyUnicode_IS_ASCII"(PyObject *obj)
    Py_ssize_t _str_length "PyUnicode_GET_LENGTH"(PyObject *obj)
    const unsigned char *_str_data "PyUnicode_1BYTE_DATA"(PyObject *obj)
    PyObject *PyList_GET_ITEM(object lst, Py_ssize_t i)
    Py_ssize_t PyList_GET_SIZE(object lst)
    PyObject *PyTuple_GET_ITEM(object tup, Py_ssize_t i)
    bint _long_exact "PyLong_CheckExact"(PyObject *obj)
    bint _float_exact "PyFloat_CheckExact"(PyObject *obj)
    void Py_DECREF(PyObject *obj)
    void Py_XINCREF(PyObject *obj)
    void Py_XDECREF(PyObject *obj)

cdef object ZERO = 0
cdef object MINUS_ONE = -1
cdef PyObject *ZERO_PTR = <PyObject *>ZERO
cdef PyObject *MINUS_ONE_PTR = <PyObject *>MINUS_ONE
cdef PyObject *NONE_PTR = <PyObject *>None
cdef tuple STAT_NAMES = tuple(STATS)
cdef str STARTUP_PREFIX = "STARTUP_"


cdef extern from *:
    """
    /* The sign of an exact int without a call: in CPython before 3.12 it is the sign of
       ob_size (the digit count); later versions changed the layout, so ask the API there. */
    #if PY_VERSION_HEX < 0x030C0000
    #define HISTOGRAMS_INT_IS_NEGATIVE(o) (Py_SIZE(o) < 0)
    #else
    #define HISTOGRAMS_INT_IS_NEGATIVE(o) (_PyLong_Sign(o) < 0)
    #endif
    """
    bint _is_negative_int "HISTOGRAMS_INT_IS_NEGATIVE"(PyObject *value)


cdef extern from *:
    """
    /* The item array of a list we just created, and adding n references at once. */
    #define HISTOGRAMS_LIST_ITEMS(o) (((PyListObject *)(o))->ob_item)
    #if PY_VERSION_HEX < 0x030C0000
    #define HISTOGRAMS_ADD_REFS(o, n) (((PyObject *)(o))->ob_refcnt += (n))
    #else  /* immortal objects since 3.12: let Py_INCREF decide */
    #define HISTOGRAMS_ADD_REFS(o, n) do { Py_ssize_t k_ = (n); while (k_-- > 0) Py_INCREF(o); } while (0)
    #endif
    """
    PyObject **_list_items "HISTOGRAMS_LIST_ITEMS"(object lst)
    void _add_refs "HISTOGRAMS_ADD_REFS"(PyObject *obj, Py_ssize_t n)


cdef extern from *:
    """
    /* Walking a dict's entry array directly instead of calling PyDict_Next per item (about a
       fifth of this module's instructions went to that call). Only on the CPython versions
       whose layout is known here, and only for combined tables (what JSON parsers build):
       split tables, and every other version, get NULL and take the PyDict_Next path.
       The result points at the first entry's key; its value is the next pointer, and entries
       are `stride` pointers apart (str-keyed tables store no hash). */
    #if PY_VERSION_HEX >= 0x030B0000 && PY_VERSION_HEX < 0x030C0000 && !defined(Py_LIMITED_API)
    #  ifndef Py_BUILD_CORE
    #    define Py_BUILD_CORE 1
    #    define HISTOGRAMS_UNDEF_BUILD_CORE
    #  endif
    #  include "internal/pycore_dict.h"
    #  ifdef HISTOGRAMS_UNDEF_BUILD_CORE
    #    undef Py_BUILD_CORE
    #  endif
    static inline PyObject **histograms_dict_entries(PyObject *d, Py_ssize_t *count, Py_ssize_t *stride) {
        PyDictObject *mp = (PyDictObject *)d;
        PyDictKeysObject *dk = mp->ma_keys;
        if (mp->ma_values != NULL) return NULL;
        *count = dk->dk_nentries;
        if (dk->dk_kind == DICT_KEYS_UNICODE) {
            *stride = 2;
            return &DK_UNICODE_ENTRIES(dk)->me_key;
        }
        if (dk->dk_kind == DICT_KEYS_GENERAL) {
            *stride = 3;
            return &DK_ENTRIES(dk)->me_key;
        }
        return NULL;
    }
    #else
    static inline PyObject **histograms_dict_entries(PyObject *d, Py_ssize_t *count, Py_ssize_t *stride) {
        (void)d; *count = 0; *stride = 0; return NULL;
    }
    #endif
    """
    PyObject **_dict_entries "histograms_dict_entries"(object d, Py_ssize_t *count, Py_ssize_t *stride)


cdef struct Walk:
    PyObject **entries  # NULL: use PyDict_Next
    Py_ssize_t count
    Py_ssize_t stride
    Py_ssize_t pos


cdef inline void _walk_start(Walk *walk, object d):
    walk.pos = 0
    walk.entries = _dict_entries(d, &walk.count, &walk.stride)


cdef inline bint _walk_next(Walk *walk, object d, PyObject **key, PyObject **value):
    """PyDict_Next, or the same walk over the entry array when the dict's table allows it.

    The entries are read only while nothing can change the dict (no Python code runs between
    two calls); a deleted slot has no value, and is skipped exactly as PyDict_Next skips it.
    """
    cdef Py_ssize_t i
    cdef PyObject **entry
    if walk.entries is NULL:
        return PyDict_Next(d, &walk.pos, key, value)
    i = walk.pos
    entry = walk.entries + i * walk.stride
    while i < walk.count and entry[1] is NULL:
        i += 1
        entry += walk.stride
    walk.pos = i + 1
    if i >= walk.count:
        walk.pos = i
        return False
    key[0] = entry[0]
    value[0] = entry[1]
    return True


cdef enum:
    FALLBACK = -2
    NOT_FOUND = -1


cdef inline Py_ssize_t _position_of(PyObject *key, const long long *bounds, Py_ssize_t n, Py_ssize_t *cursor):
    """Position of a canonical decimal key in the sorted bounds, NOT_FOUND, or FALLBACK.

    A key matches exactly when it equals `str(bound)` for some bound, as in the twin's dict:
    ASCII digits, no sign, no leading zero. Anything this fast path cannot decide (non-str
    keys, non-ASCII text, very long numbers) returns FALLBACK for the dict lookup.
    """
    cdef Py_ssize_t length, i, lo, hi, mid
    cdef const unsigned char *text
    cdef long long value = 0
    cdef unsigned char c
    if not _str_exact(key) or not _str_ascii(key):
        return FALLBACK
    length = _str_length(key)
    if length == 0 or length > 18:
        return FALLBACK
    text = _str_data(key)
    if text[0] == 48 and length > 1:  # leading zero: never how a bound is written
        return NOT_FOUND
    for i in range(length):
        c = text[i]
        if c < 48 or c > 57:
            return NOT_FOUND
        value = value * 10 + (c - 48)
    # Payloads list buckets in increasing order, so scan forward from the previous hit; the
    # scan stops at the first bound above the value and takes the one before it (the rightmost
    # match: a linear layout may repeat a bound, and the twin's dict keeps the last position).
    i = cursor[0]
    if bounds[i] <= value:
        while i < n and bounds[i] <= value:
            i += 1
        cursor[0] = i - 1
        if bounds[i - 1] == value:
            return i - 1
        return NOT_FOUND
    lo = 0
    hi = n
    while lo < hi:
        mid = (lo + hi) >> 1
        if bounds[mid] <= value:
            lo = mid + 1
        else:
            hi = mid
    if lo > 0 and bounds[lo - 1] == value:
        return lo - 1
    return NOT_FOUND


cdef const char *FIELD_NAMES[9]
FIELD_NAMES[:] = [
    b"bucket_count", b"range", b"histogram_type", b"values",
    b"sum", b"log_sum", b"log_sum_squares", b"sum_squares_lo", b"sum_squares_hi",
]
cdef Py_ssize_t FIELD_LENGTHS[9]
FIELD_LENGTHS[:] = [12, 5, 14, 6, 3, 7, 15, 14, 14]
cdef tuple FIELD_KEYS = ("bucket_count", "range", "histogram_type", "values") + STAT_NAMES


cdef PyObject *KEY_CACHE[9]
"""The str object last seen for each known field (a strong reference, so its address cannot
be reused). orjson hands out the same key object for every occurrence of a short key, so an
address comparison usually settles a key without comparing its characters."""


cdef inline void _read_fields(dict h, PyObject **fields):
    """Fill fields with h.get(name) for the nine known names in one pass over the dict.

    One PyDict_Next walk with length + memcmp checks replaces nine hash lookups whose string
    keys (fresh from the JSON parser) are never the same objects as ours. Any key that is not a
    plain ASCII str sends us back to ordinary lookups so the result always equals `h.get`.
    """
    cdef Py_ssize_t length, j
    cdef PyObject *key_ptr
    cdef PyObject *value_ptr
    cdef const unsigned char *text
    cdef Walk walk
    _walk_start(&walk, h)
    for j in range(9):
        fields[j] = NULL
    while _walk_next(&walk, h, &key_ptr, &value_ptr):
        if not _str_exact(key_ptr) or not _str_ascii(key_ptr):
            for j in range(9):
                fields[j] = PyDict_GetItem(h, FIELD_KEYS[j])
            return
        length = _str_length(key_ptr)
        text = _str_data(key_ptr)
        j = _candidate_field(text, length)
        if j < 0:
            continue
        if key_ptr == KEY_CACHE[j]:
            fields[j] = value_ptr
        elif memcmp(text, FIELD_NAMES[j], length) == 0:
            fields[j] = value_ptr
            Py_XINCREF(key_ptr)
            Py_XDECREF(KEY_CACHE[j])
            KEY_CACHE[j] = key_ptr


cdef inline Py_ssize_t _candidate_field(const unsigned char *text, Py_ssize_t length):
    """The only known field a key of this length (and telling letter) could be, or -1."""
    if length == 3:
        return 4  # sum
    if length == 5:
        return 1  # range
    if length == 6:
        return 3  # values
    if length == 7:
        return 5  # log_sum
    if length == 12:
        return 0  # bucket_count
    if length == 15:
        return 6  # log_sum_squares
    if length == 14:
        if text[0] == 104:  # 'h'
            return 2  # histogram_type
        return 7 if text[13] == 111 else 8  # sum_squares_lo / sum_squares_hi
    return -1


cdef inline bint _same_or_equal(object a, object b) except -1:
    """`a == b`, settled by identity first (small ints from the parser are shared objects)."""
    if a is b and PyLong_CheckExact(a):
        return True
    return a == b


cpdef object convert_one(object hist, tuple spec):
    cdef dict h
    cdef object kind_code, low, high, bucket_count, flexible, alternative
    cdef dict index
    cdef object declared_count, declared_range, declared_type, values
    cdef Py_ssize_t n, i, position
    cdef PyObject *key_ptr
    cdef PyObject *count_ptr
    cdef PyObject *found
    cdef PyObject *value_ptr
    cdef PyObject **items
    cdef Walk walk
    cdef object bounds
    cdef const long long *bound_data = NULL
    cdef Py_ssize_t cursor = 0
    cdef list out
    cdef PyObject *fields[9]

    if type(hist) is not dict:
        return "histogram is not a JSON object"
    h = <dict>hist
    # Borrowed from the spec tuple (it outlives this call), instead of unpacking all eight.
    kind_code = <object>PyTuple_GET_ITEM(spec, 0)
    low = <object>PyTuple_GET_ITEM(spec, 1)
    high = <object>PyTuple_GET_ITEM(spec, 2)
    bucket_count = <object>PyTuple_GET_ITEM(spec, 3)
    index = <dict>PyTuple_GET_ITEM(spec, 4)
    flexible = <object>PyTuple_GET_ITEM(spec, 5)
    bounds = <object>PyTuple_GET_ITEM(spec, 7)
    _read_fields(h, fields)
    declared_count = None if fields[0] is NULL else <object>fields[0]
    declared_range = None if fields[1] is NULL else <object>fields[1]
    if flexible and (declared_count != bucket_count or declared_range != [low, high]):
        alternative = flexible_spec(h)
        if alternative is not None:
            kind_code, low, high, bucket_count, index, flexible, _keyed, bounds = alternative
    if fields[2] is not NULL:
        declared_type = <object>fields[2]
        if declared_type is not None and not _same_or_equal(declared_type, kind_code):
            return f"histogram_type {declared_type!r} contradicts the definition (expected {kind_code})"
    if declared_count is not None and not _same_or_equal(declared_count, bucket_count):
        return f"bucket_count {declared_count!r} contradicts the definition (expected {bucket_count})"
    if declared_range is not None:
        if type(declared_range) is not list or PyList_GET_SIZE(declared_range) != 2:
            return f"range {declared_range!r} is not a [low, high] pair"
        if (not _same_or_equal(<object>PyList_GET_ITEM(declared_range, 0), low)
                or not _same_or_equal(<object>PyList_GET_ITEM(declared_range, 1), high)):
            return f"range {declared_range!r} contradicts the definition (expected [{low}, {high}])"
    values = None if fields[3] is NULL else <object>fields[3]
    if type(values) is not dict:
        return "values is missing or not a JSON object"

    n = PyLong_AsSsize_t(bucket_count)
    out = PyList_New(n + 5)
    items = _list_items(out)
    for i in range(n):
        items[i] = ZERO_PTR
    for i in range(n, n + 5):
        items[i] = MINUS_ONE_PTR
    _add_refs(ZERO_PTR, n)
    _add_refs(MINUS_ONE_PTR, 5)

    if bounds is not None:
        bound_data = (<array.array>bounds).data.as_longlongs
    _walk_start(&walk, values)
    while _walk_next(&walk, values, &key_ptr, &count_ptr):
        position = FALLBACK if bound_data is NULL else _position_of(key_ptr, bound_data, n, &cursor)
        if position == FALLBACK:
            if not _str_exact(key_ptr):
                # Hashing or comparing an arbitrary key may run Python code, which could change
                # `values`: continue with PyDict_Next, which re-reads the table at every step.
                walk.entries = NULL
            found = PyDict_GetItemWithError(index, <object>key_ptr)
            position = NOT_FOUND if found is NULL else PyLong_AsSsize_t(<object>found)
        if position == NOT_FOUND:
            return f"bucket lower bound {<object>key_ptr!r} is not in the layout"
        if not _long_exact(count_ptr) or _is_negative_int(count_ptr):
            return (
                f"count {<object>count_ptr!r} for bucket {<object>key_ptr!r} "
                "is not a non-negative integer"
            )
        Py_DECREF(items[position])
        Py_INCREF(<object>count_ptr)
        items[position] = count_ptr

    for i in range(5):
        value_ptr = fields[4 + i]
        if value_ptr is NULL or value_ptr == NONE_PTR:
            continue
        if _long_exact(value_ptr) or _float_exact(value_ptr):
            Py_DECREF(items[n + i])
            Py_INCREF(<object>value_ptr)
            items[n + i] = value_ptr
        else:
            return f"{STAT_NAMES[i]} {<object>value_ptr!r} is not a number"
    PyObject_GC_UnTrack(out)  # only ints and floats inside: it can never be part of a cycle
    return out


def convert_histograms(object histograms, dict specs):
    """Convert a name -> histogram object; returns (converted, invalid, unknown)."""
    cdef dict converted
    cdef list invalid = []
    cdef list unknown = []
    cdef object result, name, hist
    cdef PyObject *spec
    cdef PyObject *name_ptr
    cdef PyObject *hist_ptr
    cdef Py_ssize_t pos = 0
    if type(histograms) is not dict:
        return {}, [("*", "histograms is not a JSON object")], unknown
    converted = _new_presized_dict(len(<dict>histograms))
    while PyDict_Next(<dict>histograms, &pos, &name_ptr, &hist_ptr):
        name = <object>name_ptr
        spec = PyDict_GetItemWithError(specs, name)
        if spec is NULL and type(name) is str and (<str>name).startswith(STARTUP_PREFIX):
            spec = PyDict_GetItemWithError(specs, (<str>name)[len(STARTUP_PREFIX):])
        if spec is NULL or <object>spec is None:
            unknown.append(name)
            continue
        if <object>PyTuple_GET_ITEM(<object>spec, 6):
            invalid.append((name, "defined as keyed but sent as a plain histogram"))
            continue
        result = convert_one(<object>hist_ptr, <tuple>spec)
        if type(result) is str:
            invalid.append((name, result))
        else:
            converted[name] = result
    return converted, invalid, unknown
