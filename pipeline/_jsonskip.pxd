# cython: language_level=3
"""Skipping over JSON text without parsing it: whitespace, a string, a whole value.

One home for the structural scan the native fast paths share (`histograms._fast`,
`aggregates._scan`, `mapreduce._jsonscan`): strings are skipped with their escapes honoured,
containers by bracket depth outside strings, scalars up to the next delimiter. Nothing is
validated: whoever uses a span parses it (orjson) or has parsed it. Inline functions only, so
every module that cimports this gets its own copy of the C code and no extension is built here.
"""

from libc.string cimport memchr

cdef extern from *:
    """
    /* Bytes that matter while skipping a container: quotes and brackets. */
    static const unsigned char json_structural[256] = {
        ['"'] = 1, ['{'] = 1, ['}'] = 1, ['['] = 1, [']'] = 1,
    };
    """
    const unsigned char json_structural[256]


cdef inline Py_ssize_t json_ws(const char* p, Py_ssize_t i, Py_ssize_t n) noexcept nogil:
    """The index of the first byte at or after `i` that is not JSON whitespace (or `n`)."""
    cdef char c
    while i < n:
        c = p[i]
        if c != b' ' and c != b'\n' and c != b'\t' and c != b'\r':
            break
        i += 1
    return i


cdef inline Py_ssize_t json_skip_string(const char* p, Py_ssize_t i, Py_ssize_t n) noexcept nogil:
    """`p[i]` is the opening quote: the index after the closing one, or -1."""
    cdef const char* quote
    cdef Py_ssize_t j, backslashes
    i += 1
    while i < n:
        quote = <const char*>memchr(p + i, b'"', n - i)
        if quote == NULL:
            return -1
        j = quote - p
        backslashes = 0
        while j - backslashes > i and p[j - backslashes - 1] == b'\\':
            backslashes += 1
        if backslashes % 2 == 0:
            return j + 1
        i = j + 1
    return -1


cdef inline Py_ssize_t json_skip_value(const char* p, Py_ssize_t i, Py_ssize_t n) noexcept nogil:
    """`p[i]` starts a value: the index just after it, or -1 when the text ends first."""
    cdef char c
    cdef Py_ssize_t depth
    if i >= n:
        return -1
    c = p[i]
    if c == b'"':
        return json_skip_string(p, i, n)
    if c == b'{' or c == b'[':
        depth = 1
        i += 1
        while True:
            while i + 8 <= n and not (
                json_structural[<unsigned char>p[i]] | json_structural[<unsigned char>p[i + 1]]
                | json_structural[<unsigned char>p[i + 2]]
                | json_structural[<unsigned char>p[i + 3]]
                | json_structural[<unsigned char>p[i + 4]]
                | json_structural[<unsigned char>p[i + 5]]
                | json_structural[<unsigned char>p[i + 6]]
                | json_structural[<unsigned char>p[i + 7]]
            ):
                i += 8
            while i < n and not json_structural[<unsigned char>p[i]]:
                i += 1
            if i >= n:
                return -1
            c = p[i]
            if c == b'"':
                i = json_skip_string(p, i, n)
                if i < 0:
                    return -1
                continue
            if c == b'{' or c == b'[':
                depth += 1
            else:
                depth -= 1
                if depth == 0:
                    return i + 1
            i += 1
    while i < n:
        c = p[i]
        if (c == b',' or c == b'}' or c == b']' or c == b' ' or c == b'\n' or c == b'\t'
                or c == b'\r'):
            break
        i += 1
    return i
