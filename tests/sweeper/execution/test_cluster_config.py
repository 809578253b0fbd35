"""cluster.yaml passes the validation that `ray up` runs, and a typo in it does not."""
import copy

import pytest
import yaml
from tests import REPO

CLUSTER = REPO / "cluster.yaml"


def validate(cfg):
    from ray.autoscaler._private.util import prepare_config, validate_config

    validate_config(prepare_config(copy.deepcopy(cfg)))


def test_cluster_yaml_is_a_valid_ray_cluster_config():
    cfg = yaml.safe_load(CLUSTER.read_text())
    validate(cfg)
    gpu = cfg["available_node_types"]["gpu_worker"]
    assert gpu["resources"]["GPU"] >= 1 and cfg["available_node_types"]["head"]["resources"]["GPU"] == 0
    assert any("[gpu]" in c for c in cfg["setup_commands"])
    assert cfg["idle_timeout_minutes"] > 0 and cfg["max_workers"] >= gpu["max_workers"]
    # token authentication: every node starts Ray with it, and every node has the one token
    starts = cfg["head_start_ray_commands"] + cfg["worker_start_ray_commands"]
    assert all("RAY_AUTH_MODE=token" in c for c in starts if "ray start" in c)
    assert cfg["file_mounts"]["/home/ray/.ray/auth_token"] == "~/.ray/auth_token"


@pytest.mark.parametrize("break_it", [
    lambda c: c.update(max_wrkers=3),
    lambda c: c["available_node_types"]["gpu_worker"].update(min_worker=1),
    lambda c: c.update(head_node_type="nonexistent"),
])
def test_a_typo_fails_validation(break_it):
    cfg = yaml.safe_load(CLUSTER.read_text())
    break_it(cfg)
    with pytest.raises(Exception):
        validate(cfg)
