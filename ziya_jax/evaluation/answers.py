"""Answer extraction, normalisation and equivalence for GSM8K and MATH.

GSM8K: the strict pattern "The answer is N" first, then the last number in the completion;
numbers compare by value after removing thousands separators, currency signs and units.
MATH: the last `\\boxed{...}` (or `\\fbox{...}`) of the completion, else the Minerva
"Final Answer: The final answer is $X$" line; both sides are normalised (Hendrycks' rules plus
Minerva's final-answer clean-up) and compared as strings, then by sympy equivalence.
"""
from __future__ import annotations

import re
import signal
import threading
from contextlib import contextmanager
from decimal import Decimal, InvalidOperation

# ---------------------------------------------------------------- GSM8K

_STRICT = re.compile(r"The answer is\s*:?\s*\$?\s*(-?[0-9][0-9,]*(?:\.[0-9]+)?)", re.IGNORECASE)
_NUMBER = re.compile(r"-?\$?\s*[0-9][0-9,]*(?:\.[0-9]+)?")


def gsm8k_gold(answer_field: str) -> str:
    """The reference number of a GSM8K `answer` field (after '#### ')."""
    if "####" not in answer_field:
        raise ValueError("GSM8K answer has no '#### N' line")
    return normalize_number(answer_field.split("####")[-1])


def normalize_number(text: str) -> str:
    """'$1,234.50.' -> '1234.5'; non-numbers are returned stripped."""
    s = text.strip().rstrip(".").replace(",", "").replace("$", "").replace(" ", "")
    try:
        d = Decimal(s)
    except InvalidOperation:
        return text.strip()
    if d == d.to_integral_value():
        return str(d.quantize(Decimal(1)))
    return format(d.normalize(), "f")


def extract_gsm8k(completion: str) -> tuple[str | None, str]:
    """(answer, how): how is 'strict', 'last_number' or 'none'."""
    m = _STRICT.search(completion)
    if m:
        return normalize_number(m.group(1)), "strict"
    numbers = _NUMBER.findall(completion)
    if numbers:
        return normalize_number(numbers[-1]), "last_number"
    return None, "none"


def gsm8k_correct(completion: str, gold: str) -> bool:
    answer, _ = extract_gsm8k(completion)
    return answer is not None and answer == normalize_number(gold)


# ---------------------------------------------------------------- MATH


def last_boxed(text: str) -> str | None:
    """Content of the last \\boxed{...} / \\fbox{...} (braces balanced), or of '\\boxed X'."""
    idx = max(text.rfind("\\boxed"), text.rfind("\\fbox"))
    if idx < 0:
        return None
    rest = text[idx:]
    if rest.startswith("\\boxed ") :
        return rest[len("\\boxed "):].split("$")[0].strip()
    open_at = rest.find("{")
    if open_at < 0:
        return None
    depth = 0
    for i in range(open_at, len(rest)):
        if rest[i] == "{":
            depth += 1
        elif rest[i] == "}":
            depth -= 1
            if depth == 0:
                return rest[open_at + 1:i]
    return None


_FINAL = re.compile(r"Final Answer: The final answer is (.*?)\. I hope it is correct\.", re.DOTALL)


def extract_math(completion: str) -> str | None:
    boxed = last_boxed(completion)
    if boxed is not None:
        return boxed
    m = _FINAL.search(completion)
    if m:
        return m.group(1).strip().strip("$")
    return None


def math_gold(solution: str) -> str:
    boxed = last_boxed(solution)
    if boxed is None:
        raise ValueError("MATH solution has no \\boxed{} answer")
    return boxed


_UNIT_WORDS = ("degrees", "degree", "cm", "centimeters", "meters", "inches", "inch", "feet", "units", "unit",
               "dollars", "cents", "square", "sq", "mph", "hours", "minutes", "seconds", "points", "ft", "mm",
               "km", "miles", "students", "people")


def _fix_fracs(s: str) -> str:
    # \frac12 -> \frac{1}{2}, \frac1{22} -> \frac{1}{22}
    out, i = [], 0
    while i < len(s):
        if s.startswith("\\frac", i) and not s.startswith("\\frac{", i):
            j = i + 5
            a = s[j] if j < len(s) else ""
            b = s[j + 1] if j + 1 < len(s) else ""
            if a and b and b != "{":
                out.append("\\frac{" + a + "}{" + b + "}")
                i = j + 2
                continue
            if a and b == "{":
                out.append("\\frac{" + a + "}")
                i = j + 1
                continue
        if s.startswith("\\frac{", i):
            # \frac{a}b -> \frac{a}{b}
            depth, k = 0, i + 5
            while k < len(s):
                depth += s[k] == "{"
                depth -= s[k] == "}"
                if depth == 0:
                    break
                k += 1
            if k + 1 < len(s) and s[k + 1] not in "{":
                out.append(s[i:k + 1] + "{" + s[k + 1] + "}")
                i = k + 2
                continue
        out.append(s[i])
        i += 1
    return "".join(out)


def _fix_sqrt(s: str) -> str:
    return re.sub(r"\\sqrt(\w)", r"\\sqrt{\1}", s)


def _slash_to_frac(s: str) -> str:
    m = re.fullmatch(r"(-?\d+)/(\d+)", s)
    return f"\\frac{{{m.group(1)}}}{{{m.group(2)}}}" if m else s


def normalize_math(answer: str) -> str:
    """Canonical string of a MATH answer (Hendrycks' strip_string rules plus final-answer clean-up)."""
    s = answer.strip()
    s = re.sub(r"\\text\{\s*([^{}]*)\}", r"\1", s)          # \text{ cm} -> cm
    s = re.sub(r"\\(?:mbox|mathrm|textbf)\{([^{}]*)\}", r"\1", s)
    s = s.replace("\n", "").replace("\\!", "").replace("\\,", "").replace("\\;", "").replace("\\ ", "")
    s = s.replace("\\\\", "\\").replace("tfrac", "frac").replace("dfrac", "frac")
    s = s.replace("\\left", "").replace("\\right", "")
    s = s.replace("^{\\circ}", "").replace("^\\circ", "").replace("\\%", "").replace("%", "")
    s = s.replace("\\$", "").replace("$", "")
    s = s.strip()
    for unit in _UNIT_WORDS:
        s = re.sub(rf"(\d)\s*{unit}(\^?\d)?\s*$", r"\1", s)
    s = s.replace(" .", " 0.").replace("{.", "{0.")
    if s.startswith("."):
        s = "0" + s
    if "=" in s and len(s.split("=")[0].strip()) <= 2:        # "x = 5" -> "5"
        s = s.split("=", 1)[1]
    s = _fix_sqrt(s)
    s = s.replace(" ", "")
    s = _fix_fracs(s)
    if s == "0.5":
        s = "\\frac{1}{2}"
    s = _slash_to_frac(s)
    s = s.rstrip(".")
    if re.fullmatch(r"-?[\d,]+(\.\d+)?", s) and "," in s and re.fullmatch(r"-?\d{1,3}(,\d{3})+(\.\d+)?", s):
        s = s.replace(",", "")                              # 1,000 -> 1000 (but keep tuples like 1,2)
    if re.fullmatch(r"-?\d+\.0+", s):
        s = s.split(".")[0]
    return s


class _Timeout(Exception):
    pass


@contextmanager
def _time_limit(seconds: float):
    """SIGALRM-based limit in the main thread; no limit elsewhere."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise _Timeout()

    old = signal.signal(signal.SIGALRM, handler)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def sympy_equal(a: str, b: str, timeout_s: float = 5.0) -> bool:
    """True if both LaTeX strings parse and sympy finds their difference zero (within a time limit)."""
    try:
        import sympy
        from sympy.parsing.latex import parse_latex
        with _time_limit(timeout_s):
            ea, eb = parse_latex(a), parse_latex(b)
            if ea == eb:
                return True
            return bool(sympy.simplify(ea - eb) == 0)
    except _Timeout:
        return False
    except Exception:  # noqa: BLE001 - any parse/simplify failure means "not shown equal"
        return False


def math_equivalent(prediction: str | None, gold: str) -> bool:
    if prediction is None:
        return False
    p, g = normalize_math(prediction), normalize_math(gold)
    if p == g:
        return True
    if not p or not g:
        return False
    return sympy_equal(p, g)
