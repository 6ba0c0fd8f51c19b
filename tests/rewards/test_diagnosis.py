"""Diagnosis match: the DiagnosisZero seed rule reproduced exactly, and the default fuzzy matcher."""

import json
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from medzero_pl.rewards.diagnosis import (
    diagnosis_match,
    diagnosis_match_reward,
    diagnosis_zero_score,
    diagnosis_zero_similarity,
    normalize_name,
    split_diagnoses,
)
from medzero_pl.rewards.diagnosis.calibration import scorer
from medzero_pl.rewards.registry import build_rewards

THINK = "<think>\nAngiokeratomas, acroparesthesia, cornea verticillata, LVH.\n</think>\n"


def answered(content: str) -> str:
    return f"{THINK}<answer>{content}</answer>"


def seed(text: str, golds: list[str], top_k: int | None = None) -> float | None:
    return diagnosis_match_reward(mode="diagnosis_zero", top_k=top_k).item(text, golds)


def fuzzy(text: str, golds: list[str], **kwargs) -> float | None:
    return diagnosis_match_reward(**kwargs).item(text, golds)


class TestDiagnosisZeroSeed:
    """similarity = 0.8 * SequenceMatcher ratio + 0.2 * Jaccard(\\w+ word sets), after lower() and strip();
    ratio = 2 * M / (len(a) + len(b)) with M the characters in matching blocks. Reward: no answer 0,
    similarity > 0.8 -> 1.0, any other answer 0.1."""

    def test_possessive_is_close_enough(self):
        # "wilson disease" (14 chars) vs "wilson's disease" (16): blocks "wilson" (6) + " disease" (8) -> M = 14
        # ratio = 2 * 14 / 30 = 0.93333; words {wilson, disease} vs {wilson, s, disease}: Jaccard 2 / 3
        # 0.8 * 0.93333 + 0.2 * 0.66667 = 0.74667 + 0.13333 = 0.88 > 0.8
        assert diagnosis_zero_similarity("Wilson disease", ["Wilson's disease"]) == pytest.approx(0.88)
        assert seed(answered("Wilson disease"), ["Wilson's disease"]) == 1.0

    def test_possessive_in_the_answer(self):
        # "takayasu's arteritis" (20) vs "takayasu arteritis" (18): "takayasu" (8) + " arteritis" (10) -> M = 18
        # ratio = 36 / 38 = 0.947368; Jaccard {takayasu, s, arteritis} vs {takayasu, arteritis} = 2 / 3
        # 0.8 * 0.947368 + 0.2 * 0.666667 = 0.757895 + 0.133333 = 0.891228
        assert diagnosis_zero_similarity("Takayasu's arteritis", ["Takayasu arteritis"]) == pytest.approx(0.891228)

    def test_trailing_punctuation_costs_little(self):
        # "fabry disease." (14) vs "fabry disease" (13): M = 13, ratio = 26 / 27 = 0.962963; Jaccard 1
        # 0.8 * 0.962963 + 0.2 * 1 = 0.970370
        assert diagnosis_zero_similarity("Fabry disease.", ["Fabry disease"]) == pytest.approx(0.970370)

    def test_a_synonym_by_suffix_is_missed(self):
        # "kawasaki syndrome" (17) vs "kawasaki disease" (16): blocks "kawasaki " (9), "s" (1), "e" (1) -> M = 11
        # ratio = 22 / 33 = 0.666667; Jaccard {kawasaki, syndrome} vs {kawasaki, disease} = 1 / 3
        # 0.8 * 0.666667 + 0.2 * 0.333333 = 0.533333 + 0.066667 = 0.6 -> only the 0.1 format score
        assert diagnosis_zero_similarity("Kawasaki syndrome", ["Kawasaki disease"]) == pytest.approx(0.6)
        assert seed(answered("Kawasaki syndrome"), ["Kawasaki disease"]) == 0.1
        assert fuzzy(answered("Kawasaki syndrome"), ["Kawasaki disease"]) == 1.0  # the fuzzy mode knows better

    def test_a_less_specific_answer_falls_below_the_threshold(self):
        # "gaucher disease" (15) is a prefix of "gaucher disease type 1" (22): M = 15, ratio = 30 / 37 = 0.810811
        # Jaccard {gaucher, disease} vs {gaucher, disease, type, 1} = 2 / 4 = 0.5
        # 0.8 * 0.810811 + 0.2 * 0.5 = 0.648649 + 0.1 = 0.748649
        assert diagnosis_zero_similarity("Gaucher disease", ["Gaucher disease type 1"]) == pytest.approx(0.748649)
        assert seed(answered("Gaucher disease"), ["Gaucher disease type 1"]) == 0.1

    def test_a_hedge_falls_below_the_threshold(self):
        # "fabry disease or gaucher disease" (32) vs "fabry disease" (13): M = 13, ratio = 26 / 45 = 0.577778
        # Jaccard {fabry, disease, or, gaucher} vs {fabry, disease} = 2 / 4 = 0.5
        # 0.8 * 0.577778 + 0.2 * 0.5 = 0.462222 + 0.1 = 0.562222
        assert diagnosis_zero_similarity("Fabry disease or Gaucher disease", ["Fabry disease"]) == pytest.approx(
            0.562222
        )

    def test_a_bare_eponym_is_far_from_the_full_name(self):
        # "fabry" (5) vs "fabry disease" (13): M = 5, ratio = 10 / 18 = 0.555556; Jaccard 1 / 2
        # 0.8 * 0.555556 + 0.2 * 0.5 = 0.444444 + 0.1 = 0.544444
        assert diagnosis_zero_similarity("Fabry", ["Fabry disease"]) == pytest.approx(0.544444)

    def test_case_and_surrounding_space_are_ignored_and_exact_matches_short_circuit(self):
        assert diagnosis_zero_similarity("  FABRY DISEASE ", ["Fabry disease"]) == 1.0

    def test_the_best_gold_name_counts(self, rdc_rows):
        row = rdc_rows["SYN-0003"]  # diagnosis "Pompe disease", Orpha_name "Glycogen storage disease due to ..."
        golds = [row["diagnosis"], row["Orpha_name"]]
        assert seed(answered("Pompe disease"), golds) == 1.0
        assert seed(answered("glycogen storage disease due to acid maltase deficiency"), golds) == 1.0
        assert seed(answered("Danon disease"), golds) == 0.1

    def test_no_answer_scores_zero_and_an_empty_answer_scores_the_format_score(self):
        assert seed(THINK + "The diagnosis is Fabry disease.", ["Fabry disease"]) == 0.0
        assert seed(answered(""), ["Fabry disease"]) == 0.1  # "" is not None in the seed either

    def test_the_first_answer_is_judged_as_the_seeds_third_match_was(self):
        # the seed's prompt held two example <answer> tags, so its "third match" was the model's first answer
        text = THINK + "<answer>Fabry disease</answer> or maybe <answer>Gaucher disease</answer>"
        assert seed(text, ["Gaucher disease"]) == 0.1

    @settings(max_examples=150, deadline=None)
    @given(
        st.text(alphabet="abcdefg '-", max_size=40),
        st.lists(st.text(alphabet="abcdefg '-", max_size=40), min_size=1, max_size=3),
    )
    def test_the_fast_score_equals_thresholding_the_exact_similarity(self, answer, golds):
        expected = 1.0 if diagnosis_zero_similarity(answer, golds) > 0.8 else 0.1
        assert diagnosis_zero_score(answer, tuple(golds)) == expected

    def test_a_megabyte_answer_is_scored_quickly_and_exactly(self):
        answer = "fabry disease " * 70_000  # the bound real_quick_ratio() rules it out without ratio()
        assert diagnosis_zero_score(answer, ("Fabry disease",)) == 0.1


class TestFuzzy:
    def test_every_rdc_case_matches_both_its_diagnosis_and_its_orphanet_name(self, rdc_rows):
        for row in rdc_rows.values():
            golds = list(dict.fromkeys([row["diagnosis"], row["Orpha_name"]]))
            for name in golds:
                assert fuzzy(answered(name), golds) == 1.0, name

    def test_a_synonym_known_only_to_the_lexicon_matches(self, rdc_rows):
        assert fuzzy(answered("Wegener's granulomatosis"), [rdc_rows["SYN-0014"]["Orpha_name"]]) == 1.0
        assert fuzzy(answered("GSD type II"), [rdc_rows["SYN-0003"]["diagnosis"]]) == 1.0
        assert fuzzy(answered("PNH"), [rdc_rows["SYN-0016"]["diagnosis"]]) == 1.0
        assert fuzzy(answered("NMOSD"), [rdc_rows["SYN-0010"]["diagnosis"]]) == 1.0

    def test_without_builtin_synonyms_abbreviations_do_not_match(self):
        assert fuzzy(answered("GPA"), ["Granulomatosis with polyangiitis"], builtin_synonyms=False) == 0.0
        # the abbreviation in parentheses still helps, as its own reading of the answer
        text = answered("Granulomatosis with polyangiitis (GPA)")
        assert fuzzy(text, ["GPA"], builtin_synonyms=False) == 1.0

    def test_a_wrong_diagnosis_scores_zero(self, rdc_rows):
        golds = [rdc_rows["SYN-0001"]["diagnosis"]]  # Fabry disease
        for wrong in ("Gaucher disease", "Pompe disease", "Disease", "Not Fabry disease", "Fabry or Gaucher disease"):
            assert fuzzy(answered(wrong), golds) == 0.0, wrong

    def test_a_broader_name_earns_the_partial_credit_only_when_configured(self):
        golds = ["Adult-onset Still disease"]
        assert fuzzy(answered("Still disease"), golds) == 0.0
        assert fuzzy(answered("Still disease"), golds, partial_credit=0.25) == 0.25
        assert fuzzy(answered("Gaucher disease"), ["Gaucher disease type 1"], partial_credit=0.25) == 0.25

    def test_a_narrow_orphanet_parent_earns_the_hypernym_credit(self, hypernym_path):
        golds = ["Acute intermittent porphyria"]  # Orphanet parent "Acute hepatic porphyria" (4 diseases)
        assert fuzzy(answered("Acute hepatic porphyria"), golds) == 0.0
        assert fuzzy(answered("Acute hepatic porphyria"), golds, hypernym_path=str(hypernym_path)) == 0.5
        kwargs = {"hypernym_path": str(hypernym_path), "hypernym_credit": 0.3}
        assert fuzzy(answered("Acute intermittent porphyria"), golds, **kwargs) == 1.0
        # "Rare genetic hematologic disease" groups 187 diseases: too broad for credit, as in RareArena's judge
        assert fuzzy(answered("Rare genetic hematologic disease"), ["PNH"], **kwargs) == 0.0
        assert fuzzy(answered("Rare acquired hemolytic anemia"), ["PNH"], **kwargs) == 0.3

    def test_a_synonyms_file_adds_equivalent_names(self, tmp_path):
        path = tmp_path / "synonyms.json"
        path.write_text(json.dumps({"Fabry disease": ["Angiokeratoma corporis diffusum"]}))
        text = answered("Angiokeratoma corporis diffusum")
        assert fuzzy(text, ["Fabry disease"]) == 0.0
        assert fuzzy(text, ["Fabry disease"], synonyms_path=str(path)) == 1.0

    def test_a_malformed_synonyms_file_is_rejected_at_build_time(self, tmp_path):
        path = tmp_path / "synonyms.json"
        path.write_text(json.dumps(["Fabry disease"]))
        with pytest.raises(ValueError, match="list of equivalent names"):
            diagnosis_match_reward(synonyms_path=str(path))

    def test_no_gold_or_another_task_is_not_applicable(self):
        assert diagnosis_match(answered("Fabry disease"), [], score=lambda c, g: 1.0) is None
        assert diagnosis_match(answered("Fabry disease"), ["Fabry disease"], "mcq", score=lambda c, g: 1.0) is None
        assert fuzzy(THINK + "no tags", ["Fabry disease"]) == 0.0


class TestLists:
    RAREARENA_STYLE = "1. Gaucher disease;\n2. Fabry disease;\n3. Pompe disease;\n4. Danon disease;\n5. Niemann-Pick"

    def test_a_ranked_list_is_split_into_its_diagnoses(self):
        assert split_diagnoses(self.RAREARENA_STYLE) == [
            "Gaucher disease",
            "Fabry disease",
            "Pompe disease",
            "Danon disease",
            "Niemann-Pick",
        ]
        assert split_diagnoses("1. Fabry disease 2. Gaucher disease") == ["Fabry disease", "Gaucher disease"]
        assert split_diagnoses("- **Fabry disease**\n- Gaucher disease") == ["Fabry disease", "Gaucher disease"]
        assert split_diagnoses("Fabry disease vs. Gaucher disease") == ["Fabry disease", "Gaucher disease"]
        assert split_diagnoses("The most likely diagnosis is Wilson disease.") == ["Wilson disease"]

    def test_commas_split_only_between_multi_word_names(self):
        assert split_diagnoses("Pompe disease, Danon disease, Fabry disease") == [
            "Pompe disease",
            "Danon disease",
            "Fabry disease",
        ]
        assert split_diagnoses("Fever, familial Mediterranean") == ["Fever, familial Mediterranean"]
        assert split_diagnoses("Hand, foot and mouth disease") == ["Hand, foot and mouth disease"]

    def test_top_1_and_top_5_follow_rarearena(self):
        text = answered(self.RAREARENA_STYLE)
        assert fuzzy(text, ["Fabry disease"], top_k=1) == 0.0
        assert fuzzy(text, ["Fabry disease"], top_k=2) == 1.0
        assert fuzzy(text, ["Gaucher disease"], top_k=1) == 1.0
        assert fuzzy(text, ["Sarcoidosis"], top_k=5) == 0.0
        assert fuzzy(text, ["Fabry disease"]) == 0.0  # top_k=None: the whole answer must be one name
        assert seed(text, ["Fabry disease"], top_k=5) == 1.0

    def test_bad_top_k_is_rejected(self):
        for top_k in (0, -1, 1.5, True):
            with pytest.raises(ValueError, match="top_k"):
                diagnosis_match_reward(top_k=top_k)


def test_normalisation_removes_what_does_not_change_the_disease():
    assert normalize_name("Erdheim–Chester disease") == "erdheim chester disease"
    assert normalize_name("Wilson’s disease") == "wilson disease"
    assert normalize_name("Sjögren syndrome") == "sjogren syndrome"
    assert normalize_name("Gaucher disease, type II") == "gaucher disease type 2"
    assert normalize_name("Guillain-Barré syndrome (GBS)") == "guillain barre syndrome gbs"


def test_mode_keywords_are_checked():
    with pytest.raises(ValueError, match="diagnosis_zero"):
        diagnosis_match_reward(mode="diagnosis_zero", threshold=0.5)
    with pytest.raises(ValueError, match="mode"):
        diagnosis_match_reward(mode="llm_judge")
    with pytest.raises(ValueError, match="scorer"):
        diagnosis_match_reward(scorer="jaro")


class TestDistinguishingTokens:
    """Full credit needs the same distinguishing tokens; a differing one is a sibling: partial credit at most."""

    SIBLINGS = [
        ("Gaucher disease type 1", "Gaucher disease type 2"),  # type numbers
        ("Hemophilia A", "Hemophilia B"),  # letters
        ("Xeroderma pigmentosum group A", "Xeroderma pigmentosum group C"),  # group values
        ("Glycogen storage disease type IIIa", "Glycogen storage disease type IIIb"),  # roman numeral + letter
        ("Mucopolysaccharidosis type IIIA", "Mucopolysaccharidosis type 3C"),
        ("Limb-girdle muscular dystrophy type 2a", "Limb-girdle muscular dystrophy type 2b"),  # letter suffix
        ("Charcot-Marie-Tooth disease type 4B2", "Charcot-Marie-Tooth disease type 4A"),  # mixed codes
        ("Charcot-Marie-Tooth disease type 2A1", "Charcot-Marie-Tooth disease type 2A2"),
        ("COL4A5-related Alport syndrome", "COL4A3-related Alport syndrome"),  # gene symbols
        ("IgG4-related disease", "IgE-related disease"),  # immunoglobulin classes
        ("ATTR amyloidosis", "AA amyloidosis"),  # amyloid proteins
        ("AL amyloidosis", "AA amyloidosis"),
        ("Alpha-thalassemia", "Beta-thalassemia"),  # Greek letters
        ("Juvenile neuronal ceroid lipofuscinosis", "Adult neuronal ceroid lipofuscinosis"),  # age of onset
        ("Infantile-onset Pompe disease", "Late-onset Pompe disease"),
        ("Hereditary spastic paraplegia 3 type 2", "Hereditary spastic paraplegia 3 type 3"),  # a shared number
        ("Acute myeloid leukemia with t(8;21)(q22;q22)", "Acute myeloid leukemia with t(6;9)(p23;q34)"),
    ]

    @pytest.mark.parametrize(("one", "other"), SIBLINGS)
    def test_a_sibling_never_gets_full_credit_in_either_direction(self, one, other):
        for answer, gold in ((one, other), (other, one)):
            assert fuzzy(answered(answer), [gold]) == 0.0, (answer, gold)
            assert fuzzy(answered(answer), [gold], partial_credit=0.3) == 0.3, (answer, gold)  # same family
            assert fuzzy(answered(gold), [gold]) == 1.0

    @pytest.mark.parametrize(
        ("answer", "gold"),
        [
            ("Glycogen storage disease type IIIa", "Glycogen storage disease type 3a"),
            ("Gaucher's disease, type I", "Gaucher disease type 1"),
            ("Limb-girdle muscular dystrophy type 2 A", "Limb-girdle muscular dystrophy type 2A"),
            ("IgG4 related disease", "IgG4-related disease"),
            ("Alpha 1 antitrypsin deficiency", "Alpha1-antitrypsin deficiency"),
            ("Diabetes mellitus type 1", "Type 1 diabetes mellitus"),
            ("Gaucher disease (type 1)", "Gaucher disease type 1"),
            ("Adult onset Still's disease", "Adult-onset Still disease"),
            ("Cushing's disease", "Cushing disease"),
        ],
    )
    def test_the_same_tokens_written_differently_get_full_credit(self, answer, gold):
        assert fuzzy(answered(answer), [gold]) == 1.0
        assert fuzzy(answered(gold), [answer]) == 1.0

    def test_a_broader_or_a_more_specific_name_gets_the_partial_credit_only(self):
        for answer, gold in [
            ("Gaucher disease", "Gaucher disease type 1"),  # broader
            ("Gaucher disease type 1", "Gaucher disease"),  # more specific
            ("Charcot-Marie-Tooth disease type 4B", "Charcot-Marie-Tooth disease type 4B2"),
            ("Charcot-Marie-Tooth disease type 4B2", "Charcot-Marie-Tooth disease type 4B"),
            ("Juvenile Huntington disease", "Huntington disease"),
            ("Familial medullary thyroid carcinoma", "Medullary thyroid carcinoma"),
        ]:
            assert fuzzy(answered(answer), [gold]) == 0.0, (answer, gold)
            assert fuzzy(answered(answer), [gold], partial_credit=0.25) == 0.25, (answer, gold)

    def test_cushing_syndrome_is_not_cushing_disease_but_kawasaki_syndrome_is_kawasaki_disease(self):
        assert fuzzy(answered("Cushing syndrome"), ["Cushing disease"]) == 0.0
        assert fuzzy(answered("Cushing disease"), ["Cushing syndrome"]) == 0.0
        assert fuzzy(answered("Cushing syndrome"), ["Cushing disease"], partial_credit=0.25) == 0.25
        ectopic = "Cushing syndrome due to ectopic ACTH secretion"
        assert fuzzy(answered("Cushing disease"), [ectopic], partial_credit=0.25) == 0.25  # the family
        assert fuzzy(answered(ectopic), ["Cushing disease"], partial_credit=0.25) == 0.0  # another cause
        assert fuzzy(answered("Caroli disease"), ["Caroli syndrome"]) == 0.0
        assert fuzzy(answered("Kawasaki syndrome"), ["Kawasaki disease"]) == 1.0
        assert fuzzy(answered("Marfan disease"), ["Marfan syndrome"]) == 1.0


class TestSpelling:
    """Only the words the names do not share are compared, and they must be the same words spelt differently."""

    @pytest.mark.parametrize(
        ("answer", "gold"),
        [
            ("Paroxysmal nocturnal haemoglobinuria", "Paroxysmal nocturnal hemoglobinuria"),  # British
            ("Wilsons disease", "Wilson disease"),  # a final s
            ("Paroxysmal nocturnal hemoglobinurea", "Paroxysmal nocturnal hemoglobinuria"),  # one typo
            ("Woolly hair-palmoplantar keratoedrma syndrome", "Woolly hair-palmoplantar keratoderma syndrome"),  # swap
            ("Feingold syndrme", "Feingold syndrome"),  # a typo in a generic word
            ("Osteo arthritis deformans", "Osteoarthritis deformans"),  # a joined compound
        ],
    )
    def test_spelling_variants_get_full_credit(self, answer, gold):
        assert fuzzy(answered(answer), [gold]) == 1.0

    @pytest.mark.parametrize(
        ("answer", "gold"),
        [
            ("Glioblastoma", "Lipoblastoma"),  # two edits: another word
            ("Familial hypodysfibrinogenemia", "Familial hypofibrinogenemia"),
            (
                "Glycogen storage disease due to glycogen branching enzyme deficiency",
                "Glycogen storage disease due to glycogen debranching enzyme deficiency",
            ),  # noqa: E501
            ("Maternal uniparental disomy of chromosome 6", "Paternal uniparental disomy of chromosome 6"),  # 8 letters
            ("Coccidioidomycosis", "Paracoccidioidomycosis"),  # an opposed prefix
            ("Hypokalemic periodic paralysis", "Hyperkalemic periodic paralysis"),
            ("PAPASH syndrome", "PsAPASH syndrome"),  # acronyms get no typo tolerance
            ("NAD(P)HX dehydratase deficiency", "NAD(P)HX epimerase deficiency"),  # "(P)" is no name of its own
            ("Autoimmune hepatitis", "Autoimmune pancreatitis"),
        ],
    )
    def test_different_words_get_no_credit_however_long_the_shared_stem(self, answer, gold):
        assert fuzzy(answered(answer), [gold]) == 0.0
        assert fuzzy(answered(gold), [answer]) == 0.0

    def test_hedges_are_ignored_but_alternatives_are_not(self):
        for hedge in ("Probable Fabry disease", "Fabry disease (probable)", "Fabry disease, probable"):
            assert fuzzy(answered(hedge), ["Fabry disease"]) == 1.0, hedge
        for alternative in ("Fabry disease or Gaucher disease", "Not Fabry disease", "Fabry disease ruled out"):
            assert fuzzy(answered(alternative), ["Fabry disease"]) == 0.0, alternative


def test_the_default_diagnosis_reward_sets_score_1000_completions_well_under_a_second(rdc_rows):
    import time

    import yaml

    from medzero_pl.rewards.registry import build_rewards

    conf = Path(__file__).resolve().parents[2] / "conf" / "rewards"
    rows = list(rdc_rows.values())
    siblings = ["Gaucher disease type 2", "Mucopolysaccharidosis type IIIB", "AA amyloidosis", "Cushing syndrome"]
    completions, golds = [], []
    for i in range(1000):
        row = rows[i % len(rows)]
        case = (row["case_report"] + " " + row["test_results"]) * 2
        answer = [row["diagnosis"], row["Orpha_name"], siblings[i % 4], f"1. {siblings[i % 4]};\n2. {row['diagnosis']}"]
        completions.append(f"<think>{case}</think>\n<answer>{answer[i % 4]}</answer>")
        golds.append(list(dict.fromkeys([row["diagnosis"], row["Orpha_name"]])))
    for preset in ("diagnosis", "diagnosis_fuzzy"):
        rewards = build_rewards(yaml.safe_load((conf / f"{preset}.yaml").read_text()))
        rewards(None, completions[:20], diagnoses=golds[:20], task=["diagnosis"] * 20)  # warm the caches
        start = time.perf_counter()
        out = rewards(None, completions, diagnoses=golds, task=["diagnosis"] * 1000)
        elapsed = time.perf_counter() - start
        assert len(out.total) == 1000
        assert elapsed < 0.5, f"{preset}: {elapsed:.3f} s for 1,000 completions"  # measured 0.02-0.15 s


class TestNarrowerAnswers:
    """The diagnosis_rubric preset's matcher: a subtype of the gold is the diagnosis made (RareArena's judge rubric
    as docs/rewards.md reads it), a sibling is not, a narrow Orphanet parent gets the judge's score 1."""

    @pytest.fixture(scope="class")
    def rubric(self, hypernym_path):
        return scorer("fuzzy", hypernym_path=str(hypernym_path), narrower_credit=1.0)

    @pytest.mark.parametrize(
        ("answer", "gold"),
        [
            ("Fabry disease, classic form", "Fabry disease"),  # the gold's name with qualifiers
            ("Fabry disease with renal involvement", "Fabry disease"),
            ("Classic galactosemia", "Galactosemia"),  # an Orphanet disorder below the gold
            ("Idiopathic multicentric Castleman disease", "Castleman disease"),
            ("Galactokinase deficiency", "Galactosemia"),  # below it, though no string says so
        ],
    )
    def test_a_subtype_of_the_gold_gets_full_credit(self, rubric, answer, gold):
        assert rubric(answer, (gold,)) == 1.0
        assert scorer("fuzzy")(answer, (gold,)) == 0.0  # the default fuzzy mode: not the gold itself

    @pytest.mark.parametrize(
        ("answer", "gold", "credit"),
        [
            ("Fabry disease ruled out", "Fabry disease", 0.0),  # other words are not a qualifier
            ("Fabry disease, Gaucher disease", "Fabry disease", 0.0),  # a list
            ("Classic galactosemia", "Galactokinase deficiency", 0.0),  # a sibling under Galactosemia
            ("Galactosemia", "Classic galactosemia", 0.5),  # a narrow parent: the judge's 1
            ("Sphingolipidosis", "Fabry disease", 0.0),  # a parent of 17 diseases: too broad for the judge
        ],
    )
    def test_what_is_not_a_subtype(self, rubric, answer, gold, credit):
        assert rubric(answer, (gold,)) == credit

    def test_narrower_credit_needs_the_hierarchy(self):
        with pytest.raises(ValueError, match="narrower_credit needs hypernym_path"):
            diagnosis_match_reward(narrower_credit=1.0)
        with pytest.raises(ValueError, match=r"narrower_credit must be a number in \[0, 1\]"):
            diagnosis_match_reward(narrower_credit=1.5, hypernym_path="x")

    @pytest.mark.parametrize("key", ["hypernym_path", "synonyms_path"])
    def test_a_missing_lexicon_file_is_refused_naming_the_key_and_where_the_presets_expect_it(self, key, tmp_path):
        missing = tmp_path / "data" / "rarearena" / "orphanet_hypernym.json"
        with pytest.raises(ValueError, match=rf"{key}: no file '{missing}'.*data/rarearena/"):
            diagnosis_match_reward(mode="fuzzy", **{key: str(missing)})

    def test_the_preset_scores_them_through_the_reward(self, hypernym_path):
        specs = yaml.safe_load(
            (Path(__file__).resolve().parents[2] / "conf" / "rewards" / "diagnosis_rubric.yaml").read_text()
        )
        specs[0]["kwargs"]["hypernym_path"] = str(hypernym_path)  # the preset names data/rarearena/
        rewards = build_rewards(specs)
        answers = [
            "<think>x</think><answer>Classic galactosemia</answer>",
            "<think>x</think><answer>Galactosemia</answer>",
        ]
        out = rewards(None, answers, diagnoses=[["Galactosemia"], ["Classic galactosemia"]])
        assert out.per_function["diagnosis_match"] == [1.0, 0.5]
