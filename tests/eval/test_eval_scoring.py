"""The shared scoring helpers: hand-worked vectors from the spec (evaluation.md) and, where lmms-eval's current code
still matches the July-2024 protocol, parity with the installed upstream functions on generated strings."""

import random
import string

import pytest
import upstream
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from inf_llava.eval.scoring import judge, letters, mcq, mmmu, vqa

# ---- VQA ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("Two dogs.", "2 dogs"),
        ("The answer is: yes!", "answer is: yes"),  # ':' survives, '!' becomes a space, 'the' dropped
        ("3,000", "3000"),
        ("hot-dog", "hot dog"),  # '-' touching no space -> space
        ("hot - dog", "hot dog"),  # ' -' present -> deleted, spaces collapse
        ("dont", "don't"),
        ("Im", "im"),  # capitalised contraction keys never match
        ("none", "0"),
        ("eleven", "eleven"),  # number words stop at ten
        ("it's", "it 's"),
        ("1.5 kg.", "1.5 kg"),  # a period before a digit survives
        ("red,blue", "redblue"),  # EvalAI deletes commas up front
        ("an apple\tand\nthe pear", "apple and pear"),
    ],
)
def test_evalai_normalize_vectors(raw, expected):
    assert vqa.evalai_normalize(raw) == expected


def test_period_strip_removes_at_most_32_periods():
    assert vqa.evalai_normalize("x." * 40).count(".") == 8  # re.UNICODE (32) lands in sub()'s count


@pytest.mark.parametrize("k, expected", [(0, 0.0), (1, 0.3), (2, 0.6), (3, 0.9), (4, 1.0), (10, 1.0)])
def test_ten_choose_nine_accuracy_closed_form(k, expected):
    answers = ["cat"] * k + ["dog"] * (10 - k)
    assert vqa.evalai_accuracy("Cat", answers)[0] == pytest.approx(expected)


def test_answers_as_official_dicts_and_no_deduplication():
    dicts = [{"answer_id": i, "answer": a} for i, a in enumerate(["tennis"] * 2 + ["golf"] * 8)]
    assert vqa.evalai_accuracy("Tennis.", dicts)[0] == pytest.approx(0.6)


def test_official_vqa_quirks():
    # All ten answers identical: the raw stripped prediction is compared case-sensitively, unnormalised.
    assert vqa.official_vqa_accuracy("yes", ["Yes"] * 10)[0] == 0.0
    assert vqa.official_vqa_accuracy(" Yes ", ["Yes"] * 10)[0] == 1.0
    assert vqa.official_vqa_accuracy("2", ["two"] * 10)[0] == 0.0
    assert vqa.evalai_accuracy("2", ["two"] * 10)[0] == 1.0
    # Answers differ: normalised; commas become spaces unless a digit-comma-digit is present.
    mixed = ["red blue"] * 9 + ["red"]
    assert vqa.official_vqa_accuracy("red,blue", mixed)[0] == 1.0
    assert vqa.evalai_accuracy("red,blue", mixed)[0] == 0.0
    assert vqa.official_vqa_accuracy("1,000 dogs", ["1000 dogs"] * 5 + ["many"] * 5)[0] == 1.0


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.sampled_from(list("abAB .,;/?!'-:()[]{}019\"\n\t=+_<>@`s") + ["none ", "the ", "dont ", "'s", "two"]),
        max_size=25,
    ).map("".join)
)
def test_evalai_normalize_matches_upstream(text):
    assert vqa.evalai_normalize(text) == upstream.evalai_processor()(text)


# ---- MMBench matching --------------------------------------------------------------------------------------------
CHOICES = {"A": "cat", "B": "dog", "C": "red car"}


@pytest.mark.parametrize(
    "answer, expected",
    [
        ("A", "A"),
        ("B.", "B"),
        ("(C)", "C"),
        ("I choose C.", "C"),
        ("answer:D", None),  # ':D' is one token but only (':' + letter) forms count, e.g. ':D' alone
        (":D", "D"),
        ("E", "E"),  # E is a candidate letter even when it is not an option
        ("A dog is sitting here", "B"),  # 'A' may be an article (> 3 tokens): falls through to option text
        ("A cat", "A"),
        ("A B", None),
        ("It is a DOG", "B"),
        ("a red car next to a cat", None),  # two option texts match
        ("nothing", None),
    ],
)
def test_can_infer_vectors(answer, expected):
    assert mcq.can_infer(answer, CHOICES) == expected


answers = st.lists(
    st.sampled_from(["A", "B", "C", "D", "E", "(A)", "B.", "C)", ":D", "the", "cat", "dog", "red", "car", "is", "x"]),
    max_size=7,
).map(" ".join)


@settings(max_examples=300, deadline=None)
@given(answers)
def test_can_infer_matches_upstream(answer):
    expected = upstream.mmbench_evaluator().can_infer(answer, dict(CHOICES))
    assert mcq.can_infer(answer, CHOICES) == (expected or None)


def _row(index, answer, pred):
    return {"index": index, "answer": answer, "pred": pred, "category": "c", "l2_category": "l"}


def test_circular_eval_needs_every_copy():
    rows = [_row(1, "A", "A"), _row(1_000_001, "B", "B"), _row(2_000_001, "C", "A"), _row(2, "B", "B")]
    result = mcq.circular_eval(rows)
    assert result["hits"] == {1: 0, 2: 1} and result["unresolved"] == 0


def test_circular_eval_unresolved_rows_and_judge():
    rows = [_row(3, "A", "A"), _row(1_000_003, "D", None)]
    assert mcq.circular_eval(rows)["hits"] == {3: 0}
    assert mcq.circular_eval(rows)["unresolved"] == 1
    judged = mcq.circular_eval(rows, judge=lambda row: row["answer"])
    assert judged["hits"] == {3: 1} and judged["judged"] == 1 and judged["unresolved"] == 0
    # A wrong heuristic copy fails the question before the second pass: the judge is never asked.
    calls = []
    rows = [_row(4, "A", None), _row(1_000_004, "B", "C")]
    assert mcq.circular_eval(rows, judge=lambda row: calls.append(row) or "A")["hits"] == {4: 0}
    assert calls == []


def test_circular_eval_orphans_and_duplicates():
    result = mcq.circular_eval([_row(5, "A", "A"), _row(1_000_007, "A", "A")])
    assert result["hits"] == {5: 1} and result["orphan_rows"] == 1
    with pytest.raises(ValueError, match="twice"):
        mcq.circular_eval([_row(5, "A", "A"), _row(5, "A", "A")])


def test_mmbench_judge_prompt_matches_upstream():
    evaluator = upstream.mmbench_evaluator()
    item = {"A": "teddy", "B": "cat", "C": float("nan"), "D": "dog"}
    assert mcq.contiguous_options(item) == evaluator.extract_options(item) == ["teddy", "cat"]
    options = mcq.judge_options_string(["teddy", "cat"])
    assert options == evaluator.build_option_str(["teddy", "cat"])
    assert mcq.judge_prompt("What {is} it", options, "a bear") == evaluator.build_prompt(
        "What {is} it", options, "a bear"
    )


# ---- MMMU --------------------------------------------------------------------------------------------------------
OPTIONS = ["Baroque", "Cubism", "Impressionism", "Gothic"]
INDEX2ANS, LETTERS = mmmu.multi_choice_info(OPTIONS)


@pytest.mark.parametrize(
    "response, expected",
    [
        ("(B)", "B"),
        ("The answer is (A) not (C)", "C"),  # several bracketed: the last occurrence
        ("B", "B"),
        ("B.", "B"),
        ("C. Impressionism", "C"),  # lmms-eval 2024's extra 'X.' step
        ("Picture D is right", "D"),  # 'X ' anywhere counts
        ("I think the style shown is clearly cubism here", "B"),  # option text, > 5 words
        ("Between Gothic and Baroque I pick baroque in the end", "A"),  # the last mentioned option text
    ],
)
def test_mmmu_multi_choice_vectors(response, expected):
    assert mmmu.parse_multi_choice(response, LETTERS, INDEX2ANS) == (expected, False)


def test_mmmu_random_fallback_is_seeded_and_reported():
    assert mmmu.parse_multi_choice("no idea", LETTERS, INDEX2ANS) == ("A", True)  # random.Random(42).choice
    assert mmmu.parse_multi_choice("no idea", LETTERS, INDEX2ANS) == ("A", True)
    # The official MMMU parser has no 'X.' step and needs ' X ': this response falls back to the seeded pick.
    assert mmmu.parse_multi_choice("C. Impressionism", LETTERS, INDEX2ANS, official=True) == ("A", True)
    assert mmmu.parse_multi_choice("It is B for sure", LETTERS, INDEX2ANS, official=True) == ("B", False)


@pytest.mark.parametrize(
    "response, gold, correct",
    [
        ("The answer is 12.", "12", True),
        ("x = 3.14159", "3.14", True),
        ("It is in Florida", ["Tampa", "Florida"], True),
        ("b", "b", True),
        ("The result is 1,234 apples", "1234", True),
        ("Therefore the value is 7", "8", False),
        ("6.02e23 molecules", "6.02e23", True),
    ],
)
def test_mmmu_open_vectors(response, gold, correct):
    assert mmmu.eval_open(gold, mmmu.parse_open(response)) is correct


def test_mmmu_list_answers_are_parsed():
    assert mmmu.gold_answers("['24/7', '3.429']") == ["24/7", "3.429"]
    assert mmmu.gold_answers("B") == "B"
    assert mmmu.subject_of("validation_Art_Theory_12") == "Art_Theory"
    with pytest.raises(ValueError):
        mmmu.subject_of("nonsense")


mc_responses = st.lists(
    st.sampled_from(["A", "B", "(C)", "D.", "cubism", "Gothic", "is", "the", "answer", ",", "'", "x", "B:", "(A)"]),
    max_size=9,
).map(" ".join)


@settings(max_examples=300, deadline=None)
@given(mc_responses)
def test_mmmu_multi_choice_matches_upstream(response):
    reference = upstream.mmmu()
    random.seed(42)  # the official scorer's seed; our fallback pick uses the same
    expected = reference["parse_multi_choice_response"](response, LETTERS, INDEX2ANS)
    assert mmmu.parse_multi_choice(response, LETTERS, INDEX2ANS)[0] == expected


open_responses = st.lists(
    st.sampled_from(["the", "answer", "is", "so", "=", "12", "3.5", "1,234", "-2e3", ".", "\n", "Tampa", "x", "A"]),
    max_size=10,
).map(" ".join)


@settings(max_examples=300, deadline=None)
@given(open_responses, st.sampled_from(["12", "3.5", "tampa", "1234", "a", "x = 2"]))
def test_mmmu_open_matches_upstream(response, gold):
    reference = upstream.mmmu()
    expected = reference["parse_open_response"](response)
    ours = mmmu.parse_open(response)
    assert set(map(repr, ours)) == set(map(repr, expected))
    assert mmmu.eval_open(gold, ours) == reference["eval_open"](gold, expected)


# ---- letter rules ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "prediction, correct", [("B", True), ("B. a car", True), (" b", True), ("The answer is B", False), ("", False)]
)
def test_seed_first_character(prediction, correct):
    assert letters.seed_correct(prediction, "B") is correct


@pytest.mark.parametrize(
    "prediction, correct",
    [
        ("B. root", True),
        ("(B)", True),
        ("b.", True),  # no regex match (lower case), but exact match ignores case and punctuation
        ("  B. x", True),
        ("B root", False),  # whitespace is significant
        ("Answer: B", False),
    ],
)
def test_ai2d_filter_and_exact_match(prediction, correct):
    assert letters.ai2d_correct(prediction, "B") is correct


def test_exact_match_deletes_all_punctuation():
    assert letters.exact_match("A" + string.punctuation, "a", ignore_case=True, ignore_punctuation=True)
    assert not letters.exact_match(" A", "A")


@pytest.mark.parametrize(
    "prediction, le24, head, llava",
    [
        ("B", True, True, True),
        ("b", False, True, False),
        ("B. whale", True, True, True),
        ("b. whale", False, False, False),
        ("The answer is B.", False, False, True),
        ("The answer is B. The answer is B.", False, False, False),
        ("A", False, False, False),
    ],
)
def test_scienceqa_profiles(prediction, le24, head, llava):
    assert letters.sqa_correct_lmms_eval_2024(prediction, "B") is le24
    assert letters.sqa_correct_lmms_eval_head(prediction, "B") is head
    assert letters.sqa_correct_llava(prediction, 1, 2) is llava


# ---- LLaVA-Bench judge -------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "review, scores",
    [
        ("8 9\nBecause...", [8.0, 9.0]),
        ("8,9", [8.0, 9.0]),
        ("8.5 7", [8.5, 7.0]),
        ("8, 9", [-1, -1]),  # the comma becomes a space: two spaces -> three parts
        ("8 9 ", [-1, -1]),
        ("8\t9", [-1, -1]),
        ("Scores: 8 9", [-1, -1]),
        ("", [-1, -1]),
    ],
)
def test_parse_score(review, scores):
    assert judge.parse_score(review) == scores


def test_relative_score_rounding():
    assert judge.relative_score([[8, 6], [6, 6]]) == {"relative": 85.7, "reference_mean": 7.0, "model_mean": 6.0}
    assert judge.relative_score([[-1, -1], [8, 9]])["relative"] == pytest.approx(round(4.0 / 3.5 * 100, 1))
    assert judge.relative_score([]) is None


def test_review_content_is_exact():
    content = judge.review_content(["A cat.", "On a mat."], "What?", "A cat on a mat.", "cat", "conv")
    assert content.startswith("[Context]\nA cat.\nOn a mat.\n\n[Question]\nWhat?\n\n[Assistant 1]\nA cat on a mat.\n\n")
    assert "[End of Assistant 1]\n\n[Assistant 2]\ncat\n\n[End of Assistant 2]\n\n[System]\nWe would like" in content
    assert "describing the image. \nPlease rate" in content and content.endswith("affect your judgment.\n\n")
    other = judge.review_content("c", "q", "r", "a", "unknown")
    assert "[user 1]" in other and other.endswith("[System]\n\n\n")  # no rule for other categories, as upstream
