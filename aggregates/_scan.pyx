# cython: language_level=3, boundscheck=False, wraparound=False
"""Native fast path of the aggregates' mapper: read a published record's compact histograms
straight from its JSON text into one flat array of doubles, without building Python lists.

`scan(data)` returns `(names, lengths, values, rest)` or None:

* `names`: qualified metric names as `aggregates.extract.record_sections` gives them;
* `lengths`: for each, its number of buckets;
* `values`: array('d') holding, per histogram, its counts then its sum (a missing, negative
  sum counts as 0), back to back;
* `rest`: the record's JSON with those histogram sections cut out, for orjson to read the few
  small fields the mapper needs.

Values are doubles: whole numbers are exact up to 2**53, far above any count or per-spill sum
a client sends; `extract.merge_metric_maps` turns them back into ints.

None means "use the general path" (orjson for everything): anything the fast path does not
handle exactly as that path does (an escaped name, a non-number in an array, a duplicate name,
a number too long for 64 bits, malformed JSON) falls back, so both give the same aggregates.
"""

from cpython.array cimport array

from cpython cimport array as carray
from libc.stdlib cimport strtod

from pipeline._jsonskip cimport json_skip_string, json_skip_value, json_ws

cdef array _TEMPLATE = array("d")


class _Bail(Exception):
    pass


# The shared structural scan (pipeline/_jsonskip.pxd) reads `const char*`; this module walks
# the text as unsigned bytes.
cdef inline Py_ssize_t _ws(const unsigned char* p, Py_ssize_t i, Py_ssize_t n) noexcept:
    return json_ws(<const char*>p, i, n)


cdef inline Py_ssize_t _skip_string(const unsigned char* p, Py_ssize_t i, Py_ssize_t n) noexcept:
    # p[i] == '"'; returns the index after the closing quote
    return json_skip_string(<const char*>p, i, n)


cdef inline Py_ssize_t _skip_value(const unsigned char* p, Py_ssize_t i, Py_ssize_t n) noexcept:
    """Index after the JSON value starting at i or after whitespace; -1 if the text ends first."""
    return json_skip_value(<const char*>p, json_ws(<const char*>p, i, n), n)


cdef str _key(const unsigned char* p, Py_ssize_t start, Py_ssize_t end):
    """The object key between quotes at start..end (end = index after the closing quote)."""
    cdef Py_ssize_t j
    for j in range(start + 1, end - 1):
        if p[j] == 92:
            raise _Bail()
    return (<bytes>p[start + 1:end - 1]).decode("utf-8")


cdef Py_ssize_t _array(const unsigned char* p, Py_ssize_t i, Py_ssize_t n, array out, list lengths,
                       Py_ssize_t* used) except -2:
    """Parse `[numbers]` at i into out (counts, then max(sum, 0)); returns index after it.

    Arrays of 5 numbers or fewer are skipped (not histograms); a non-number bails out."""
    cdef Py_ssize_t start = used[0]
    cdef Py_ssize_t count = 0
    cdef double* slots = out.data.as_doubles
    cdef double value
    cdef char* end
    cdef long long whole
    cdef int digits, negative
    cdef Py_ssize_t j
    i += 1  # '['
    while True:
        i = _ws(p, i, n)
        if i >= n:
            raise _Bail()
        if p[i] == 93:
            i += 1
            break
        if p[i] == 45 or (48 <= p[i] <= 57):
            # integers exactly; anything with '.', 'e' through strtod
            negative = p[i] == 45
            j = i + negative
            whole = 0
            digits = 0
            while j < n and 48 <= p[j] <= 57:
                whole = whole * 10 + (p[j] - 48)
                digits += 1
                j += 1
            if digits == 0 or digits > 18:
                raise _Bail()
            if j < n and (p[j] == 46 or p[j] == 101 or p[j] == 69):
                value = strtod(<const char*>p + i, &end)
                j = <Py_ssize_t>(<const unsigned char*>end - p)
            else:
                value = <double>(-whole if negative else whole)
            slots[start + count] = value  # out holds len(data) // 2 + 1 slots: always room
            count += 1
            i = _ws(p, j, n)
        else:
            raise _Bail()
        if i < n and p[i] == 44:
            i += 1
    if count <= 5:
        return i
    # keep counts and the sum: drop the four trailing statistics, clamp the sum at 0
    used[0] = start + count - 4
    if slots[start + count - 5] < 0:
        slots[start + count - 5] = 0
    lengths.append(count - 5)
    return i


cdef Py_ssize_t _histograms(const unsigned char* p, Py_ssize_t i, Py_ssize_t n, str prefix, bint keyed,
                            list names, list lengths, array out, set seen, Py_ssize_t* used,
                            bint in_keyed=False) except -2:
    """The histograms object at i (plain, or keyed: name -> {key -> array})."""
    cdef Py_ssize_t key_end, before
    cdef str name, inner_name
    i = _ws(p, i, n)
    if i >= n or p[i] != 123:
        return _skip_value(p, i, n)  # not an object: the general path ignores it too
    i += 1
    while True:
        i = _ws(p, i, n)
        if i >= n:
            raise _Bail()
        if p[i] == 125:
            return i + 1
        if p[i] != 34:
            raise _Bail()
        key_end = _skip_string(p, i, n)
        if key_end < 0:
            raise _Bail()
        name = _key(p, i, key_end)
        i = _ws(p, key_end, n)
        if i >= n or p[i] != 58:
            raise _Bail()
        i = _ws(p, i + 1, n)
        if keyed:
            if i < n and p[i] == 123:
                i = _histograms(p, i, n, f"{prefix}{name}[", False, names, lengths, out, seen, used,
                                True)
            else:
                i = _skip_value(p, i, n)
        elif i < n and p[i] == 91:
            before = len(lengths)
            i = _array(p, i, n, out, lengths, used)
            if len(lengths) > before:
                if in_keyed:
                    inner_name = f"{prefix}{name}]"
                elif prefix:
                    inner_name = prefix + name
                else:
                    inner_name = name
                if inner_name in seen:
                    raise _Bail()
                seen.add(inner_name)
                names.append(inner_name)
        else:
            i = _skip_value(p, i, n)
        if i < 0:
            raise _Bail()
        i = _ws(p, i, n)
        if i < n and p[i] == 44:
            i += 1


cdef Py_ssize_t _object(const unsigned char* p, Py_ssize_t i, Py_ssize_t n, int level, str process,
                        list names, list lengths, array out, set seen, list cuts, list flags,
                        Py_ssize_t* used) except -2:
    """Walk an object, parsing the histogram sections of its level and cutting them out.

    level 0: the record (v1 `histograms`; `payload`); 1: the payload (`histograms`,
    `keyedHistograms`, `processes`); 2: `processes`; 3: one process."""
    cdef Py_ssize_t key_start, key_end, value_start
    cdef str key
    i += 1
    while True:
        i = _ws(p, i, n)
        if i >= n:
            raise _Bail()
        if p[i] == 125:
            return i + 1
        if p[i] != 34:
            raise _Bail()
        key_start = i
        key_end = _skip_string(p, i, n)
        if key_end < 0:
            raise _Bail()
        key = _key(p, i, key_end)
        i = _ws(p, key_end, n)
        if i >= n or p[i] != 58:
            raise _Bail()
        value_start = _ws(p, i + 1, n)
        if level == 0 and key == "histograms":
            i = _histograms(p, value_start, n, "", False, names, lengths, out, seen, used)
            cuts.append((value_start, i))
            flags[0] = True
        elif level == 0 and key == "payload" and value_start < n and p[value_start] == 123:
            i = _object(p, value_start, n, 1, "", names, lengths, out, seen, cuts, flags, used)
            flags[1] = True
        elif (level == 1 or level == 3) and key == "histograms":
            i = _histograms(p, value_start, n, process, False, names, lengths, out, seen, used)
            cuts.append((value_start, i))
        elif (level == 1 or level == 3) and key == "keyedHistograms":
            i = _histograms(p, value_start, n, process, True, names, lengths, out, seen, used)
            cuts.append((value_start, i))
        elif level == 1 and key == "processes" and value_start < n and p[value_start] == 123:
            i = _object(p, value_start, n, 2, "", names, lengths, out, seen, cuts, flags, used)
        elif level == 2 and value_start < n and p[value_start] == 123:
            i = _object(p, value_start, n, 3, "" if key == "parent" else key + "/",
                        names, lengths, out, seen, cuts, flags, used)
        else:
            i = _skip_value(p, value_start, n)
        if i < 0:
            raise _Bail()
        i = _ws(p, i, n)
        if i < n and p[i] == 44:
            i += 1


def scan(bytes data):
    cdef const unsigned char* p = data
    cdef Py_ssize_t n = len(data)
    cdef Py_ssize_t i = _ws(p, 0, n)
    cdef list names = [], lengths = [], cuts = []
    cdef array out = carray.clone(_TEMPLATE, n // 2 + 1, False)  # >= the numbers in data
    cdef Py_ssize_t used = 0
    cdef set seen = set()
    cdef list flags = [False, False]  # saw top-level histograms, saw a payload object
    if i >= n or p[i] != 123:
        return None
    try:
        _object(p, i, n, 0, "", names, lengths, out, seen, cuts, flags, &used)
    except _Bail:
        return None
    if flags[0] and flags[1]:
        return None  # both generations at once: which one counts is the general path's call
    pieces = []
    cdef Py_ssize_t last = 0
    for start, end in cuts:
        pieces.append(data[last:start])
        pieces.append(b"{}")
        last = end
    pieces.append(data[last:])
    carray.resize(out, used)
    return names, lengths, out, b"".join(pieces)


def add_into(array total, array other):
    """total += other, elementwise (same length)."""
    cdef Py_ssize_t k, m = len(total)
    if len(other) != m:
        raise ValueError("arrays of different lengths")
    cdef double* a = total.data.as_doubles
    cdef double* b = other.data.as_doubles
    for k in range(m):
        a[k] += b[k]
