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


# source_hash of tests/fixtures/linear.py, committed: a Python upgrade or a change of the hashing that moves it
# would change every sweep id (and a resume would recompute everything); change it only on purpose
LINEAR_HASH = "dc8e6595d27db5a23f54e00257d61533a5947c62c34ce636f9259c0f7d081084"


def test_the_code_hash_of_a_fixed_file_is_pinned():
    from sweeper.spec.code_hash import source_hash
    from tests import REPO

    assert source_hash((REPO / "tests" / "fixtures" / "linear.py").read_text()) == LINEAR_HASH


def test_the_hashed_tree_has_no_positions_and_no_empty_fields():
    """What changes between Python versions for the same source is left out: positions, and fields that are
    empty where unused (3.12 added `type_params`, 3.13's ast.dump stopped printing empty fields)."""
    import ast

    from sweeper.spec.code_hash import canonical

    text = canonical(ast.parse("def f(x):\n    return x\n"))
    assert "lineno" not in text and "decorator_list" not in text and "returns" not in text
    assert text.startswith("Module(body=[FunctionDef(name='f',args=arguments(args=[arg(arg='x')])")


def test_a_nan_parameter_and_the_text_nan_hash_apart():
    import math

    from sweeper.hashing import canonical_json, short_hash

    assert short_hash({"x": math.nan}) != short_hash({"x": "nan"})
    assert short_hash({"x": math.inf}) != short_hash({"x": "inf"}) != short_hash({"x": -math.inf})
    assert canonical_json({"x": math.nan}) == '{"x":NaN}'
