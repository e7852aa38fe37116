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

The second half of the module converts a v1 payload's histograms section straight from its JSON
text (see "Straight from the JSON text" below), for convert's fast path.
"""

from libc.string cimport memcmp
from cpython.dict cimport PyDict_GetItem, PyDict_Next
from cpython.list cimport PyList_New, PyList_SET_ITEM
from cpython.object cimport PyObject
from cpython.ref cimport Py_INCREF
from cpython cimport array

from pipeline._jsonskip cimport json_skip_string as _skip_string
from pipeline._jsonskip cimport json_skip_value as _skip_value
from pipeline._jsonskip cimport json_ws as _ws

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


# -- Straight from the JSON text: the histograms section without building its dicts ---------
#
# `parse_section` reads a v1 payload's histograms section from the JSON text into C arrays (no
# dict per histogram, no str per bucket key); `Section.convert` checks it against the
# definitions and writes the compact section back as JSON text. Only the plain shape Firefox
# sends is read this way (known fields once each, decimal bucket keys, integer counts, integer
# or fixed-notation float statistics, printable ASCII names without escapes); a histogram in
# any other shape is parsed by orjson and converted by `convert_one`, a repeated name sends the
# whole section that way, and floats are checked to be written as orjson writes them. So the
# result is always `orjson.dumps` of `convert_histograms(orjson.loads(section), specs)` (the
# twin: `_slow.Section`; tests/histograms/test_twin.py compares them).

cdef extern from "Python.h":
    object PyUnicode_DecodeASCII(const char *s, Py_ssize_t size, const char *errors)
    object PyBytes_FromStringAndSize(const char *s, Py_ssize_t size)
    char *PyBytes_AS_STRING(object o)
    Py_ssize_t PyBytes_GET_SIZE(object o)
    long long PyLong_AsLongLong(object o) except? -1

from libc.stdlib cimport free, realloc
from libc.string cimport memcpy

cdef long long *_counts = NULL
cdef Py_ssize_t _counts_capacity = 0


cdef inline bint _counts_reserve(Py_ssize_t n) noexcept:
    """The reused count buffer, grown to `n` entries (the largest layout seen so far)."""
    global _counts, _counts_capacity
    cdef long long *grown
    if n <= _counts_capacity:
        return True
    grown = <long long *>realloc(_counts, n * sizeof(long long))
    if grown is NULL:
        return False
    _counts = grown
    _counts_capacity = n
    return True


cdef inline Py_ssize_t _key_end(const char *s, Py_ssize_t p, Py_ssize_t end) noexcept:
    """End (the closing quote) of a plain key starting after its opening quote: printable
    ASCII without escapes; -1 for anything else (the caller then takes the general path)."""
    cdef unsigned char c
    while p < end:
        c = <unsigned char>s[p]
        if c == 34:
            return p
        if c == 92 or c < 32 or c >= 127:
            return -1
        p += 1
    return -1


cdef inline Py_ssize_t _int_literal(const char *s, Py_ssize_t p, Py_ssize_t end, bint signed_ok, long long *out) noexcept:
    """Position after a plain JSON integer at p (at most 18 digits, no leading zero), or -1
    when it is anything else (a float, a sign when not allowed, a bigger number)."""
    cdef long long value = 0
    cdef bint negative = False
    cdef Py_ssize_t digits = 0
    if p < end and s[p] == 45:
        if not signed_ok:
            return -1
        negative = True
        p += 1
    if p >= end or s[p] < 48 or s[p] > 57:
        return -1
    if s[p] == 48 and p + 1 < end and s[p + 1] >= 48 and s[p + 1] <= 57:
        return -1
    while p < end and s[p] >= 48 and s[p] <= 57:
        digits += 1
        if digits > 18:
            return -1  # beyond what a long long surely holds: the general path
        value = value * 10 + (s[p] - 48)
        p += 1
    if (p < end and (s[p] == 46 or s[p] == 101 or s[p] == 69)):
        return -1
    out[0] = -value if negative else value
    return p


cdef inline Py_ssize_t _position_of_value(long long value, const long long *bounds, Py_ssize_t n, Py_ssize_t *cursor) noexcept:
    """`_position_of` for a parsed key: forward scan from the last hit, then binary search."""
    cdef Py_ssize_t i = cursor[0], lo = 0, hi = n, mid
    if bounds[i] <= value:
        while i < n and bounds[i] <= value:
            i += 1
        cursor[0] = i - 1
        if bounds[i - 1] == value:
            return i - 1
        return NOT_FOUND
    while lo < hi:
        mid = (lo + hi) >> 1
        if bounds[mid] <= value:
            lo = mid + 1
        else:
            hi = mid
    if lo > 0 and bounds[lo - 1] == value:
        return lo - 1
    return NOT_FOUND


cdef inline int _field_of(const char *key, Py_ssize_t length) noexcept:
    """Index of a histogram field name in FIELD_NAMES, or -1 (compared inline: a libc call
    per field was a visible share of the time)."""
    cdef int j = _candidate_field(<const unsigned char *>key, length)
    cdef Py_ssize_t i
    cdef const char *name
    if j < 0 or length != FIELD_LENGTHS[j]:
        return -1
    name = FIELD_NAMES[j]
    for i in range(length):
        if key[i] != name[i]:
            return -1
    return j




cdef struct Hist:
    Py_ssize_t name_start
    Py_ssize_t name_length
    Py_ssize_t span_start
    Py_ssize_t span_end
    int plain            # 0: not in the plain shape; orjson and convert_one decide at conversion
    int seen             # bit i: FIELD_NAMES[i] was present
    long long declared[4]  # bucket_count, range low, histogram_type, range high
    Py_ssize_t first_pair
    Py_ssize_t pairs
    int stat_kind[5]     # 0 absent or null (-1), 1 integer, 2 float (its text, verified later)
    long long stat_int[5]
    Py_ssize_t stat_at[5]
    Py_ssize_t stat_length[5]


cdef struct Out:
    char *data
    Py_ssize_t length
    Py_ssize_t capacity


cdef char *_spare = NULL
cdef Py_ssize_t _spare_capacity = 0
"""An output buffer kept between records (taken while in use, so a nested or concurrent
conversion gets a buffer of its own)."""


cdef inline void _out_take(Out *o) noexcept:
    global _spare, _spare_capacity
    o.data, o.capacity, o.length = _spare, _spare_capacity, 0
    _spare, _spare_capacity = NULL, 0


cdef inline void _out_give_back(Out *o) noexcept:
    global _spare, _spare_capacity
    if _spare is NULL:
        _spare, _spare_capacity = o.data, o.capacity
    else:
        free(o.data)
    o.data = NULL


cdef inline bint _out_reserve(Out *o, Py_ssize_t more) except False:
    """Room for `more` bytes in the output buffer."""
    cdef Py_ssize_t wanted = o.length + more
    cdef char *grown
    if wanted <= o.capacity:
        return True
    wanted = max(wanted, 2 * o.capacity, 65536)
    grown = <char *>realloc(o.data, wanted)
    if grown is NULL:
        raise MemoryError()
    o.data = grown
    o.capacity = wanted
    return True


cdef inline void _put(Out *o, const char *text, Py_ssize_t length) noexcept:
    memcpy(o.data + o.length, text, length)
    o.length += length


cdef inline void _put_char(Out *o, char c) noexcept:
    o.data[o.length] = c
    o.length += 1


cdef inline void _put_int(Out *o, long long value) noexcept:
    """Decimal, as orjson writes an int (room reserved by the caller: 21 bytes)."""
    cdef char digits[24]
    cdef int i = 0
    cdef unsigned long long v
    if value < 0:
        _put_char(o, 45)
        v = <unsigned long long>(-(value + 1)) + 1
    else:
        v = <unsigned long long>value
    while True:
        digits[i] = <char>(48 + v % 10)
        i += 1
        v //= 10
        if v == 0:
            break
    while i > 0:
        i -= 1
        o.data[o.length] = digits[i]
        o.length += 1


cdef inline Py_ssize_t _float_literal(const char *s, Py_ssize_t p, Py_ssize_t end) noexcept:
    """Position after a float in plain fixed notation (`-?int.digits`, at most 40 bytes), or -1."""
    cdef Py_ssize_t q = p, frac
    if q < end and s[q] == 45:
        q += 1
    if q >= end or s[q] < 48 or s[q] > 57:
        return -1
    if s[q] == 48 and q + 1 < end and s[q + 1] >= 48 and s[q + 1] <= 57:
        return -1
    while q < end and s[q] >= 48 and s[q] <= 57:
        q += 1
    if q >= end or s[q] != 46:
        return -1
    q += 1
    frac = q
    while q < end and s[q] >= 48 and s[q] <= 57:
        q += 1
    if q == frac or q - p > 40 or (q < end and (s[q] == 101 or s[q] == 69)):
        return -1
    return q


cdef enum:
    NAME_SLOTS = 8192  # a power of two; histogram names seen, kept across records


cdef struct NameSlot:
    PyObject *name  # the str (a strong reference), NULL when the slot is free
    unsigned long long hash
    Py_ssize_t length
    unsigned long long seen_in  # the conversion that last met this name


cdef NameSlot _name_slots[NAME_SLOTS]
cdef Py_ssize_t _names_used = 0
cdef unsigned long long _conversion = 0
cdef bint _names_busy = False
"""Histogram names as str objects, found by their bytes: the same few hundred names arrive
in every record, and making, hashing and dropping a str per histogram (plus a set to notice
a name twice) was a tenth of the conversion. `seen_in` notices a repeated name instead."""


cdef void _names_clear() noexcept:
    global _names_used
    cdef Py_ssize_t i
    for i in range(NAME_SLOTS):
        if _name_slots[i].name is not NULL:
            Py_DECREF(_name_slots[i].name)
            _name_slots[i].name = NULL
    _names_used = 0


cdef object _name_of(const char *s, Py_ssize_t length, unsigned long long conversion, bint *repeated):
    """The str of a plain ASCII name (a new reference), marked as met in `conversion`;
    `repeated` when it was met in it already. None when the table is full (the caller then
    keeps its own set)."""
    global _names_used
    cdef unsigned long long h = 14695981039346656037ULL
    cdef Py_ssize_t i, k
    cdef NameSlot *slot
    cdef object name
    for i in range(length):
        h = (h ^ <unsigned char>s[i]) * 1099511628211ULL
    k = <Py_ssize_t>(h & (NAME_SLOTS - 1))
    while True:
        slot = &_name_slots[k]
        if slot.name is NULL:
            if _names_used >= NAME_SLOTS // 2:
                return None
            name = PyUnicode_DecodeASCII(s, length, NULL)
            Py_INCREF(name)
            slot.name = <PyObject *>name
            slot.hash = h
            slot.length = length
            slot.seen_in = conversion
            _names_used += 1
            repeated[0] = False
            return name
        if slot.hash == h and slot.length == length and memcmp(_str_data(slot.name), s, length) == 0:
            repeated[0] = slot.seen_in == conversion
            slot.seen_in = conversion
            return <object>slot.name
        k = (k + 1) & (NAME_SLOTS - 1)


cdef class Section:
    """A payload's histograms section read from its JSON text into C arrays, not dicts.

    `parse_section` reads it without the definitions (they depend on the revision, read from
    the rest of the payload); `convert` then checks it against them and writes the compact
    section as JSON text, exactly as `orjson.dumps(convert_histograms(...)[0])` would.
    """

    cdef readonly bytes data
    cdef readonly Py_ssize_t start
    cdef readonly Py_ssize_t end
    cdef Hist *hists
    cdef Py_ssize_t count
    cdef Py_ssize_t capacity
    cdef long long *pairs  # bucket key, count, bucket key, count, ...
    cdef Py_ssize_t pair_count
    cdef Py_ssize_t pair_capacity

    def __dealloc__(self):
        free(self.hists)
        free(self.pairs)

    cdef Hist *_new_hist(self) except NULL:
        cdef Hist *grown
        cdef Py_ssize_t wanted
        if self.count == self.capacity:
            wanted = max(64, 2 * self.capacity)
            grown = <Hist *>realloc(self.hists, wanted * sizeof(Hist))
            if grown is NULL:
                raise MemoryError()
            self.hists = grown
            self.capacity = wanted
        self.count += 1
        return &self.hists[self.count - 1]

    cdef bint _add_pair(self, long long key, long long value) except False:
        cdef long long *grown
        cdef Py_ssize_t wanted
        if self.pair_count == self.pair_capacity:
            wanted = max(1024, 2 * self.pair_capacity)
            grown = <long long *>realloc(self.pairs, 2 * wanted * sizeof(long long))
            if grown is NULL:
                raise MemoryError()
            self.pairs = grown
            self.pair_capacity = wanted
        self.pairs[2 * self.pair_count] = key
        self.pairs[2 * self.pair_count + 1] = value
        self.pair_count += 1
        return True

    cdef Py_ssize_t _read_plain(self, const char *s, Py_ssize_t p, Py_ssize_t end, Hist *h) except -2:
        """Read the histogram object at p in the plain shape; position after it, or -1."""
        cdef Py_ssize_t q
        cdef int field
        cdef long long key, value
        h.seen = 0
        h.first_pair = self.pair_count
        for field in range(5):
            h.stat_kind[field] = 0
        if p >= end or s[p] != 123:
            return -1
        p = _ws(s, p + 1, end)
        if p < end and s[p] == 125:
            return -1  # no `values`: invalid, the general path words the reason
        while True:
            if p >= end or s[p] != 34:
                return -1
            q = _key_end(s, p + 1, end)
            if q < 0:
                return -1
            field = _field_of(s + p + 1, q - p - 1)
            if field < 0 or h.seen & (1 << field):
                return -1  # another field, or one twice: the dict's rules apply
            h.seen |= 1 << field
            p = _ws(s, q + 1, end)
            if p >= end or s[p] != 58:
                return -1
            p = _ws(s, p + 1, end)
            if field == 0 or field == 2:  # bucket_count, histogram_type
                p = _int_literal(s, p, end, False, &h.declared[field])
                if p < 0:
                    return -1
            elif field == 1:  # range: [low, high]
                if p >= end or s[p] != 91:
                    return -1
                p = _int_literal(s, _ws(s, p + 1, end), end, False, &h.declared[1])
                if p < 0:
                    return -1
                p = _ws(s, p, end)
                if p >= end or s[p] != 44:
                    return -1
                p = _int_literal(s, _ws(s, p + 1, end), end, False, &h.declared[3])
                if p < 0:
                    return -1
                p = _ws(s, p, end)
                if p >= end or s[p] != 93:
                    return -1
                p += 1
            elif field == 3:  # values: {"<bound>": count, ...}
                if p >= end or s[p] != 123:
                    return -1
                p = _ws(s, p + 1, end)
                if p < end and s[p] == 125:
                    p += 1
                else:
                    while True:
                        if p >= end or s[p] != 34:
                            return -1
                        q = _int_literal(s, p + 1, end, False, &key)
                        if q < 0 or q >= end or s[q] != 34:
                            return -1
                        p = _ws(s, q + 1, end)
                        if p >= end or s[p] != 58:
                            return -1
                        p = _int_literal(s, _ws(s, p + 1, end), end, False, &value)
                        if p < 0:
                            return -1
                        if self.pair_count < self.pair_capacity:
                            self.pairs[2 * self.pair_count] = key
                            self.pairs[2 * self.pair_count + 1] = value
                            self.pair_count += 1
                        else:
                            self._add_pair(key, value)
                        p = _ws(s, p, end)
                        if p < end and s[p] == 44:
                            p = _ws(s, p + 1, end)
                            continue
                        if p < end and s[p] == 125:
                            p += 1
                            break
                        return -1
            else:  # a statistic: null, an integer or a plain float
                field -= 4
                if p + 4 <= end and memcmp(s + p, b"null", 4) == 0:
                    p += 4
                else:
                    q = _int_literal(s, p, end, True, &h.stat_int[field])
                    if q >= 0:
                        h.stat_kind[field] = 1
                    else:
                        q = _float_literal(s, p, end)
                        if q < 0:
                            return -1
                        h.stat_kind[field] = 2
                        h.stat_at[field] = p
                        h.stat_length[field] = q - p
                    p = q
            p = _ws(s, p, end)
            if p < end and s[p] == 44:
                p = _ws(s, p + 1, end)
                continue
            if p < end and s[p] == 125:
                return p + 1
            return -1

    cdef bint _fits(self, Hist *h, tuple spec) except -1:
        """Fill the count buffer from h when it converts cleanly under spec (else False)."""
        cdef object bounds = <object>PyTuple_GET_ITEM(spec, 7)
        cdef Py_ssize_t n, i, position, cursor = 0
        cdef const long long *bound_data
        cdef long long *pair
        if (not h.plain or bounds is None or <object>PyTuple_GET_ITEM(spec, 5)
                or <object>PyTuple_GET_ITEM(spec, 6)):
            return False  # not plain, huge bounds, a flexible layout or keyed: the general path
        if not h.seen & (1 << 3):
            return False
        n = PyLong_AsSsize_t(<object>PyTuple_GET_ITEM(spec, 3))
        if h.seen & (1 << 2) and h.declared[2] != PyLong_AsLongLong(<object>PyTuple_GET_ITEM(spec, 0)):
            return False
        if h.seen & 1 and h.declared[0] != n:
            return False
        if h.seen & 2 and (
            h.declared[1] != PyLong_AsLongLong(<object>PyTuple_GET_ITEM(spec, 1))
            or h.declared[3] != PyLong_AsLongLong(<object>PyTuple_GET_ITEM(spec, 2))
        ):
            return False
        if n <= 0 or not _counts_reserve(n):
            return False
        for i in range(n):
            _counts[i] = 0
        bound_data = (<array.array>bounds).data.as_longlongs
        for i in range(h.first_pair, h.first_pair + h.pairs):
            pair = &self.pairs[2 * i]
            position = _position_of_value(pair[0], bound_data, n, &cursor)
            if position == NOT_FOUND:
                return False
            _counts[position] = pair[1]
        return True

    def convert(self, dict specs, loads, dumps):
        """(compact section as JSON bytes, invalid, unknown): `dumps` of the first item of
        `convert_histograms(loads(section), specs)` and its other two items; None when the
        section turns out not to be valid JSON. `loads`/`dumps` are orjson's."""
        global _names_busy, _conversion
        cdef Out o
        cdef bint owner = not _names_busy  # a nested or concurrent call keeps its own set
        if owner:
            _names_busy = True
            _conversion += 1
            if _names_used >= NAME_SLOTS // 4:
                _names_clear()
        _out_take(&o)
        try:
            return self._convert(specs, loads, dumps, &o, owner)
        finally:
            _out_give_back(&o)
            if owner:
                _names_busy = False

    cdef object _convert(self, dict specs, loads, dumps, Out *o, bint use_table):
        cdef const char *s = PyBytes_AS_STRING(self.data)
        cdef Py_ssize_t i, j, n
        cdef Hist *h
        cdef list invalid = []
        cdef list unknown = []
        cdef set names = set()
        cdef list float_texts = []
        cdef list float_places = []
        cdef object name, result, parsed, text
        cdef PyObject *spec
        cdef bint first = True
        cdef bint repeated
        cdef unsigned long long conversion = _conversion
        _out_reserve(o, 1)
        _put_char(o, 123)
        for i in range(self.count):
            h = &self.hists[i]
            name = None
            if use_table:
                name = _name_of(s + h.name_start, h.name_length, conversion, &repeated)
                if name is None:  # more names than the table takes: a set from here on
                    use_table = False
                    for j in range(i):
                        names.add(PyUnicode_DecodeASCII(
                            s + self.hists[j].name_start, self.hists[j].name_length, NULL))
            if name is None:
                name = PyUnicode_DecodeASCII(s + h.name_start, h.name_length, NULL)
                repeated = name in names
                names.add(name)
            if repeated:  # a name twice: the last one counts, at the first one's place
                return self._general(specs, loads, dumps)
            spec = PyDict_GetItemWithError(specs, name)
            if spec is NULL and (<str>name).startswith(STARTUP_PREFIX):
                spec = PyDict_GetItemWithError(specs, (<str>name)[len(STARTUP_PREFIX):])
            if spec is not NULL and <object>spec is not None and self._fits(h, <tuple>spec):
                n = PyLong_AsSsize_t(<object>PyTuple_GET_ITEM(<object>spec, 3))
                _out_reserve(o, h.name_length + 8 + 21 * (n + 5) + 5 * 41)
                if not first:
                    _put_char(o, 44)
                first = False
                _put_char(o, 34)
                _put(o, s + h.name_start, h.name_length)
                _put(o, b'":[', 3)
                for j in range(n):
                    if _counts[j] == 0:  # most buckets of most histograms
                        o.data[o.length] = 48
                        o.data[o.length + 1] = 44
                        o.length += 2
                    else:
                        _put_int(o, _counts[j])
                        _put_char(o, 44)
                for j in range(5):
                    if h.stat_kind[j] == 0:
                        _put(o, b"-1", 2)
                    elif h.stat_kind[j] == 1:
                        _put_int(o, h.stat_int[j])
                    else:
                        float_places.append(o.length)
                        float_texts.append(PyBytes_FromStringAndSize(s + h.stat_at[j], h.stat_length[j]))
                        _put(o, s + h.stat_at[j], h.stat_length[j])
                    _put_char(o, 44 if j < 4 else 93)
                continue
            try:
                parsed = loads(PyBytes_FromStringAndSize(s + h.span_start, h.span_end - h.span_start))
            except Exception:
                return None
            if spec is NULL or <object>spec is None:
                unknown.append(name)
                continue
            if <object>PyTuple_GET_ITEM(<object>spec, 6):
                invalid.append((name, "defined as keyed but sent as a plain histogram"))
                continue
            result = convert_one(parsed, <tuple>spec)
            if type(result) is str:
                invalid.append((name, result))
                continue
            text = dumps(result)
            _out_reserve(o, h.name_length + 4 + PyBytes_GET_SIZE(text))
            if not first:
                _put_char(o, 44)
            first = False
            _put_char(o, 34)
            _put(o, s + h.name_start, h.name_length)
            _put(o, b'":', 2)
            _put(o, PyBytes_AS_STRING(text), PyBytes_GET_SIZE(text))
        _out_reserve(o, 1)
        _put_char(o, 125)
        out = PyBytes_FromStringAndSize(o.data, o.length)
        if float_texts:
            out = _canonical_floats(out, float_texts, float_places, loads, dumps)
        return out, invalid, unknown

    cdef object _general(self, dict specs, loads, dumps):
        try:
            parsed = loads(self.data[self.start:self.end])
        except Exception:
            return None
        converted, invalid, unknown = convert_histograms(parsed, specs)
        return dumps(converted), invalid, unknown


cdef object _canonical_floats(bytes out, list texts, list places, loads, dumps):
    """`out` with every float written as orjson writes the number its text stands for: one
    parse and one serialisation of them all; usually they were already written that way."""
    joined = b"[" + b",".join(texts) + b"]"
    if dumps(loads(joined)) == joined:
        return out
    pieces = []
    done = 0
    for place, text in zip(places, texts):
        pieces.append(out[done:place])
        pieces.append(dumps(loads(text)))
        done = place + len(text)
    pieces.append(out[done:])
    return b"".join(pieces)


def parse_section(bytes data, Py_ssize_t start):
    """The histograms section (an object of name -> histogram) starting at `start`, read into a
    `Section`; None when its names are not plain (escapes, non-ASCII) or it does not end.
    Twin: `_slow.parse_section`."""
    cdef const char *s = PyBytes_AS_STRING(data)
    cdef Py_ssize_t end = PyBytes_GET_SIZE(data)
    cdef Py_ssize_t p, q, after
    cdef Section section = Section.__new__(Section)
    cdef Hist *h
    section.data = data
    section.start = start
    if start < 0 or start >= end or s[start] != 123:
        return None
    p = _ws(s, start + 1, end)
    if p < end and s[p] == 125:
        section.end = p + 1
        return section
    while True:
        if p >= end or s[p] != 34:
            return None
        q = _key_end(s, p + 1, end)
        if q < 0:
            return None
        h = section._new_hist()
        h.name_start = p + 1
        h.name_length = q - p - 1
        p = _ws(s, q + 1, end)
        if p >= end or s[p] != 58:
            return None
        h.span_start = _ws(s, p + 1, end)
        after = section._read_plain(s, h.span_start, end, h)
        h.plain = after >= 0
        if h.plain:
            h.pairs = section.pair_count - h.first_pair
        else:
            section.pair_count = h.first_pair
            h.pairs = 0
            after = _skip_value(s, h.span_start, end)
            if after < 0:
                return None
        h.span_end = after
        p = _ws(s, after, end)
        if p < end and s[p] == 44:
            p = _ws(s, p + 1, end)
            continue
        if p < end and s[p] == 125:
            section.end = p + 1
            return section
        return None


cdef Py_ssize_t _next_member(const char *s, Py_ssize_t p, Py_ssize_t end, Py_ssize_t *key_start, Py_ssize_t *key_end) noexcept:
    """At a member's key: its key span (a plain key, no escapes); position of its value, or -1."""
    cdef Py_ssize_t q
    if p >= end or s[p] != 34:
        return -1
    q = p + 1
    while q < end and s[q] != 34 and s[q] != 92:
        q += 1
    if q >= end or s[q] != 34:
        return -1
    key_start[0] = p + 1
    key_end[0] = q
    p = _ws(s, q + 1, end)
    if p >= end or s[p] != 58:
        return -1
    return _ws(s, p + 1, end)


def member_start(bytes data, bytes name):
    """Where the value of top-level member `name` starts, when `data` is a JSON object whose
    keys up to it are plain (no escapes) and that value is an object; else None. Nothing is
    validated (the caller parses what it uses). Twin: `_slow.member_start`."""
    cdef const char *s = PyBytes_AS_STRING(data)
    cdef Py_ssize_t end = PyBytes_GET_SIZE(data)
    cdef Py_ssize_t length = PyBytes_GET_SIZE(name)
    cdef Py_ssize_t p, key_start, key_end
    p = _ws(s, 0, end)
    if p >= end or s[p] != 123:
        return None
    p = _ws(s, p + 1, end)
    while True:
        p = _next_member(s, p, end, &key_start, &key_end)
        if p < 0:
            return None
        if key_end - key_start == length and memcmp(s + key_start, PyBytes_AS_STRING(name), length) == 0:
            return p if s[p] == 123 else None
        p = _skip_value(s, p, end)
        if p < 0:
            return None
        p = _ws(s, p, end)
        if p >= end or s[p] != 44:
            return None
        p = _ws(s, p + 1, end)


def plain_members_after(bytes data, Py_ssize_t p, bytes name):
    """True when the top-level object goes on from `p` (just after a member's value) to its
    end with plain keys, none of them `name`, and nothing after it. Twin: `_slow`'s."""
    cdef const char *s = PyBytes_AS_STRING(data)
    cdef Py_ssize_t end = PyBytes_GET_SIZE(data)
    cdef Py_ssize_t length = PyBytes_GET_SIZE(name)
    cdef Py_ssize_t key_start, key_end
    while True:
        p = _ws(s, p, end)
        if p < end and s[p] == 125:
            return _ws(s, p + 1, end) == end
        if p >= end or s[p] != 44:
            return False
        p = _next_member(s, _ws(s, p + 1, end), end, &key_start, &key_end)
        if p < 0:
            return False
        if key_end - key_start == length and memcmp(s + key_start, PyBytes_AS_STRING(name), length) == 0:
            return False
        p = _skip_value(s, p, end)
        if p < 0:
            return False
