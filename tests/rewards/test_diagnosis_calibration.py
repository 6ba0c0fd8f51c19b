"""Calibration of the fuzzy matcher's threshold on labelled (answer, gold, same disease?) pairs.

The list holds spelling variants that must match and near misses that must not (type 1 vs type 2, hypo- vs
hyper-, sibling diseases sharing words). With the default matcher every pair is classified correctly at any
threshold from 0.87 to 0.92 (below, "benign familial neonatal" meets "infantile seizures"; above, "Wilsons" no
longer meets "Wilson's"); the default 0.9 sits inside that window. Adding pairs here is how the threshold stays
honest.
"""

import pytest

from medzero_pl.rewards.diagnosis import diagnosis_match_reward

MATCHES = [
    ("Fabry disease", "Fabry disease"),
    ("Anderson-Fabry disease", "Fabry disease"),
    ("Fabry's disease", "Fabry disease"),
    ("Wilson disease", "Wilson's disease"),
    ("Wilsons disease", "Wilson's disease"),
    ("Hepatolenticular degeneration (Wilson disease)", "Wilson disease"),
    ("Erdheim Chester disease", "Erdheim-Chester disease"),
    ("Erdheim–Chester disease", "Erdheim-Chester disease"),
    ("Takayasu's arteritis", "Takayasu arteritis"),
    ("Kawasaki syndrome", "Kawasaki disease"),
    ("Familial Mediterranean Fever (FMF)", "Familial Mediterranean fever"),
    ("Mediterranean fever, familial", "Familial Mediterranean fever"),
    ("Whipple's disease", "Whipple disease"),
    ("Lambert-Eaton myasthenic syndrome (LEMS)", "Lambert-Eaton myasthenic syndrome"),
    ("Adult onset Still's disease", "Adult-onset Still disease"),
    ("Paroxysmal nocturnal haemoglobinuria", "Paroxysmal nocturnal hemoglobinuria"),
    ("Paroxysmal nocturnal hemoglobinurea", "Paroxysmal nocturnal hemoglobinuria"),
    ("Multifocal motor neuropathy with conduction block", "Multifocal motor neuropathy"),
    ("Idiopathic multicentric Castleman disease", "Castleman disease"),
    ("Neuromyelitis optica spectrum disorder", "Neuromyelitis optica"),
    ("Sjögren syndrome", "Sjogren syndrome"),
    ("Guillain–Barré syndrome (GBS)", "Guillain-Barre syndrome"),
    ("Niemann-Pick disease type C", "Niemann-Pick disease type C"),
    ("Hereditary hemorrhagic telangiectasia", "Hereditary haemorrhagic telangiectasia"),
    ("Gaucher disease, type I", "Gaucher disease type 1"),
    ("Gauchers disease", "Gaucher disease"),
    ("Ehlers Danlos syndrome", "Ehlers-Danlos syndrome"),
    ("Behcet's disease", "Behçet disease"),
    ("Fabry disease with renal involvement", "Fabry disease"),
    ("Classic infantile-onset Pompe disease", "Pompe disease"),
    ("Myotonic dystrophy type 1", "Myotonic dystrophy"),
    ("Wegener's granulomatosis", "Granulomatosis with polyangiitis"),
    ("GPA", "Granulomatosis with polyangiitis"),
    ("Pompe disease", "Glycogen storage disease due to acid maltase deficiency"),
    ("Glycogen storage disease type II", "Pompe disease"),
    ("NMOSD", "Neuromyelitis optica"),
    ("AIP", "Acute intermittent porphyria"),
    ("Amyotrophic lateral sclerosis (ALS)", "ALS"),
]

NEAR_MISSES = [
    ("Type 1 diabetes", "Type 2 diabetes"),
    ("Type 1 diabetes mellitus", "Type 2 diabetes mellitus"),
    ("Fabry disease", "Gaucher disease"),
    ("Gaucher disease", "Fabry disease"),
    ("Pompe disease", "Fabry disease"),
    ("Danon disease", "Pompe disease"),
    ("Menkes disease", "Wilson's disease"),
    ("Niemann-Pick disease type C", "Niemann-Pick disease type A"),
    ("Gaucher disease type 2", "Gaucher disease type 1"),
    ("Mucopolysaccharidosis type I", "Mucopolysaccharidosis type II"),
    ("Glycogen storage disease type I", "Glycogen storage disease type II"),
    ("Spinal muscular atrophy type 1", "Spinal muscular atrophy type 2"),
    ("Neurofibromatosis type 1", "Neurofibromatosis type 2"),
    ("Primary hyperoxaluria type 1", "Primary hyperoxaluria type 2"),
    ("Hemophilia A", "Hemophilia B"),
    ("Hypokalemic periodic paralysis", "Hyperkalemic periodic paralysis"),
    ("Hypothyroidism", "Hyperthyroidism"),
    ("Congenital adrenal hypoplasia", "Congenital adrenal hyperplasia"),
    ("Primary hyperparathyroidism", "Secondary hyperparathyroidism"),
    ("Alpha thalassemia", "Beta thalassemia"),
    ("Acute myeloid leukemia", "Chronic myeloid leukemia"),
    ("Non-Hodgkin lymphoma", "Hodgkin lymphoma"),
    ("Eosinophilic granulomatosis with polyangiitis", "Granulomatosis with polyangiitis"),
    ("Microscopic polyangiitis", "Granulomatosis with polyangiitis"),
    ("Atypical hemolytic uremic syndrome", "Hemolytic uremic syndrome"),
    ("Pseudo-Hurler polydystrophy", "Hurler syndrome"),
    ("Unicentric Castleman disease", "Idiopathic multicentric Castleman disease"),
    ("Benign familial neonatal seizures", "Benign familial infantile seizures"),
    ("Paroxysmal cold hemoglobinuria", "Paroxysmal nocturnal hemoglobinuria"),
    ("Duchenne muscular dystrophy", "Becker muscular dystrophy"),
    ("Autoimmune hepatitis", "Autoimmune pancreatitis"),
    ("Kawasaki disease", "Takayasu arteritis"),
    ("Giant cell arteritis", "Takayasu arteritis"),
    ("Porphyria cutanea tarda", "Acute intermittent porphyria"),
    ("Variegate porphyria", "Acute intermittent porphyria"),
    ("Myasthenia gravis", "Lambert-Eaton myasthenic syndrome"),
    ("Chronic inflammatory demyelinating polyneuropathy", "Multifocal motor neuropathy"),
    ("Multiple sclerosis", "Neuromyelitis optica"),
    ("Langerhans cell histiocytosis", "Erdheim-Chester disease"),
    ("Celiac disease", "Whipple disease"),
    ("Marfan syndrome", "Loeys-Dietz syndrome"),
    ("Hereditary angioedema", "Familial Mediterranean fever"),
    ("Still disease", "Adult-onset Still disease"),  # broader: partial credit at most
    ("Disease", "Fabry disease"),
    ("Syndrome", "Marfan syndrome"),
    ("Not Fabry disease", "Fabry disease"),
    ("Fabry disease or Gaucher disease", "Gaucher disease"),
    ("Fabry disease, Gaucher disease", "Gaucher disease"),
]
LABELLED = [(a, g, True) for a, g in MATCHES] + [(a, g, False) for a, g in NEAR_MISSES]


def errors(threshold: float) -> list[tuple[str, str, bool]]:
    item = diagnosis_match_reward(mode="fuzzy", threshold=threshold).item
    return [(a, g, same) for a, g, same in LABELLED if (item(f"<answer>{a}</answer>", [g]) == 1.0) != same]


@pytest.mark.parametrize(("answer", "gold", "same"), LABELLED)
def test_the_default_matcher_classifies_each_labelled_pair(answer, gold, same):
    score = diagnosis_match_reward().item(f"<answer>{answer}</answer>", [gold])
    assert score == (1.0 if same else 0.0)


def test_the_default_threshold_sits_inside_the_error_free_window():
    window = [t / 100 for t in range(80, 100) if not errors(t / 100)]
    assert window == [0.87, 0.88, 0.89, 0.90, 0.91, 0.92]
    assert errors(0.86) and errors(0.93)  # the window's edges are real: the list constrains the threshold
