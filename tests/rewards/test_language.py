"""Language consistency: the share of letters outside the expected script, as a penalty and as a statistic."""

import importlib.util

import pytest

from medzero_pl.rewards.batch import BatchReward
from medzero_pl.rewards.extract import text_after_answer
from medzero_pl.rewards.language import foreign_script_fraction, language_consistency_reward

# the seed runs' symptom: a correct English answer, then Chinese or Japanese after </answer>
SEED_CASE = (
    "<think>\nLow ceruloplasmin, Kayser-Fleischer ring.\n</think>\n<answer>Wilson disease</answer>这是威尔逊病。"
)


def test_english_text_has_no_foreign_letters():
    assert foreign_script_fraction("Wilson disease: ceruloplasmin 8 mg/dL, copper 210 µg/24 h!") == 0.0
    assert foreign_script_fraction("") == 0.0 and foreign_script_fraction("1234 -- ??") == 0.0


def test_greek_letters_of_medical_notation_are_allowed_by_default():
    assert foreign_script_fraction("α-galactosidase A and β-blockers") == 0.0
    assert foreign_script_fraction("αβ", allowed=()) == 1.0


def test_the_fraction_counts_letters_by_script():
    # letters: "Wilson disease" 13 Latin + "这是威尔逊病" 6 Han (punctuation "。" is not a letter)
    assert foreign_script_fraction("Wilson disease 这是威尔逊病。") == pytest.approx(6 / 19)
    # Japanese: kana and kanji are all foreign to English; all expected for "ja"
    assert foreign_script_fraction("これは正しいです") == 1.0
    assert foreign_script_fraction("これは正しいです", expected="ja") == 0.0
    assert foreign_script_fraction("Fabry disease", expected="zh") == 1.0


def test_the_seed_case_is_visible_after_the_answer():
    after = text_after_answer(SEED_CASE)
    assert after == "这是威尔逊病。"
    assert foreign_script_fraction(after) == 1.0
    # over the whole completion: 6 Han among the letters of the reasoning, tags and answer
    assert 0.0 < foreign_script_fraction(SEED_CASE) < 0.15


def test_the_reward_is_minus_the_fraction_of_the_chosen_region():
    completions = [SEED_CASE, "<think>ok</think><answer>Wilson disease</answer>", "<answer>威尔逊病</answer>"]
    whole = language_consistency_reward()(None, completions)
    after = language_consistency_reward(region="after_answer")(None, completions)
    answer = language_consistency_reward(region="answer")(None, completions)
    assert whole[0] == pytest.approx(-foreign_script_fraction(SEED_CASE)) and whole[1] == 0.0
    assert after == [-1.0, 0.0, 0.0]
    assert answer == [0.0, 0.0, -1.0]


def test_unknown_scripts_regions_and_backends_are_rejected():
    with pytest.raises(ValueError, match="klingon"):
        language_consistency_reward(expected="klingon")
    with pytest.raises(ValueError, match="region"):
        language_consistency_reward(region="prompt")
    with pytest.raises(ValueError, match="backend"):
        language_consistency_reward(backend="fasttext")
    with pytest.raises(ValueError, match="ISO 639-1"):
        language_consistency_reward(backend="lingua", expected="latin")


@pytest.mark.skipif(importlib.util.find_spec("lingua") is None, reason="optional lingua backend not installed")
def test_the_lingua_backend_tells_languages_of_one_script_apart():
    reward = language_consistency_reward(backend="lingua", expected="en")
    assert isinstance(reward, BatchReward)
    english, mixed = "The patient has Wilson disease.", "The patient has Wilson disease. Der Patient ist sehr krank."
    values = reward(None, [english, mixed])
    assert values[0] == pytest.approx(0.0, abs=0.05) and values[1] < -0.2
