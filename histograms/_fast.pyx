# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False
"""Cython hot loop: the compiled twin of `histograms/_slow.py`.

Same checks, same order, same reason texts as the twin (the property test compares them). The
speed comes from: reading the nine known fields of a histogram in one PyDict_Next pass;
parsing each decimal bucket key in C and finding it in the layout (a C array) by a forward
scan from the previous hit, since payloads list buckets in order, with binary search as the
fallback; checking counts as C integers; and untracking the result lists from the cyclic GC
(they hold only numbers). Anything unusual goes through the same dict lookups as the twin.
"""

from libc.string cimport memcmp
from cpython.dict cimport PyDict_GetItem, PyDict_Next
from cpython.list cimport PyList_New, PyList_SET_ITEM
from cpython.object cimport PyObject
from cpython.ref cimport Py_INCREF
from cpython cimport array

from histograms.spec import STATS, flexible_spec

cdef extern from "Python.h":
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
    void Py_DECREF(PyObject *obj)

cdef object ZERO = 0
cdef object MINUS_ONE = -1
cdef tuple STAT_NAMES = tuple(STATS)
cdef str STARTUP_PREFIX = "STARTUP_"


cdef inline bint _is_negative_int(object value):
    cdef int overflow = 0
    cdef long long number = PyLong_AsLongLongAndOverflow(value, &overflow)
    if overflow != 0:
        return overflow < 0
    return number < 0


cdef enum:
    FALLBACK = -2
    NOT_FOUND = -1


cdef inline Py_ssize_t _position_of(object key, const long long *bounds, Py_ssize_t n, Py_ssize_t *cursor):
    """Position of a canonical decimal key in the sorted bounds, NOT_FOUND, or FALLBACK.

    A key matches exactly when it equals `str(bound)` for some bound, as in the twin's dict:
    ASCII digits, no sign, no leading zero. Anything this fast path cannot decide (non-str
    keys, non-ASCII text, very long numbers) returns FALLBACK for the dict lookup.
    """
    cdef Py_ssize_t length, i, lo, hi, mid
    cdef const unsigned char *text
    cdef long long value = 0
    cdef unsigned char c
    if not PyUnicode_CheckExact(key) or not PyUnicode_IS_ASCII(key):
        return FALLBACK
    length = PyUnicode_GET_LENGTH(key)
    if length == 0 or length > 18:
        return FALLBACK
    text = PyUnicode_1BYTE_DATA(key)
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


cdef inline void _read_fields(dict h, PyObject **fields):
    """Fill fields with h.get(name) for the nine known names in one pass over the dict.

    One PyDict_Next walk with length + memcmp checks replaces nine hash lookups whose string
    keys (fresh from the JSON parser) are never the same objects as ours. Any key that is not a
    plain ASCII str sends us back to ordinary lookups so the result always equals `h.get`.
    """
    cdef Py_ssize_t pos = 0, length, j
    cdef PyObject *key_ptr
    cdef PyObject *value_ptr
    cdef const unsigned char *text
    for j in range(9):
        fields[j] = NULL
    while PyDict_Next(h, &pos, &key_ptr, &value_ptr):
        if not _str_exact(key_ptr) or not _str_ascii(key_ptr):
            for j in range(9):
                fields[j] = PyDict_GetItem(h, FIELD_KEYS[j])
            return
        length = _str_length(key_ptr)
        text = _str_data(key_ptr)
        j = _candidate_field(text, length)
        if j >= 0 and memcmp(text, FIELD_NAMES[j], length) == 0:
            fields[j] = value_ptr


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


cpdef object convert_one(object hist, tuple spec):
    cdef dict h
    cdef object kind_code, low, high, bucket_count, flexible, keyed, alternative
    cdef dict index
    cdef object declared_count, declared_range, declared_type, values, value
    cdef Py_ssize_t n, i, pos = 0, position
    cdef PyObject *key_ptr
    cdef PyObject *count_ptr
    cdef PyObject *found
    cdef object bounds
    cdef const long long *bound_data = NULL
    cdef Py_ssize_t cursor = 0
    cdef list out
    cdef object count, key
    cdef PyObject *fields[9]

    if type(hist) is not dict:
        return "histogram is not a JSON object"
    h = <dict>hist
    kind_code, low, high, bucket_count, index, flexible, keyed, bounds = spec
    _read_fields(h, fields)
    declared_count = None if fields[0] is NULL else <object>fields[0]
    declared_range = None if fields[1] is NULL else <object>fields[1]
    if flexible and (declared_count != bucket_count or declared_range != [low, high]):
        alternative = flexible_spec(h)
        if alternative is not None:
            kind_code, low, high, bucket_count, index, flexible, keyed, bounds = alternative
    declared_type = None if fields[2] is NULL else <object>fields[2]
    if declared_type is not None and declared_type != kind_code:
        return f"histogram_type {declared_type!r} contradicts the definition (expected {kind_code})"
    if declared_count is not None and declared_count != bucket_count:
        return f"bucket_count {declared_count!r} contradicts the definition (expected {bucket_count})"
    if declared_range is not None:
        if type(declared_range) is not list or len(<list>declared_range) != 2:
            return f"range {declared_range!r} is not a [low, high] pair"
        if (<list>declared_range)[0] != low or (<list>declared_range)[1] != high:
            return f"range {declared_range!r} contradicts the definition (expected [{low}, {high}])"
    values = None if fields[3] is NULL else <object>fields[3]
    if type(values) is not dict:
        return "values is missing or not a JSON object"

    n = PyLong_AsSsize_t(bucket_count)
    out = PyList_New(n + 5)
    for i in range(n):
        Py_INCREF(ZERO)
        PyList_SET_ITEM(out, i, ZERO)
    for i in range(n, n + 5):
        Py_INCREF(MINUS_ONE)
        PyList_SET_ITEM(out, i, MINUS_ONE)

    if bounds is not None:
        bound_data = (<array.array>bounds).data.as_longlongs
    while PyDict_Next(<dict>values, &pos, &key_ptr, &count_ptr):
        position = FALLBACK if bound_data is NULL else _position_of(<object>key_ptr, bound_data, n, &cursor)
        if position == FALLBACK:
            found = PyDict_GetItem(index, <object>key_ptr)
            position = NOT_FOUND if found is NULL else PyLong_AsSsize_t(<object>found)
        if position == NOT_FOUND:
            key = <object>key_ptr
            return f"bucket lower bound {key!r} is not in the layout"
        count = <object>count_ptr
        if not PyLong_CheckExact(count) or _is_negative_int(count):
            key = <object>key_ptr
            return f"count {count!r} for bucket {key!r} is not a non-negative integer"
        Py_DECREF(PyList_GET_ITEM(out, position))
        Py_INCREF(count)
        PyList_SET_ITEM(out, position, count)

    for i in range(5):
        if fields[4 + i] is NULL:
            continue
        value = <object>fields[4 + i]
        if value is not None:
            if PyLong_CheckExact(value) or PyFloat_CheckExact(value):
                out[n + i] = value
            else:
                name = STAT_NAMES[i]
                return f"{name} {value!r} is not a number"
    PyObject_GC_UnTrack(out)  # only ints and floats inside: it can never be part of a cycle
    return out


def convert_histograms(object histograms, dict specs):
    """Convert a name -> histogram object; returns (converted, invalid, unknown)."""
    cdef dict converted = {}
    cdef list invalid = []
    cdef list unknown = []
    cdef object spec, result, name, hist
    if type(histograms) is not dict:
        return converted, [("*", "histograms is not a JSON object")], unknown
    for name, hist in (<dict>histograms).items():
        spec = specs.get(name)
        if spec is None and type(name) is str and (<str>name).startswith(STARTUP_PREFIX):
            spec = specs.get((<str>name)[len(STARTUP_PREFIX):])
        if spec is None:
            unknown.append(name)
            continue
        if spec[6]:
            invalid.append((name, "defined as keyed but sent as a plain histogram"))
            continue
        result = convert_one(hist, <tuple>spec)
        if type(result) is str:
            invalid.append((name, result))
        else:
            converted[name] = result
    return converted, invalid, unknown
