"""Tricky responses and what each answer verifier gives them: the README's table
("Verifiers: what counts as an answer"), asserted row by row in tests/test_verifier_cases.py."""

# (what the case is, reference answer, response, expected reward: math, gsm8k, math_lenient)
CASES = [
    ("restated question (GRPO's hack in the real-model race)", "-4",
     "To find the value of 0 - 4, we need to perform the", (0, 0, 1)),
    ("restated question after an answer anchor", "-4", "The answer to 0 - 4 is", (0, 0, 1)),
    ("restated question, then the value", "-4", "The answer to 0 - 4 is -4.", (1, 1, 1)),
    ("an expression as the answer", "9", "The answer is 6 + 3.", (0, 0, 1)),
    ("a fraction not in lowest terms", "2", "The answer is 6/3.", (0, 0, 1)),
    ("a worked expression, then its value", "8", "The final answer is 8 - 0 = 8.", (1, 1, 1)),
    ("an equation with no answer anchor", "3", "4 - 1 = 3.", (0, 1, 1)),
    ("stated in prose", "6", "The final answer is 6.", (1, 1, 1)),
    ("boxed", "6", r"\boxed{6}", (1, 1, 1)),
    ("boxed inside LaTeX", "-4", r"So $x = \boxed{-4}$.", (1, 1, 1)),
    ("GSM8K's answer marker", "72", "Half of 144 is 72.\n#### 72", (1, 1, 1)),
    ("markdown bold", "6", "The final answer is: **6**", (1, 1, 1)),
    ("units after the number", "9", "The answer is 9 apples.", (1, 1, 1)),
    ("a currency sign", "9", "The answer is $9.", (1, 1, 1)),
    ("thousands comma in the response", "1000", "The answer is 1,000.", (1, 1, 1)),
    ("thousands comma in the reference", "1,000", "The answer is 1000", (1, 1, 1)),
    ("a fraction for a decimal reference", "0.5", r"The answer is $\frac{1}{2}$.", (1, 0, 1)),
    ("a plain-text fraction for a decimal reference", "0.5", "The answer is 1/2.", (1, 0, 1)),
    ("a decimal for a fraction reference", r"\frac{1}{2}", "The answer is 0.5.", (1, 0, 1)),
    ("trailing zeros", "0.5", "The answer is 0.50", (1, 1, 1)),
    ("a negative answer", "-4", "Answer: -4", (1, 1, 1)),
    ("the wrong sign", "-4", "The answer is 4.", (0, 0, 0)),
    ("two answers offered", "5", "The answer is 5 or 6.", (0, 0, 1)),
    ("two boxed answers", "6", r"\boxed{5} or \boxed{6}", (0, 1, 0)),
    ("an answer, corrected later", "4", "The answer is 3. Wait, actually the answer is 4.", (1, 1, 1)),
    ("an answer followed by more text", "6", "The answer is 6. Check: 1 + 5 = 6, so", (1, 1, 1)),
    # math-verify reads the value after the last '=' within 100 characters of 'answer'
    ("an answer, then an equation with another value", "3",
     "The answer is 3, since 4 - 1 = 3 and 3 + 1 = 4.", (0, 0, 0)),
    ("the answer only as a number in passing", "1000", "That makes 1,000 dollars.", (0, 1, 1)),
    ("spelled out", "6", "The answer is six.", (0, 0, 0)),
    ("a symbolic reference answer", "x^2+1", r"The answer is $x^2 + 1$.", (1, 1, 1)),
]
VERIFIERS = ("math", "gsm8k", "math_lenient")
