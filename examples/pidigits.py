"""Statistics on the digits of pi: the engine side of the pi digits demo.

A Python 3 port of the seed's ``docs/examples/kernel/pidigits.py``. The seed read
files of digits computed by Prof. Kanada; here :func:`pi_digits` computes them (the
Chudnovsky series, summed by binary splitting in exact :mod:`decimal` arithmetic,
whose big-number multiplication is fast) and :func:`write_digit_files` cuts them
into files.

Load it on the engines with ``mec.run('examples/pidigits.py')``, then::

    freqs = mec.map('compute_two_digit_freqs', files)   # one frequency table per file
    total = reduce_freqs(freqs)                         # their sum (on the client)

(``map`` is given the function's name, as defined on the engines by ``mec.run``: the
function object of a module the engines cannot import would not unpickle there.)

A frequency table is a plain list: ``freqs[10*a + b]`` counts the digit ``a``
followed by the digit ``b``, so ``freqs[14]`` is how often "14" occurs. Everything
here is pure Python (no numpy), so the file runs on any engine as it is.
"""

import decimal
import os

__all__ = [
    "compute_one_digit_freqs",
    "compute_two_digit_freqs",
    "compute_n_digit_freqs",
    "reduce_freqs",
    "txt_file_to_digits",
    "one_digit_freqs",
    "two_digit_freqs",
    "n_digit_freqs",
    "pi_digits",
    "write_digit_files",
    "save_pi_digits",
]


# ---------------------------------------------------------------- on the engines
def compute_one_digit_freqs(filename):
    """How often each digit 0-9 occurs in a file of digits."""
    return one_digit_freqs(txt_file_to_digits(filename))


def compute_two_digit_freqs(filename):
    """How often each pair of consecutive digits "00".."99" occurs in a file of digits."""
    return two_digit_freqs(txt_file_to_digits(filename))


def compute_n_digit_freqs(filename, n):
    """How often each run of ``n`` consecutive digits occurs in a file of digits."""
    return n_digit_freqs(txt_file_to_digits(filename), n)


def reduce_freqs(freqlist):
    """Add up frequency tables of the same length (one per file)."""
    allfreqs = [0] * len(freqlist[0])
    for freqs in freqlist:
        for i, count in enumerate(freqs):
            allfreqs[i] += count
    return allfreqs


def txt_file_to_digits(filename, the_type=int):
    """Yield the digits of a text file one by one, skipping spaces and newlines."""
    with open(filename) as f:
        for line in f:
            for c in line:
                if c != "\n" and c != " ":
                    yield the_type(c)


def one_digit_freqs(digits, normalize=False):
    """Frequencies of the digits 0-9 in an iterable of ints."""
    freqs = [0] * 10
    for d in digits:
        freqs[d] += 1
    return _normalized(freqs) if normalize else freqs


def two_digit_freqs(digits, normalize=False):
    """Frequencies of the 100 two-digit sequences in an iterable of ints (overlapping pairs)."""
    freqs = [0] * 100
    digits = iter(digits)
    last = next(digits)
    for this in digits:
        freqs[10 * last + this] += 1
        last = this
    return _normalized(freqs) if normalize else freqs


def n_digit_freqs(digits, n, normalize=False):
    """Frequencies of the 10**n sequences of ``n`` consecutive digits (overlapping)."""
    freqs = [0] * 10**n
    digits = iter(digits)
    modulus = 10 ** (n - 1)
    current = 0
    for _ in range(n - 1):
        current = 10 * current + next(digits)
    for d in digits:
        current = 10 * (current % modulus) + d
        freqs[current] += 1
    return _normalized(freqs) if normalize else freqs


def _normalized(freqs):
    total = sum(freqs)
    return [f / total for f in freqs]


# ---------------------------------------------------------------- making the digits
_C3_OVER_24 = 640320**3 // 24


def _split_int(a, b):
    """Binary splitting of the Chudnovsky series over terms [a, b), in Python ints."""
    if b - a == 1:
        if a == 0:
            p = q = 1
        else:
            p = (6 * a - 5) * (2 * a - 1) * (6 * a - 1)
            q = a * a * a * _C3_OVER_24
        t = p * (13591409 + 545140134 * a)
        return p, q, -t if a & 1 else t
    m = (a + b) // 2
    p1, q1, t1 = _split_int(a, m)
    p2, q2, t2 = _split_int(m, b)
    return p1 * p2, q1 * q2, q2 * t1 + p1 * t2


def _split(a, b):
    """The same, switching to exact Decimals (fast multiplication) for big ranges."""
    if b - a <= 64:
        return tuple(decimal.Decimal(x) for x in _split_int(a, b))
    m = (a + b) // 2
    p1, q1, t1 = _split(a, m)
    p2, q2, t2 = _split(m, b)
    return p1 * p2, q1 * q2, q2 * t1 + p1 * t2


def _context(prec):
    return decimal.Context(prec=prec, Emax=decimal.MAX_EMAX, Emin=decimal.MIN_EMIN)


def _inverse_sqrt(a, prec):
    """1/sqrt(a) to ``prec`` digits by Newton's iteration, doubling the precision each step."""
    x = decimal.Decimal(1 / float(a) ** 0.5)
    p = 15
    while p < prec:
        p = min(2 * p, prec)
        c = _context(p + 10)
        x = c.divide(c.multiply(x, c.subtract(3, c.multiply(a, c.multiply(x, x)))), 2)
    return x


def pi_digits(n):
    """The first ``n`` decimal digits of pi, as a string: '31415926535897932384...'.

    The Chudnovsky series gives 14 digits a term; about 2 s for a million digits.
    """
    with decimal.localcontext(_context(decimal.MAX_PREC)):  # exact integer arithmetic
        _, q, t = _split(0, n // 14 + 2)
    c = _context(n + 10)
    pi = c.divide(
        c.multiply(c.multiply(426880 * 10005, _inverse_sqrt(decimal.Decimal(10005), n + 10)), q), t
    )
    return str(pi).replace(".", "")[:n]


def write_digit_files(directory, digits, nfiles, name="pi-digits-%02dof%02d.txt"):
    """Cut a string of digits into ``nfiles`` files of equal size; return their paths."""
    size = len(digits) // nfiles
    paths = []
    for i in range(nfiles):
        path = os.path.join(directory, name % (i + 1, nfiles))
        with open(path, "w") as f:
            f.write(digits[i * size : (i + 1) * size])
            f.write("\n")
        paths.append(path)
    return paths


def save_pi_digits(n, path):
    """Compute ``n`` digits of pi and write them to ``path`` (atomically, via a rename)."""
    digits = pi_digits(n)
    with open(path + ".part", "w") as f:
        f.write(digits)
    os.replace(path + ".part", path)
