# cython: language_level=3, boundscheck=False, wraparound=False
"""Find where an object's members are in a record's JSON text, without parsing their values.

A structural scan: strings are skipped (escapes honoured), containers by bracket depth and
scalars up to the next delimiter. Values are not validated here; the one a job asks for is then
parsed by orjson from its span, so what a job reads is exactly what `orjson.loads` would give.
Offsets are into the text's UTF-8 encoding (for ASCII text, which records nearly always are,
CPython hands out its own buffer: no copy). Text that does not have the shape of a JSON object
gives None, and the caller parses the whole text instead (and gets orjson's error).
"""

from cpython.bytes cimport PyBytes_FromStringAndSize
from libc.string cimport memchr, memcmp

from pipeline._jsonskip cimport json_skip_string as _skip_string
from pipeline._jsonskip cimport json_skip_value as _skip_value
from pipeline._jsonskip cimport json_ws as _skip_ws

cdef extern from "Python.h":
    const char* PyUnicode_AsUTF8AndSize(object text, Py_ssize_t* size) except NULL


cdef const char* _buffer(object text, Py_ssize_t* size) except NULL:
    if isinstance(text, bytes):
        size[0] = len(<bytes>text)
        return <const char*>(<bytes>text)
    return PyUnicode_AsUTF8AndSize(text, size)


cdef object _key(const char* p, Py_ssize_t start, Py_ssize_t stop, object unescape):
    """The member name between the quotes at `start` and `stop - 1`."""
    if memchr(p + start, b'\\', stop - start) != NULL:
        return unescape(PyBytes_FromStringAndSize(p + start, stop - start))
    return (p + start + 1)[: stop - start - 2].decode("utf-8")


def index(object text, Py_ssize_t start, Py_ssize_t end, object unescape):
    """{name: (start, end)} of the members of the object that is text[start:end] (UTF-8 offsets).

    A repeated name keeps its first position and its last span, as a parsed dict does.
    None if the text is not shaped like an object. `unescape` decodes a name with escapes.
    """
    cdef Py_ssize_t n, i, key_start, value_start
    cdef const char* p = _buffer(text, &n)
    if end < 0 or end > n:
        end = n
    cdef dict members = {}
    i = _skip_ws(p, start, end)
    if i >= end or p[i] != b'{':
        return None
    i = _skip_ws(p, i + 1, end)
    if i < end and p[i] == b'}':
        return members if _skip_ws(p, i + 1, end) == end else None
    while True:
        if i >= end or p[i] != b'"':
            return None
        key_start = i
        i = _skip_string(p, i, end)
        if i < 0:
            return None
        key = _key(p, key_start, i, unescape)
        i = _skip_ws(p, i, end)
        if i >= end or p[i] != b':':
            return None
        i = _skip_ws(p, i + 1, end)
        if i >= end:
            return None
        value_start = i
        i = _skip_value(p, i, end)
        if i <= value_start:
            return None
        members[key] = (value_start, i)
        i = _skip_ws(p, i, end)
        if i >= end:
            return None
        if p[i] == b',':
            i = _skip_ws(p, i + 1, end)
        elif p[i] == b'}':
            return members if _skip_ws(p, i + 1, end) == end else None
        else:
            return None


def find(object text, Py_ssize_t start, Py_ssize_t end, bytes name, object unescape):
    """(start, end) of member `name` (UTF-8 bytes) of the object at text[start:end].

    The last one if repeated; () when absent; None if the text is not shaped like an object
    (a value that is not an object, too). Builds nothing for the members it passes.
    """
    cdef Py_ssize_t n, i, key_start, value_start, found_start = -1, found_end = -1
    cdef const char* p = _buffer(text, &n)
    cdef const char* wanted = <const char*>name
    cdef Py_ssize_t wanted_size = len(name)
    cdef bint matched
    if end < 0 or end > n:
        end = n
    i = _skip_ws(p, start, end)
    if i >= end or p[i] != b'{':
        return None
    i = _skip_ws(p, i + 1, end)
    if i < end and p[i] == b'}':
        return () if _skip_ws(p, i + 1, end) == end else None
    while True:
        if i >= end or p[i] != b'"':
            return None
        key_start = i
        i = _skip_string(p, i, end)
        if i < 0:
            return None
        if i - key_start - 2 == wanted_size and memcmp(p + key_start + 1, wanted, wanted_size) == 0:
            matched = True  # byte for byte
        elif memchr(p + key_start, b'\\', i - key_start) != NULL:
            matched = _key(p, key_start, i, unescape).encode("utf-8") == name
        else:
            matched = False
        i = _skip_ws(p, i, end)
        if i >= end or p[i] != b':':
            return None
        i = _skip_ws(p, i + 1, end)
        if i >= end:
            return None
        value_start = i
        i = _skip_value(p, i, end)
        if i <= value_start:
            return None
        if matched:
            found_start, found_end = value_start, i
        i = _skip_ws(p, i, end)
        if i >= end:
            return None
        if p[i] == b',':
            i = _skip_ws(p, i + 1, end)
        elif p[i] == b'}':
            if _skip_ws(p, i + 1, end) != end:
                return None
            return (found_start, found_end) if found_start >= 0 else ()
        else:
            return None


def span(object text, Py_ssize_t start, Py_ssize_t end):
    """The bytes of text[start:end] in UTF-8 offsets (what orjson then parses)."""
    cdef Py_ssize_t n
    cdef const char* p = _buffer(text, &n)
    if start < 0 or end > n or start > end:
        raise IndexError("span outside the text")
    return PyBytes_FromStringAndSize(p + start, end - start)
