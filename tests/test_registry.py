"""The model registry: names, close matches, overrides, duplicates."""

from __future__ import annotations

import pytest

from cnnlab import create_model, get_spec, list_models, registry
from cnnlab.errors import CnnlabError
from cnnlab.models import lenet


def test_list_models_filters_by_pattern():
    assert list_models("lenet5*") == ["lenet5", "lenet5_1998", "lenet5_modern"]
    assert list_models("nothing*") == []


def test_unknown_name_suggests_close_matches():
    with pytest.raises(CnnlabError) as e:
        create_model("lenet5_1989")
    message = str(e.value)
    assert "'lenet5_1989'" in message and "lenet5_1998" in message and "\n" not in message


def test_overrides_set_config_fields_and_unknown_ones_fail():
    model = create_model("lenet5_modern", norm="none", dropout=0.25)
    assert model.cfg.norm == "none" and model.cfg.dropout == 0.25
    with pytest.raises(CnnlabError, match="no option widht"):
        create_model("lenet5_modern", widht=2)


def test_each_spec_names_its_paper_and_recipe():
    spec = get_spec("lenet5_1998")
    assert "LeCun" in spec.paper and "1998" in spec.paper
    assert spec.recipe.loss == "rbf_map" and spec.recipe.epochs == 20


def test_a_name_registered_twice_is_refused(monkeypatch):
    monkeypatch.setattr(registry, "FAMILIES", (lenet, lenet))
    with pytest.raises(RuntimeError, match="registered twice"):
        registry._collect()
