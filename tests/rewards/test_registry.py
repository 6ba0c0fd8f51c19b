"""Building a weighted reward set from config and calling it with TRL's calling convention."""

from pathlib import Path

import pytest
import yaml

from medzero_pl.rewards import REWARDS, RewardOutput, RewardSet, RewardSpec, build_rewards, check_rewards

PRESETS = Path(__file__).resolve().parents[2] / "conf" / "rewards"
OPTIONS = {"A": "Inhibition of proteasome", "B": "Hyperstabilization of microtubules", "D": "Cross-linking of DNA"}
GOOD_MCQ = "<think>Cisplatin causes ototoxicity.</think>\n<answer>D</answer>"
GOOD_DX = "<think>Alpha-galactosidase A is low.</think>\n<answer>Fabry disease</answer>"


def columns(*rows):
    """TRL-style columns (one list per field) from (task, answer, diagnoses) rows, plus unused extras."""
    return {
        "id": [str(i) for i in range(len(rows))],
        "source": ["medqa" if t == "mcq" else "rarearena" for t, _, _ in rows],
        "task": [t for t, _, _ in rows],
        "answer": [a for _, a, _ in rows],
        "options": [OPTIONS if t == "mcq" else {} for t, _, _ in rows],
        "diagnoses": [d for _, _, d in rows],
        "trainer_state": object(),
        "log_metric": print,
    }


MIXED = columns(("mcq", "D", []), ("diagnosis", None, ["Fabry disease"]), ("mcq", "D", []))


def test_the_total_is_the_weighted_sum_and_none_contributes_nothing():
    rewards = build_rewards(
        [
            RewardSpec("mcq_accuracy", 1.0),
            RewardSpec("diagnosis_match", 2.0),
            RewardSpec("strict_format", 0.2),
        ]
    )
    out = rewards(["p"] * 3, [GOOD_MCQ, GOOD_DX, "<answer>A</answer>"], **MIXED)
    assert isinstance(out, RewardOutput)
    assert out.per_function == {
        "mcq_accuracy": [1.0, None, 0.0],
        "diagnosis_match": [None, 1.0, None],
        "strict_format": [1.0, 1.0, 0.0],
    }
    assert out.total == [pytest.approx(1.2), pytest.approx(2.2), 0.0]


def test_a_row_on_which_every_function_is_none_totals_zero():
    out = build_rewards([{"name": "diagnosis_match"}])(None, [GOOD_MCQ], **columns(("mcq", "D", [])))
    assert out.per_function == {"diagnosis_match": [None]} and out.total == [0.0]


def test_chat_message_completions_and_none_content_are_scored():
    completions = [[{"role": "assistant", "content": GOOD_MCQ}], [{"role": "assistant", "content": None}]]
    out = build_rewards([{"name": "mcq_accuracy"}])(None, completions, **columns(("mcq", "D", []), ("mcq", "D", [])))
    assert out.total == [1.0, 0.0]


def test_a_reward_listed_twice_gets_a_numbered_name():
    rewards = build_rewards(
        [
            {"name": "diagnosis_match", "kwargs": {"mode": "diagnosis_zero"}},
            {"name": "diagnosis_match", "kwargs": {"mode": "fuzzy"}},
            {"name": "diagnosis_match", "weight": 0.5},
        ]
    )
    assert rewards.names == ("diagnosis_match", "diagnosis_match_2", "diagnosis_match_3")
    assert rewards.weights == (1.0, 1.0, 0.5)


def test_an_unknown_name_lists_the_valid_ones_and_the_closest():
    with pytest.raises(ValueError, match="did you mean 'mcq_accuracy'") as error:
        build_rewards([{"name": "mcq_acurracy"}])
    assert all(name in str(error.value) for name in REWARDS)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"name": "mcq_accuracy", "kwargs": {"polcy": "first"}}, r"reward 'mcq_accuracy'.*polcy.*accepts"),
        ({"name": "mcq_accuracy", "kwargs": {"policy": "middle"}}, r"reward 'mcq_accuracy'.*policy"),
        ({"name": "cosine_length"}, r"reward 'cosine_length'.*max_length"),
        ({"name": "diagnosis_match", "kwargs": {"mode": "fuzzy", "treshold": 0.9}}, r"diagnosis_match.*treshold"),
        ({"name": "strict_format", "weight": "heavy"}, r"strict_format.*weight"),
        ({"name": "strict_format", "weight": float("nan")}, r"strict_format.*weight"),
        ({"name": "strict_format", "kwargs": ["x"]}, r"strict_format.*kwargs"),
        ({"name": "strict_format", "wieght": 1.0}, r"name, weight, kwargs"),
        ({"name": "no_such_module_xyz:reward"}, r"no_such_module_xyz.*cannot import"),
        ({"name": "trl.rewards:no_such_reward"}, r"cannot import"),
    ],
)
def test_configuration_errors_are_raised_at_build_time_naming_the_reward(spec, message):
    with pytest.raises(ValueError, match=message):
        build_rewards([spec])


def test_an_empty_reward_list_scores_zero():
    empty = build_rewards([])
    assert len(empty) == 0
    assert empty(None, ["<answer>D</answer>"]) == RewardOutput([0.0], {})


def test_an_unchanged_trl_reward_can_be_plugged_in_by_import_path():
    pytest.importorskip("trl.rewards")
    rewards = build_rewards(
        [
            {"name": "mcq_accuracy"},
            {"name": "trl.rewards:think_format_reward", "weight": 0.5},
            {
                "name": "trl.rewards:get_soft_overlong_punishment",
                "kwargs": {"max_completion_len": 100, "soft_punish_cache": 20},
            },
        ]
    )
    assert rewards.names == ("mcq_accuracy", "think_format_reward", "get_soft_overlong_punishment")
    completions = [[{"role": "assistant", "content": GOOD_MCQ}], [{"role": "assistant", "content": "no format"}]]
    cols = columns(("mcq", "D", []), ("mcq", "D", []))
    out = rewards(None, completions, completion_ids=[[1] * 10, [1] * 90], **cols)
    assert out.per_function["think_format_reward"] == [1.0, 0.0]
    assert out.per_function["get_soft_overlong_punishment"] == [0.0, pytest.approx(-0.5)]
    assert out.total == [pytest.approx(1.5), pytest.approx(-0.5)]


def _three_values(prompts, completions, **kwargs):
    return [1.0, 2.0, 3.0]


def _nan_and_text(prompts, completions, **kwargs):
    return [float("nan"), "high"]


def test_a_function_returning_the_wrong_number_of_values_is_named():
    rewards = RewardSet(["three"], [_three_values], [1.0])
    with pytest.raises(ValueError, match="reward 'three' returned 3 values for 2 completions"):
        rewards(None, ["a", "b"])


def test_nan_counts_as_none_and_non_numbers_are_named():
    rewards = RewardSet(["odd"], [_nan_and_text], [1.0])
    with pytest.raises(ValueError, match="reward 'odd' returned 'high'"):
        rewards(None, ["a", "b"])
    nan_only = RewardSet(["nan"], [lambda prompts, completions, **kw: [float("nan")]], [1.0])
    assert nan_only(None, ["a"]) == RewardOutput([0.0], {"nan": [None]})


def test_an_error_inside_a_function_is_reraised_with_its_name():
    rewards = build_rewards([{"name": "mcq_accuracy"}])
    with pytest.raises(RuntimeError, match="reward 'mcq_accuracy'.*answer"):
        rewards(None, ["<answer>D</answer>"], task=["mcq"])  # no gold column


MIXED_ROWS = [("mcq", "D", []), ("diagnosis", None, ["Fabry disease"]), ("diagnosis", None, ["Fabry disease"])]


@pytest.mark.parametrize("preset", ["mcq", "diagnosis", "diagnosis_fuzzy"])
def test_the_yaml_presets_build_and_score(preset):
    specs = yaml.safe_load((PRESETS / f"{preset}.yaml").read_text())
    assert all(set(spec) <= {"name", "weight", "kwargs"} for spec in specs)
    rewards = build_rewards(specs)
    out = rewards(None, [GOOD_MCQ, GOOD_DX, "junk"], **columns(*MIXED_ROWS))
    assert len(out.total) == 3 and all(isinstance(t, float) for t in out.total)


def test_the_mcq_preset_pays_accuracy_and_a_fifth_for_format():
    rewards = build_rewards(yaml.safe_load((PRESETS / "mcq.yaml").read_text()))
    cols = columns(("mcq", "D", []), ("mcq", "D", []), ("mcq", "D", []))
    out = rewards(None, [GOOD_MCQ, "<answer>D</answer>", "<think>x</think><answer>A</answer>"], **cols)
    assert out.total == [pytest.approx(1.2), 1.0, pytest.approx(0.2)]


def test_the_diagnosis_preset_reproduces_the_seed_scores():
    rewards = build_rewards(yaml.safe_load((PRESETS / "diagnosis.yaml").read_text()))
    rows = [("diagnosis", None, ["Fabry disease"])] * 3
    out = rewards(None, [GOOD_DX, "<answer>Gaucher disease</answer>", "Fabry disease"], **columns(*rows))
    assert out.total == [1.0, 0.1, 0.0]


def test_specs_may_come_from_omegaconf():
    omegaconf = pytest.importorskip("omegaconf")
    config = omegaconf.OmegaConf.create(
        {"rewards": [{"name": "mcq_accuracy", "weight": 1.0, "kwargs": {"fallbacks": ["answer_is"]}}]}
    )
    structured = omegaconf.OmegaConf.structured(RewardSpec(name="strict_format", weight=0.2))
    rewards = build_rewards([*config.rewards, structured])
    out = rewards(None, ["The answer is D"], **columns(("mcq", "D", [])))
    assert out.per_function == {"mcq_accuracy": [1.0], "strict_format": [0.0]}


def rows(*tasks):
    """Training rows as the data module renders them: prompt, prompt ids, source and gold fields."""
    return [
        {"prompts": "Q", "prompt_ids": [1, 2], "id": str(i), "source": task, "task": task, "answer": "D",
         "options": OPTIONS if task == "mcq" else {}, "diagnoses": ["Fabry disease"] if task == "diagnosis" else []}
        for i, task in enumerate(tasks)
    ]  # fmt: skip


def test_score_reads_one_row_per_completion_and_passes_no_prompt_ids():
    seen = {}

    def spy(prompts, completions, **columns):
        seen.update(columns, prompts=prompts)
        return [1.0] * len(completions)

    batch = {key: [row[key] for row in rows("mcq", "mcq")] for key in rows("mcq")[0]}
    scored = RewardSet(["spy"], [spy], [0.5]).score(batch, ["a", "b"], [[7], [8]])
    assert scored.total == [0.5, 0.5]
    assert seen["prompts"] == ["Q", "Q"] and seen["completion_ids"] == [[7], [8]] and seen["task"] == ["mcq", "mcq"]
    assert "prompt_ids" not in seen


def test_check_rewards_refuses_a_set_that_applies_to_none_of_the_data_and_names_the_unused_ones():
    with pytest.raises(ValueError, match=r"none of \['diagnosis_match'\] applies to the training data \(tasks: mcq\)"):
        check_rewards(build_rewards([RewardSpec("diagnosis_match")]), rows("mcq", "mcq"))
    mixed = build_rewards([RewardSpec("mcq_accuracy"), RewardSpec("diagnosis_match")])
    assert check_rewards(mixed, rows("mcq")) == ["diagnosis_match"]
    assert check_rewards(mixed, rows("mcq", "diagnosis")) == []


def _raises_on_placeholder(prompts, completions, **kwargs):
    raise ValueError("no gold letter\nand a second line a traceback would show")


def test_a_reward_that_raises_at_start_up_is_one_line_naming_it(capsys):
    from medzero_pl.errors import report_user_errors

    rewards = RewardSet(["my_reward"], [_raises_on_placeholder], [1.0])
    assert report_user_errors(lambda: check_rewards(rewards, rows("mcq")) and 0) == 2
    err = capsys.readouterr().err
    assert err.splitlines() == [
        "error: rewards: reward 'my_reward' raised ValueError: no gold letter (start-up check on a placeholder completion)"
    ]


@pytest.mark.parametrize("value", [float("inf"), float("-inf")])
def test_an_infinite_reward_is_refused_with_its_name(value):
    rewards = RewardSet(["unbounded"], [lambda prompts, completions, **kw: [1.0, value]], [1.0])
    with pytest.raises(ValueError, match=f"reward 'unbounded' returned {value} at index 1: rewards must be finite"):
        rewards(None, ["a", "b"])
