"""The code hash covers what computes results, not what only says them."""
from sweeper.spec.code_hash import source_hash

STUDY = '''
from sweeper import Finding, Study
def simulate(d, s): return {"x": 1}
def fit(ds, p, s): return {"metrics": {"m": 1.0}}
study = Study("s", simulate, fit, description="Q?", findings=(Finding("metrics.m", "fit.a", 1),))
'''


def test_findings_and_description_do_not_change_the_hash_but_code_does():
    base = source_hash(STUDY)
    assert source_hash(STUDY.replace('"Q?"', '"Another question?"')) == base
    assert source_hash(STUDY.replace('Finding("metrics.m", "fit.a", 1),', "")) == base
    assert source_hash(STUDY.replace('"m": 1.0', '"m": 2.0')) != base
    assert source_hash(STUDY.replace('Study("s"', 'Study("t"')) != base  # the name is the sweep directory's
