"""Golden cases for GSM8K and MATH answer extraction, normalisation and equivalence."""
import pytest

from ziya_jax.evaluation.answers import (extract_gsm8k, extract_math, gsm8k_correct, gsm8k_gold, last_boxed,
                                         math_equivalent, math_gold, normalize_math, normalize_number)


@pytest.mark.parametrize("completion, answer, how", [
    ("Olivia had 23 dollars. 23 - 15 is 8. The answer is 8.", "8", "strict"),
    ("So he has 1,250 left. The answer is $1,250.", "1250", "strict"),
    ("The answer is -3.", "-3", "strict"),
    ("The answer is 7.50", "7.5", "strict"),
    ("He pays 5 * 3 = 15 dollars and keeps 18", "18", "last_number"),
    ("First 12, then 4.0", "4", "last_number"),
    ("The answer is 10. Q: next question 99", "10", "strict"),     # strict beats the later number
    ("I do not know.", None, "none"),
])
def test_gsm8k_extraction(completion, answer, how):
    assert extract_gsm8k(completion) == (answer, how)


def test_gsm8k_gold_and_match():
    assert gsm8k_gold("Natalia sold 48/2 = <<48/2=24>>24 clips.\n#### 72") == "72"
    assert gsm8k_gold("#### 1,000") == "1000"
    assert normalize_number("$18.00.") == "18"
    assert gsm8k_correct("so 72 clips. The answer is 72.", "72")
    assert not gsm8k_correct("The answer is 71.", "72")
    with pytest.raises(ValueError):
        gsm8k_gold("no final line")


@pytest.mark.parametrize("text, boxed", [
    ("so $x = \\boxed{5}$.", "5"),
    ("\\boxed{\\frac{1}{2}} and later \\boxed{\\frac{\\sqrt{3}}{2}}", "\\frac{\\sqrt{3}}{2}"),
    ("nested \\boxed{\\left( 3, \\frac{\\pi}{2} \\right)}", "\\left( 3, \\frac{\\pi}{2} \\right)"),
    ("\\fbox{7}", "7"),
    ("no box here", None),
])
def test_last_boxed(text, boxed):
    assert last_boxed(text) == boxed


def test_extract_math_falls_back_to_minerva_line():
    assert extract_math("... Final Answer: The final answer is $[2,5)$. I hope it is correct.") == "[2,5)"
    assert extract_math("so $\\boxed{24}$.\nFinal Answer: The final answer is $24$. I hope it is correct.") == "24"
    assert math_gold("Thus $x=\\boxed{-\\frac{2}{3}}$.") == "-\\frac{2}{3}"


@pytest.mark.parametrize("raw, norm", [
    ("\\dfrac{3}{4}", "\\frac{3}{4}"),
    ("\\frac12", "\\frac{1}{2}"),
    ("\\frac{1}2", "\\frac{1}{2}"),
    ("0.5", "\\frac{1}{2}"),
    ("3/4", "\\frac{3}{4}"),
    ("\\left(1, 2\\right)", "(1,2)"),
    ("90^\\circ", "90"),
    ("10\\%", "10"),
    ("\\$5.00", "5"),
    ("5 \\text{ cm}", "5"),
    ("x = 7", "7"),
    ("\\sqrt2", "\\sqrt{2}"),
    ("1,000", "1000"),
    ("1,2", "1,2"),
    ("\\text{(B)}", "(B)"),
])
def test_normalize_math(raw, norm):
    assert normalize_math(raw) == norm


@pytest.mark.parametrize("pred, gold, same", [
    ("\\frac{1}{2}", "0.5", True),
    ("\\dfrac{\\sqrt{2}}{2}", "\\frac{1}{\\sqrt{2}}", True),     # sympy
    ("2\\pi", "\\pi \\cdot 2", True),                             # sympy
    ("x^2+2x+1", "(x+1)^2", True),                                 # sympy
    ("\\frac{3}{4}", "\\frac{4}{3}", False),
    ("5", "6", False),
    (None, "6", False),
    ("\\text{(A)}", "(A)", True),
])
def test_math_equivalence(pred, gold, same):
    assert math_equivalent(pred, gold) is same
